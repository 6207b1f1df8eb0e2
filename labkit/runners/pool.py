"""Warm kernels for sweeps: many notebook runs without a fresh interpreter, kernel and ``import mne`` each.

:class:`PoolRunner` is a :class:`~labkit.runners.local.Runner` whose runs borrow a kernel
from a small pool of :class:`WarmKernel` (labkit's headless kernel, started once,
with mne, the template and the ICA algorithms already imported). papermill still
executes the template for every run (``km=``), so each run leaves the same complete
result folder as ``labkit run``. Between runs the kernel's namespace is reset, its
log handlers restored, its figures closed, its BLAS threads capped and it moves into
the next run's folder. A run that fails takes its kernel with it (a fresh one serves
the next run), so a crashed or half-reset kernel never touches another run.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from labkit.params import IcaParams
from labkit.results.folder import RunFolder
from labkit.runners import kernel
from labkit.runners.local import TEMPLATE, LocalRunner, kill_kernel

logger = logging.getLogger(__name__)

#: what a warm kernel imports once, so runs do not: mne and the ICA algorithms, the template, the figures
WARMUP = """\
import matplotlib
matplotlib.use("Agg")
import mne, mne.preprocessing, sklearn.decomposition, picard
from labkit.runners import template
from labkit.analysis import ica, beside
beside.set_default_policy("inline")  # the pool's kernels share the cores: a run's side work stays in its kernel
from labkit.runners import pool as _labkit_pool
_labkit_pool.remember_log_handlers()
import gc
gc.collect(); gc.freeze()
"""

#: how often a warm kernel's client looks for its reply, and whether the kernel still lives (seconds)
REPLY_POLL = 0.25

_baseline_handlers: dict[str, list[logging.Handler]] = {}


def remember_log_handlers() -> None:
    """(In the kernel) note the log handlers a run must leave behind, see :func:`prepare_kernel`."""
    for name in ("labkit", "mne"):
        _baseline_handlers[name] = list(logging.getLogger(name).handlers)


def prepare_kernel(run_dir: str, blas_threads: int) -> None:
    """(In the kernel, before each run) undo what the last run left and move into ``run_dir``.

    A failed run does not close its ``run.log`` handler (the runner owns the folder):
    without this, its successor would log into both folders.
    """
    import matplotlib.pyplot as plt
    from threadpoolctl import threadpool_limits

    for name, handlers in _baseline_handlers.items():
        lg = logging.getLogger(name)
        for handler in [h for h in lg.handlers if h not in handlers]:
            lg.removeHandler(handler)
            handler.close()
    plt.close("all")
    threadpool_limits(limits=blas_threads)
    os.chdir(run_dir)


class WarmKernel:
    """One headless kernel with the run's imports done, lent to one run at a time."""

    def __init__(self, kernel_name: str = kernel.HEADLESS, *, startup_timeout: float = 120.0,
                 started: Callable[["WarmKernel"], None] | None = None) -> None:
        self.sockets = tempfile.mkdtemp(prefix="labkit-pool-")
        self._closed = False
        self.km = kernel.start(kernel_name, cwd=Path(self.sockets), sockets=self.sockets)
        if started is not None:  # its owner can kill it from now on, while it warms up too
            started(self)
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=startup_timeout)
            self.execute(WARMUP, timeout=startup_timeout)
        except BaseException:
            self.close()
            raise
        self.runs = 0

    def execute(self, code: str, timeout: float = 60.0) -> None:
        """Run ``code`` quietly in the kernel; raise with the kernel's error if it fails, and within a
        fraction of a second if the kernel dies meanwhile (a cancel kills it), not only at the timeout."""
        msg_id = self.kc.execute(code, store_history=False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=REPLY_POLL)
            except queue.Empty:
                if not self.alive():
                    raise RuntimeError("warm kernel died") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"warm kernel: no reply within {timeout} s") from None
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
        while True:  # its output, unread: drop it so it does not pile up over a long sweep
            try:
                self.kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                break
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"warm kernel: {content.get('ename')}: {content.get('evalue')}")

    def prepare(self, run_dir: Path, blas_threads: int) -> None:
        self.execute(f"%reset -f\nimport labkit.runners.pool\n"
                     f"labkit.runners.pool.prepare_kernel({str(run_dir)!r}, {blas_threads})\ndel labkit")

    def after_run(self) -> None:
        """Close the client papermill opened on this kernel (nbclient leaves it open with ``km=``)."""
        self.runs += 1
        self.km.release_clients()

    def alive(self) -> bool:
        return bool(self.km.is_alive())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kc.stop_channels()
        self.kc.context.destroy(linger=0)
        try:
            self.km.close()
        except Exception as err:  # pragma: no cover - already gone
            logger.debug("warm kernel shutdown: %s", err)
        shutil.rmtree(self.sockets, ignore_errors=True)


