"""Warm kernels: parallel runs reuse kernels, a failing and a crashing run do not stop the others."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from labkit import IcaParams
from labkit.analysis.cache import Cache, key
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.errors import ParameterError, RunFailed
from labkit.results.layout import cache_dir
from labkit.results.reading import list_runs
from labkit.runners.pool import PoolRunner, WarmKernel


def _tiny(demo_dir, **kw) -> IcaParams:
    return IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=5, crop_tmax=10.0, **kw)


def _kill_first_running_kernel(base, stop: threading.Event) -> None:
    """Play a crash: SIGKILL the kernel of the first run of random_state 3 seen running."""
    while not stop.is_set():
        for run in list_runs(base):
            pid = run.status.get("pid")
            if run.params and run.params.random_state == 3 and run.status.get("state") == "running" and pid:
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_pool_runs_in_parallel_on_reused_kernels_and_survives_a_failure_and_a_crash(demo_dir):
    # the run to crash is longer (more components and samples, its own preprocessing), so the killer sees it running
    sets = [_tiny(demo_dir, random_state=3).replace(n_components=20, crop_tmax=100.0)] + \
        [_tiny(demo_dir, random_state=i) for i in range(6) if i != 3] + [_tiny(demo_dir, filter_fmax=200.0)]
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_running_kernel, args=(demo_dir, stop), daemon=True)
    killer.start()
    outcomes = {}
    with PoolRunner(2) as runner, ThreadPoolExecutor(2) as ex:
        def one(p):
            try:
                return runner.run(p).state
            except (RunFailed, ParameterError) as err:  # an impossible set is refused before any work
                return str(err)
        for p, out in zip(sets, ex.map(one, sets), strict=True):
            outcomes[(p.random_state, p.filter_fmax)] = out
        stop.set()
        assert runner.kernels_started < len(sets)  # kernels served several runs
        assert runner.kernels_started >= 3  # ... and the failed and crashed runs' kernels were replaced
    assert "below the Nyquist" in outcomes[(97, 200.0)]
    assert "kernel died" in outcomes[(3, 30.0)]
    assert [outcomes[(i, 30.0)] for i in (0, 1, 2, 4, 5)] == ["succeeded"] * 5
    done = [r for r in list_runs(demo_dir) if r.state == "succeeded"]
    for run in done:  # every run is a complete papermill result folder
        assert {"report.html", "ica_run.ipynb", "metrics.json", "run.log", "components-ica.fif"} <= \
            {p.name for p in run.path.iterdir()}
        assert run.metrics["blas_threads"] == 1  # one per worker: never more than the cores / 2 workers
        assert "FAILED" not in run.log and run.params.digest in json.loads(run.file("params.json").read_text())["digest"]
        assert json.loads(run.file("params.json").read_text())["provenance"]["versions"]["mne"]
    # the runs share their preprocessing: read and filtered once, then read from the cache
    shared = {key(r.params) for r in done}
    assert len(shared) == 1 and Cache(cache_dir(demo_dir)).path(shared.pop()).exists()
    sources = sorted(r.metrics["preprocessing"] for r in done)
    assert set(sources) <= {"stored", "hit"} and sources.count("stored") == 1, sources
    assert sum("load and filter: read from the cache" in r.log for r in done) == sources.count("hit")
    # the impossible set was refused before any work: it has no folder (a crashed run's folder is checked above)
    assert not [r for r in list_runs(demo_dir) if r.params.filter_fmax == 200.0]


def test_warm_kernel_has_the_imports_done_and_resets_between_runs(tmp_path):
    warm = WarmKernel()
    try:
        warm.execute("import sys\nassert 'mne' in sys.modules and 'labkit.runners.template' in sys.modules\nleft = 1")
        warm.prepare(tmp_path, 1)
        warm.execute(f"import os\nassert 'left' not in globals() and os.getcwd() == {str(tmp_path)!r}")
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            warm.execute("1 / 0")
        assert warm.alive()
    finally:
        warm.close()
    assert not warm.alive()


def test_a_warm_kernels_death_names_the_cell_by_its_place_not_the_kernels_count(demo_dir):
    """The kernel's second run counts its cells on from the first; the reason names the notebook's own cell."""
    with PoolRunner(1) as runner:
        assert runner.run(_tiny(demo_dir)).state == "succeeded"
        long_fit = _tiny(demo_dir, method="fastica", max_iter=100000).replace(crop_tmax=120.0)
        killer = threading.Thread(target=_kill_when_fitting, args=(demo_dir, long_fit.digest), daemon=True)
        killer.start()
        with pytest.raises(RunFailed, match=r"kernel died in notebook cell 4 \(result = run\.analyse"):
            runner.run(long_fit)
        killer.join()
        assert runner.kernels_started == 1  # the same kernel ran both: its execution count went on


def test_warm_kernel_execute_returns_soon_after_its_kernel_is_killed(tmp_path):
    warm = WarmKernel()
    try:
        threading.Timer(0.5, os.kill, args=(warm.km.provisioner.pid, signal.SIGKILL)).start()
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="warm kernel died"):
            warm.execute("import time\ntime.sleep(60)")
        assert time.monotonic() - t0 < 5
    finally:
        warm.close()


def _kill_when_fitting(base, digest: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for run in list_runs(base):
            if run.params and run.params.digest == digest and run.status.get("step") == "fit":
                os.kill(run.status["pid"], signal.SIGKILL)
                return
        time.sleep(0.05)
