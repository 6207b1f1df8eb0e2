"""Hub mode end to end: a real JupyterHub and configurable-http-proxy, the labkit service as its own
process, kmock's Kubernetes emulator as the cluster (the test plays its controllers).

Users alice, bob and alice.b@lab.org get their tokens from the hub's REST API; every request
goes through the proxy to the service, which asks the hub who the token belongs to.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cluster_fixtures import NS, Controllers, Emulator, user_dir  # noqa: F401 (fixtures)
from hub_fixtures import Hub, eventually, hub, module_emulator, service_health, service_jobs_watches  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cluster_jobs import _completed_run

from labkit.cli.main import main
from labkit.params import IcaParams
from labkit.runners.cluster.manifests import LABEL_RUN_ID
from labkit.runners.cluster.status import JobStatus
from labkit.runners.hub import HubJobs, cluster_jobs

pytestmark = pytest.mark.timeout(120)


def job_of(emulator: Emulator, name: str) -> dict[str, Any]:
    ctl = Controllers(emulator.api_client())
    return emulator.api_client().sanitize_for_serialization(ctl.wait_for_job(name))


@pytest.fixture
def as_user(hub: Hub, monkeypatch: pytest.MonkeyPatch, user_dir: Path):  # noqa: F811
    """The environment of a user's notebook server on the hub: token, service URL, their directory."""

    def become(user: str) -> Path:
        monkeypatch.setenv("JUPYTERHUB_USER", user)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.tokens[user])
        monkeypatch.setenv("JUPYTERHUB_API_URL", hub.api)
        monkeypatch.setenv("LABKIT_HUB_SERVICE_URL", hub.service_url)
        monkeypatch.setenv("LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR", str(user_dir))
        monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
        monkeypatch.delenv("KUBECONFIG", raising=False)  # users hold no cluster credentials
        return user_dir

    return become


def test_alice_submits_watches_reads_her_log_and_gets_her_result(hub: Hub, as_user: Any) -> None:
    home = as_user("alice")
    jobs = cluster_jobs()
    assert isinstance(jobs, HubJobs)  # on a hub with the service, the service's backend
    params = IcaParams(n_components=7, base_dir=str(home))
    sub = jobs.submit(params)
    job = job_of(hub.emulator, sub.name)
    assert job["metadata"]["labels"]["labkit.io/owner"] == "alice"
    assert job["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == "/export/home/alice"
    ctl = Controllers(hub.emulator.api_client())
    seen: list[JobStatus] = []
    saw_running: list[bool] = []

    def cluster() -> None:
        pod = ctl.create_pod(sub.name, phase="Running", node="n1")
        hub.emulator.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"]
                           << b"2026-01-01T00:00:01Z reading recording\n2026-01-01T00:00:02Z done\n")
        saw_running.append(eventually(lambda: any(s.phase == "running" for s in seen)))  # the watch followed it
        _completed_run(home, params, sub.run_id)
        ctl.pod_status(pod, phase="Succeeded")
        ctl.job_condition(sub.name, "Complete")

    player = threading.Thread(target=cluster, daemon=True)
    player.start()
    final = jobs.watch(sub.name, on_change=seen.append, timeout=60)
    player.join(10)
    assert final.phase == "succeeded" and [s.phase for s in seen][-1] == "succeeded"
    assert saw_running == [True], "the watch did not report the running pod before the run ended"
    assert list(jobs.logs(sub.name, follow=True)) == ["reading recording", "done"]
    result = jobs.result(final)
    assert result.run_id == sub.run_id and result.path.parent == home
    assert jobs.result_folder(sub.name)["folder"] == f"PreExperiment_ICA_{sub.run_id}"
    assert sub.name in [s.name for s in jobs.list()]
    assert jobs.submit(params).existing is not None  # it already ran: reported, not run again


def test_the_cli_talks_to_the_service_on_a_hub(hub: Hub, as_user: Any) -> None:
    as_user("alice")
    runner = CliRunner()
    result = runner.invoke(main, ["submit", "--n-components", "9"])
    assert result.exit_code == 0, result.output
    name = f"labkit-alice-{IcaParams(n_components=9).digest}"
    assert name in result.output
    listed = runner.invoke(main, ["jobs"])
    assert listed.exit_code == 0 and name in listed.output
    cancelled = runner.invoke(main, ["cancel", name])
    assert cancelled.exit_code == 0, cancelled.output
    assert name not in runner.invoke(main, ["jobs"]).output


