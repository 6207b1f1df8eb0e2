"""The sweep builder: sets added from the form (a set already in the sweep is refused by name), loaded back
into the form, run here on warm workers (each run reaches History) or submitted to the cluster; and export."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as W

from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.runners.backend import QUEUED, SUCCEEDED, WITH_WARNINGS, Run, run_of

from .cluster import submit_sweep
from .common import POLL_S, error_html, esc, span
from .export import EXPORT_FORMATS, export_sweep, export_text, load_sweep
from .sweeprun import SweepProgress

#: how often a sweep on the cluster is looked at (seconds): each look asks the cluster's API about every Job
CLUSTER_POLL_S = 1.0


def _counts(rows: list[Any]) -> str:
    """How a sweep ended: ``2 succeeded (1 reused); 1 of them with warnings, 1 failed`` (the table has each state)."""
    states = [r.run.state if r.run is not None else QUEUED for r in rows]
    ok = sum(s in (SUCCEEDED, WITH_WARNINGS) for s in states)
    warned = states.count(WITH_WARNINGS)
    parts = [f"{ok} succeeded ({sum(r.note == 'reused' for r in rows)} reused)"
             + (f"; {warned} of them with warnings" if warned else "")]
    parts += [f"{states.count(s)} {s}" for s in dict.fromkeys(states) if s not in (SUCCEEDED, WITH_WARNINGS)]
    return ", ".join(parts)


def set_label(i: int, p: IcaParams) -> str:
    """How a set is named in the sweep: its place, recording, settings and digest (its name in a sweep)."""
    crop = f"{p.crop_tmin:g}-{'end' if p.crop_tmax is None else f'{p.crop_tmax:g}'} s"
    return (f"{i + 1}. {p.raw_file_path.rsplit('/', 1)[-1]} {p.method} n={p.n_components} {p.channel_type} "
            f"crop {crop} {p.filter_fmin:g}-{p.filter_fmax:g} Hz seed {p.random_state} ({p.digest})")


class SweepPanel(W.VBox):
    """The form's "Sweep & export" tab; ``form`` gives the current set, loads a set back and keeps History."""

    def __init__(self, form: Any, *, cluster_available: bool, cluster_reason: str, **kwargs: Any) -> None:
        self.form = form
        self.cluster_available = cluster_available
        #: the sets, in the order they were added (no two with the same digest)
        self.sets: list[IcaParams] = []
        self.table: Any = None  # the last "Run sweep here" table (pandas)
        #: the running or last sweep, one row per set (state, step, link), then its results table
        self.live = SweepProgress()
        #: the thread following the running or last sweep (tests and scripts join it)
        self.watcher: threading.Thread | None = None
        self.select = W.Select(options=[], rows=5, description="Sets", layout=W.Layout(width="95%"))
        self.remove_button = W.Button(description="Remove set", icon="minus")
        self.load_button = W.Button(description="Load into form", icon="arrow-up-from-bracket",
                                    tooltip="put the selected set back into the form")
        self.cluster_button = W.Button(description="Submit sweep to cluster", icon="cloud-arrow-up",
                                       disabled=True, tooltip=cluster_reason, layout=W.Layout(width="auto"))
        self.message = W.HTML()
        self.seeds = W.BoundedIntText(value=1, min=1, max=1000, description="x seeds",
                                      tooltip="run every set with seeds 0..N-1 (random seed)")
        self.run_button = W.Button(description="Run sweep here", icon="play", disabled=True,
                                   tooltip="warm parallel workers; finished sets are reused")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="Sweep")
        self.import_area = W.Textarea(value="", rows=3, placeholder="paste a sweep's JSON here to load it",
                                      layout=W.Layout(width="95%"))
        self.import_button = W.Button(description="Load sweep", icon="file-import")
        self.export_source = W.ToggleButtons(options=["form", "selected set", "whole sweep"], value="form",
                                             description="Export")
        self.export_format = W.Dropdown(options=list(EXPORT_FORMATS), value="json", description="As")
        self.export_area = W.Textarea(value="", rows=10, layout=W.Layout(width="95%"))
        super().__init__([
            W.HBox([self.select, W.VBox([self.load_button, self.remove_button, self.cluster_button])]),
            W.HBox([self.seeds, self.run_button, self.progress]), self.message, self.live,
            W.HBox([self.import_area, self.import_button]),
            W.HBox([self.export_source, self.export_format]), self.export_area,
        ], **kwargs)
        self.remove_button.on_click(self._on_remove)
        self.load_button.on_click(self._on_load)
        self.cluster_button.on_click(self._on_submit)
        self.run_button.on_click(lambda _: self.run_here())
        self.import_button.on_click(self._on_import)
        for w in (self.export_source, self.export_format, self.select):
            w.observe(lambda _: self.update_export(), names="value")

    # -- the sets ----------------------------------------------------------------------------------
    def add(self, params: IcaParams) -> bool:
        """Add a set; one already in the sweep is refused, naming the set it duplicates."""
        for i, p in enumerate(self.sets):
            if p.digest == params.digest:
                self.message.value = error_html(f"Not added: this set is already in the sweep as set {i + 1} "
                                                f"({params.digest}); change a value first.")
                self.select.value = i
                return False
        self.sets.append(params)
        self._update()
        self.select.value = len(self.sets) - 1
        self.message.value = esc(f"Added set {len(self.sets)} ({params.digest}); the sweep has {len(self.sets)} "
                                 f"set{'s' if len(self.sets) > 1 else ''}.")
        return True

    def _on_remove(self, _: Any) -> None:
        if self.select.value is not None:
            del self.sets[self.select.value]
            self._update()

    def _on_load(self, _: Any) -> None:
        if self.select.value is None:
            self.message.value = error_html("Select a set first")
            return
        try:
            self.form.set_params(self.sets[self.select.value])
            self.message.value = esc(f"Set {self.select.value + 1} is in the form.")
        except LabkitError as err:
            self.message.value = error_html(str(err))

    def _on_import(self, _: Any) -> None:
        """Load a pasted sweep: each set is added unless it is already there (then said)."""
        try:
            sets = load_sweep(self.import_area.value)
        except LabkitError as err:
            self.message.value = error_html(str(err))
            return
        known = {p.digest for p in self.sets}
        fresh = [p for p in sets if p.digest not in known]
        for p in fresh:
            known.add(p.digest)
            self.sets.append(p)
        self._update()
        skipped = len(sets) - len(fresh)
        self.message.value = esc(f"Loaded {len(fresh)} set(s)" + (f"; {skipped} already in the sweep" if skipped
                                                                   else "") + ".")

    def _update(self) -> None:
        self.run_button.disabled = not self.sets
        self.cluster_button.disabled = not (self.sets and self.cluster_available)
        self.select.options = [(set_label(i, p), i) for i, p in enumerate(self.sets)]
        self.update_export()

    # -- running ----------------------------------------------------------------------------------------
    def _on_submit(self, _: Any) -> None:
        """The sweep as one submission (identical sets attach, finished ones are reused), then followed live."""
        try:
            backend = self.form.jobs.cluster_backend()
            if backend is None:
                raise LabkitError("no cluster configured")
            sub, lines = submit_sweep(backend.jobs, list(self.sets))
            self.message.value = "Submitted: " + ", ".join(f"<code>{esc(n)}</code>" for n in lines)
        except Exception as err:  # noqa: BLE001 - shown in the tab
            self.message.value = error_html(f"Sweep not submitted: {type(err).__name__}: {err}")
            return
        finally:
            self.form.jobs.refresh()
        told = [run_of(r.existing, backend=backend.name, sweep_id=sub.sweep_id) if r.existing is not None
                else Run(r.run_id, QUEUED, "submitted", backend.name, r.name, sweep_id=sub.sweep_id) for r in sub.runs]
        self.live.start(backend, sub.sweep_id, self.sets, [set_label(i, p) for i, p in enumerate(self.sets)], told)
        self.follow(None)

    def run_here(self) -> threading.Thread:
        """Run the sweep (x seeds) on this machine's warm kernels; the live table follows each set, the results
        table lands in ``table`` and each finished run in History. Returns the thread following it."""
        from labkit.results.layout import new_run_id
        from labkit.runners.pool import PoolRunner, default_workers
        from labkit.study.sweeps import expand, plan, run_sweep

        seeds = self.seeds.value
        sets = [q for p in self.sets for q in (expand(p, seeds=seeds) if seeds > 1 else [p])]
        sweep_id = f"sweep-{new_run_id(sets[0])}"
        self.live.start(self.form.backend, sweep_id, sets, [set_label(i, p) for i, p in enumerate(sets)])
        decided = {d.params.digest: d for d in plan(sets)}
        for i, p in enumerate(sets):
            d = decided.get(p.digest)
            if d is not None and d.existing is not None:
                self.live.reuse(i, d.existing)
        todo = sum(d.action == "run" for d in decided.values())
        runner = PoolRunner(max(1, min(todo, default_workers())), sweep_id=sweep_id)
        outcome: dict[str, Any] = {}

        def sweep() -> None:  # a thread: run_sweep blocks for minutes; it changes no widget (follow() reads outcome)
            try:
                outcome["table"] = run_sweep(sets, runner, workers=runner.workers, progress=False)
            except Exception as err:  # noqa: BLE001 - told by follow(), never raised into the event loop
                outcome["error"] = err
            finally:
                runner.close()

        self.run_button.disabled = True
        self.message.value = esc(f"Running {len(sets)} sets on {runner.workers} warm kernel(s) ...")
        worker = threading.Thread(target=sweep, name="labkit-form-sweep-run", daemon=True)
        worker.start()
        return self.follow(worker, outcome)

    def follow(self, worker: threading.Thread | None, outcome: dict[str, Any] | None = None) -> threading.Thread:
        """Follow the live table until the sweep ends (``worker`` done here, every run final on the cluster).

        A thread: the kernel must keep answering while a sweep runs; it changes only this tab's table,
        progress and message, and adds each finished run to History (which only appends, under its lock).
        """
        live = self.live

        def watch() -> None:
            try:
                while True:
                    ended = worker is not None and not worker.is_alive() or worker is None and live.done
                    for result in live.poll():
                        self.form.add_history(result)
                    finished = sum(r.run is not None and r.run.done for r in live.rows)
                    self.progress.max, self.progress.value = max(1, len(live.rows)), finished
                    if ended:
                        break
                    if worker is not None:
                        worker.join(POLL_S)
                    else:
                        time.sleep(CLUSTER_POLL_S)
                if outcome is not None and "error" in outcome:
                    err = outcome["error"]
                    self.message.value = error_html(f"Sweep failed: {type(err).__name__}: {err}")
                    return
                table = outcome.get("table") if outcome is not None else None
                live.finish(table)
                if table is not None:
                    self.table = table
                for row in live.rows:  # reused results and any the polls missed
                    if row.result is not None:
                        self.form.add_history(row.result)
                self.message.value = esc(_counts(live.rows)) + " " + span("lk-hint", "each run is in History")
            except Exception as err:  # noqa: BLE001 - shown in the tab, never raised into the event loop
                self.message.value = error_html(f"Following the sweep stopped: {type(err).__name__}: {err}")
            finally:
                self.run_button.disabled = not self.sets

        thread = threading.Thread(target=watch, name="labkit-form-sweep", daemon=True)
        self.watcher = thread
        thread.start()
        return thread

    # -- export -------------------------------------------------------------------------------------------
    def update_export(self) -> None:
        source, fmt = self.export_source.value, self.export_format.value
        if source == "whole sweep":
            if not self.sets:
                text = "# the sweep is empty: use 'Add to sweep'"
            elif fmt == "json":
                text = export_sweep(self.sets)
            else:
                text = "\n".join(export_text(p, fmt) + ("\n" if fmt == "env" else "") for p in self.sets)
        elif source == "selected set":
            index = self.select.value
            text = export_text(self.sets[index], fmt) if index is not None else "# select a set in the sweep"
        else:
            params = self.form.current_params()
            text = export_text(params, fmt) if params is not None else \
                "# the form is not valid yet: " + "; ".join(self.form.problems.values())
        self.export_area.value = text
