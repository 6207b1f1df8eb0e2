"""Cluster runs against a real HTTP Kubernetes API (kmock's KubernetesEmulator).

The official ``kubernetes`` client is pointed at the emulator; nothing is patched. The
tests play the controllers (Job controller, scheduler, kubelet) with
:class:`cluster_fixtures.Controllers` and inject faults with kmock's DSL.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import kmock
import pytest
from cluster_fixtures import NS, TRUE, Controllers, Emulator, emulator, user_dir  # noqa: F401 (fixtures)

from labkit.params import IcaParams
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE
from labkit.results.reading import find_run
from labkit.runners.cluster.errors import ClusterError, ClusterForbidden, ClusterUnavailable, NotYourJob
from labkit.runners.cluster.jobs import ClusterJobs
from labkit.runners.cluster.manifests import LABEL_OWNER, LABEL_RUN_ID
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.status import JobPendingTooLong, JobStatus

pytestmark = pytest.mark.timeout(30)

JOBS_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"


def settings(**overrides: Any) -> ClusterSettings:
    data: dict[str, Any] = {"namespace": NS, "image": "ghcr.io/labkit/labkit:0.1.0",
                            "storage": {"nfs_server": "nfs.lab.example"}, "watch_timeout": 1,
                            "pending_timeout": 30, "api_retries": 3}
    data.update(overrides)
    return ClusterSettings.from_dict(data)


class Sleeps(list):
    """Records the retry waits instead of waiting (injected, not patched)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def jobs_for(emu: Emulator, user: str = "anna", sleeps: Sleeps | None = None, **overrides: Any) -> ClusterJobs:
    return ClusterJobs(settings(**overrides), user, emu.api_client(), sleep=sleeps if sleeps is not None else Sleeps(),
                       poll_interval=0.2)


def follow(jobs: ClusterJobs, name: str, script: Callable[[dict[str, threading.Event]], None],
           timeout: float = 15) -> tuple[JobStatus | BaseException, list[JobStatus]]:
    """Watch ``name`` while ``script`` plays the controllers; ``seen[phase]`` is set when the watcher saw it."""
    seen: dict[str, threading.Event] = {p: threading.Event() for p in ("pending", "running", "succeeded", "failed")}
    changes: list[JobStatus] = []
    errors: list[BaseException] = []

    def on_change(status: JobStatus) -> None:
        changes.append(status)
        seen[status.phase].set()

    def run_script() -> None:
        try:
            script(seen)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    player = threading.Thread(target=run_script, daemon=True)
    player.start()
    try:
        outcome: JobStatus | BaseException = jobs.watch(name, on_change=on_change, timeout=timeout)
    except BaseException as err:
        outcome = err
    player.join(5)
    assert not errors, errors
    return outcome, changes


def wait(event: threading.Event) -> None:
    assert event.wait(10), "the watcher never reported the expected phase"


def runs_then_completes(ctl: Controllers, name: str,
                        delay: float = 0.0) -> Callable[[dict[str, threading.Event]], None]:
    """A :func:`follow` script playing the kubelet and Job controller: once the watcher has seen the Job
    pending, wait ``delay`` seconds, start its pod, and complete the Job once the watcher saw it running."""

    def script(seen: dict[str, threading.Event]) -> None:
        wait(seen["pending"])
        time.sleep(delay)
        ctl.create_pod(name, phase="Running", node="n1")
        wait(seen["running"])
        ctl.job_condition(name, "Complete")

    return script


