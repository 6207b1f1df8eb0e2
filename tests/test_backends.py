"""One contract, three backends: this machine, Kubernetes directly (kmock's emulator), the hub service.

Every test here runs against each :class:`labkit.runners.backend.Backend`. On this machine the
runs are real papermill runs of the demo recording; on a cluster the test plays the controllers
(pod, kubelet, Job controller) and the pod's result folder, through the real HTTP API; through
the hub, the real JupyterHub and the labkit service stand between the user and that cluster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import kmock
import pytest
from cluster_fixtures import NS, TRUE, Controllers, Emulator, cluster_config, emulator, user_dir  # noqa: F401 (fixtures)
from hub_fixtures import Hub, hub, module_emulator  # noqa: F401 (fixtures)

from labkit.analysis.datasets import write_demo
from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE
from labkit.runners.backend import CANCELLED, QUEUED, RUN_STATES, RUNNING, SUCCEEDED, Backend, Run
from labkit.runners.cluster.backend import ClusterBackend
from labkit.runners.cluster.errors import ClusterForbidden, ClusterInvalid
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.hub import HubBackend

pytestmark = pytest.mark.timeout(240)
JOBS_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs"
LOG = ["2026-01-01T00:00:01Z reading recording", "2026-01-01T00:00:02Z fitting", "2026-01-01T00:00:03Z done"]


class World:
    """One backend and whatever it runs on; the test moves a run along with :meth:`start` and :meth:`finish`."""

    def __init__(self, kind: str, backend: Backend, home: Path, emu: Emulator | None = None) -> None:
        self.kind, self.backend, self.home, self.emu = kind, backend, home, emu
        self.ctl = Controllers(emu.api_client()) if emu is not None else None
        self.pods: dict[str, str] = {}
        self.hub: Hub | None = None

    def params(self, seed: int = 0) -> IcaParams:
        return IcaParams(base_dir=str(self.home), raw_file_path="labkit-demo/demo_raw.fif", n_components=8,
                         method="fastica", crop_tmax=20.0, random_state=seed)

    def start(self, run: Run) -> None:
        """The cluster schedules the run's pod and it starts, printing :data:`LOG` (here: the run starts itself)."""
        if self.ctl is None:
            return
        self.ctl.wait_for_job(run.name)
        pod = self.ctl.create_pod(run.name, phase="Running", node="n1")
        self.pods[run.name] = pod
        stamped = "".join(line + "\n" for line in LOG).encode()  # as the kubelet answers ?timestamps=true
        plain = "".join(line.split(" ", 1)[1] + "\n" for line in LOG).encode()
        path = f"get /api/v1/namespaces/{NS}/pods/{pod}/log"
        self.emu.react(lambda k: k[path, kmock.params({"timestamps": TRUE})] << stamped)
        self.emu.react(lambda k: k[path] << plain)

    def finish(self, run: Run, params: IcaParams) -> None:
        """The pod writes its result folder on the user's share and ends; the Job completes."""
        if self.ctl is None:
            return
        folder = RunFolder.create(params, run.run_id)
        folder.start()
        (folder.path / METRICS_FILE).write_text("{}")
        (folder.path / ICA_FILE).write_bytes(b"ica")
        folder.succeed()
        self.ctl.pod_status(self.pods[run.name], phase="Succeeded")
        self.ctl.job_condition(run.name, "Complete")


