"""The result folder: one self-describing directory per run, never mistaken for finished when it is not.

Layout (the prototype's ``PreExperiment_ICA_{timestamp}`` name is kept)::

    PreExperiment_ICA_{run_id}.partial/   while running (status queued/running)
    PreExperiment_ICA_{run_id}.failed/    after a failure (status failed + error)
    PreExperiment_ICA_{run_id}/           complete (status succeeded)

A folder is renamed only once everything in it is written, so a reader that sees
the final name may trust the contents. ``status.json`` is replaced atomically.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from labkit.errors import LabkitError, RunFailed
from labkit.params import RUN_ID_RESERVED_SUFFIXES, IcaParams, check_run_id

logger = logging.getLogger(__name__)

FOLDER_PREFIX = "PreExperiment_ICA_"
PARTIAL, FAILED = RUN_ID_RESERVED_SUFFIXES
STATES = ("queued", "running", "succeeded", "failed")
#: what a reader reports for a folder whose files cannot be read (never written as a state)
DAMAGED = "damaged"
#: where run ids are claimed (one directory per id, made exclusively, never removed)
CLAIMS_DIR = ".labkit/run-ids"
RESERVE_FILE = ".reserve"
#: the runner process's heartbeat, beside the kernel's in status.json (see RunFolder.runner_heartbeat)
RUNNER_BEAT_FILE = ".runner-heartbeat.json"
RESERVE_BYTES = 64 * 1024
TMP_SUFFIX = ".tmp"

LOG_FILE = "run.log"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
NOTEBOOK_FILE = "ica_run.ipynb"
REPORT_FILE = "report.html"
ICA_FILE = "components-ica.fif"
TOPOMAP_GLOB = "topomaps*.png"
COMPONENTS_TSV = "components.tsv"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id(params: IcaParams) -> str:
    """Timestamp (UTC, to the millisecond) plus the set's digest: sortable and unique per run."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{stamp}-{params.digest[:6]}"


def run_id_of(folder_name: str) -> str:
    """The run id in a folder name (``PreExperiment_ICA_{run_id}`` plus ``.partial``/``.failed``)."""
    name = folder_name[len(FOLDER_PREFIX):]
    for suffix in (PARTIAL, FAILED):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _setting(name: str, default: float) -> float:
    """A positive number of seconds from the environment (``LABKIT_HEARTBEAT_S``, ...); else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default


def heartbeat_interval() -> float:
    """Seconds between a working run's heartbeats (``LABKIT_HEARTBEAT_S``, default 5)."""
    return _setting("LABKIT_HEARTBEAT_S", 5.0)


def stale_after() -> float:
    """Seconds without a heartbeat after which a run on another host reads as dead
    (``LABKIT_STALE_S``, default 60; never less than three of the run's own heartbeat intervals)."""
    return _setting("LABKIT_STALE_S", 60.0)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a private temporary file in the same folder, fsync, rename.

    A reader sees the old content or the new one, never a mix or an empty file; on any
    failure (a full disk) the temporary file is removed and the old content stays.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes 0600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Damaged(Exception):
    """A file of a run folder cannot be read as what it should be; the message says why."""


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; None if it does not exist; :class:`Damaged` if it cannot be read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise Damaged(f"{path.name} cannot be read ({err})") from None
    if not text.strip():
        raise Damaged(f"{path.name} is empty (its write was cut short)")
    try:
        return json.loads(text)
    except ValueError as err:
        raise Damaged(f"{path.name} is not valid JSON (truncated?): {err}") from None


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


