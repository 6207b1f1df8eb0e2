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
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import LabkitError, RunFailed
from .params import IcaParams

logger = logging.getLogger(__name__)

FOLDER_PREFIX = "PreExperiment_ICA_"
PARTIAL = ".partial"
FAILED = ".failed"
STATES = ("queued", "running", "succeeded", "failed")

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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


class RunFolder:
    """A run's folder on disk and the one place its status changes."""

    def __init__(self, base_dir: str | os.PathLike, run_id: str) -> None:
        if not run_id or "/" in run_id or run_id.startswith(".") or "\x00" in run_id:
            raise LabkitError(f"Invalid run id {run_id!r}: expected a plain name such as 20260101-120000-000-abc123")
        self.base_dir = Path(base_dir)
        self.run_id = run_id

    # -- where ------------------------------------------------------------
    @property
    def name(self) -> str:
        return FOLDER_PREFIX + self.run_id

    @property
    def path(self) -> Path:
        """The folder as it is now: complete, failed or partial (partial if none exists yet)."""
        for suffix in ("", FAILED, PARTIAL):
            candidate = self.base_dir / (self.name + suffix)
            if candidate.is_dir():
                return candidate
        return self.base_dir / (self.name + PARTIAL)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- lifecycle ----------------------------------------------------------
    @classmethod
    def create(cls, params: IcaParams, run_id: str | None = None) -> "RunFolder":
        """Make the partial folder with ``params.json`` and a queued status."""
        folder = cls(params.base_dir, run_id or new_run_id(params))
        folder.path.mkdir(parents=True, exist_ok=True)
        _write_json(folder.file(PARAMS_FILE), {"params": params.to_dict(), "digest": params.digest,
                                               "run_id": folder.run_id})
        if folder.status.get("state") is None:
            folder.set_status("queued", created=now())
        return folder

    @property
    def status(self) -> dict[str, Any]:
        return _read_json(self.file(STATUS_FILE)) or {}

    def set_status(self, state: str, **info: Any) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        status = {**self.status, **info, "state": state, "run_id": self.run_id, "updated": now()}
        _write_json(self.file(STATUS_FILE), status)

    def start(self) -> None:
        self.set_status("running", started=now(), pid=os.getpid(), host=socket.gethostname(), step="start")

    def step(self, name: str) -> None:
        """Record the step in progress, so watchers (widgets, cluster logs) can show it."""
        self.set_status(self.status.get("state", "running"), step=name)

    def fail(self, reason: str, **details: Any) -> None:
        """Mark failed with a reason a researcher can act on and move to the ``.failed`` name."""
        if self.status.get("state") in ("failed", "succeeded") and not self.path.name.endswith(PARTIAL):
            return
        self.set_status("failed", finished=now(), error={"reason": reason, **details})
        logger.error("Run %s failed: %s", self.run_id, reason)
        with contextlib.suppress(OSError), self.file(LOG_FILE).open("a") as log:
            log.write(f"{now()} FAILED: {reason}\n")
        self._rename(FAILED)

    def succeed(self) -> None:
        """Mark succeeded and take the final name; only call when every file is written."""
        missing = [f for f in (PARAMS_FILE, METRICS_FILE, ICA_FILE) if not self.file(f).exists()]
        if missing:
            self.fail("the run ended without writing " + ", ".join(missing))
            raise RunFailed("Run ended incomplete: missing " + ", ".join(missing), self.path)
        self.set_status("succeeded", finished=now(), step="done")
        self._rename("")

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
        except Exception:  # pragma: no cover - logging must never break a run
            self.handleError(record)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunResult:
    """A run as found on disk: status, parameters, metrics and figure paths; shows itself in notebooks."""

    path: Path
    status: dict[str, Any]
    params: IcaParams | None
    metrics: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name[len(FOLDER_PREFIX):].split(".")[0]

    @property
    def state(self) -> str:
        """The trustworthy state: complete only under the final name; a dead 'running' run is failed."""
        state = self.status.get("state", "queued")
        if self.path.name.endswith(PARTIAL) and state == "succeeded":
            return "running"
        if state == "running" and self.status.get("host") == socket.gethostname():
            pid = self.status.get("pid")
            if isinstance(pid, int) and not _pid_alive(pid):
                return "failed"
        return state

    @property
    def error(self) -> str | None:
        if self.state != "failed":
            return None
        err = self.status.get("error") or {}
        return err.get("reason") or "the process running it disappeared (killed?) before finishing"

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
    """Load a result folder (complete, failed or partial) with the same code for local and cluster runs."""
    path = Path(path)
    if not path.is_dir() or not path.name.startswith(FOLDER_PREFIX):
        raise LabkitError(f"{path} is not a labkit result folder ({FOLDER_PREFIX}...)")
    params_doc = _read_json(path / PARAMS_FILE) or {}
    try:
        params = IcaParams.from_dict(params_doc["params"]) if "params" in params_doc else None
    except LabkitError:
        params = None
    return RunResult(path=path, status=_read_json(path / STATUS_FILE) or {}, params=params,
                     metrics=_read_json(path / METRICS_FILE) or {})


def find_run(base_dir: str | os.PathLike, run_id: str) -> RunResult:
    """The run with this id under ``base_dir``, in whatever state it is."""
    folder = RunFolder(base_dir, run_id)
    if not folder.path.is_dir():
        raise LabkitError(f"No result folder for run {run_id!r} under {base_dir}")
    return load_run(folder.path)


def list_runs(base_dir: str | os.PathLike) -> list[RunResult]:
    """Every run folder under ``base_dir``, oldest first."""
    base = Path(base_dir)
    return [load_run(p) for p in sorted(base.glob(FOLDER_PREFIX + "*")) if p.is_dir()]