# -- submit ----------------------------------------------------------------------------
def test_submit_creates_the_job_over_http(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams(n_components=12))
    assert not sub.attached
    stored = emulator.run(lambda: dict(emulator.kmock.objects[kmock.resource("batch", "v1", "jobs"), NS, sub.name]))
    assert stored["metadata"]["labels"][LABEL_OWNER] == "anna"
    assert stored["metadata"]["labels"][LABEL_RUN_ID] == sub.run_id
    env = {e["name"]: e["value"] for e in stored["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ICA_COMPONENTS_COUNT"] == "12" and env["LABKIT_RUN_ID"] == sub.run_id and env["BASE_DIR"] == "/userdata"
    status = jobs.status(sub.name)
    assert status.phase == "pending" and status.run_id == sub.run_id


def test_resubmitting_the_same_set_attaches_unless_forced(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    first = jobs.submit(IcaParams())
    again = jobs.submit(IcaParams())
    assert again.attached and again.name == first.name and again.run_id == first.run_id
    assert any("already submitted" in w for w in again.warnings)
    forced = jobs.submit(IcaParams(), force=True)
    assert not forced.attached and forced.name != first.name and forced.run_id != first.run_id
    other = jobs.submit(IcaParams(n_components=10))
    assert other.name != first.name
    posts = [r for r in emulator.requests() if r.method == "POST" and r.url.path == JOBS_PATH]
    assert len(posts) == 4  # the attach was a 409 answered by reading, not a second Job
    assert len(jobs.list()) == 3


def test_version_mismatch_is_warned_before_submitting(emulator: Emulator) -> None:
    jobs = jobs_for(emulator, image="ghcr.io/labkit/labkit:0.0.9")
    sub = jobs.submit(IcaParams())
    assert any("0.0.9" in w and "0.1.0" in w for w in sub.warnings)


# -- watch -----------------------------------------------------------------------------
def test_watch_follows_pending_running_succeeded_and_loads_the_result(emulator: Emulator, tmp_path) -> None:
    jobs = jobs_for(emulator, storage={"nfs_server": "nfs", "local_base_dir": str(tmp_path)})
    params = IcaParams()
    sub = jobs.submit(params)
    ctl = Controllers(emulator.api_client())

    def script(seen: dict[str, threading.Event]) -> None:
        wait(seen["pending"])
        pod = ctl.create_pod(sub.name)
        ctl.pod_status(pod, phase="Pending", conditions=[{"type": "PodScheduled", "status": "True"}])
        ctl.pod_spec(pod, nodeName="worker-3")
        ctl.pod_status(pod, phase="Running", containerStatuses=[{"name": "ica", "ready": True, "restartCount": 0,
                       "image": "x", "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}])
        ctl.job_status(sub.name, active=1, ready=1)
        wait(seen["running"])
        # the run writes its result folder on the (here: local) NFS directory
        folder = RunFolder.create(params.replace(base_dir=str(tmp_path)), sub.run_id)
        folder.start()
        (folder.path / METRICS_FILE).write_text(json.dumps({"method": "fastica", "n_components": 30}))
        (folder.path / ICA_FILE).write_bytes(b"ica")
        folder.succeed()
        ctl.pod_status(pod, phase="Succeeded")
        ctl.job_condition(sub.name, "Complete")

    final, changes = follow(jobs, sub.name, script)
    assert isinstance(final, JobStatus), final
    phases = [c.phase for c in changes]
    assert phases[0] == "pending" and "running" in phases and phases[-1] == "succeeded"
    assert phases.index("running") < phases.index("succeeded")
    assert final.node == "worker-3"
    result = jobs.result(final)
    assert result.state == "succeeded" and result.run_id == sub.run_id
    assert result.path == find_run(tmp_path, sub.run_id).path


def _terminated(reason: str, code: int) -> dict[str, Any]:
    return {"phase": "Failed", "containerStatuses": [{"name": "ica", "ready": False, "restartCount": 0, "image": "x",
            "imageID": "", "state": {"terminated": {"reason": reason, "exitCode": code}}}]}


@pytest.mark.parametrize("case", ["oom", "deadline", "cell", "logline"])
def test_watch_explains_failures(emulator: Emulator, tmp_path, case: str) -> None:
    jobs = jobs_for(emulator, storage={"nfs_server": "nfs", "local_base_dir": str(tmp_path)})
    params = IcaParams()
    sub = jobs.submit(params)
    ctl = Controllers(emulator.api_client())
    pod_name = f"{sub.name}-p0001"
    if case == "logline":
        emulator.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod_name}/log"]
                       << b"fitting ICA\nlabkit: run failed: Recording not found: eeg/s01.fif\n")

    def script(seen: dict[str, threading.Event]) -> None:
        wait(seen["pending"])
        pod = ctl.create_pod(sub.name, phase="Running", node="worker-1")
        assert pod == pod_name
        wait(seen["running"])
        if case == "oom":
            ctl.event("Pod", pod, "OOMKilling", "Memory cgroup out of memory: Killed process 42 (python)")
            ctl.pod_status(pod, **_terminated("OOMKilled", 137))
            ctl.job_condition(sub.name, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif case == "deadline":
            ctl.pod_status(pod, phase="Failed", reason="DeadlineExceeded")
            ctl.job_condition(sub.name, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        else:
            if case == "cell":
                folder = RunFolder.create(params.replace(base_dir=str(tmp_path)), sub.run_id)
                folder.start()
                folder.fail("ValueError in cell 7", cell=7, ename="ValueError", evalue="n_components too large")
            ctl.pod_status(pod, **_terminated("Error", 4))
            ctl.job_condition(sub.name, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    final, _ = follow(jobs, sub.name, script)
    assert isinstance(final, JobStatus), final
    assert final.phase == "failed"
    if case == "oom":
        assert final.infrastructure is True and "out of memory" in final.reason and "4Gi" in final.reason
        assert any("OOMKilling" in e and pod_name in e for e in final.events)  # events on failure
    elif case == "deadline":
        assert final.infrastructure is True and "time limit" in final.reason
    elif case == "cell":
        assert final.infrastructure is False and "cell 7" in final.reason and "ValueError" in final.reason
        assert final.cell_error["evalue"] == "n_components too large"
    else:
        assert final.infrastructure is False and "Recording not found: eeg/s01.fif" in final.reason


@pytest.mark.parametrize("case", ["image", "unschedulable", "volcano"])
def test_long_pending_is_reported_with_the_schedulers_reason(emulator: Emulator, case: str) -> None:
    overrides: dict[str, Any] = {"pending_timeout": 0.5}
    if case == "volcano":
        overrides["scheduler"] = {"name": "volcano", "queue": "eeg"}
    jobs = jobs_for(emulator, **overrides)
    sub = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())
    pod = ctl.create_pod(sub.name)
    if case == "image":
        ctl.pod_spec(pod, nodeName="worker-2")
        ctl.pod_status(pod, containerStatuses=[{"name": "ica", "ready": False, "restartCount": 0, "image": "x",
                       "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                            "message": "Back-off pulling image"}}}])
    elif case == "unschedulable":
        ctl.pod_status(pod, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": "0/3 nodes are available: 3 Insufficient memory."}])
    else:
        ctl.pod_status(pod, conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": "pod group is not ready, 1 minAvailable"}])
        ctl.event("PodGroup", f"podgroup-{sub.name}", "Unschedulable",
                  "queue resource quota insufficient: queue eeg, insufficient cpu")
    with pytest.raises(JobPendingTooLong) as info:
        jobs.watch(sub.name, timeout=10)
    message = str(info.value)
    assert "still pending" in message and f"labkit cancel {sub.name}" in message
    if case == "image":
        assert "ImagePullBackOff" in message and "ghcr.io/labkit/labkit:0.1.0" in message
    elif case == "unschedulable":
        assert "Insufficient memory" in message
    else:
        assert "Volcano queue" in message and "insufficient cpu" in message
        assert info.value.status.events


def test_watch_resumes_after_410_gone(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    gone = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                         "reason": "Expired", "message": "too old resource version: 1 (2)"}}
    expired = emulator.react_next(lambda k: k["get", JOBS_PATH, kmock.params({"watch": TRUE})],
                                  lambda v: v << json.dumps(gone).encode() + b"\n")
    ctl = Controllers(emulator.api_client())

    final, _ = follow(jobs, sub.name, runs_then_completes(ctl, sub.name, 0.5))
    assert isinstance(final, JobStatus) and final.phase == "succeeded", final
    assert emulator.served(expired) == 1  # the first watch did meet the 410
    assert jobs.watch_state.get("relisted", 0) >= 1
    paths = [(r.method, r.url.path, dict(r.params)) for r in emulator.requests()]
    watches = [i for i, (m, p, q) in enumerate(paths) if p == JOBS_PATH and q.get("watch") == "true"]
    relists = [i for i, (m, p, q) in enumerate(paths) if p == JOBS_PATH and "watch" not in q and m == "GET"]
    assert relists and watches and relists[0] > watches[0]  # listed again after the expired watch


def test_watch_renews_timed_out_streams(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())

    # the pod starts after several poll intervals: the (never-ending) watch stream times out and is renewed
    final, _ = follow(jobs, sub.name, runs_then_completes(ctl, sub.name, 1.0))
    assert isinstance(final, JobStatus) and final.phase == "succeeded"
    assert jobs.watch_state.get("renewed", 0) >= 2


# -- retries and errors ------------------------------------------------------------------
def test_429_with_retry_after_and_500_are_retried(emulator: Emulator) -> None:
    sleeps = Sleeps()
    jobs = jobs_for(emulator, sleeps=sleeps)
    sub = jobs.submit(IcaParams())
    job_path = f"{JOBS_PATH}/{sub.name}"
    too_many = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429, "reason": "TooManyRequests",
                "message": "rate limited"}
    limited = emulator.react_next(lambda k: k["get", job_path],
                                  lambda v: v << 429 << kmock.headers({"Retry-After": "2"}) << too_many)
    failed = emulator.react_next(lambda k: k["get", job_path],
                                 lambda v: v << 500 << {"kind": "Status", "code": 500, "message": "etcd"}, skip=1)
    status = jobs.status(sub.name)
    assert status.phase == "pending" and status.run_id == sub.run_id  # the third attempt answered
    assert emulator.served(limited) == emulator.served(failed) == 1
    reads = [r for r in emulator.requests() if r.method == "GET" and r.url.path == job_path]
    assert len(reads) == 3
    assert sleeps[0] == 2.0  # honoured Retry-After
    assert 0 < sleeps[1] <= settings().api_max_backoff


def test_a_retried_create_that_went_through_is_not_duplicated(emulator: Emulator) -> None:
    """A 500 whose create was nevertheless stored: the retry meets 409 and recognises its own Job."""
    sleeps = Sleeps()
    jobs = jobs_for(emulator, sleeps=sleeps)
    lost = emulator.react_next(lambda k: k["post", JOBS_PATH],
                               lambda v: v << 500 << {"kind": "Status", "code": 500, "message": "timeout"})
    sub = jobs.submit(IcaParams())
    assert emulator.served(lost) == 1
    assert not sub.attached and len(sleeps) == 1
    assert [s.name for s in jobs.list()] == [sub.name]


def test_retries_are_bounded_and_explained(emulator: Emulator) -> None:
    sleeps = Sleeps()
    jobs = jobs_for(emulator, sleeps=sleeps, api_retries=2, api_max_backoff=1)
    sub = jobs.submit(IcaParams())
    overloaded = emulator.react(lambda k: k["get", f"{JOBS_PATH}/{sub.name}"] << 503
                                << kmock.headers({"Retry-After": "3600"})
                                << {"kind": "Status", "code": 503, "message": "overloaded"})
    with pytest.raises(ClusterUnavailable, match="kept answering HTTP 503"):
        jobs.status(sub.name)
    assert sleeps == [1, 1]  # Retry-After capped at api_max_backoff; 3 attempts in all
    assert emulator.served(overloaded) == 3


def test_403_is_a_clear_permission_error(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    emulator.react(lambda k: k["post", JOBS_PATH] << 403 << {
        "kind": "Status", "code": 403, "reason": "Forbidden",
        "message": 'jobs.batch is forbidden: User "system:serviceaccount:x:y" cannot create resource "jobs"'})
    with pytest.raises(ClusterForbidden) as info:
        jobs.submit(IcaParams())
    named = [word.rstrip(".,;)") for word in str(info.value).split() if word.startswith("k8s/")]
    assert named and all((Path(__file__).resolve().parents[1] / n).is_file() for n in named), named
    assert "cannot create resource" in str(info.value)


# -- logs, cancel, list, ownership ---------------------------------------------------------
def test_logs_are_streamed_while_the_pod_runs(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())
    pod = ctl.create_pod(sub.name, phase="Running", node="n1")
    streaming = threading.Event()
    path = f"get /api/v1/namespaces/{NS}/pods/{pod}/log"
    first = emulator.react_next(lambda k: k[path], lambda v: v >> streaming << (
        b"2026-01-01T00:00:01Z reading recording\n", b"2026-01-01T00:00:02Z fitting ICA (fastica, 30 components)\n",
        b"2026-01-01T00:00:03Z done\n"))
    emulator.react_next(lambda k: k[path], lambda v: v << b"", n=None, skip=1)
    threading.Thread(target=lambda: streaming.wait(10) and ctl.pod_status(pod, phase="Succeeded"), daemon=True).start()
    lines = list(jobs.logs(sub.name, follow=True))
    assert lines == ["reading recording", "fitting ICA (fastica, 30 components)", "done"]
    assert emulator.served(first) == 1
    log_reqs = [r for r in emulator.requests() if r.url.path.endswith(f"/pods/{pod}/log")]
    assert len(log_reqs) <= 3  # stopped following once the pod ended
    log_req = log_reqs[0]
    assert log_req.params.get("follow") == "true" and log_req.params.get("container") == "ica"


def test_cancel_deletes_with_propagation(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    jobs.cancel(sub.name, propagation="Foreground")
    deletes = [r for r in emulator.requests() if r.method == "DELETE"]
    assert deletes and deletes[0].data.get("propagationPolicy") == "Foreground"
    assert jobs.list() == []


def test_listing_is_by_owner_and_other_users_jobs_are_refused(emulator: Emulator) -> None:
    anna, bob = jobs_for(emulator, "anna"), jobs_for(emulator, "Bob.Smith")
    a = anna.submit(IcaParams())
    b = bob.submit(IcaParams(n_components=8))
    assert [s.name for s in anna.list()] == [a.name]
    assert [s.name for s in bob.list()] == [b.name]
    selectors = [dict(r.params).get("labelSelector", "") for r in emulator.requests()
                 if r.method == "GET" and r.url.path == JOBS_PATH and "labelSelector" in dict(r.params)]
    assert any("labkit.io/owner=anna" in s for s in selectors)
    for action in (lambda: anna.cancel(b.name), lambda: anna.status(b.name), lambda: list(anna.logs(b.name)),
                   lambda: anna.watch(b.name, timeout=2)):
        with pytest.raises(NotYourJob, match=r"is not yours \(anna\)"):
            action()
    assert not [r for r in emulator.requests() if r.method == "DELETE"]
    assert [s.name for s in bob.list()] == [b.name]  # still there


def test_same_name_owned_by_someone_else_is_not_attached(emulator: Emulator) -> None:
    anna = jobs_for(emulator, "anna")
    manifest = anna.render(IcaParams())
    manifest["metadata"]["labels"][LABEL_OWNER] = "mallory"
    Controllers(emulator.api_client()).batch.create_namespaced_job(NS, manifest)
    with pytest.raises(NotYourJob):
        anna.submit(IcaParams())


VOLCANO_JOBS = kmock.resource("batch.volcano.sh", "v1alpha1", "jobs")


def _terminated_pod(reason: str, code: int) -> dict[str, Any]:
    return {**_terminated(reason, code), "phase": "Failed" if code else "Succeeded"}


def test_volcano_sweep_is_created_as_one_volcano_job(emulator: Emulator) -> None:
    jobs = jobs_for(emulator, scheduler={"name": "volcano", "queue": "eeg"})
    sweep = [IcaParams(random_state=s) for s in range(3)] + [IcaParams(random_state=0)]
    sub = jobs.submit_sweep(sweep, sweep_id="seeds", min_available=2)
    stored = emulator.run(lambda: dict(emulator.kmock.objects[VOLCANO_JOBS, NS, sub.name]))
    assert sub.kind == "volcano" and not sub.attached and len(sub.runs) == 3  # the repeated set runs once
    assert any("repeated" in w for w in sub.warnings)
    assert stored["spec"]["queue"] == "eeg" and len(stored["spec"]["tasks"]) == 3
    assert stored["spec"]["minAvailable"] == 2
    assert stored["metadata"]["labels"][LABEL_OWNER] == "anna"
    assert [r.run_id for r in sub.runs] == [t["template"]["metadata"]["labels"][LABEL_RUN_ID]
                                             for t in stored["spec"]["tasks"]]

    again = jobs.submit_sweep(sweep, sweep_id="seeds")
    assert again.attached and again.name == sub.name and [r.run_id for r in again.runs] == [r.run_id for r in sub.runs]
    assert len([r for r in emulator.requests() if r.method == "POST" and "volcano" in r.url.path]) == 2

    listed = jobs.list()
    assert [(s.kind, s.name, s.phase, s.sweep_id) for s in listed] == [("volcano", sub.name, "pending", "seeds")]
    assert "3 pending" in listed[0].reason
    with pytest.raises(NotYourJob):
        jobs_for(emulator, "bob").get_volcano_job(sub.name)
    assert jobs_for(emulator, "bob").list() == []


def test_volcano_sweep_is_watched_run_by_run(emulator: Emulator) -> None:
    """The test plays Volcano: one pod per task, then the Volcano Job's phase."""
    jobs = jobs_for(emulator, scheduler={"name": "volcano", "queue": "eeg"})
    sub = jobs.submit_sweep([IcaParams(random_state=s) for s in range(3)], sweep_id="seeds")
    tasks = [r.name[len(sub.name) + 1:] for r in sub.runs]
    ctl = Controllers(emulator.api_client())
    changes: list[JobStatus] = []
    seen_running, third_running = threading.Event(), threading.Event()

    def on_change(status: JobStatus) -> None:
        changes.append(status)
        if status.phase == "running":
            seen_running.set()
            if status.run_id == sub.runs[2].run_id:
                third_running.set()

    def volcano() -> None:
        ctl.volcano_status(sub.name, "Pending", pending=3)
        pods = [ctl.create_volcano_pod(sub.name, t, phase="Running", node=f"w{i}") for i, t in enumerate(tasks[:2])]
        ctl.create_volcano_pod(sub.name, tasks[2])  # waits for room in the queue
        ctl.volcano_status(sub.name, "Running", running=2, pending=1)
        assert seen_running.wait(10)
        ctl.pod_status(pods[0], **_terminated_pod("Completed", 0))
        ctl.pod_status(pods[1], **_terminated_pod("OOMKilled", 137))
        ctl.pod_status(f"{sub.name}-{tasks[2]}-0", phase="Running")
        ctl.pod_spec(f"{sub.name}-{tasks[2]}-0", nodeName="w0")
        assert third_running.wait(10)  # the queued task's start was reported before its end
        ctl.pod_status(f"{sub.name}-{tasks[2]}-0", **_terminated_pod("Completed", 0))
        ctl.volcano_status(sub.name, "Completed", succeeded=2, failed=1)

    player = threading.Thread(target=volcano, daemon=True)
    player.start()
    final = jobs.watch_sweep("seeds", on_change=on_change, timeout=15)
    player.join(5)
    assert final.done and final.phase == "failed" and final.kind == "volcano"
    by_run = {r.run_id: r for r in final.runs}
    assert [by_run[r.run_id].phase for r in sub.runs] == ["succeeded", "failed", "succeeded"]
    oom = by_run[sub.runs[1].run_id]
    assert "OOMKilled" in oom.reason and oom.infrastructure and oom.node == "w1" and oom.kind == "task"
    assert final.counts() == {"succeeded": 2, "failed": 1} and "3 runs" in final.summary()
    # per-run states were reported as they changed, each run from pending or running to its end
    for run in sub.runs:
        phases = [c.phase for c in changes if c.run_id == run.run_id]
        assert phases[-1] == by_run[run.run_id].phase and len(phases) >= 2, phases
    assert [c.phase for c in changes if c.run_id == sub.runs[2].run_id][-2:] == ["running", "succeeded"]


def test_a_volcano_job_that_ends_early_fails_the_unfinished_runs(emulator: Emulator) -> None:
    jobs = jobs_for(emulator, scheduler={"name": "volcano"})
    sub = jobs.submit_sweep([IcaParams(random_state=s) for s in range(2)])
    ctl = Controllers(emulator.api_client())
    ctl.create_volcano_pod(sub.name, sub.runs[0].name[len(sub.name) + 1:], phase="Running", node="w1")
    ctl.volcano_status(sub.name, "Aborted")
    status = jobs.sweep_status(sub.sweep_id)
    assert status.phase == "failed" and all(r.phase == "failed" for r in status.runs)
    assert "Aborted" in status.runs[1].reason


def test_a_sweep_of_plain_jobs_is_listed_and_watched_by_its_id(emulator: Emulator, user_dir: Path) -> None:
    from labkit.results.table import table

    jobs = jobs_for(emulator)
    sets = [IcaParams(method=m) for m in ("fastica", "picard")]
    sub = jobs.submit_sweep(sets)
    assert sub.kind == "jobs" and len(sub.runs) == 2 and not sub.name
    assert sorted(s.name for s in jobs.list(sub.sweep_id)) == sorted(r.name for r in sub.runs)
    assert jobs.submit_sweep(sets).sweep_id == sub.sweep_id  # the same sets are the same sweep
    ctl = Controllers(emulator.api_client())
    changes: list[JobStatus] = []
    all_running = threading.Event()

    def on_change(status: JobStatus) -> None:
        changes.append(status)
        if {c.name for c in changes if c.phase == "running"} == {r.name for r in sub.runs}:
            all_running.set()

    def controller() -> None:
        for run in sub.runs:
            ctl.create_pod(run.name, phase="Running", node="w1")
            ctl.job_status(run.name, active=1, ready=1)
        wait(all_running)
        for run, params in zip(sub.runs, sets, strict=True):
            _completed_run(user_dir, params, run.run_id)  # the pod writes its result folder on NFS
            ctl.job_condition(run.name, "Complete")

    player = threading.Thread(target=controller, daemon=True)
    player.start()
    final = jobs.watch_sweep(sub.sweep_id, on_change=on_change, timeout=15)
    player.join(5)
    assert final.phase == "succeeded" and [r.phase for r in final.runs] == ["succeeded"] * 2
    assert all([c.phase for c in changes if c.name == r.name][-2:] == ["running", "succeeded"] for r in sub.runs)
    results = jobs.sweep_results(final)
    assert sorted(r.run_id for r in results) == sorted(r.run_id for r in sub.runs)
    assert sorted(table(results)["method"]) == ["fastica", "picard"]  # compared like a local sweep


def _completed_run(base: Path, params: IcaParams, run_id: str) -> RunFolder:
    """A finished result folder in the user's directory, as a cluster (or local) run leaves it."""
    folder = RunFolder.create(params.replace(base_dir=str(base)), run_id)
    folder.start()
    (folder.path / METRICS_FILE).write_text("{}")
    (folder.path / ICA_FILE).write_bytes(b"ica")
    folder.succeed()
    return folder


def test_a_set_that_already_ran_is_reported_not_rerun(emulator: Emulator, user_dir: Path) -> None:
    jobs = jobs_for(emulator)
    done = IcaParams(n_components=15)
    folder = _completed_run(user_dir, done, "20260101-000000-000-done")
    sub = jobs.submit(done)
    assert sub.existing is not None and sub.existing.path == folder.path and sub.run_id == folder.run_id
    assert any("already ran" in w for w in sub.warnings)
    assert not [r for r in emulator.requests() if r.method == "POST"]
    forced = jobs.submit(done, force=True)
    assert forced.existing is None and len([r for r in emulator.requests() if r.method == "POST"]) == 1
    # a failed earlier run is no reason to skip
    failed = RunFolder.create(IcaParams(n_components=16).replace(base_dir=str(user_dir)), "20260101-000000-000-f")
    failed.fail("boom")
    assert jobs.submit(IcaParams(n_components=16)).existing is None

    sweep = jobs.submit_sweep([done, IcaParams(n_components=17)], volcano=True)
    assert [r.existing is not None for r in sweep.runs] == [True, False]
    stored = emulator.run(lambda: dict(emulator.kmock.objects[VOLCANO_JOBS, NS, sweep.name]))
    assert len(stored["spec"]["tasks"]) == 1


def test_a_recording_given_by_its_local_path_matches_the_pods_result(emulator: Emulator, user_dir: Path) -> None:
    """The hub's absolute path and the pod's relative one are the same set (same result)."""
    jobs = jobs_for(emulator)
    inside = IcaParams(raw_file_path="eeg/s01_raw.fif")
    _completed_run(user_dir, inside, "20260101-000000-000-pod")
    local = IcaParams(base_dir=str(user_dir), raw_file_path=str(user_dir / "eeg" / "s01_raw.fif"))
    assert jobs.submit(local).existing is not None


def test_connection_errors_are_retried_then_explained() -> None:
    from kubernetes import client as k8s

    sleeps = Sleeps()
    dead = ClusterJobs(settings(api_retries=2), "anna", k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9")),
                       sleep=sleeps)
    with pytest.raises(ClusterUnavailable, match="cannot be reached"):
        dead.list()
    assert len(sleeps) == 2 and sleeps[0] <= sleeps[1] * 2 + 1


def test_listing_shows_pod_states(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    running = jobs.submit(IcaParams())
    stuck = jobs.submit(IcaParams(n_components=9))
    ctl = Controllers(emulator.api_client())
    ctl.create_pod(running.name, phase="Running", node="worker-1")
    pod = ctl.create_pod(stuck.name, node="worker-2")
    ctl.pod_status(pod, containerStatuses=[{"name": "ica", "ready": False, "restartCount": 0, "image": "x",
                   "imageID": "", "state": {"waiting": {"reason": "ErrImagePull"}}}])
    by_name = {s.name: s for s in jobs.list()}
    assert by_name[running.name].phase == "running" and by_name[running.name].node == "worker-1"
    assert by_name[stuck.name].phase == "pending" and "ErrImagePull" in by_name[stuck.name].reason


def test_run_returns_the_result_like_a_local_run_or_raises_in_words(emulator: Emulator, tmp_path) -> None:
    from labkit.errors import RunFailed

    jobs = jobs_for(emulator, storage={"nfs_server": "nfs", "local_base_dir": str(tmp_path)})
    ctl = Controllers(emulator.api_client())
    params = IcaParams(n_components=11)

    def controller(params: IcaParams, succeed: bool) -> None:
        name = f"labkit-anna-{params.digest}"
        job = ctl.wait_for_job(name)
        run_id = job.metadata.labels[LABEL_RUN_ID]
        pod = ctl.create_pod(name, phase="Running", node="n1")
        folder = RunFolder.create(params.replace(base_dir=str(tmp_path)), run_id)
        folder.start()
        if succeed:
            (folder.path / METRICS_FILE).write_text("{}")
            (folder.path / ICA_FILE).write_bytes(b"ica")
            folder.succeed()
            ctl.job_condition(name, "Complete")
        else:
            folder.fail("cell 3 raised RuntimeError: boom", cell=3, ename="RuntimeError", evalue="boom")
            ctl.pod_status(pod, **_terminated("Error", 4))
            ctl.job_condition(name, "Failed", "BackoffLimitExceeded")

    t = threading.Thread(target=controller, args=(params, True), daemon=True)
    t.start()
    result = jobs.run(params)
    t.join(5)
    assert result.state == "succeeded" and "<h4>ICA run" in result._repr_html_()

    jobs.cancel(f"labkit-anna-{params.digest}")  # the Job is gone (as after its TTL); its result stays
    posts = len([r for r in emulator.requests() if r.method == "POST"])
    assert jobs.run(params).path == result.path  # the identical set is not run again
    assert len([r for r in emulator.requests() if r.method == "POST"]) == posts

    failing = IcaParams(n_components=13)
    t = threading.Thread(target=controller, args=(failing, False), daemon=True)
    t.start()
    with pytest.raises(RunFailed, match=r"analysis error.*cell 3.*RuntimeError: boom") as info:
        jobs.run(failing)
    t.join(5)
    assert info.value.folder is not None and info.value.folder.name.endswith(".failed")


def test_following_a_log_resumes_after_the_stream_drops(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())
    pod = ctl.create_pod(sub.name, phase="Running", node="n1")
    path = f"get /api/v1/namespaces/{NS}/pods/{pod}/log"
    second = threading.Event()
    dropped = emulator.react_next(lambda k: k[path],
                                  lambda v: v << b"2026-01-01T00:00:01.000Z load\n2026-01-01T00:00:02.000Z fit 1\n")
    resumed = emulator.react_next(lambda k: k[path], lambda v: v >> second << (
        b"2026-01-01T00:00:02.000Z fit 1\n2026-01-01T00:00:03.000Z fit 2\n2026-01-01T00:00:04.000Z done\n"), skip=1)
    emulator.react_next(lambda k: k[path], lambda v: v << b"", n=None, skip=2)

    def kubelet() -> None:
        assert second.wait(10)
        ctl.pod_status(pod, phase="Succeeded")

    threading.Thread(target=kubelet, daemon=True).start()
    lines = list(jobs.logs(sub.name, follow=True))
    assert lines == ["load", "fit 1", "fit 2", "done"]  # resumed once, nothing repeated or lost
    assert emulator.served(dropped) == emulator.served(resumed) == 1
    requests = [r for r in emulator.requests() if r.url.path.endswith(f"/pods/{pod}/log")]
    assert int(requests[1].params.get("sinceSeconds")) > 10  # from the last line's time, with overlap
    assert len(requests) <= 4  # stopped following once the pod ended
    assert all(r.params.get("timestamps") == "true" for r in requests)


def test_a_queued_volcano_sweep_is_reported_with_the_queues_reason(emulator: Emulator) -> None:
    jobs = jobs_for(emulator, scheduler={"name": "volcano", "queue": "eeg"}, pending_timeout=0.3)
    sub = jobs.submit_sweep([IcaParams(random_state=s) for s in range(2)])
    ctl = Controllers(emulator.api_client())
    ctl.volcano_status(sub.name, "Pending", pending=2)
    ctl.event("PodGroup", f"{sub.name}-0f1e", "Unschedulable",
              "queue resource quota insufficient: insufficient cpu in queue eeg")
    with pytest.raises(ClusterError, match=r"still pending.*Volcano queue has no room.*insufficient cpu"):
        jobs.watch_sweep(sub.sweep_id, timeout=10)


def test_following_the_log_of_a_volcano_run(emulator: Emulator) -> None:
    jobs = jobs_for(emulator, scheduler={"name": "volcano"})
    sub = jobs.submit_sweep([IcaParams(random_state=s) for s in range(2)])
    run = sub.runs[1]
    ctl = Controllers(emulator.api_client())
    pod = ctl.create_volcano_pod(sub.name, run.name[len(sub.name) + 1:], phase="Running", node="w3")
    streamed = threading.Event()
    emulator.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] >> streamed
                   << b"2026-01-01T00:00:01Z load\n2026-01-01T00:00:02Z done\n")

    def kubelet() -> None:
        assert streamed.wait(10)
        ctl.pod_status(pod, phase="Succeeded")

    threading.Thread(target=kubelet, daemon=True).start()
    assert list(jobs.logs(run.name, follow=True)) == ["load", "done"]
    assert jobs.run_status(run.name).node == "w3"


def test_a_retried_volcano_create_that_went_through_is_not_an_attach(emulator: Emulator) -> None:
    sleeps = Sleeps()
    jobs = jobs_for(emulator, sleeps=sleeps, scheduler={"name": "volcano"})
    path = f"/apis/batch.volcano.sh/v1alpha1/namespaces/{NS}/jobs"
    lost = emulator.react_next(lambda k: k["post", path],
                               lambda v: v << 500 << {"kind": "Status", "code": 500, "message": "timeout"})
    sub = jobs.submit_sweep([IcaParams(random_state=s) for s in range(2)])
    assert emulator.served(lost) == 1
    assert not sub.attached and not sub.warnings and len(sleeps) == 1
    assert [s.name for s in jobs.list()] == [sub.name]


def test_cancel_refuses_an_unknown_propagation_before_calling_the_cluster(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    before = len(emulator.requests())
    for cancel in (lambda: jobs.cancel("labkit-anna-x", "Sideways"), lambda: jobs.cancel_sweep("s", "Sideways")):
        with pytest.raises(ClusterError, match="propagation must be Background, Foreground or Orphan, not 'Sideways'"):
            cancel()
    assert len(emulator.requests()) == before
