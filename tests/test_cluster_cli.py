"""``labkit submit / jobs / logs / cancel / render`` through click, against the emulator.

The commands find the emulator the way they find a real cluster: through a kubeconfig
file (``KUBECONFIG``); settings come from ``LABKIT_CLUSTER_*`` variables.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cluster_fixtures import NS, Controllers, Emulator, emulator, user_dir, write_kubeconfig  # noqa: F401

from labkit.cli.main import main
from labkit.errors import ExitCode
from labkit.params import IcaParams

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def cluster_env(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    kubeconfig = write_kubeconfig(emulator, tmp_path)
    for key, value in {"KUBECONFIG": str(kubeconfig), "JUPYTERHUB_USER": "anna", "LABKIT_CLUSTER_NAMESPACE": NS,
                       "LABKIT_CLUSTER_IMAGE": "ghcr.io/labkit/labkit:0.1.0",
                       "LABKIT_CLUSTER_STORAGE__NFS_SERVER": "nfs.lab.example",
                       "LABKIT_CLUSTER_WATCH_TIMEOUT": "1", "LABKIT_CLUSTER_API_RETRIES": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not inside a pod: use the kubeconfig
    return emulator


def test_render_needs_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    runner = CliRunner()
    result = runner.invoke(main, ["render", "--user", "alice", "--n-components", "20", "--run-id", "r1",
                                  "--set", "storage.nfs_server=nfs.lab.example", "--set", "scheduler.name=volcano",
                                  "--set", "scheduler.queue=eeg"])
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.output)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ICA_COMPONENTS_COUNT"] == "20" and env["LABKIT_RUN_ID"] == "r1"
    assert job["spec"]["template"]["spec"]["schedulerName"] == "volcano"
    assert job["metadata"]["name"] == f"labkit-alice-{IcaParams(n_components=20).digest}"


def test_set_values_are_parsed_by_the_settings_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_CLUSTER_STORAGE__NFS_SERVER", "nfs.lab.example")
    result = CliRunner().invoke(main, ["render", "--user", "alice", "--set", "scheduler.name=volcano",
                                       "--set", "scheduler.queue=on", "--set", "backoff_limit=2"])
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.output)
    assert job["spec"]["template"]["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"] == "on"
    result = CliRunner().invoke(main, ["render", "--user", "alice", "--set", "backoff_limit=many"])
    assert result.exit_code == ExitCode.BAD_INPUT and "backoff_limit" in result.output and "'many'" in result.output
    assert "Traceback" not in result.output


def test_render_without_storage_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LABKIT_CLUSTER_STORAGE__NFS_SERVER", "LABKIT_CLUSTER_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    result = CliRunner().invoke(main, ["render", "--user", "alice"])  # the documented default: the home claim
    assert result.exit_code == 0 and "storage.nfs_server or storage.pvc" in result.stderr
    assert "claimName: claim-alice" in result.stdout and "Traceback" not in result.output


def test_submit_jobs_logs_cancel(cluster_env: Emulator) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["submit", "--n-components", "12"])
    assert result.exit_code == 0, result.output
    name = f"labkit-anna-{IcaParams(n_components=12).digest}"
    assert f"submitted {name}" in result.output and "labkit logs -f" in result.output

    again = runner.invoke(main, ["submit", "--n-components", "12"])
    assert again.exit_code == 0 and f"attached to {name}" in again.output

    listed = runner.invoke(main, ["jobs"])
    assert listed.exit_code == 0 and name in listed.output and "queued" in listed.output

    ctl = Controllers(cluster_env.api_client())
    pod = ctl.create_pod(name, phase="Running", node="worker-1")
    cluster_env.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << b"step load\nstep fit\n")
    logs = runner.invoke(main, ["logs", name])
    assert logs.exit_code == 0 and "step fit" in logs.output

    cancelled = runner.invoke(main, ["cancel", name])
    assert cancelled.exit_code == 0 and f"cancelled {name}" in cancelled.output
    assert "no labkit Jobs" in runner.invoke(main, ["jobs"]).output


def test_submit_wait_reports_a_failure_in_words(cluster_env: Emulator) -> None:
    name = f"labkit-anna-{IcaParams().digest}"
    ctl = Controllers(cluster_env.api_client())

    def controller() -> None:
        ctl.wait_for_job(name)
        pod = ctl.create_pod(name, phase="Running", node="worker-2")
        ctl.pod_status(pod, phase="Failed", containerStatuses=[{"name": "ica", "ready": False, "restartCount": 0,
                       "image": "x", "imageID": "", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
        ctl.job_condition(name, "Failed", "BackoffLimitExceeded")

    threading.Thread(target=controller, daemon=True).start()
    result = CliRunner().invoke(main, ["submit", "--wait"])
    assert result.exit_code == ExitCode.RUN_FAILED, result.output  # as a failed local run
    assert "OOMKilled" in result.output and "[cluster problem]" in result.output


def test_submit_wait_on_a_job_its_owner_cancels_says_cancelled_and_exits_130(cluster_env: Emulator) -> None:
    from kubernetes import client

    name = f"labkit-anna-{IcaParams().digest}"
    ctl = Controllers(cluster_env.api_client())

    def owner_cancels() -> None:
        ctl.wait_for_job(name)
        ctl.create_pod(name, phase="Running", node="worker-2")
        time.sleep(0.5)
        client.BatchV1Api(cluster_env.api_client()).delete_namespaced_job(name, NS, propagation_policy="Background")

    threading.Thread(target=owner_cancels, daemon=True).start()
    result = CliRunner().invoke(main, ["submit", "--wait"])
    assert result.exit_code == ExitCode.CANCELLED, result.output
    assert result.output.count("cancelled (its Job was deleted") == 1 and "Traceback" not in result.output


def test_another_users_job_is_refused_by_the_cli(cluster_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    assert runner.invoke(main, ["submit"]).exit_code == 0
    monkeypatch.setenv("JUPYTERHUB_USER", "anna")
    result = runner.invoke(main, ["cancel", f"labkit-bob-{IcaParams().digest}"])
    assert result.exit_code == ExitCode.NOT_ALLOWED and "is not yours" in result.output
    assert "Traceback" not in result.output


def test_unreachable_cluster_is_explained(cluster_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "dead"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "anna", "user": {}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "anna"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("LABKIT_CLUSTER_API_MAX_BACKOFF", "0.05")
    result = CliRunner().invoke(main, ["jobs"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "cannot be reached" in result.output and "2 attempts" in result.output and "Traceback" not in result.output


def test_logs_and_cancel_accept_a_run_id(cluster_env: Emulator) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["submit", "--run-id", "my-run-7"])
    assert out.exit_code == 0 and "run my-run-7" in out.output
    name = f"labkit-anna-{IcaParams().digest}"
    pod = Controllers(cluster_env.api_client()).create_pod(name, phase="Running", node="n1")
    cluster_env.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << b"hello from my-run-7\n")
    logs = runner.invoke(main, ["logs", "my-run-7"])
    assert logs.exit_code == 0 and "hello from my-run-7" in logs.output
    assert f"cancelled {name}" in runner.invoke(main, ["cancel", "my-run-7"]).output


def test_logs_of_a_run_neither_here_nor_on_the_cluster_says_both(cluster_env: Emulator, tmp_path: Path) -> None:
    base = tmp_path / "data"
    (base / "PreExperiment_ICA_my-run-7").mkdir(parents=True)
    out = CliRunner().invoke(main, ["logs", "my-run-8", "--base-dir", str(base)])
    assert out.exit_code == ExitCode.NOT_FOUND, out.output
    assert f"No run 'my-run-8' in {base.resolve()}" in out.output and "nearest run ids there: my-run-7" in out.output
    assert "Nor on the cluster: " in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_submit_follow_streams_the_log_then_the_outcome(cluster_env: Emulator, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"labkit-anna-{IcaParams().digest}"
    pod_name = f"{name}-p0001"
    cluster_env.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod_name}/log"]
                      << (b"2026-01-01T00:00:01Z step load\n", b"2026-01-01T00:00:02Z step fit\n",
                          b"2026-01-01T00:00:03Z step done\n"))
    ctl = Controllers(cluster_env.api_client())

    def controller() -> None:
        ctl.wait_for_job(name)
        assert ctl.create_pod(name, phase="Running", node="worker-9") == pod_name
        deadline = time.monotonic() + 10  # end the pod once the CLI follows its log
        while not any(r.url.path.endswith("/log") for r in cluster_env.requests()) and time.monotonic() < deadline:
            time.sleep(0.02)
        ctl.pod_status(pod_name, phase="Succeeded")
        ctl.job_condition(name, "Complete")

    threading.Thread(target=controller, daemon=True).start()
    result = CliRunner().invoke(main, ["submit", "-f"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines.index("step load") < lines.index("step done")
    assert any("succeeded on worker-9" in line for line in lines)
    listed = CliRunner().invoke(main, ["jobs", "--json"])
    data = json.loads(listed.output)
    assert data[0]["name"] == name and data[0]["state"] == "succeeded"


def test_empty_namespace_means_the_current_one(cluster_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the hub the namespace is the pod's own; here it is the kubeconfig context's (NS)."""
    monkeypatch.setenv("LABKIT_CLUSTER_NAMESPACE", "")
    result = CliRunner().invoke(main, ["submit"])
    assert result.exit_code == 0 and f"namespace {NS}" in result.output, result.output
    assert Controllers(cluster_env.api_client()).batch.read_namespaced_job(f"labkit-anna-{IcaParams().digest}", NS)