def default_workers() -> int:
    return os.cpu_count() or 1


class PoolRunner(LocalRunner):
    """Runs sets on up to ``workers`` warm kernels at once (call :meth:`run` from that many threads).

    BLAS threads per run: ``blas_threads`` (default one), never more than the cores divided among
    the workers, so they do not oversubscribe. One thread because it measured fastest: in the
    3 x 30 benchmark one worker's 20-component fits took 0.55 s (median) with two BLAS threads
    and 0.13 s with one (benchmarks/README.md, bench_sweep).
    Use as a context manager (or call :meth:`close`) to stop the kernels.
    """

    def __init__(self, workers: int | None = None, *, blas_threads: int = 1, kernel_name: str = kernel.HEADLESS,
                 progress_bar: bool = False, template: Path = TEMPLATE, sweep_id: str = "") -> None:
        self.workers = max(1, workers or default_workers())
        #: recorded in each run's status, so the runs of one sweep are told apart from a rerun's (``compare --sweep``)
        self.sweep_id = sweep_id
        super().__init__(blas_threads=max(1, min(blas_threads, default_workers() // self.workers)),
                         kernel_name=kernel_name, progress_bar=progress_bar, template=template)
        self._idle: queue.Queue[WarmKernel | None] = queue.Queue()
        for _ in range(self.workers):
            self._idle.put(None)  # started by the first run that needs it, in that run's thread
        self._lock = threading.Lock()
        self._kernels: set[WarmKernel] = set()
        self.kernels_started = 0

    def _execute(self, params: IcaParams, folder: RunFolder) -> None:
        self._check_stopping()
        warm = self._idle.get()
        ok = False
        try:
            self._check_stopping()
            if warm is None or not warm.alive():
                self._retire(warm)
                warm = self._start()
            # the runner's pid lets a resumed sweep tell a dead sweep's runs; the sweep id, which sweep it was
            folder.set_status("queued", runner_pid=os.getpid(), **({"sweep_id": self.sweep_id} if self.sweep_id else {}))
            warm.prepare(folder.path, self.blas_threads)
            self._check_stopping()
            self._papermill(params, folder, warm.km)
            ok = True
        finally:
            if warm is not None and not ok:  # a failed run may leave its kernel in any state: start afresh
                self._retire(warm)
                warm = None
            elif warm is not None:
                warm.after_run()
            self._idle.put(warm)

    def _start(self) -> WarmKernel:
        return WarmKernel(self.kernel_name, started=self._track)

    def _track(self, warm: WarmKernel) -> None:
        """List a kernel as soon as it exists, so a cancel kills it even while it warms up."""
        with self._lock:
            self._kernels.add(warm)
            self.kernels_started += 1
            if self.stopping:
                kill_kernel(warm.km)

    def _retire(self, warm: WarmKernel | None) -> None:
        if warm is None:
            return
        with self._lock:
            self._kernels.discard(warm)
        warm.close()

    def _kill_kernels(self) -> None:
        """Kill every kernel, busy or idle; each run's own thread then ends it ``cancelled`` and closes its kernel."""
        with self._lock:
            kernels = list(self._kernels)
        for warm in kernels:
            kill_kernel(warm.km)

    def close(self) -> None:
        """Stop every kernel (runs in progress fail as their kernel dies; after :meth:`cancel`, they are cancelled)."""
        with self._lock:
            kernels, self._kernels = list(self._kernels), set()
        for warm in kernels:
            warm.close()

    def __enter__(self) -> "PoolRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
