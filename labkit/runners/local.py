"""Runners execute the papermill template for a parameter set and own the run's lifecycle.

:class:`Runner` is a template method: it creates the folder, records every
outcome (success, a failing cell, a dead kernel, a cancel) in one place, and
leaves only :meth:`Runner._execute` to subclasses. :func:`start_local` runs the
same thing in a child process so a notebook stays responsive and can cancel it.
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from importlib import resources
from pathlib import Path
from typing import Any, Callable, NoReturn

from labkit.errors import LabkitError, RunCancelled, RunFailed
from labkit.params import IcaParams
from labkit.results import provenance
from labkit.results.folder import RunFolder
from labkit.results.layout import LOG_FILE, NOTEBOOK_FILE, TMP_SUFFIX, new_run_id
from labkit.results.liveness import checkpoint
from labkit.results.reading import RunResult, load_run
from labkit.runners import kernel

logger = logging.getLogger(__name__)

#: the papermill template shipped inside the package (``notebooks/ica_run.ipynb`` links to it)
TEMPLATE = Path(str(resources.files("labkit.runners") / "notebooks" / "ica_run.ipynb"))


class Cancelled(BaseException):
    """Raised in the runner when it is told to stop (SIGTERM or Ctrl-C, see :func:`terminate_on_signals`;
    or :meth:`Runner.cancel`)."""


#: why a run stopped by :meth:`Runner.cancel` is cancelled (its status and ``run.log`` say so)
CANCEL_REASON = "cancelled: its runner was stopped (Ctrl-C or SIGTERM)"


class Runner(abc.ABC):
    """Owns start, status, failure and completion; subclasses only execute."""

    #: set by :meth:`cancel`: no run starts any more, and a run that ends while it is set is ``cancelled``
    stopping: bool = False

    def run(self, params: IcaParams, *, run_id: str | None = None, resume: bool = False,
            started: Callable[[RunFolder], None] | None = None) -> RunResult:
        """Run to completion and return the loaded result (failed runs raise :class:`RunFailed`).

        A given ``run_id`` that already names a run is refused (:class:`~labkit.results.folder.RunIdTaken`),
        unless ``resume`` (a retried Job pod): then its partial or failed folder restarts, and
        a complete one is returned as it is. ``started(folder)`` is told as soon as the folder exists
        (``labkit run`` says where the run goes). After :meth:`cancel`, a run not yet begun raises
        :class:`RunCancelled` without making a folder.
        """
        if self.stopping:
            raise RunCancelled("run not started: its runner was stopped")
        params = params.replace(base_dir=os.path.abspath(params.base_dir))  # executors may change cwd
        from labkit.analysis.recording import preflight

        preflight(params)  # every mistake the parameters and the header reveal, before a folder or a kernel exists
        folder = RunFolder.create(params, run_id, resume=resume)
        if folder.complete:
            logger.info("run %s is already complete (%s): not running it again", folder.run_id, folder.path)
            return load_run(folder.path)
        logger.info("run %s: %s", folder.run_id, folder.path)
        try:
            if started is not None:
                started(folder)
            provenance.record_current(params, folder)  # what made it: recording content, versions, image
            checkpoint("queued")
            with folder.runner_heartbeat():  # alive on any host until the kernel takes over, and after
                self._execute(params, folder)
            checkpoint("executed")
        except Cancelled as err:
            _record_failure(folder, {"reason": f"cancelled: {err}", "kind": "cancelled"}, None)
        except BaseException as err:
            if self.stopping:  # its kernel was killed (or it never began) because the caller stops every run
                _record_failure(folder, {"reason": CANCEL_REASON, "kind": "cancelled"}, err)
            else:
                _record_failure(folder, describe_failure(err, folder), err)
        try:
            folder.succeed()
        except OSError as err:
            _record_failure(folder, describe_failure(err, folder), err)
        return load_run(folder.path)

    @abc.abstractmethod
    def _execute(self, params: IcaParams, folder: RunFolder) -> None:
        """Fill ``folder`` (partial) with the run's outputs; raise on failure."""

    def cancel(self) -> None:
        """Stop every run of this runner, from any thread: none starts any more, and each one in progress
        ends recorded as ``cancelled`` (its kernel is killed; see :meth:`_kill_kernels`)."""
        self.stopping = True
        self._kill_kernels()

    def _kill_kernels(self) -> None:
        """Kill the kernels of the runs in progress (subclasses that start kernels do)."""
        return None

    def _check_stopping(self) -> None:
        """Raise :class:`Cancelled` once :meth:`cancel` was called (between a run's steps in the runner)."""
        if self.stopping:
            raise Cancelled("its runner was stopped (Ctrl-C or SIGTERM)")