def _current(bare: Path) -> Path:
    """Where the run folder ``bare`` is now: complete, failed or partial (partial if none exists yet)."""
    for suffix in ("", FAILED, PARTIAL):
        candidate = bare.with_name(bare.name + suffix)
        if candidate.is_dir():
            return candidate
    return bare.with_name(bare.name + PARTIAL)


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
        return _current(self.base_dir / self.name)

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
        write_json(hidden / STATUS_FILE, {"state": "queued", "created": stamp, "attempt": attempt, **owner(),
                                          "run_id": self.run_id, "updated": stamp, "heartbeat": stamp})
        os.rename(hidden, self.base_dir / (self.name + PARTIAL))  # the claim made this name ours alone

    def _take_over(self, params: IcaParams) -> None:
        """A retry of the same run (a Job's next pod): restart the folder, never touch a complete one."""
        found = load_run(self.path) if self._exists() else None
        if found is not None and found.params is not None and found.params.digest != params.digest:
            raise RunIdTaken(f"Run id {self.run_id!r} already names a run of another parameter set "
                             f"({found.path}); not touching it.")
        if found is not None and found.state == "succeeded":
            return  # done already: the caller reports it as it is
        # a live owner on this host (pid check) is never taken over; one on another host is the Job's
        # earlier pod, and Kubernetes starts a replacement pod only once the earlier one has ended
        if found is not None and found.state in ("queued", "running") and found.status.get("host") == socket.gethostname():
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
        self._write_status({"state": "queued", "created": now(), "attempt": attempt, **owner()})

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
            status = _read_json(self.file(STATUS_FILE))
        except Damaged:
            return {}
        return status if isinstance(status, dict) else {}

    def set_status(self, state: str, **info: Any) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        with self._lock:
            self._write_status({**self.status, **info, "state": state})

    def _write_status(self, status: dict[str, Any]) -> None:
        stamp = now()
        write_json(self.file(STATUS_FILE), {**status, "run_id": self.run_id, "updated": stamp, "heartbeat": stamp})

    def start(self) -> None:
        """The process doing the work takes the run over: its pid, host and heartbeats."""
        checkpoint("start")
        self.set_status("running", started=now(), step="start", **owner())
        self._start_heartbeat()

    def step(self, name: str) -> None:
        """Record the step in progress, so watchers (widgets, cluster logs) can show it."""
        self.set_status(self.status.get("state", "running"), step=name)
        checkpoint(name)

    def beat(self) -> None:
        """Refresh the heartbeat: the run's owner still works on it."""
        with self._lock:
            status = self.status
            if status.get("state") in ("queued", "running"):
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
        self.stop_heartbeat()
        if self.status.get("state") in ("failed", "succeeded") and not self.path.name.endswith(PARTIAL):
            return
        logger.info("Run %s failed: %s", self.run_id, reason)  # the caller tells the user; run.log gets a line
        problem: OSError | None = None
        for _ in range(2):
            try:
                self.set_status("failed", finished=now(), error={"reason": reason, **details})
                problem = None
                break
            except OSError as err:
                problem = err
                self._release_reserve()
        self._append_log(f"FAILED: {reason}")
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
        self.set_status("succeeded", finished=now(), step="done")
        self._rename("")

    def _tidy(self) -> None:
        """Remove the reserve and temporary files a killed writer left behind."""
        self._release_reserve()
        for tmp in self.path.glob(".*" + TMP_SUFFIX):
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


