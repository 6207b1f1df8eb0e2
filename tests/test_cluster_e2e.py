"""End to end: a generated Job's container command and environment, run here, make a complete result.

The Job's volume (``/userdata`` on NFS) is mapped to a temporary directory: ``BASE_DIR``
becomes that directory, every other variable is taken verbatim from the manifest. This
proves the manifest works (not only that it parses): same contract as the image, and
the result is found with the same code as a local run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.params import IcaParams
from labkit.results.reading import find_run
from labkit.runners.cluster.manifests import build_job
from labkit.runners.cluster.settings import ClusterSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _labkit_command(command: list[str]) -> list[str]:
    """The container's command, using this interpreter's ``labkit`` script."""
    exe = shutil.which(command[0]) or str(Path(sys.executable).with_name(command[0]))
    return [exe, *command[1:]]


def test_generated_job_runs_locally_and_leaves_a_complete_result(tmp_path: Path) -> None:
    from labkit.analysis.datasets import write_demo

    raw = write_demo(tmp_path)
    settings = ClusterSettings.from_dict({"storage": {"nfs_server": "nfs.lab.example"}})
    params = IcaParams(raw_file_path=str(Path(raw).relative_to(tmp_path)), n_components=10, crop_tmax=30)
    run_id = "e2e-cluster-001"
    job = build_job(params, settings, "alice", run_id)

    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = container["volumeMounts"][0]["mountPath"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BASE_DIR"] == mount == "/userdata"
    # the volume is this temporary directory: map the mount path onto it
    env = {k: (str(tmp_path) + v[len(mount):] if v.startswith(mount) else v) for k, v in env.items()}
    env["HOME"] = str(tmp_path / ".home")
    env["MPLCONFIGDIR"] = str(tmp_path / ".mpl")
    env["PATH"] = os.environ.get("PATH", "")
    env["LABKIT_BLAS_THREADS"] = "1"

    proc = subprocess.run(_labkit_command(container["command"] + container.get("args", [])), env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = find_run(tmp_path, run_id)
    assert result.state == "succeeded", result.status
    assert result.path.name == f"PreExperiment_ICA_{run_id}"
    assert result.params is not None and result.params.digest == params.digest
    assert result.metrics.get("n_components") == 10
    for name in ("params.json", "status.json", "metrics.json", "components-ica.fif", "run.log"):
        assert (result.path / name).is_file(), name
    assert result.topomaps


def test_a_failing_run_reports_the_prototype_way(tmp_path: Path) -> None:
    """A missing recording: exit 2 (bad parameters, refused before any folder), which the Job's
    podFailurePolicy turns into a failed Job at once; the watcher says why from the log line."""
    settings = ClusterSettings.from_dict({"storage": {"nfs_server": "nfs.lab.example"}})
    job = build_job(IcaParams(raw_file_path="nope/missing_raw.fif"), settings, "alice", "e2e-missing")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(BASE_DIR=str(tmp_path), HOME=str(tmp_path), MPLCONFIGDIR=str(tmp_path / ".mpl"),
               PATH=os.environ.get("PATH", ""), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(_labkit_command(container["command"]), env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "raw_file_path" in proc.stderr
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert proc.returncode in rules[0]["onExitCodes"]["values"] and rules[0]["action"] == "FailJob"

    # what the watcher makes of it: the Job failed by the policy, the reason from the log's last line
    from labkit.runners.cluster.status import describe

    failed_job = dict(job, status={"conditions": [{
        "type": "Failed", "status": "True", "reason": "PodFailurePolicy",
        "message": f"Container ica for pod x failed with exit code {proc.returncode} matching FailJob rule at index 0"}]})
    from_log = describe(failed_job, log_tail=proc.stderr)
    assert from_log.infrastructure is False and "bad parameters" in from_log.reason
    assert "raw_file_path" in from_log.reason and "not retried" in from_log.reason
