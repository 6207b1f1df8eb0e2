"""The runs view: the user's runs here and on the cluster, through the runs interface and the shared listing."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W

from labkit.errors import LabkitError
from labkit.results.reading import RunResult
from labkit.runners.backend import Backend, Run
from labkit.runners.listing import list_runs

from .cluster import _cluster, cluster_status
from .common import error_html, esc, state_html
from .results import ResultView

logger = logging.getLogger(__name__)


def run_label(run: Run) -> str:
    """How a run is named in a list: its id (or the cluster and Job name), state and recording."""
    what = f" {Path(run.recording).name}" if run.recording else ""
    if run.backend == "machine":
        return f"{run.run_id} [{run.state}]{what}"
    return f"{run.backend} {run.name} [{run.state}]"


class JobsView(W.VBox):
    """The user's runs here (under ``base_dir``) and on the cluster when one is configured, through the
    runs interface (:mod:`labkit.runners.backend`): state, step, recording, log tail, cancel, open."""

    def __init__(self, base_dir: str | os.PathLike, *, form: Any = None, auto_refresh: float = 0,
                 machine: Backend | None = None, listed: bool = True, **kwargs: Any) -> None:
        from labkit.runners.machine import MachineBackend

        self.base_dir = Path(base_dir)
        self.form = form
        #: the backends shown, by name: this machine always, the cluster (directly or via the hub) when configured
        self.backends: dict[str, Any] = {"machine": machine or MachineBackend(self.base_dir)}
        self.runs: list[Run] = []
        self.table = W.HTML()
        self.select = W.Select(options=[], rows=6, description="Run", layout=W.Layout(width="95%"))
        self.refresh_button = W.Button(description="Refresh", icon="rotate")
        self.log_button = W.Button(description="Log tail", icon="file-lines")
        self.cancel_button = W.Button(description="Cancel", icon="stop")
        self.open_button = W.Button(description="Open results", icon="folder-open")
        self.auto = W.Checkbox(value=bool(auto_refresh), description="Live (every 2 s)", indent=False)
        self.log_area = W.Textarea(value="", rows=8, layout=W.Layout(width="95%"))
        self.log_area.add_class("lk-log")
        self.message = W.HTML()
        self.detail = W.VBox()
        super().__init__([
            W.HBox([self.refresh_button, self.auto]), self.table, self.select,
            W.HBox([self.log_button, self.cancel_button, self.open_button]),
            self.message, self.log_area, self.detail,
        ], **kwargs)
        self.refresh_button.on_click(lambda _: self.refresh())
        self.log_button.on_click(self._on_log)
        self.cancel_button.on_click(self._on_cancel)
        self.open_button.on_click(self._on_open)
        self.auto.observe(self._on_auto, names="value")
        self._stop = threading.Event()
        #: whether the runs have been listed (``listed=False``: at the first :meth:`refresh`, e.g. when its tab opens)
        self.listed = False
        if listed or auto_refresh:
            self.refresh()
        else:
            self.table.value = "<i>The runs are listed when this tab opens (or Refresh).</i>"
        if auto_refresh:
            self._on_auto({"new": True})

    def cluster_backend(self) -> Any:
        """The cluster's runs backend (directly or through the hub), made once; None without a cluster."""
        ok, _reason = cluster_status()
        if ok and "cluster" not in self.backends:
            from labkit.runners.cluster.backend import JobsBackend
            from labkit.runners.hub import HubJobs

            jobs = _cluster()
            self.backends["cluster"] = JobsBackend(jobs, "hub" if isinstance(jobs, HubJobs) else "cluster")
        return self.backends.get("cluster")

    def listing(self) -> list[Run]:
        """My runs, newest first, from the shared listing (this machine's alone when the cluster cannot answer)."""
        machine = self.backends["machine"]
        try:
            cluster = self.cluster_backend()
        except Exception as err:  # noqa: BLE001 - told, and this machine's runs are still listed
            self.message.value = error_html(f"Cluster jobs unavailable: {type(err).__name__}: {err}")
            cluster = None
        try:
            return list_runs(machine, cluster)
        except (OSError, LabkitError) as err:
            self.message.value = error_html(str(err))
        except Exception as err:  # noqa: BLE001 - the cluster failed to answer: this machine's runs alone
            self.message.value = error_html(f"Cluster jobs unavailable: {type(err).__name__}: {err}")
        try:
            return list_runs(machine)
        except (OSError, LabkitError):
            return []

    def refresh(self) -> None:
        self.listed = True
        self.runs = self.listing()
        rows = []
        for r in self.runs:
            where = "local" if r.backend == "machine" else r.backend
            rows.append(f"<tr><td><code>{esc(r.name)}</code></td><td>{esc(Path(r.recording).name)}</td>"
                        f"<td>{state_html(r.state)}</td><td>{esc(r.step)}</td>"
                        f"<td>{esc(r.created)}</td><td>{esc(where)}</td></tr>")
        self.table.value = ("<table><tr><th>run</th><th>recording</th><th>state</th><th>step</th><th>created</th>"
                            "<th>where</th></tr>" + "".join(rows) + "</table>") if rows else \
            "<i>No runs yet under this base directory.</i>"
        current = self.select.value
        options = [(run_label(r), (r.backend if r.backend == "machine" else "cluster", r.name)) for r in self.runs]
        self.select.options = options
        if current in [v for _, v in options]:
            self.select.value = current

    def _selected(self) -> tuple[Any, str] | None:
        """(backend, run name) of the selected run, or None (and a message) when nothing is selected."""
        if not self.select.value:
            self.message.value = error_html("Select a run first")
            return None
        backend, name = self.select.value
        return self.backends[backend], name

    def selected(self) -> RunResult | None:
        chosen = self._selected()
        if chosen is None:
            return None
        try:
            return chosen[0].result(chosen[1])
        except LabkitError:
            return None

    def _act(self, action: Callable[[Any, str], str]) -> None:
        chosen = self._selected()
        if chosen is None:
            return
        try:
            self.message.value = action(*chosen)
        except Exception as err:  # noqa: BLE001 - shown beside the buttons
            self.message.value = error_html(str(err) if isinstance(err, LabkitError) else f"{type(err).__name__}: {err}")

    def _on_log(self, _: Any) -> None:
        def log_tail(backend: Any, name: str) -> str:
            self.log_area.value = "\n".join(backend.log(name, tail=20))
            return f"Log tail of <code>{esc(name)}</code> ({state_html(backend.status(name).state)})"

        self._act(log_tail)

    def _on_cancel(self, _: Any) -> None:
        def cancel(backend: Any, name: str) -> str:
            told = backend.cancel(name)
            return f"Cancelled run <code>{esc(name)}</code> ({esc(told.state)})"

        self._act(cancel)
        self.refresh()

    def _on_open(self, _: Any) -> None:
        def open_(backend: Any, name: str) -> str:
            self.detail.children = (ResultView(backend.result(name)),)
            return ""

        self._act(open_)

    def _on_auto(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._stop.clear()

            def loop() -> None:
                # a thread: "Live" must refresh while the kernel waits for the user; it changes only this table
                while not self._stop.wait(2.0):
                    try:
                        self.refresh()
                    except Exception:  # pragma: no cover
                        logger.exception("jobs refresh failed")

            threading.Thread(target=loop, daemon=True, name="labkit-jobs").start()
        else:
            self._stop.set()
