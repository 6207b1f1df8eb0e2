"""Runs without the share: a store-mode Job submitted through the runs interface on the Kubernetes emulator,
its pod's command run here with only the store reachable (no user directory), its result fetched home.

The test plays the cluster: the Job controller (a pod from the Job's template), the kubelet (the
container's command and environment, the Secret's values put where ``secretKeyRef`` says) and the
end of the pod and Job. The store is moto's S3 server on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cluster_fixtures import NS, Controllers, emulator, user_dir  # noqa: F401 (fixtures)
from s3_fixtures import ACCESS_KEY, SECRET_KEY, s3, s3_endpoint  # noqa: F401 (fixtures)

from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.params import IcaParams
from labkit.results.reading import find_run
from labkit.runners.cluster.backend import ClusterBackend
from labkit.runners.cluster.manifests import to_yaml
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.submission import stored_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: the admin's Secret, as the kubelet would read it for the pod (the test plays the kubelet)
SECRET = {"labkit-store": {"access-key": ACCESS_KEY, "secret-key": SECRET_KEY}}


def _settings(s3, home: Path) -> dict:
    return {"namespace": NS, "image": "registry.lab.example/labkit:0.1.0", "watch_timeout": 1, "api_retries": 1,
            "storage": {"nfs_server": "nfs.lab.example", "local_base_dir": str(home)},
            "store": {"kind": "s3", "endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": "users/{username}",
                      "secret_name": "labkit-store"},
            "profiles": {"edge": {"node_selector": {"node-role.kubernetes.io/edge": ""}, "use_store": True,
                                  "tolerations": [{"key": "node-role.kubernetes.io/edge", "operator": "Exists",
                                                   "effect": "NoSchedule"}]}}}


def _pod_env(container: dict, pod_dir: Path, work_dir: str) -> dict[str, str]:
    """The container's environment as the kubelet makes it: values verbatim, Secret keys filled in; the
    emptyDir at ``work_dir`` is ``pod_dir`` here. Nothing of this machine's environment but PATH."""
    env = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = SECRET[ref["name"]][ref["key"]]
        else:
            value = item["value"]
            env[item["name"]] = str(pod_dir) + value[len(work_dir):] if value.startswith(work_dir) else value
    env.update(HOME=str(pod_dir / ".home"), MPLCONFIGDIR=str(pod_dir / ".mpl"), PATH=os.environ.get("PATH", ""),
               LABKIT_BLAS_THREADS="1", AWS_EC2_METADATA_DISABLED="true")
    return env


