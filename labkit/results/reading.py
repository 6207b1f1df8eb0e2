"""Reading run folders: what a folder holds and the one judge of the state it is really in.

The same code reads a local and a cluster run's folder. A reader trusts a folder's state
only as far as its name and its owner's liveness allow (:attr:`RunResult.state`): complete
only under the final name, queued or running only while its owner lives, ``damaged`` when
its files cannot be read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError
from labkit.params import IcaParams, check_run_id
from labkit.results import states
from labkit.results.layout import (
    FAILED,
    FOLDER_PREFIX,
    ICA_FILE,
    LOG_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    PARTIAL,
    RUNNER_BEAT_FILE,
    STATUS_FILE,
    TOPOMAP_GLOB,
    Damaged,
    component_map,
    current_path,
    read_json,
    run_id_of,
)
from labkit.results.liveness import parse_time, pid_alive, stale_after


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
        """The trustworthy state, one of :data:`~labkit.results.states.STATES` or ``damaged``: complete only
        under the final name; queued or running only while its owner lives; ``damaged`` when its files cannot
        be read."""
        return self._judge()[0]

    @property
    def warnings(self) -> list[str]:
        """The run's warnings (status.json, else metrics.json): why a success is "with warnings"."""
        found = self.status.get("warnings")
        return list(found if found is not None else self.metrics.get("warnings") or [])

    @property
    def outcome(self) -> str:
        """``succeeded with warnings`` when a succeeded run has warnings; otherwise :attr:`state`."""
        return states.display_state(self.state, self.warnings)

    @property
    def error(self) -> str | None:
        """Why the run failed, was cancelled or is damaged (None otherwise)."""
        return self._judge()[1]

    def _judge(self) -> tuple[str, str | None]:
        if self.damage:
            return states.DAMAGED, "; ".join(self.damage)
        name = self.path.name
        if not self.status and name.endswith(PARTIAL):  # made by an older labkit, or by hand
            return states.FAILED, "its status was never written (killed while its folder was made?)"
        state = str(self.status.get("state") or states.QUEUED)
        if state in states.STOPPED:
            err = self.status.get("error") or {}
            if state == states.FAILED and err.get("kind") == "cancelled":
                state = states.CANCELLED  # written by a labkit without the cancelled state
            return state, str(err.get("reason") or "no reason recorded")
        if state not in states.STATES:
            return states.DAMAGED, (f"{STATUS_FILE} holds the state {state!r}, not one of "
                                    + ", ".join(states.STATES))
        if name.endswith(FAILED):  # failed, but its status could not say so (a full disk)
            return states.FAILED, (f"the run failed while {state} (step {self.status.get('step', 'start')}) and "
                                   "could not record why: its status could not be written (disk full?); see run.log")
        if state == states.SUCCEEDED:
            if name.endswith(PARTIAL):  # about to be renamed, or killed just before
                dead = self._dead()
                return (states.FAILED, f"the run was killed after its last step, before it was marked complete "
                                       f"({dead})") if dead else (states.RUNNING, None)
            return states.SUCCEEDED, None
        if not name.endswith(PARTIAL):
            return states.DAMAGED, f"complete folder with status {state!r}: its status.json is not a finished one"
        dead = self._dead()
        if dead:
            step = self.status.get("step")
            where = ("before its kernel took the run over" if state == states.QUEUED
                     else f"during step {step!r}" if step else "while running")
            return states.FAILED, f"{dead} {where}, before it could record an outcome"
        return state, None

    def _dead(self) -> str | None:
        """Why the owner of a queued/running run is known dead, or None while it may live.

        Same host: its pid. Any host (a cluster pod read on the hub): its heartbeat.
        """
        status = self.status
        pid, host = status.get("pid"), status.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            if pid_alive(pid) or self._moved_on():
                return None
            return f"its process (pid {pid} on {host}) disappeared (killed?)"
        beats = [parse_time(status.get("heartbeat") or status.get("updated")), self._runner_beat()]
        beat = max((b for b in beats if b is not None), default=None)
        if beat is None:
            return None if pid is None and host is None else "it never reported a heartbeat"
        interval = status.get("heartbeat_s")
        limit = max(stale_after(), 3 * interval if isinstance(interval, (int, float)) else 0)
        if (dt.datetime.now(dt.timezone.utc) - beat).total_seconds() > limit:
            return (f"the run stopped reporting at {beat.isoformat(timespec='seconds')}; "
                    f"its process or pod died (host {host})")
        return None

    def _moved_on(self) -> bool:
        """Whether the run wrote its outcome (or was renamed complete) after this status was read: an owner
        that records success and exits at once is then finished, not dead; the next read shows the outcome."""
        try:
            return read_json(self.path / STATUS_FILE) != self.status
        except Damaged:
            return False

    def _runner_beat(self) -> dt.datetime | None:
        try:
            found = json.loads(self.file(RUNNER_BEAT_FILE).read_text())
        except (OSError, ValueError):  # none (a run without a runner, or over), or cut: the status decides
            return None
        return parse_time(found.get("heartbeat")) if isinstance(found, dict) else None

    def owner_text(self) -> str:
        return (f"pid {self.status.get('pid')} on {self.status.get('host')}, "
                f"heartbeat {self.status.get('heartbeat') or self.status.get('updated')}")

    @property
    def topomaps(self) -> list[Path]:
        return sorted(self.path.glob(TOPOMAP_GLOB))

    def component_map(self, component: int) -> Path | None:
        """One component's own map as the run drew it (None for a run without them: an older one, or no positions)."""
        path = self.path / component_map(component)
        return path if path.is_file() else None

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
            doc = read_json(path / name)
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
    if not path.name.endswith((PARTIAL, FAILED)) and status.get("state") == states.SUCCEEDED:
        damage += [f"{name} is missing" for name in (PARAMS_FILE, METRICS_FILE) if not (path / name).is_file()]
    return RunResult(path=path, status=status, params=params, metrics=metrics, damage=damage)


def find_run(base_dir: str | os.PathLike, run_id: str) -> RunResult:
    """The run with this id under ``base_dir``, in whatever state it is."""
    check_run_id(run_id)
    path = current_path(Path(base_dir) / (FOLDER_PREFIX + run_id))
    if not path.is_dir():
        raise LabkitError(f"No result folder for run {run_id!r} under {base_dir}")
    return load_run(path)


def list_runs(base_dir: str | os.PathLike) -> list[RunResult]:
    """Every run folder under ``base_dir``, oldest first (a folder renamed meanwhile is read under its new name)."""
    base = Path(base_dir)
    found = []
    for run_id in sorted({run_id_of(p.name) for p in base.glob(FOLDER_PREFIX + "*")}):
        with contextlib.suppress(LabkitError):  # gone between the listing and the read
            found.append(load_run(current_path(base / (FOLDER_PREFIX + run_id))))
    return found