def owner() -> dict[str, Any]:
    """Who works on a run: pid and host (checked on the same host) and the heartbeat interval."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat_s": heartbeat_interval()}


def checkpoint(name: str) -> None:
    """Fault injection for tests: ``LABKIT_PAUSE_AT=<name>`` stops this process (SIGSTOP) at that point,
    so a test can kill it there (before the kernel starts, in any step, before the outcome is recorded)."""
    if os.environ.get("LABKIT_PAUSE_AT") == name:
        os.kill(os.getpid(), signal.SIGSTOP)


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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` lives on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal check is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _parse_time(text: Any) -> dt.datetime | None:
    try:
        stamp = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


@dataclass
class RunResult:
    """A run as found on disk: status, parameters, metrics and figure paths; shows itself in notebooks."""

    path: Path
    status: dict[str, Any]
    params: IcaParams | None
    metrics: dict[str, Any]
    #: why files of this folder cannot be read (empty when all is well)
    damage: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return run_id_of(self.path.name)

    @property
    def state(self) -> str:
        """The trustworthy state: complete only under the final name; queued or running only while
        its owner lives; ``damaged`` when its files cannot be read."""
        return self._judge()[0]

    @property
    def warnings(self) -> list[str]:
        """The run's warnings (status.json, else metrics.json): why a success is "with warnings"."""
        found = self.status.get("warnings")
        return list(found if found is not None else self.metrics.get("warnings") or [])

    @property
    def outcome(self) -> str:
        """``succeeded with warnings`` when a succeeded run has warnings; otherwise :attr:`state`."""
        return "succeeded with warnings" if self.state == "succeeded" and self.warnings else self.state

    @property
    def error(self) -> str | None:
        """Why the run failed or is damaged (None otherwise)."""
        return self._judge()[1]

    def _judge(self) -> tuple[str, str | None]:
        if self.damage:
            return DAMAGED, "; ".join(self.damage)
        name = self.path.name
        if not self.status and name.endswith(PARTIAL):  # made by an older labkit, or by hand
            return "failed", "its status was never written (killed while its folder was made?)"
        state = str(self.status.get("state") or "queued")
        if state == "failed":
            err = self.status.get("error") or {}
            return "failed", str(err.get("reason") or "no reason recorded")
        if name.endswith(FAILED):  # failed, but its status could not say so (a full disk)
            return "failed", (f"the run failed while {state} (step {self.status.get('step', 'start')}) and "
                              "could not record why: its status could not be written (disk full?); see run.log")
        if state == "succeeded":
            if name.endswith(PARTIAL):  # about to be renamed, or killed just before
                dead = self._dead()
                return ("failed", f"the run was killed after its last step, before it was marked complete "
                                  f"({dead})") if dead else ("running", None)
            return "succeeded", None
        if not name.endswith(PARTIAL):
            return DAMAGED, f"complete folder with status {state!r}: its status.json is not a finished one"
        dead = self._dead()
        if dead:
            step = self.status.get("step")
            where = ("before its kernel took the run over" if state == "queued"
                     else f"during step {step!r}" if step else "while running")
            return "failed", f"{dead} {where}, before it could record an outcome"
        return state, None

    def _dead(self) -> str | None:
        """Why the owner of a queued/running run is known dead, or None while it may live.

        Same host: its pid. Any host (a cluster pod read on the hub): its heartbeat.
        """
        status = self.status
        pid, host = status.get("pid"), status.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            return None if pid_alive(pid) else f"its process (pid {pid} on {host}) disappeared (killed?)"
        beats = [_parse_time(status.get("heartbeat") or status.get("updated")), self._runner_beat()]
        beat = max((b for b in beats if b is not None), default=None)
        if beat is None:
            return None if pid is None and host is None else "it never reported a heartbeat"
        interval = status.get("heartbeat_s")
        limit = max(stale_after(), 3 * interval if isinstance(interval, (int, float)) else 0)
        if (dt.datetime.now(dt.timezone.utc) - beat).total_seconds() > limit:
            return (f"the run stopped reporting at {beat.isoformat(timespec='seconds')}; "
                    f"its process or pod died (host {host})")
        return None

    def _runner_beat(self) -> dt.datetime | None:
        try:
            found = json.loads(self.file(RUNNER_BEAT_FILE).read_text())
        except (OSError, ValueError):  # none (a run without a runner, or over), or cut: the status decides
            return None
        return _parse_time(found.get("heartbeat")) if isinstance(found, dict) else None

    def owner_text(self) -> str:
        return (f"pid {self.status.get('pid')} on {self.status.get('host')}, "
                f"heartbeat {self.status.get('heartbeat') or self.status.get('updated')}")

    @property
    def topomaps(self) -> list[Path]:
        return sorted(self.path.glob(TOPOMAP_GLOB))

    @property
    def log(self) -> str:
        try:
            return self.file(LOG_FILE).read_text()
        except FileNotFoundError:
            return ""

    def file(self, name: str) -> Path:
        return self.path / name

    def read_ica(self):
        import mne

        return mne.preprocessing.read_ica(self.file(ICA_FILE), verbose="error")

    def _repr_html_(self) -> str:
        import base64

        imgs = "".join(
            f"<img alt='{html.escape(p.name)}' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'/>"
            for p in self.topomaps
        )
        state = html.escape(self.state)
        err = f"<p style='color:#b00'>{html.escape(self.error or '')}</p>" if self.error else ""
        return f"<div><h4>ICA run {html.escape(self.run_id)}: {state}</h4>{err}{self.summary_html()}{imgs}</div>"

    def summary_html(self) -> str:
        """:meth:`summary` as an HTML table: cheap to show inline (no pandas import in the kernel)."""
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(_short(v))}</td></tr>"
            for k, v in self.summary().items()
        )
        return f"<table>{rows}</table>"

    def summary(self) -> dict[str, Any]:
        """The few numbers a researcher looks at first."""
        m = self.metrics
        keys = ("method", "n_components", "fit_time_s", "n_iter", "converged", "explained_variance",
                "n_channels", "n_samples", "eog_suspects", "ecg_suspects", "topomaps_skipped")
        out: dict[str, Any] = {"state": self.state}
        out.update({k: m[k] for k in keys if k in m})
        return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def load_run(path: str | os.PathLike) -> RunResult:
    """Load a result folder (complete, failed or partial) with the same code for local and cluster runs.

    Never raises for what is inside: an unreadable file makes the run ``damaged``, with why.
    """
    path = Path(path)
    if not path.is_dir() or not path.name.startswith(FOLDER_PREFIX):
        raise LabkitError(f"{path} is not a labkit result folder ({FOLDER_PREFIX}...)")
    damage: list[str] = []

    def read(name: str) -> dict[str, Any]:
        try:
            doc = _read_json(path / name)
        except Damaged as err:
            damage.append(str(err))
            return {}
        if doc is not None and not isinstance(doc, dict):
            damage.append(f"{name} holds {type(doc).__name__}, not an object")
            return {}
        return doc or {}

    status, params_doc, metrics = read(STATUS_FILE), read(PARAMS_FILE), read(METRICS_FILE)
    params = None
    if "params" in params_doc:
        try:
            params = IcaParams.from_dict(params_doc["params"])
        except Exception as err:  # noqa: BLE001 - any unreadable set is damage, reported below
            damage.append(f"{PARAMS_FILE} holds no valid parameter set ({err})")
    if not path.name.endswith((PARTIAL, FAILED)) and status.get("state") == "succeeded":
        damage += [f"{name} is missing" for name in (PARAMS_FILE, METRICS_FILE) if not (path / name).is_file()]
    return RunResult(path=path, status=status, params=params, metrics=metrics, damage=damage)