def test_bob_can_neither_see_read_cancel_nor_overwrite_alices_runs(hub: Hub) -> None:
    sub = hub.call("alice", "POST", "api/runs", json={"params": {"n_components": 13}, "run_id": "alice-run-1"})
    assert sub.status_code == 201, sub.text
    name = sub.json()["name"]
    assert name not in json.dumps(hub.call("bob", "GET", "api/runs").json())
    for method, path in (("GET", f"api/runs/{name}"), ("GET", f"api/runs/{name}/log"),
                         ("GET", f"api/runs/{name}/result"), ("DELETE", f"api/runs/{name}")):
        resp = hub.call("bob", method, path)
        assert resp.status_code == 404, (method, path, resp.text)
    # the same set and run id from bob is bob's own Job on bob's directory; alice's Job is untouched
    mine = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 13}, "run_id": "alice-run-1",
                                                       "force": True})
    assert mine.status_code == 201 and mine.json()["name"] != name
    bobs = job_of(hub.emulator, mine.json()["name"])
    assert bobs["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == "/export/home/bob"
    alices = job_of(hub.emulator, name)
    assert alices["metadata"]["labels"][LABEL_RUN_ID] == "alice-run-1"
    assert hub.call("alice", "GET", f"api/runs/{name}").status_code == 200


def test_no_token_a_forged_token_or_a_name_in_the_body_is_refused(hub: Hub) -> None:
    body = {"params": {"n_components": 5}}
    assert hub.call(None, "POST", "api/runs", json=body).status_code == 401
    forged = hub.call("0123456789abcdef0123456789abcdef", "POST", "api/runs", json=body)
    assert forged.status_code == 403 and "did not accept" in forged.json()["error"]
    as_bob = hub.call("alice", "POST", "api/runs", json={**body, "user": "bob"})
    assert as_bob.status_code == 400 and as_bob.json()["field"] == "user"
    assert "JupyterHub token" in as_bob.json()["error"]
    in_params = hub.call("alice", "POST", "api/runs", json={"params": {"n_components": 5, "owner": "bob"}})
    assert in_params.status_code == 400 and in_params.json()["field"] == "params.owner"
    admin = hub.call(hub.admin_token, "GET", "api/runs")  # a service's token is not a user
    assert admin.status_code == 403


@pytest.mark.parametrize(("extra", "field"), [
    ({"security": {"run_as_user": 0}}, "security"), ({"uid": 0}, "uid"),
    ({"storage": {"nfs_path": "/export/home/bob"}}, "storage"), ({"nfs_path": "/export/home/bob"}, "nfs_path"),
    ({"privileged": True}, "privileged"), ({"image": "evil/root:latest"}, "image"),
    ({"namespace": "kube-system"}, "namespace"), ({"resources": {"memory_limit": "1Ti"}}, "resources"),
    ({"profile": "gpu"}, "profile"), ({"force": "yes"}, "force"),
])
def test_what_the_admin_decides_cannot_be_asked_for(hub: Hub, extra: dict[str, Any], field: str) -> None:
    resp = hub.call("alice", "POST", "api/runs", json={"params": {"n_components": 6}, **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert error.get("field", "") == field or field in error["error"]
    names = [j["name"] for j in hub.call("alice", "GET", "api/runs").json()["runs"]]
    assert f"labkit-alice-{IcaParams(n_components=6).digest}" not in names  # nothing was created


def test_an_admin_profile_is_what_a_user_may_choose(hub: Hub) -> None:
    profiles = hub.call("alice", "GET", "api/profiles").json()["profiles"]
    assert set(profiles) == {"large-memory", "edge"}
    resp = hub.call("alice", "POST", "api/runs", json={"params": {"n_components": 17}, "profile": "large-memory"})
    assert resp.status_code == 201, resp.text
    job = job_of(hub.emulator, resp.json()["name"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "64Gi"
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000  # still the admin's uid


def test_the_job_for_alice_b_mounts_the_directory_kubespawner_gives_her(hub: Hub) -> None:
    resp = hub.call("alice.b@lab.org", "POST", "api/runs", json={"params": {"n_components": 4}})
    assert resp.status_code == 201, resp.text
    job = job_of(hub.emulator, resp.json()["name"])
    # KubeSpawner's {username} for alice.b@lab.org (kubespawner.slugs.safe_slug)
    assert job["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == "/export/home/alice-b-lab-org---00e968cd"
    assert job["metadata"]["annotations"]["labkit.io/user"] == "alice.b@lab.org"
    assert job["metadata"]["labels"]["labkit.io/owner-dir"] == "alice-b-lab-org---00e968cd"  # what the policy checks


def test_the_service_restarting_mid_watch_loses_nothing(hub: Hub, as_user: Any) -> None:
    as_user("alice")
    retries: list[float] = []  # the client's waits between attempts: one per request the outage refused

    def wait_out(seconds: float) -> None:
        retries.append(seconds)
        time.sleep(seconds)

    jobs = HubJobs(poll_interval=1.0, sleep=wait_out)
    sub = jobs.submit(IcaParams(n_components=19), force=True)
    ctl = Controllers(hub.emulator.api_client())
    seen: list[str] = []
    outcome: list[Any] = []

    def follow() -> None:
        try:
            outcome.append(jobs.watch(sub.name, on_change=lambda s: seen.append(s.phase), timeout=60))
        except BaseException as err:  # reported below
            outcome.append(err)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    assert eventually(lambda: seen == ["pending"]), f"the watch never reported the pending run: {seen}"
    assert not retries
    hub.stop_service()  # mid-watch: the cluster moves on while the service is down
    pod = ctl.create_pod(sub.name, phase="Running", node="n1")
    ctl.pod_status(pod, phase="Succeeded")
    ctl.job_condition(sub.name, "Complete")
    assert eventually(lambda: retries), "the watch never met the outage"  # it waits it out, not fails
    assert seen == ["pending"] and not outcome
    hub.start_service()
    watcher.join(60)
    assert outcome and isinstance(outcome[0], JobStatus), outcome
    assert outcome[0].phase == "succeeded" and seen[0] == "pending" and seen[-1] == "succeeded"


def test_a_watch_error_on_the_service_side_is_waited_out(hub: Hub) -> None:
    """The service's own watch meets a 500 ERROR event: it backs off, watches again, and keeps serving."""
    errors_before = service_health(hub)[1]["jobs"]["errors"]
    # the service's NEXT Jobs watch: a kmock slice counts from the (module-scoped) emulator's first
    # request, so ``[:1]`` is a watch the service made long ago; react_next counts from now
    boom = hub.emulator.react_next(service_jobs_watches, lambda v: v << json.dumps(
        {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}).encode() + b"\n")
    # a quiet watch ends within watch_timeout (5 s) + 2 s, and the next one meets the ERROR
    eventually(lambda: hub.emulator.served(boom) and service_health(hub)[1]["jobs"]["errors"] > errors_before)
    assert hub.emulator.served(boom) == 1, "the service's Jobs watch never met the injected ERROR"
    assert service_health(hub)[1]["jobs"]["errors"] > errors_before, "the service did not count the watch ERROR"
    [errored] = hub.emulator.answered(boom)

    # it watches again (after its backoff) ...
    assert eventually(lambda: any(r.id > errored.id for r in hub.emulator.run(
        lambda: list(service_jobs_watches(hub.emulator.kmock))))), "the service never watched its Jobs again"
    # ... and still serves: a run submitted now is listed, and what the cluster then does to it reaches the
    # service's cache (the Job's Complete condition: the service's own write has no status)
    resp = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 21}})
    assert resp.status_code == 201, resp.text
    name = resp.json()["name"]
    ctl = Controllers(hub.emulator.api_client())
    ctl.wait_for_job(name)
    pod = ctl.create_pod(name, phase="Running", node="n1")
    ctl.pod_status(pod, phase="Succeeded")
    ctl.job_condition(name, "Complete")
    runs: dict[str, Any] = {}

    def succeeded() -> bool:
        runs.update({r["name"]: r for r in hub.call("bob", "GET", "api/runs").json()["runs"]})
        return runs.get(name, {}).get("phase") == "succeeded"

    assert eventually(succeeded), runs.get(name)


PARAM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                             max_size=2))
PARAM_KEYS = st.sampled_from(["n_components", "method", "crop_tmax", "random_state", "raw_file_path", "base_dir",
                              "filter_fmin", "max_iter", "owner", "x"])
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(["params", "profile", "run_id", "force", "user", "security", "uid"]),
                    st.one_of(PARAM_VALUES, st.dictionaries(PARAM_KEYS, PARAM_VALUES, max_size=4)), max_size=4),
    PARAM_VALUES,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES)
