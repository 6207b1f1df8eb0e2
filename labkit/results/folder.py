"""The result folder: one self-describing directory per run, never mistaken for finished when it is not.

:class:`RunFolder` claims a run id, makes the partial folder, records the run's steps and
heartbeats, and finishes it exactly once: succeeded (the final name), failed or cancelled
(the ``.failed`` name, with the reason). See :mod:`labkit.results.layout` for the names and
:mod:`labkit.results.reading` for how a folder is read back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from labkit.errors import LabkitError, RunFailed
from labkit.params import IcaParams, check_run_id
from labkit.results import states
from labkit.results.layout import (
    _UMASK,
    CLAIMS_DIR,
    FAILED,
    FOLDER_PREFIX,
    ICA_FILE,
    LOG_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    PARTIAL,
    RESERVE_BYTES,
    RESERVE_FILE,
    RUNNER_BEAT_FILE,
    STATUS_FILE,
    TMP_SUFFIX,
    Damaged,
    current_path,
    new_run_id,
    now,
    read_json,
    write_json,
)
from labkit.results.liveness import checkpoint, heartbeat_interval, owner
from labkit.results.reading import load_run

logger = logging.getLogger(__name__)


class RunIdTaken(LabkitError):
    """The run id already names a run: run ids are never reused."""


def _claim(path: Path) -> bool:
    """Create ``path`` as a directory, exclusively: True for the one caller that made it.

    ``mkdir`` is atomic on local filesystems and on NFS (the server decides), unlike
    check-then-create; the claim stays, so an id names at most one run ever.
    """
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    return True


class RunFolder:
    """A run's folder on disk and the one place its status changes."""

    def __init__(self, base_dir: str | os.PathLike, run_id: str) -> None:
        check_run_id(run_id)
        self.base_dir = Path(base_dir)
        self.run_id = run_id
        self._lock = threading.Lock()  # one status update at a time in this process (steps, heartbeats)
        self._heart: threading.Event | None = None

    # -- where ------------------------------------------------------------
    @property
    def name(self) -> str:
        return FOLDER_PREFIX + self.run_id

    @property
    def path(self) -> Path:
        """The folder as it is now: complete, failed or partial (partial if none exists yet)."""
        return current_path(self.base_dir / self.name)

    @property
    def complete(self) -> bool:
        return (self.base_dir / self.name).is_dir()

    def file(self, name: str) -> Path:
        return self.path / name

    # -- lifecycle ----------------------------------------------------------
    @classmethod
    def create(cls, params: IcaParams, run_id: str | None = None, *, resume: bool = False) -> "RunFolder":
        """Claim a run id and make its partial folder with ``params.json`` and a queued status.

        Without ``run_id`` a fresh id is made (another one if it is taken). A given id that
        already names a run is refused (:class:`RunIdTaken`), unless ``resume``: a retried
        Job pod with the same ``LABKIT_RUN_ID`` restarts its own partial or failed folder
        (when no live process owns it), and finds a complete one as it is, untouched.
        """
        base = Path(params.base_dir)
        claims = base / CLAIMS_DIR
        try:
            claims.mkdir(parents=True, exist_ok=True)
            if run_id is None:
                run_id = new_run_id(params)
                for n in itertools.count(2):
                    if _claim(claims / run_id):
                        break
                    run_id = f"{new_run_id(params)}-{n}"
                folder = cls(base, run_id)
            else:
                folder = cls(base, run_id)
                if not _claim(claims / run_id) or folder._exists():
                    if not resume:
                        raise RunIdTaken(folder._taken_message())
                    folder._take_over(params)
                    return folder
            folder._begin(params, attempt=1)
        except OSError as err:
            raise LabkitError(f"Cannot create the result folder for run {run_id} under {base}: "
                              f"{err.strerror or err}") from None
        return folder

    def _exists(self) -> bool:
        return any((self.base_dir / (self.name + s)).is_dir() for s in ("", FAILED, PARTIAL))

    def _taken_message(self) -> str:
        where = self.path if self._exists() else "a claim in " + str(self.base_dir / CLAIMS_DIR)
        state = load_run(self.path).state if self.path.is_dir() else "claimed"
        return (f"Run id {self.run_id!r} is already taken ({state}: {where}); a run id names one run only. "
                "Leave --run-id out for a fresh one, or choose another.")

    def _begin(self, params: IcaParams, attempt: int) -> None:
        """Fill a hidden folder, then rename it to the partial name: a visible folder always has
        its params and a status naming its owner, even if the process is killed while making it."""
        hidden = Path(tempfile.mkdtemp(dir=self.base_dir, prefix=f".{self.name}.creating-"))
        os.chmod(hidden, 0o777 & ~_UMASK)
        (hidden / RESERVE_FILE).write_bytes(b"\0" * RESERVE_BYTES)
        write_json(hidden / PARAMS_FILE, {"params": params.to_dict(), "digest": params.digest, "run_id": self.run_id})
        stamp = now()
        write_json(hidden / STATUS_FILE, {"state": states.QUEUED, "created": stamp, "attempt": attempt, **owner(),
                                          "run_id": self.run_id, "updated": stamp, "heartbeat": stamp})
        os.rename(hidden, self.base_dir / (self.name + PARTIAL))  # the claim made this name ours alone

    def _take_over(self, params: IcaParams) -> None:
        """A retry of the same run (a Job's next pod): restart the folder, never touch a complete one."""
        found = load_run(self.path) if self._exists() else None
        if found is not None and found.params is not None and found.params.digest != params.digest:
            raise RunIdTaken(f"Run id {self.run_id!r} already names a run of another parameter set "
                             f"({found.path}); not touching it.")
        if found is not None and found.state == states.SUCCEEDED:
            return  # done already: the caller reports it as it is
        # a live owner on this host (pid check) is never taken over; one on another host is the Job's
        # earlier pod, and Kubernetes starts a replacement pod only once the earlier one has ended
        if found is not None and found.state in states.ACTIVE and found.status.get("host") == socket.gethostname():
            raise RunIdTaken(f"Run {self.run_id!r} is still {found.state} in another process "
                             f"({found.owner_text()}); not starting it twice.")
        attempt = int((found.status.get("attempt") if found else None) or 1) + 1
        if not _claim(self.base_dir / CLAIMS_DIR / self.run_id / f"attempt-{attempt}"):
            raise RunIdTaken(f"Run {self.run_id!r}: another process is already retrying it (attempt {attempt}).")
        if found is None:
            self._begin(params, attempt)
            return
        partial = self.base_dir / (self.name + PARTIAL)
        if found.path != partial:
            os.replace(found.path, partial)
        for child in partial.iterdir():  # the last attempt's figures must not mix with this one's metrics
            if child.name not in (LOG_FILE, STATUS_FILE):  # the old status stays until the new one replaces it
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self._append_log(f"RETRY: attempt {attempt} restarts run {self.run_id} "
                         f"(the last attempt: {found.state}, {found.error or 'no reason recorded'})")
        self._reserve()
        write_json(partial / PARAMS_FILE, {"params": params.to_dict(), "digest": params.digest,
                                           "run_id": self.run_id})
        self._write_status({"state": states.QUEUED, "created": now(), "attempt": attempt, **owner()})

    def _append_log(self, line: str) -> None:
        """One line for ``run.log``, if the disk takes it (never an empty log left behind)."""
        path = self.file(LOG_FILE)
        try:
            with path.open("a") as log:
                log.write(f"{now()} {line}\n")
        except OSError:
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()

    def _reserve(self) -> None:
        """Set aside a little space, freed to record the outcome should the disk fill up."""
        with (self.path / RESERVE_FILE).open("wb") as fh:
            fh.truncate(0)
            fh.write(b"\0" * RESERVE_BYTES)

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self.file(RESERVE_FILE).unlink()

    @property
    def status(self) -> dict[str, Any]:
        try:
            status = read_json(self.file(STATUS_FILE))
        except Damaged:
            return {}
        return status if isinstance(status, dict) else {}

    def set_status(self, state: str, **info: Any) -> None:
        """Replace the status with ``state`` (one of :data:`~labkit.results.states.STATES`) and ``info``.

        Only records: finishing a run (its name, its reserve) is :meth:`succeed`, :meth:`fail` or
        :meth:`finish_cancelled`.
        """
        states.check_state(state)
        with self._lock:
            self._write_status({**self.status, **info, "state": state})

    def _write_status(self, status: dict[str, Any]) -> None:
        stamp = now()
        write_json(self.file(STATUS_FILE), {**status, "run_id": self.run_id, "updated": stamp, "heartbeat": stamp})

    def start(self) -> None:
        """The process doing the work takes the run over: its pid, host and heartbeats."""
        checkpoint("start")
        self.set_status(states.RUNNING, started=now(), step="start", **owner())
        self._start_heartbeat()

    def step(self, name: str) -> None:
        """Record the step in progress, so watchers (widgets, cluster logs) can show it."""
        self.set_status(self.status.get("state", states.RUNNING), step=name)
        checkpoint(name)

    def beat(self) -> None:
        """Refresh the heartbeat: the run's owner still works on it."""
        with self._lock:
            status = self.status
            if status.get("state") in states.ACTIVE:
                self._write_status(status)

    def _start_heartbeat(self) -> None:
        if self._heart is None:
            self._heart = self._keep_beating("heartbeat", self.beat)[0]

    def _keep_beating(self, name: str, write: Callable[[], None]) -> tuple[threading.Event, threading.Thread]:
        """Call ``write`` every heartbeat interval from a daemon thread until the returned event is set."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat_interval()):
                try:
                    write()
                except OSError:  # a full disk or a vanished folder: try again next time
                    if not self.path.is_dir():
                        return

        thread = threading.Thread(target=beat, name=f"labkit-{name}-{self.run_id}", daemon=True)
        thread.start()
        return stop, thread

    @contextlib.contextmanager
    def runner_heartbeat(self) -> Iterator[None]:
        """Beat from the runner while the block executes the run, in its own file (no status.json rewrite races
        the kernel's). On a Job's pod the runner outlives its kernel, so the run reads alive on the hub from
        creation on, however long the kernel takes to start and take the run over."""

        def write() -> None:
            write_json(self.file(RUNNER_BEAT_FILE), {"heartbeat": now(), **owner()})

        with contextlib.suppress(OSError):
            write()
        stop, thread = self._keep_beating("runner-heartbeat", write)
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(OSError):
                self.file(RUNNER_BEAT_FILE).unlink()

    def stop_heartbeat(self) -> None:
        """Stop refreshing the heartbeat (the work is over; the owner records the outcome)."""
        if self._heart is not None:
            self._heart.set()
            self._heart = None
        with self._lock:  # wait for a heartbeat being written
            pass

    def fail(self, reason: str, **details: Any) -> None:
        """Mark failed with a reason a researcher can act on and move to the ``.failed`` name.

        On a full disk the reserve is given up to record the reason; if even that fails
        the folder still takes the ``.failed`` name and :class:`OutcomeNotRecorded` says why.
        """
        self._finish_stopped(states.FAILED, reason, details)

    def finish_cancelled(self, reason: str, **details: Any) -> None:
        """Mark cancelled (someone stopped it: a cancel, an interrupt, a deleted Job) with why, finished as a
        failure is: the ``.failed`` name, never read as a result, rerun by a resumed sweep.

        Raises :class:`OutcomeNotRecorded` as :meth:`fail` does when the status cannot be written.
        """
        self._finish_stopped(states.CANCELLED, reason, details)

    def _finish_stopped(self, state: str, reason: str, details: dict[str, Any]) -> None:
        """Record a run that ended without a result, once: a folder already finished under its name stays as it is."""
        self.stop_heartbeat()
        if self.status.get("state") in states.FINISHED and not self.path.name.endswith(PARTIAL):
            return
        logger.info("Run %s %s: %s", self.run_id, state, reason)  # the caller tells the user; run.log gets a line
        problem: OSError | None = None
        for _ in range(2):
            try:
                self.set_status(state, finished=now(), error={"reason": reason, **details})
                problem = None
                break
            except OSError as err:
                problem = err
                self._release_reserve()
        self._append_log(f"{state.upper()}: {reason}")
        self._tidy()
        self._rename(FAILED)
        if problem is not None:
            raise OutcomeNotRecorded(f"{reason}; and its status could not be written ({problem.strerror or problem})",
                                     self.path)

    def succeed(self) -> None:
        """Mark succeeded and take the final name; only call when every file is written."""
        self.stop_heartbeat()
        missing = [f for f in (PARAMS_FILE, METRICS_FILE, ICA_FILE) if not self.file(f).exists()]
        if missing:
            self.fail("the run ended without writing " + ", ".join(missing))
            raise RunFailed("Run ended incomplete: missing " + ", ".join(missing), self.path)
        self._tidy()
        self.set_status(states.SUCCEEDED, finished=now(), step="done")
        self._rename("")

    def _tidy(self) -> None:
        """Remove the reserve and temporary files a killed writer left behind."""
        self._release_reserve()
        for tmp in self.path.glob(f".*{TMP_SUFFIX}*"):  # ".x.tmp", and the notebook's ".ica_run.tmp.ipynb"
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _rename(self, suffix: str) -> None:
        current = self.path
        target = self.base_dir / (self.name + suffix)
        if current != target and current.exists():
            os.replace(current, target)

    @contextlib.contextmanager
    def logging_to_file(self, level: int = logging.INFO) -> Iterator[Path]:
        """Send labkit's and MNE's log records to ``run.log`` for the duration of the block."""
        log_path = self.file(LOG_FILE)
        handler = _FollowingFileHandler(self, level)
        loggers = [logging.getLogger("labkit"), logging.getLogger("mne")]
        for lg in loggers:
            lg.addHandler(handler)
            if lg.level == logging.NOTSET or lg.level > level:
                lg.setLevel(level)
        try:
            yield log_path
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
            handler.close()


class OutcomeNotRecorded(RunFailed):
    """A run failed and its status could not be written either (a full disk); the folder is ``.failed``."""


class _FollowingFileHandler(logging.Handler):
    """Appends to the folder's ``run.log`` wherever the folder has been renamed to."""

    def __init__(self, folder: RunFolder, level: int) -> None:
        super().__init__(level)
        self.folder = folder
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self.folder.file(LOG_FILE).open("a") as fh:
                fh.write(self.format(record) + "\n")
        except OSError:  # a full disk or a vanished folder: the run goes on, its outcome says why
            pass
        except Exception:  # pragma: no cover - logging must never break a run
            self.handleError(record)