def find_run(base_dir: str | os.PathLike, run_id: str) -> RunResult:
    """The run with this id under ``base_dir``, in whatever state it is."""
    folder = RunFolder(base_dir, run_id)
    if not folder.path.is_dir():
        raise LabkitError(f"No result folder for run {run_id!r} under {base_dir}")
    return load_run(folder.path)


def list_runs(base_dir: str | os.PathLike) -> list[RunResult]:
    """Every run folder under ``base_dir``, oldest first (a folder renamed meanwhile is read under its new name)."""
    base = Path(base_dir)
    found = []
    for run_id in sorted({run_id_of(p.name) for p in base.glob(FOLDER_PREFIX + "*")}):
        with contextlib.suppress(LabkitError):  # gone between the listing and the read
            found.append(load_run(_current(base / (FOLDER_PREFIX + run_id))))
    return found


def write_components_tsv(path: Path, n_components: int, bad: dict[int, str],
                         labels: dict[str, Any] | None = None) -> Path:
    """``components.tsv`` in the MNE-BIDS-Pipeline layout; ``bad`` maps component -> why it is bad.

    With automatic ``labels`` (:mod:`labkit.analysis.labels`), two more columns give each component's
    label and its probability (mne-icalabel's ``ic_type`` in BIDS words).
    """
    by_component = {r["component"]: r for r in (labels or {}).get("labels", [])}
    extra = ["ic_type", "ic_type_probability"] if by_component else []
    rows = ["\t".join(["component", "type", "description", "status", "status_description", *extra])]
    for i in range(n_components):
        status, why = ("bad", bad[i] or "n/a") if i in bad else ("good", "n/a")
        row = [str(i), "ica", "Independent Component", status, why]
        if extra:
            found = by_component.get(i)
            row += [found["label"], f"{found['probability']:.4f}"] if found else ["n/a", "n/a"]
        rows.append("\t".join(row))
    write_text(path, "\n".join(rows) + "\n")  # a cut write never reads back as "no component is bad"
    return path


def read_components_tsv(path: Path) -> list[int] | None:
    """The components marked bad in a ``components.tsv``, or None if there is none."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    header = lines[0].split("\t")
    col, status = header.index("component"), header.index("status")
    return [int(r.split("\t")[col]) for r in lines[1:] if r.strip() and r.split("\t")[status] == "bad"]
