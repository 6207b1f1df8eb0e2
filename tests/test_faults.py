"""Fault tests with real runs (papermill, a real kernel): SIGKILL at every step, two runs with one
id at the same instant, a Job pod retried with the same run id, a disk that fills up mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from cluster_fixtures import Emulator, emulator  # noqa: F401 (fixture)

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.results.layout import FAILED, NOTEBOOK_FILE, PARAMS_FILE, PARTIAL
from labkit.results.reading import find_run, list_runs, load_run
from labkit.runners.cluster.jobs import ClusterJobs
from labkit.runners.cluster.settings import ClusterSettings

pytestmark = pytest.mark.slow
#: every point a run can be killed at, in order: the runner before the kernel starts, the kernel taking
#: the run over, each analysis step, and the runner after the notebook ended (before the outcome)
KILL_POINTS = ("queued", "start", "load", "filter", "fit", "score", "plot", "report", "executed")
TINY = {"n_components": 3, "crop_tmax": 4.0}


def tiny(base: Path, **kw) -> IcaParams:
    return IcaParams(base_dir=str(base), raw_file_path=DEMO_FILENAME, **{**TINY, **kw})


def labkit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


def run_args(params: IcaParams, run_id: str) -> list[str]:
    return ["run", "--base-dir", params.base_dir, "--raw-file-path", params.raw_file_path,
            "--n-components", str(params.n_components), "--crop-tmax", str(params.crop_tmax),
            "--filter-fmax", str(params.filter_fmax), "--run-id", run_id]


def kill_when_paused(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait until a process of the run stops itself (``LABKIT_PAUSE_AT``), then SIGKILL the whole run,
    as a pod's death or the OOM killer would; returns which process had paused."""
    root = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while True:
        tree = [root, *root.children(recursive=True)]
        paused = [p for p in tree if _status(p) == psutil.STATUS_STOPPED]
        if paused:
            break
        assert proc.poll() is None, f"the run ended before pausing: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.02)
    for p in tree:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(10)
    proc.communicate()
    _wait_gone(tree)
    return "runner" if paused[0].pid == proc.pid else "kernel"


def _wait_gone(tree: list[psutil.Process], timeout: float = 20) -> None:
    """SIGKILL is delivered asynchronously: wait until every process of the run is dead (or a zombie,
    which nobody reaps here), so the readers below see the run as a pod's death would leave it."""
    deadline = time.monotonic() + timeout
    while any(_status(p) not in ("", psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) for p in tree):
        assert time.monotonic() < deadline, "the killed run's processes did not end"
        time.sleep(0.02)


def _status(p: psutil.Process) -> str:
    try:
        return p.status()
    except psutil.NoSuchProcess:
        return ""


def jobs_here(emu: Emulator, base: Path) -> ClusterJobs:
    settings = ClusterSettings.from_dict({"namespace": "labkit-test", "image": "ghcr.io/labkit/labkit:0.1.0",
                                          "storage": {"nfs_server": "nfs.lab.example", "local_base_dir": str(base)}})
    return ClusterJobs(settings, "anna", emu.api_client())


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_step_reads_failed_with_the_reason_everywhere(demo_dir, emulator, point):  # noqa: F811
    params = tiny(demo_dir)
    proc = labkit(*run_args(params, f"kill-{point}"), env={"LABKIT_PAUSE_AT": point})
    who = kill_when_paused(proc)
    assert who == ("runner" if point in ("queued", "executed") else "kernel")
    (found,) = list_runs(demo_dir)
    assert found.path.name.endswith(PARTIAL), "nothing could rename it"
    assert found.state == "failed", (found.status, found.error)
    assert "disappeared (killed?)" in found.error
    expected = {"queued": "before its kernel took the run over", "start": "before its kernel took the run over",
                "executed": "during step 'report'"}.get(point, f"during step {point!r}")
    assert expected in found.error
    assert load_run(found.path).error == found.error == find_run(demo_dir, f"kill-{point}").error
    listing = CliRunner().invoke(main, ["runs", "--base-dir", str(demo_dir)])
    assert listing.exit_code == 0 and "failed" in listing.output and "disappeared" in listing.output
    assert jobs_here(emulator, demo_dir).completed(params) is None, "a killed run is not a result to reuse"