def test_any_body_gets_an_answer_that_names_the_field_never_a_500(hub: Hub, body: Any) -> None:
    resp = hub.call("bob", "POST", "api/runs", data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
    assert resp.status_code < 500, (body, resp.text)
    if resp.status_code == 400:
        error = resp.json()
        assert error["error"] and "Traceback" not in error["error"]
        if isinstance(body, dict) and body:
            assert error.get("field") is not None


def test_statuses_come_from_one_watch_not_from_list_calls(hub: Hub) -> None:
    def lists() -> int:
        return sum(1 for r in hub.emulator.requests() if r.method == "GET" and r.url.path.endswith(("/jobs", "/pods"))
                   and dict(r.params).get("watch") != "true")

    before = lists()
    for user in ("alice", "bob", "alice.b@lab.org") * 5:
        assert hub.call(user, "GET", "api/runs").status_code == 200
    assert lists() == before  # fifteen users' looks, no API request


def test_the_notebook_widgets_use_the_service_on_a_hub(hub: Hub, as_user: Any) -> None:
    from labkit import widgets

    home = as_user("bob")
    assert widgets.cluster_status() == (True, "")  # the service, with no cluster settings of bob's own
    line = widgets._cluster_submit(IcaParams(n_components=23))
    name = f"labkit-bob-{IcaParams(n_components=23).digest}"
    assert line == name
    view = widgets.JobsView(home)
    assert ("cluster", name) in [v for _, v in view.select.options]
    assert f"hub {name} [queued]" in [label for label, _ in view.select.options]  # listed through the service
    job = job_of(hub.emulator, name)
    assert job["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == "/export/home/bob"


def test_a_sweep_through_the_service(hub: Hub, as_user: Any) -> None:
    home = as_user("alice")
    jobs = cluster_jobs()
    sets = [IcaParams(n_components=3, random_state=s, base_dir=str(home)) for s in (1, 2)]
    sub = jobs.submit_sweep(sets, sweep_id="seeds")
    assert sub.sweep_id == "seeds" and len(sub.runs) == 2
    ctl = Controllers(hub.emulator.api_client())
    seen: list[JobStatus] = []

    def cluster() -> None:
        eventually(lambda: {s.name for s in seen} == {r.name for r in sub.runs})  # the watch has both runs
        for run, params in zip(sub.runs, sets, strict=True):
            _completed_run(home, params, run.run_id)
            ctl.job_condition(run.name, "Complete")

    threading.Thread(target=cluster, daemon=True).start()
    final = jobs.watch_sweep("seeds", on_change=seen.append, timeout=60)
    assert final.phase == "succeeded" and sorted(r.name for r in final.runs) == sorted(r.name for r in sub.runs)
    for run in sub.runs:  # the watch followed each run from its start to its end
        phases = [s.phase for s in seen if s.name == run.name]
        assert phases[0] == "pending" and phases[-1] == "succeeded", (run.name, phases)
    assert sorted(r.run_id for r in jobs.sweep_results(final)) == sorted(r.run_id for r in sub.runs)
    assert hub.call("bob", "GET", "api/sweeps/seeds").status_code == 404


SWEEP_BODIES = st.one_of(
    st.dictionaries(st.sampled_from(["sets", "profile", "sweep_id", "force", "volcano", "min_available", "user"]),
                    st.one_of(PARAM_VALUES, st.lists(st.dictionaries(PARAM_KEYS, PARAM_VALUES, max_size=3),
                                                     max_size=3)), max_size=4),
    PARAM_VALUES,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=SWEEP_BODIES, wait=st.one_of(st.just("0.2"), st.text(max_size=6)))
def test_any_sweep_body_or_query_gets_an_answer_that_names_the_field(hub: Hub, body: Any, wait: str) -> None:
    resp = hub.call("bob", "POST", "api/sweeps", data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
    assert resp.status_code < 500, (body, resp.text)
    if resp.status_code == 400 and isinstance(body, dict) and body:
        assert resp.json().get("field") is not None, resp.text
    listed = hub.call("bob", "GET", "api/runs", params={"wait": wait, "after": "x"})
    assert listed.status_code in (200, 400), listed.text
    if listed.status_code == 400:
        assert listed.json()["field"] == "wait"