def _sets_file(tmp_path: Path, sets: list[IcaParams]) -> Path:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([p.to_dict() for p in sets]))
    return path


def test_submit_a_volcano_sweep_list_it_and_watch_it(cluster_env: Emulator, tmp_path: Path) -> None:
    runner = CliRunner()
    sets = _sets_file(tmp_path, [IcaParams(random_state=s) for s in range(2)])
    out = runner.invoke(main, ["submit", "--sweep", str(sets), "--volcano", "--min-available", "2",
                               "--sweep-id", "seeds", "--n-components", "12"])
    assert out.exit_code == 0, out.output
    assert "sweep seeds: 2 runs (one Volcano Job labkit-sweep-anna-" in out.output
    assert "labkit jobs --sweep seeds --watch" in out.output
    ctl = Controllers(cluster_env.api_client())
    vjob = next(line.split()[1] for line in out.output.splitlines() if "submitted" in line).rsplit("-", 2)[0]
    stored = ctl.wait_for_volcano_job(vjob)
    assert stored["spec"]["minAvailable"] == 2
    env = {e["name"]: e["value"] for e in stored["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["env"]}
    assert env["ICA_COMPONENTS_COUNT"] == "12"  # the flag overrides every set

    listed = runner.invoke(main, ["jobs"])
    rows = [line.split() for line in listed.output.splitlines() if line.startswith(vjob + "-")]
    assert listed.exit_code == 0 and [r[1] for r in rows] == ["queued"] * 2 and {r[3] for r in rows} == {"seeds"}

    tasks = [t["name"] for t in stored["spec"]["tasks"]]
    pods = [ctl.create_volcano_pod(vjob, t, phase="Running", node="w1") for t in tasks]
    runs = runner.invoke(main, ["jobs", "--sweep", "seeds"])
    rows = [line.split() for line in runs.output.splitlines() if line.startswith(vjob + "-")]
    assert runs.exit_code == 0 and [r[1:2] + r[3:4] for r in rows] == [["running", "w1"]] * 2

    def volcano() -> None:
        deadline = time.monotonic() + 10  # complete the sweep once the CLI watches it
        while not any("watch=true" in str(r.url).lower() for r in cluster_env.requests()) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pod in pods:
            ctl.pod_status(pod, phase="Succeeded")
        ctl.volcano_status(vjob, "Completed", succeeded=2)

    threading.Thread(target=volcano, daemon=True).start()
    watched = runner.invoke(main, ["jobs", "--sweep", "seeds", "--watch"])
    assert watched.exit_code == 0, watched.output
    table = watched.output.split("RUN ")[-1].splitlines()[1:3]  # the final table
    assert "sweep seeds (Volcano Job" in watched.output and [r.split()[1] for r in table] == ["succeeded"] * 2
    assert "2 result folder(s) not found" in watched.output  # the test wrote none


def test_submit_a_sweep_of_jobs_and_wait(cluster_env: Emulator, tmp_path: Path) -> None:
    sets = _sets_file(tmp_path, [IcaParams(method="picard"), IcaParams(method="infomax")])
    names = [f"labkit-anna-{IcaParams(method=m).digest}" for m in ("picard", "infomax")]
    ctl = Controllers(cluster_env.api_client())

    def controller() -> None:
        for name in names:
            ctl.wait_for_job(name)
            ctl.create_pod(name, phase="Running", node="w2")
        ctl.job_condition(names[0], "Complete")
        ctl.job_condition(names[1], "Failed", "DeadlineExceeded")

    threading.Thread(target=controller, daemon=True).start()
    result = CliRunner().invoke(main, ["submit", "--sweep", str(sets), "--wait"])
    assert result.exit_code == ExitCode.RUN_FAILED, result.output  # one run failed
    assert "2 runs (2 Jobs" in result.output and "DeadlineExceeded" in result.output
    sweep_id = result.output.split("sweep ", 1)[1].split(":")[0]
    listed = CliRunner().invoke(main, ["jobs", "--sweep", sweep_id, "--json"])
    data = json.loads(listed.output)
    assert data["kind"] == "jobs" and sorted(r["phase"] for r in data["runs"]) == ["failed", "succeeded"]


def test_a_set_that_already_ran_is_reported_with_its_folder(cluster_env: Emulator, user_dir: Path) -> None:
    from labkit.results.folder import RunFolder
    from labkit.results.layout import ICA_FILE, METRICS_FILE

    folder = RunFolder.create(IcaParams(base_dir=str(user_dir)), "20260101-000000-000-old")
    folder.start()
    (folder.path / METRICS_FILE).write_text("{}")
    (folder.path / ICA_FILE).write_bytes(b"ica")
    folder.succeed()
    runner = CliRunner()
    result = runner.invoke(main, ["submit"])
    assert result.exit_code == 0, result.output
    assert "already ran: run 20260101-000000-000-old" in result.output and str(folder.path) in result.output
    assert "no labkit Jobs" in runner.invoke(main, ["jobs"]).output
    forced = runner.invoke(main, ["submit", "--force"])
    assert forced.exit_code == 0 and "submitted labkit-anna-" in forced.output


def test_cancel_a_sweep(cluster_env: Emulator, tmp_path: Path) -> None:
    runner = CliRunner()
    sets = _sets_file(tmp_path, [IcaParams(random_state=s) for s in range(2)])
    for extra in (["--volcano", "--sweep-id", "v"], ["--no-volcano", "--sweep-id", "p"]):
        assert runner.invoke(main, ["submit", "--sweep", str(sets), *extra]).exit_code == 0
    volcano = runner.invoke(main, ["cancel", "--sweep", "v"])
    assert volcano.exit_code == 0 and volcano.output.count("cancelled labkit-sweep-anna-") == 1
    plain = runner.invoke(main, ["cancel", "--sweep", "p"])
    assert plain.exit_code == 0 and plain.output.count("cancelled labkit-anna-") == 2
    assert "no labkit Jobs" in runner.invoke(main, ["jobs"]).output
    again = runner.invoke(main, ["cancel", "--sweep", "p"])
    assert again.exit_code == ExitCode.NOT_FOUND and "No Jobs of sweep p" in again.output
    assert runner.invoke(main, ["cancel"]).exit_code == ExitCode.BAD_INPUT  # click's usage errors too


def test_logs_of_a_run_of_a_volcano_sweep(cluster_env: Emulator, tmp_path: Path) -> None:
    runner = CliRunner()
    sets = _sets_file(tmp_path, [IcaParams(random_state=s) for s in range(2)])
    out = runner.invoke(main, ["submit", "--sweep", str(sets), "--volcano"])
    run_name, run_id = next((line.split()[1], line.split()[3].rstrip(")"))
                            for line in out.output.splitlines() if "submitted" in line)
    vjob, task = run_name.rsplit("-", 2)[0], "-".join(run_name.rsplit("-", 2)[1:])
    ctl = Controllers(cluster_env.api_client())
    pod = ctl.create_volcano_pod(vjob, task, phase="Running", node="w1")
    cluster_env.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << b"step fit of the first run\n")
    for ref in (run_name, run_id):
        logs = runner.invoke(main, ["logs", ref])
        assert logs.exit_code == 0 and "step fit of the first run" in logs.output, logs.output
    missing = runner.invoke(main, ["logs", f"{vjob}-r9-0000000000"])
    assert missing.exit_code == ExitCode.NOT_FOUND and "has no run r9-0000000000" in missing.output
    ctl.pod_status(pod, phase="Succeeded")
    followed = runner.invoke(main, ["logs", "-f", run_name])
    assert followed.exit_code == 0, followed.output
    assert "step fit of the first run" in followed.output and "succeeded" in followed.output


def test_refusals_point_at_files_that_exist() -> None:
    """A 401/403 (and every other message) names the k8s/ file to apply: it must be there."""
    import re

    from kubernetes.client.exceptions import ApiException

    from labkit.runners.cluster import api

    root = Path(__file__).resolve().parents[1]
    for status in (401, 403):
        text = str(api.explain(ApiException(status=status, reason="Forbidden"), "create Job labkit-x"))
        named = re.findall(r"k8s/[\w./-]*\w", text)
        assert named and all((root / n).is_file() for n in named), (status, text)
    sources = "\n".join(p.read_text() for p in (root / "labkit").rglob("*.py"))
    named = set(re.findall(r"k8s/[\w./-]*\w", sources))
    assert named and {n for n in named if not (root / n).exists()} == set()


def test_cancel_of_a_finished_run_removes_its_job_and_says_so(cluster_env: Emulator) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["submit"]).exit_code == 0
    name = f"labkit-anna-{IcaParams().digest}"
    ctl = Controllers(cluster_env.api_client())
    ctl.create_pod(name, phase="Succeeded", node="w1")
    ctl.job_condition(name, "Complete")
    result = runner.invoke(main, ["cancel", name])
    assert result.exit_code == 0, result.output
    assert f"removed {name} (it had already succeeded; its result folder stays)" in result.output
    assert "no labkit Jobs" in runner.invoke(main, ["jobs"]).output