def test_two_runs_with_one_id_at_the_same_instant_one_result_one_refusal(demo_dir):
    sets = [tiny(demo_dir, n_components=3), tiny(demo_dir, n_components=4)]
    procs = [labkit(*run_args(p, "same")) for p in sets]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], outs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = outs[loser][1].strip()
    assert refusal.startswith("labkit: Run id 'same' is already taken") and "\n" not in refusal, refusal
    (found,) = list_runs(demo_dir)
    assert found.state == "succeeded" and outs[winner][0].strip().splitlines()[-1] == str(found.path)
    assert found.params == sets[winner] and found.metrics["n_components"] == sets[winner].n_components
    before = snapshot(found.path)
    # the third run: an impossible value under the same id must not touch the good result
    third = labkit(*run_args(tiny(demo_dir, filter_fmax=200.0), "same"))
    out, err = third.communicate(timeout=120)
    # the impossible value is found first, before the id is even claimed (preflight: exit 2, nothing made)
    assert third.returncode == 2 and "'filter_fmax'" in err and "Traceback" not in err
    assert snapshot(found.path) == before and load_run(found.path).state == "succeeded"


def test_a_pod_retry_restarts_its_killed_attempt_and_keeps_the_complete_result(demo_dir):
    env = {**tiny(demo_dir).to_env(), "LABKIT_RUN_ID": "job-7"}
    first = labkit("entrypoint", env={**env, "LABKIT_PAUSE_AT": "plot"})
    kill_when_paused(first)  # the node died in the middle of the first pod
    deadline = time.monotonic() + 10  # SIGKILL is asynchronous: a big kernel takes a moment to be gone
    while (partial := list_runs(demo_dir)[0]).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list_runs(demo_dir)) == 1
    assert partial.state == "failed" and partial.path.name.endswith(PARTIAL)
    assert (partial.path / "topomaps.png").exists() or list(partial.path.glob("*.fif")), "it got as far as plot"
    second = labkit("entrypoint", env=env)  # the Job's next pod: same LABKIT_RUN_ID
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    (found,) = list_runs(demo_dir)
    assert found.state == "succeeded" and out.strip().splitlines()[-1] == str(found.path) and found.status["attempt"] == 2
    assert "RETRY: attempt 2 restarts run job-7" in found.log
    assert not list(found.path.glob(".*")), "no reserve or temporary file in a complete result"
    before = snapshot(found.path)
    third = labkit("entrypoint", env=env)  # a pod retried after the result was complete
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0 and out.strip().splitlines()[-1] == str(found.path), err
    bad = labkit("entrypoint", env={**env, "FILTER_FMAX": "200"})  # same id, another (impossible) set
    out, err = bad.communicate(timeout=120)
    # the impossible value is refused before the id is looked at (preflight: exit 2, nothing touched)
    assert bad.returncode == 2 and "'filter_fmax'" in err and "Traceback" not in err
    assert snapshot(found.path) == before and [r.state for r in list_runs(demo_dir)] == ["succeeded"]


def test_a_disk_that_fills_up_mid_run_ends_in_one_line_and_a_reason(demo_source, tmp_path):
    """A real run on a tmpfs with room for the recording but not for the outputs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    recording = demo_source / DEMO_FILENAME
    size_kib = (recording.stat().st_size + (recording.parent / "ground_truth.npz").stat().st_size
                if (recording.parent / "ground_truth.npz").exists() else recording.stat().st_size) // 1024 + 512
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (disk / DEMO_FILENAME).parent.mkdir(parents=True)
        (disk / DEMO_FILENAME).write_bytes(recording.read_bytes())
        params = tiny(disk, n_components=10, crop_tmax=60.0)
        proc = labkit(*run_args(params, "full-disk"))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 4, (out, err)
        told = [line for line in err.strip().splitlines() if not line.startswith("run full-disk: ")]  # its progress
        assert "Traceback" not in err and len(told) == 1 and told[0].startswith("labkit: run failed"), err
        assert "No space left on device" in err
        (found,) = list_runs(disk)
        assert found.state == "failed" and "No space left on device" in found.error, found.error
        assert found.path.name.endswith(FAILED)
        assert json.loads(found.file(PARAMS_FILE).read_text())["params"] == params.to_dict()
        assert "load: done" in found.log, "what was written before is kept"
        leftovers = [p.name for p in found.path.iterdir() if p.name.endswith(".tmp") or p.stat().st_size == 0]
        assert not leftovers
        assert not list(found.path.glob(".*.ipynb")), "the notebook papermill was writing is not left behind"
        notebook = found.file(NOTEBOOK_FILE)
        assert not notebook.exists() or json.loads(notebook.read_text())["cells"], "a notebook kept is whole"
        listing = CliRunner().invoke(main, ["runs", "--base-dir", str(disk)])
        assert "No space left on device" in listing.output
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