def until(backend: Backend, run: str, check: Callable[[Run], bool], timeout: float = 120.0) -> list[str]:
    """Poll the run until ``check`` holds; the states seen on the way, in order, without repeats."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        current = backend.status(run)
        assert current.state in RUN_STATES, current
        if not seen or seen[-1] != current.state:
            seen.append(current.state)
        if check(current):
            return seen
        assert time.monotonic() < deadline, f"{run}: still {current.summary()} after {timeout} s (seen {seen})"
        time.sleep(0.1)


@pytest.fixture(params=["machine", "cluster", "hub"])
def world(request: pytest.FixtureRequest, user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> World:  # noqa: F811
    write_demo(user_dir, duration=30.0)
    if request.param == "machine":
        from labkit.runners.machine import MachineBackend

        return World("machine", MachineBackend(user_dir), user_dir)
    monkeypatch.setenv("LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR", str(user_dir))
    if request.param == "cluster":
        emu = request.getfixturevalue("emulator")
        settings = ClusterSettings.from_dict({"namespace": NS, "image": "ghcr.io/labkit/labkit:0.1.0",
                                              "storage": {"nfs_server": "nfs.lab.example"}, "watch_timeout": 1,
                                              "api_retries": 2})
        return World("cluster", ClusterBackend(settings, "alice", emu.api_client(), poll_interval=0.2), user_dir, emu)
    the_hub: Hub = request.getfixturevalue("hub")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", the_hub.tokens["alice"])
    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)  # users hold no cluster credentials
    told = World("hub", HubBackend(url=the_hub.service_url, timeout=10.0), user_dir, the_hub.emulator)
    told.hub = the_hub
    return told


def test_a_run_goes_queued_running_succeeded_with_its_log_and_result(world: World) -> None:
    params = world.params()
    run = world.backend.submit(params)
    assert run.state in (QUEUED, RUNNING) and run.run_id and run.backend == world.kind
    world.start(run)
    seen = until(world.backend, run.name, lambda r: r.state == RUNNING or r.done)
    world.finish(run, params)
    seen += until(world.backend, run.name, lambda r: r.done)
    order = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert order[-1] == SUCCEEDED, order
    ranks = [(QUEUED, RUNNING, SUCCEEDED).index(s) for s in order]
    assert ranks == sorted(ranks), f"states went backwards: {order}"

    whole = list(world.backend.log(run.name))
    assert whole, "a finished run has a log"
    if world.kind != "machine":
        assert whole == [line.split(" ", 1)[1] for line in LOG]  # the pod's lines, without the kubelet's stamps
    assert list(world.backend.log(run.name, tail=2)) == whole[-2:]
    assert list(world.backend.log(run.name, follow=True))[-1] == whole[-1]  # a follow of a done run ends

    result = world.backend.result(run.name)
    assert result.run_id == run.run_id and result.state == "succeeded" and result.path.parent == world.home
    mine = world.backend.runs()
    assert run.run_id in {r.run_id for r in mine}
    assert run.run_id in {r.run_id for r in world.backend.runs(state=SUCCEEDED, recording="demo_raw.fif")}
    assert run.run_id not in {r.run_id for r in world.backend.runs(state=CANCELLED)}
    assert run.run_id not in {r.run_id for r in world.backend.runs(recording="other.fif")}


def test_a_cancelled_run_is_told_as_cancelled(world: World) -> None:
    run = world.backend.submit(world.params(seed=1))
    world.start(run)
    until(world.backend, run.name, lambda r: r.state == RUNNING and (world.kind != "machine" or r.step == "fit"))
    told = world.backend.cancel(run.name)
    assert told.state == CANCELLED and told.reason, told
    after = until(world.backend, run.name, lambda r: r.done)
    assert after[-1] == CANCELLED, after
    assert run.run_id in {r.run_id for r in world.backend.runs(state=CANCELLED)}
    with pytest.raises(Exception, match="already cancelled"):
        world.backend.cancel(run.name)


def test_an_unknown_state_filter_is_refused_naming_the_states(world: World) -> None:
    with pytest.raises(Exception) as info:
        world.backend.runs(state="done")
    assert "state" in str(info.value) and "'done'" in str(info.value) and "cancelled" in str(info.value)


@pytest.mark.parametrize("world", ["cluster", "hub"], indirect=True)
def test_kubernetes_refusals_are_told_as_themselves(world: World) -> None:
    """403 (the admission policy) and 422 (invalid, naming the field), at once, not as an outage after retries."""
    assert world.emu is not None
    denied = "admission webhook denied the request: ValidatingAdmissionPolicy 'labkit-jobs' denied request: no hostPath"
    world.emu.react_next(lambda k: k["post", JOBS_PATH], lambda v: v << 403 << {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": denied})
    started = time.monotonic()
    with pytest.raises(ClusterForbidden) as forbidden:
        world.backend.submit(world.params(seed=2))
    assert "ValidatingAdmissionPolicy 'labkit-jobs' denied" in str(forbidden.value)
    field = "spec.template.spec.containers[0].resources.limits"
    world.emu.react_next(lambda k: k["post", JOBS_PATH], lambda v: v << 422 << {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": f"Job.batch is invalid: {field}: Invalid value: \"64Ti\": exceeds the quota",
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": field, "message": "exceeds the quota"}]}})
    with pytest.raises(ClusterInvalid) as invalid:
        world.backend.submit(world.params(seed=3))
    assert field in str(invalid.value) and invalid.value.field == field
    assert time.monotonic() - started < 10, "a refusal is not retried as if the service were down"


@pytest.mark.parametrize("world", ["hub"], indirect=True)
def test_another_users_run_is_refused_through_the_hub(world: World) -> None:
    run = world.backend.submit(world.params(seed=4))
    bob = HubBackend(url=world.hub.service_url, token=world.hub.tokens["bob"], timeout=10.0)
    for act in (lambda: bob.status(run.name), lambda: bob.cancel(run.name), lambda: list(bob.log(run.name))):
        with pytest.raises(LabkitError) as info:
            act()
        told = str(info.value).replace(run.name, "<the name bob sent>")
        assert "no run" in told.lower() and "alice" not in told  # nothing about whose it is
    assert run.run_id not in {r.run_id for r in bob.runs()}
    assert world.backend.status(run.name).state == QUEUED  # still alice's, untouched


def test_the_factory_picks_by_environment_and_says_why(tmp_path: Path, cluster_config: Emulator) -> None:  # noqa: F811
    from labkit.runners.factory import choose_backend

    here, why = choose_backend(tmp_path, environ={})
    assert here.name == "machine" and str(tmp_path) in why
    env = {k: v for k, v in __import__("os").environ.items() if k.startswith(("LABKIT_CLUSTER_", "KUBECONFIG"))}
    direct, why = choose_backend(tmp_path, environ=env)
    assert direct.name == "cluster" and "LABKIT_CLUSTER_CONFIG" in why
    assert direct.runs() == []  # it really talks to the (emulated) cluster
    hub_, why = choose_backend(tmp_path, environ={**env, "LABKIT_HUB_SERVICE_URL": "http://127.0.0.1:9/services/labkit"})
    assert hub_.name == "hub" and "127.0.0.1:9" in why  # a hub service wins over cluster settings
    assert choose_backend(tmp_path, environ=env, prefer="machine")[0].name == "machine"
    with pytest.raises(LabkitError, match="backend.*'kubernetes'.*machine, cluster or hub"):
        choose_backend(tmp_path, environ={}, prefer="kubernetes")


@pytest.mark.parametrize("world", ["cluster", "hub"], indirect=True)
def test_a_sweep_id_that_needs_cleaning_lists_and_cancels(world: World) -> None:
    """The label holds the cleaned id; listing and cancelling by the id the user typed finds the same Jobs."""
    typed = "Seeds: Alice's pilot"
    runs = world.backend.submit_sweep([world.params(seed=s) for s in (10, 11)], sweep_id=typed)
    assert len(runs) == 2 and len({r.sweep_id for r in runs}) == 1
    listed = world.backend.runs(sweep=typed)
    assert {r.run_id for r in runs} <= {r.run_id for r in listed}, (runs, listed)
    assert world.backend.jobs.cancel_sweep(typed)  # the id as typed, as `labkit cancel --sweep` sends it
    assert not [r for r in world.backend.runs(sweep=typed) if not r.done]


def test_the_readmes_runs_interface_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example of the runs interface, executed as written (on this machine)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M) if "choose_backend" in b)
    for name in [k for k in __import__("os").environ if k.startswith(("LABKIT_CLUSTER_", "LABKIT_HUB_", "JUPYTERHUB_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    write_demo(tmp_path / "demo", duration=30.0)
    scope: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["backend"].name == "machine" and scope["why"].startswith("machine:")
    assert scope["final"].state in ("succeeded", "succeeded with warnings")
    assert scope["result"].run_id == scope["run"].run_id and scope["result"].path.parent == tmp_path / "demo"


def test_closing_the_machine_backend_stops_its_log_followers(tmp_path: Path) -> None:
    """A server shutting down closes its backend: a log followed of a run it did not start (a terminal's, still
    going) ends, so the thread following it ends too and the server can exit."""
    import threading

    from labkit.runners.machine import MachineBackend

    folder = RunFolder.create(IcaParams(base_dir=str(tmp_path)), run_id="a-terminals-run")
    folder.start()  # running, owned by this (live) process: never ends by itself here
    folder.file("run.log").write_text("started\n")
    backend = MachineBackend(tmp_path)
    lines: list[str] = []
    follower = threading.Thread(target=lambda: lines.extend(backend.log("a-terminals-run", follow=True)), daemon=True)
    follower.start()
    time.sleep(0.5)
    assert follower.is_alive() and lines == ["started"], "following while the run goes"
    backend.close()
    follower.join(2)
    assert not follower.is_alive(), "the follower ended with the backend"
    folder.fail("test over")
