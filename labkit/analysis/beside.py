"""The one place a run's side work goes: the topomaps, a short recording's labels and MNE's report section.

A run draws its source plots and suspects' properties itself; meanwhile a second core can draw
the topomaps, label the components and build MNE's ICA section of the report from the saved ICA
file. :class:`Beside` is that executor, with one policy, chosen once per run:

``process`` (:data:`PROCESS`)
    worker processes started from a clean forkserver (never a fork of the live, threaded kernel:
    that can deadlock the child and is deprecated on Python 3.12+). The forkserver has imported
    ``labkit.analysis.ica`` (and the labelling network's packages), so a worker only reads the saved
    ICA and draws or labels. Each worker keeps one BLAS thread: it shares the cores with the run.
``inline`` (:data:`INLINE`)
    nothing is submitted; the run does the work itself, after its plots. Right on one core, and in a
    sweep's warm kernel (:mod:`labkit.runners.pool`), whose cores are the pool's other kernels'.

The default is ``process`` with two or more cores, ``inline`` on one; a warm kernel sets ``inline``
for its runs with :func:`set_default_policy`, and a caller may pass a policy to
:func:`labkit.analysis.ica.run`. The third kind of side work, the preprocessing cache's write, is a
thread of its own (:meth:`labkit.analysis.cache.Slot.store`): it must finish before the entry's lock
is released, so the cache slot owns it.

A worker that fails or never starts loses nothing: :meth:`Beside.submit` returns None (or the job's
future raises) and the run does that job itself.
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import context as mp_context
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from typing import Any, Callable

from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

PROCESS = "process"
INLINE = "inline"
POLICIES = (PROCESS, INLINE)
#: what the forkserver imports once, so each worker does not (the labelling network's: 0.6 s a labelling saves)
PRELOAD = ("labkit.analysis.ica", "mne_icalabel", "onnxruntime")

_default: str | None = None


def set_default_policy(policy: str | None) -> None:
    """Make ``policy`` the default of every later run in this process (None: by the core count again).

    A sweep's warm kernel calls this with ``inline`` once, when it starts (its cores are the pool's).
    """
    global _default
    _default = None if policy is None else check_policy(policy)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"Invalid value for beside policy: got {policy!r}; allowed: {', '.join(POLICIES)}")
    return policy


def default_policy() -> str:
    """:func:`set_default_policy`'s choice, else ``process`` with two or more cores and ``inline`` on one."""
    if _default is not None:
        return _default
    return PROCESS if (os.cpu_count() or 1) >= 2 else INLINE


def _one_blas_thread() -> None:
    """A worker's BLAS keeps one thread: it shares the cores with the run, where idle BLAS threads spin
    (the topomaps and properties took 1.1-1.2 s of CPU for 0.75 s of drawing on two threads, 0.75 s on one)."""
    threadpool_limits(limits=1)


def _warm() -> None:
    """A no-op a worker runs first, so its start-up (imports) overlaps the run's next step."""


class _MainFreePopen(popen_forkserver.Popen):
    """The forkserver's launch, with the preparation data minus the caller's ``__main__``
    (``init_main_from_path``/``init_main_from_name``): a worker does not run the caller's script."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            mp_context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _MainFreeProcess(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _MainFreePopen:
        return _MainFreePopen(process_obj)


class _MainFreeContext(mp_context.ForkServerContext):
    """A forkserver context whose workers never import ``__main__``."""

    Process = _MainFreeProcess  # type: ignore[assignment]


class Beside:
    """Side work of one run, by ``policy``: in ``workers`` forkserver processes, or (``inline``) not at all.

    A process pool starts in a thread (its first worker waits 0.5 s for the forkserver's imports),
    so the run goes on meanwhile; :meth:`submit` waits for that start.
    """

    def __init__(self, policy: str | None = None, *, workers: int = 2, preload: tuple[str, ...] = PRELOAD) -> None:
        self.policy = check_policy(policy) if policy is not None else default_policy()
        self.pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None
        if self.policy == INLINE:
            return
        main = sys.modules.get("__main__")
        if main is not None and not hasattr(main, "__spec__"):  # a kernel whose namespace was reset
            main.__spec__ = None  # type: ignore[attr-defined]  # what multiprocessing reads to prepare a worker
        if "forkserver" in mp.get_all_start_methods():
            ctx: Any = _MainFreeContext()
            ctx.set_forkserver_preload(list(preload))
        else:  # no forkserver (Windows): spawn, which runs an unguarded script again, so no workers
            self.policy = INLINE
            return
        self._starting = threading.Thread(target=self._start, args=(workers, ctx), name="labkit-worker-start",
                                          daemon=True)
        self._starting.start()

    def _start(self, workers: int, ctx: Any) -> None:
        try:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_blas_thread)
            pool.submit(_warm)
            self.pool = pool
        except Exception as err:  # no worker here: the run does the work in-process
            logger.warning("no topomap worker (%s: %s); drawing here", type(err).__name__, err)

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any] | None":
        """``fn(*args)`` in a worker, or None when there is none (the caller then does it itself)."""
        pool = self.pool if self.ready() else None
        if pool is None:
            return None
        try:
            return pool.submit(fn, *args)
        except Exception as err:  # broken pool
            logger.warning("no topomap worker (%s: %s)", type(err).__name__, err)
            return None

    def ready(self) -> bool:
        """Whether a worker process runs (waiting for its start, if it is starting)."""
        if self._starting is not None:
            self._starting.join()
        return self.pool is not None

    def close(self) -> None:
        pool = self.pool if self.ready() else None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> "Beside":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result(job: "Future[Any] | None", what: str, timeout: float = 300) -> Any:
    """A job's result, or None (said in the log) when there was no job or it failed: then it is done here."""
    if job is None:
        return None
    try:
        return job.result(timeout=timeout)
    except Exception as err:
        logger.warning("%s in a worker process failed (%s: %s); done here instead", what, type(err).__name__, err)
        return None