def _record_failure(folder: RunFolder, failure: dict[str, Any], err: BaseException | None) -> NoReturn:
    """Mark the folder failed (or cancelled, when it was stopped) and raise :class:`RunFailed`
    (:class:`RunCancelled`); says so if even that could not be written."""
    if failure.get("kind") == "cancelled":
        details = {k: v for k, v in failure.items() if k != "reason"}
        folder.finish_cancelled(failure["reason"], **details)  # OutcomeNotRecorded when the disk is full
        reason = failure["reason"]
        said = reason if reason.startswith("cancelled") else f"cancelled: {reason}"
        raise RunCancelled(f"run {said}", folder.path) from err
    folder.fail(**failure)  # raises OutcomeNotRecorded (a RunFailed) when the disk is full
    raise RunFailed(f"run failed: {failure['reason']}", folder.path) from err


def describe_failure(err: BaseException, folder: RunFolder | None = None) -> dict[str, Any]:
    """A reason a researcher can act on, plus the notebook cell when a cell raised or the kernel died in one."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        cell = _code_cell_number(folder, err.cell_index) or err.exec_count
        return {"reason": f"notebook cell {cell} raised {err.ename}: {err.evalue}",
                "cell": cell, "ename": err.ename, "evalue": err.evalue, "kind": "notebook"}
    name = type(err).__name__
    if name == "DeadKernelError":
        cell = _running_cell(folder)
        where = (f" in notebook cell {cell['cell']} ({cell['source']})"
                 + (f", step {cell['step']!r}" if "step" in cell else "")) if cell else ""
        return {"reason": f"the notebook's kernel died{where} (killed, or out of memory)",
                "kind": "infrastructure", **(cell or {})}
    if isinstance(err, KeyboardInterrupt):
        return {"reason": "interrupted", "kind": "cancelled"}
    if isinstance(err, OSError) and err.strerror:
        return {"reason": f"{name}: {err.strerror}" + (f": {err.filename}" if err.filename else ""), "kind": "labkit"}
    return {"reason": f"{name}: {err}", "kind": "labkit"}


def _code_cell_number(folder: RunFolder | None, index: int) -> int | None:
    """Cell ``index`` of the saved notebook as its place among the code cells (1 = the first): what a reader
    counts, where the execution count of a warm kernel (labkit.runners.pool) goes on from the runs before."""
    if folder is None:
        return None
    try:
        import nbformat

        cells = nbformat.read(folder.file(NOTEBOOK_FILE), as_version=4).cells
    except Exception:  # noqa: BLE001 - no notebook saved: the execution count is all there is
        return None
    if not 0 <= index < len(cells) or cells[index].cell_type != "code":
        return None
    return sum(c.cell_type == "code" for c in cells[: index + 1])


def _running_cell(folder: RunFolder | None) -> dict[str, Any] | None:
    """The cell a kernel died in: the last one started in the saved, partially executed notebook."""
    if folder is None:
        return None
    try:
        import nbformat

        nb = nbformat.read(folder.file(NOTEBOOK_FILE), as_version=4)
    except Exception:  # noqa: BLE001 - no notebook saved: the reason stays without the cell
        return None
    code = [c for c in nb.cells if c.cell_type == "code"]
    started = [i for i, c in enumerate(code) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None
    cell = code[started[-1]]
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    step = folder.status.get("step")
    # its place among the code cells, not its execution count (see _code_cell_number)
    return {"cell": started[-1] + 1, "source": first[:80], **({"step": step} if step else {})}


class LocalRunner(Runner):
    """Executes the template with papermill on this machine (the embedded default)."""

    def __init__(self, *, blas_threads: int = 0, kernel_name: str = kernel.HEADLESS, progress_bar: bool = False,
                 template: Path = TEMPLATE) -> None:
        self.blas_threads = blas_threads
        self.kernel_name = kernel_name
        self.progress_bar = progress_bar
        self.template = template
        self.stopping = False
        self._running: set[Any] = set()  # the kernel managers of the runs in progress, for cancel
        self._running_lock = threading.Lock()

    def _execute(self, params: IcaParams, folder: RunFolder) -> None:
        with tempfile.TemporaryDirectory(prefix="labkit-kernel-") as sockets:
            km = kernel.start(self.kernel_name, cwd=folder.path, sockets=sockets)  # boots while papermill imports
            try:
                with self._running_lock:
                    self._running.add(km)
                self._check_stopping()  # cancel came while the kernel started: it was not listed yet
                self._papermill(params, folder, km)
            finally:
                with self._running_lock:
                    self._running.discard(km)
                km.close()  # every file is closed by the last cell: kill it, don't wait for a goodbye

    def _kill_kernels(self) -> None:
        with self._running_lock:
            running = list(self._running)
        for km in running:
            kill_kernel(km)

    def _papermill(self, params: IcaParams, folder: RunFolder, km: Any) -> None:
        """Execute the template into ``folder`` on the started kernel ``km`` (also used by labkit.runners.pool)."""
        import papermill

        # papermill writes in place (a full disk would cut the notebook): a hidden name first, ending in .ipynb
        writing = folder.file(f".{Path(NOTEBOOK_FILE).stem}{TMP_SUFFIX}.ipynb")
        try:
            papermill.execute_notebook(
                str(self.template), str(writing),
                parameters={**params.to_papermill(), "run_dir": str(folder.path), "blas_threads": self.blas_threads},
                km=km,  # the notebook keeps its own kernelspec (python3) for whoever opens it later
                progress_bar=self.progress_bar,
                request_save_on_cell_execute=False,  # one save at the end: ~30 ms less per cell
                engine_name=_keeping_engine(), keep_at=str(writing),
            )  # no cwd=: papermill would only chdir this process; the kernel already runs in the folder
        finally:
            _keep_if_whole(writing, folder.file(NOTEBOOK_FILE))


def _keep_if_whole(written: Path, final: Path) -> None:
    """The executed notebook under its name if papermill wrote all of it; a cut one (a full disk) is removed."""
    import json

    try:
        json.loads(written.read_bytes())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        logger.info("the executed notebook could not be saved whole (%s); none is kept", err)
        written.unlink(missing_ok=True)
        return
    os.replace(written, final)


def _keeping_engine() -> str:
    """The name of labkit's papermill engine (:mod:`labkit.runners.engine`: a notebook cut short is saved as far
    as it ran), which papermill finds through the ``papermill.engine`` entry point of labkit's install."""
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillException

    from labkit.runners.engine import NAME

    try:
        papermill_engines.get_engine(NAME)
    except PapermillException:
        raise LabkitError(f"papermill has no engine {NAME!r}: labkit's install predates its papermill.engine "
                          "entry point; reinstall labkit (pip install -e . in its checkout)") from None
    return NAME


