"""``labkit sweep --cluster``: the same study as Kubernetes Jobs, through ClusterJobs.submit_sweep, against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cluster_fixtures import NS, Controllers, Emulator, emulator, user_dir, write_kubeconfig  # noqa: F401

from labkit.cli.main import main
from labkit.params import IcaParams

pytestmark = pytest.mark.timeout(60)


def test_sweep_cluster_submits_one_job_per_set_and_attaches_the_second_time(
        emulator: Emulator, user_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    for key, value in {"KUBECONFIG": str(write_kubeconfig(emulator, tmp_path)), "JUPYTERHUB_USER": "anna",
                       "LABKIT_CLUSTER_NAMESPACE": NS, "LABKIT_CLUSTER_IMAGE": "ghcr.io/labkit/labkit:0.1.0",
                       "LABKIT_CLUSTER_STORAGE__NFS_SERVER": "nfs.lab.example", "LABKIT_CLUSTER_SCHEDULER__NAME": "default",
                       "LABKIT_CLUSTER_API_RETRIES": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    args = ["sweep", "--cluster", "--grid", "method=picard,infomax", "--seeds", "0:2", "--n-components", "12"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "4 runs (jobs)" in first.output and first.output.count("submitted") == 4
    sets = [IcaParams(method=m, random_state=s, n_components=12) for m in ("picard", "infomax") for s in (0, 1)]
    batch = Controllers(emulator.api_client()).batch
    for p in sets:
        job = batch.read_namespaced_job(f"labkit-anna-{p.digest}", NS)
        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
        assert env["ICA_METHOD"] == p.method and env["ICA_RANDOM_STATE"] == str(p.random_state)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("attached") == 4, again.output