def test_an_edge_job_runs_from_the_store_and_its_result_comes_home(emulator, s3, demo_dir, tmp_path,
                                                                     monkeypatch):
    home = demo_dir  # the user's directory here: the recording, then the fetched result
    settings_file = tmp_path / "cluster.yaml"
    settings_file.write_text(yaml.safe_dump({"cluster": _settings(s3, home)}))
    for key in [k for k in os.environ if k.startswith("LABKIT_CLUSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LABKIT_CLUSTER_CONFIG", str(settings_file))
    monkeypatch.setenv("JUPYTERHUB_USER", "anna")
    settings = ClusterSettings.load().with_profile("edge")

    pushed = CliRunner().invoke(main, ["push", DEMO_FILENAME, "--base-dir", str(home)])
    assert pushed.exit_code == 0, pushed.output
    backend = ClusterBackend(settings, "anna", emulator.api_client())
    params = IcaParams(base_dir=str(home), raw_file_path=DEMO_FILENAME, n_components=8, crop_tmax=20.0)
    run = backend.submit(params)
    assert run.state == "queued"

    controllers = Controllers(emulator.api_client())
    job = controllers.batch.api_client.sanitize_for_serialization(controllers.wait_for_job(run.name))
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["volumes"] == [{"name": "work", "emptyDir": {}}]  # no share
    assert pod_spec["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    manifest_text = to_yaml(job)
    assert SECRET_KEY not in manifest_text and ACCESS_KEY not in manifest_text
    pod = controllers.create_pod(run.name, phase="Running", node="edge-rig-1")

    container = pod_spec["containers"][0]
    pod_dir = tmp_path / "pod-work"  # the emptyDir: empty, and the user's directory is nowhere in the env
    pod_dir.mkdir()
    env = _pod_env(container, pod_dir, settings.store.work_dir)
    assert str(home) not in json.dumps(env)
    exe = shutil.which("labkit") or str(Path(sys.executable).with_name("labkit"))
    proc = subprocess.run([exe, *container["command"][1:]], env=env, cwd=pod_dir, capture_output=True,
                          text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fetched labkit-demo/demo_raw.fif" in proc.stderr and f"uploaded run {run.run_id}" in proc.stderr
    controllers.pod_status(pod, phase="Succeeded")
    controllers.job_condition(run.name, "Complete")
    controllers.job_status(run.name, succeeded=1, active=0)
    assert backend.status(run.name).state == "succeeded"

    # before it comes home: listed from the store, beside the local runs
    (stored,) = stored_runs()
    assert (stored.run_id, stored.state, stored.backend) == (run.run_id, "succeeded", "store")
    listed = CliRunner().invoke(main, ["runs", "--base-dir", str(home)])
    assert listed.exit_code == 0 and run.run_id in listed.output and "succeeded" in listed.output

    fetched = CliRunner().invoke(main, ["fetch", run.run_id, "--base-dir", str(home)])
    assert fetched.exit_code == 0, fetched.output
    result = find_run(home, run.run_id)
    assert result.state == "succeeded" and result.path == home / f"PreExperiment_ICA_{run.run_id}"
    assert result.params.digest == params.digest and result.metrics["n_components"] == 8
    produced = next(pod_dir.glob("PreExperiment_ICA_*"))
    assert sorted(p.relative_to(result.path) for p in result.path.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(produced) for p in produced.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert result.read_ica().n_components_ == 8
    recorded = json.loads((result.path / "params.json").read_text())["provenance"]["recording_sha256"]
    assert recorded == pushed.output.splitlines()[-1]  # verified against the pushed fingerprint
    table = CliRunner().invoke(main, ["runs", "--base-dir", str(home), "--json"])
    (row,) = [r for r in json.loads(table.output) if r["run_id"] == run.run_id]
    assert row["path"] == str(result.path)  # read from home now, not from the store
    # the credentials are nowhere: not in the manifest, the pod's output, the log, params.json, the notebook
    for text in (manifest_text, proc.stdout, proc.stderr, *(p.read_text(errors="replace")
                                                          for p in result.path.rglob("*") if p.is_file())):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert (result.path / "ica_run.ipynb").is_file() and (result.path / "run.log").is_file()


K8S = Path(__file__).resolve().parent.parent / "k8s"


def _edge_block() -> list[str]:
    """The command lines of k8s/README.md's block that renders an edge Job."""
    text = (K8S / "README.md").read_text()
    block = text[text.index("Check what an edge Job looks like"):].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_guides_edge_render_runs_as_written_and_an_unknown_profile_is_named(tmp_path):
    """`labkit render --profile edge` as k8s/README.md shows it: the profile's manifest (edge nodes, the store,
    the recording's fingerprint computed here), admitted by the admission policy; a wrong name lists the right ones."""
    from test_k8s_manifests import admit

    from labkit.results.provenance import fingerprint

    (tmp_path / "k8s").symlink_to(K8S)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_CLUSTER")}
    commands = _edge_block()
    assert len(commands) == 3 and "--profile edge" in commands[-1]
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    job = yaml.safe_load(proc.stdout)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/edge": ""} and pod["volumes"] == [{"name": "work", "emptyDir": {}}]
    plain = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    assert plain["LABKIT_RECORDING_SHA256"] == fingerprint(tmp_path / DEMO_FILENAME)
    assert plain["LABKIT_CLUSTER_STORE__PREFIX"] == "users/alice"
    assert admit(job) == []
    header = [line[1:].strip() for line in (K8S / "labkit-settings-edge.yaml").read_text().splitlines()
              if line.startswith("#   ")]
    assert any("render --user alice --profile edge" in line for line in header)
    bad = subprocess.run(commands[-1].replace("--profile edge", "--profile egde"), shell=True, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'profile'" in bad.stderr and "'egde'" in bad.stderr and "'edge', 'large-memory'" in bad.stderr, bad.stderr
    plain_job = yaml.safe_load(subprocess.run(commands[-1].replace(" --profile edge", ""), shell=True, cwd=tmp_path,
                                              env=env, capture_output=True, text=True, timeout=120).stdout)
    assert plain_job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]  # no profile: the share


def test_a_store_sweeps_tasks_carry_the_fingerprints_they_were_given(s3, tmp_path):
    """A Volcano sweep built where the recordings are not (the hub service) pins each task's recording by the
    SHA-256 the user's server sent; a recording it was given none for carries none (never a guess)."""
    from labkit.runners.cluster.manifests import build_volcano_job

    settings = ClusterSettings.from_dict(_settings(s3, tmp_path)).with_profile("edge")
    sets = [IcaParams(base_dir="/nowhere", raw_file_path=f"eeg/s0{i}_raw.fif", n_components=5) for i in (1, 2)]
    sweep = build_volcano_job(sets, settings, "anna", "sw1", recordings={"eeg/s01_raw.fif": "a" * 64})
    told = [{e["name"]: e.get("value") for e in t["template"]["spec"]["containers"][0]["env"]}
            for t in sweep["spec"]["tasks"]]
    assert [t.get("LABKIT_RECORDING_SHA256") for t in told] == ["a" * 64, None]  # none: the pod names it by path
    assert {t["RAW_FILE_PATH"] for t in told} == {"eeg/s01_raw.fif", "eeg/s02_raw.fif"}