def run(params: IcaParams, **kwargs: Any) -> RunResult:
    """Run one parameter set here with papermill; the Python face of ``labkit run``."""
    return LocalRunner().run(params, **kwargs)


def terminate_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGINT (Ctrl-C) into :class:`Cancelled`, so a stopped ``labkit run`` marks its folder
    cancelled; a second signal during that bookkeeping is ignored, so the folder is never left partial.
    Returns the handlers before, for a caller that outlives the run to put back."""

    def handler(signum: int, frame: Any) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise Cancelled(f"received {signal.Signals(signum).name}")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def kill_kernel(km: Any) -> None:
    """SIGKILL a kernel's process group from any thread; the thread running a notebook on it sees the kernel
    dead within a second (nbclient polls it) and ends, and that thread alone cleans the kernel up."""
    provisioner = getattr(km, "provisioner", None)
    pgid = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
    if not pgid:
        return
    try:
        if pgid == os.getpgrp():  # a kernel in labkit's own process group: kill it alone, never labkit
            os.kill(provisioner.pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone
        pass


class LocalProcess:
    """A ``labkit run`` in a child process: poll its status, tail its log, cancel it."""

    def __init__(self, params: IcaParams, run_id: str | None = None) -> None:
        self.params = params = params.replace(base_dir=os.path.abspath(params.base_dir))
        self.run_id = run_id or new_run_id(params)
        self.folder = RunFolder(params.base_dir, self.run_id)
        # the child's own output (papermill, kernel) goes to a file (a pipe nobody reads would block it)
        # in a private directory (0700, unpredictable name): no other user can read it or plant a symlink
        self._private = tempfile.mkdtemp(prefix="labkit-run-")
        self.output_path = Path(self._private) / "output.txt"
        weakref.finalize(self, shutil.rmtree, self._private, ignore_errors=True)
        with self.output_path.open("x") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "labkit", "run", "--params", "-", "--run-id", self.run_id],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "MPLBACKEND": "Agg"},
            )
        assert self.process.stdin is not None
        self.process.stdin.write(params.to_json())
        self.process.stdin.close()

    @property
    def path(self) -> Path:
        return self.folder.path

    def done(self) -> bool:
        return self.process.poll() is not None

    def state(self) -> str:
        if not self.path.exists():
            return "queued" if not self.done() else "failed"
        return load_run(self.path).state if self.done() else self.folder.status.get("state", "queued")

    def step(self) -> str:
        return str(self.folder.status.get("step", ""))

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.folder.file(LOG_FILE).read_text().splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])

    def output_tail(self, n: int = 20) -> str:
        """The last lines the child printed (useful when it failed before its log existed)."""
        try:
            return "\n".join(self.output_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def cancel(self) -> None:
        """Ask the run to stop; it records itself as ``cancelled`` before exiting."""
        if not self.done():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> RunResult:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabkitError(f"Run {self.run_id} still running after {timeout} s") from None
        deadline = time.monotonic() + 5
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return load_run(self.path)


def start_local(params: IcaParams, *, run_id: str | None = None) -> LocalProcess:
    """Start a run in a child process and return at once."""
    return LocalProcess(params, run_id)

