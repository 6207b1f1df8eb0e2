"""The sweep builder: sets added from the form (a set already in the sweep is refused by name), loaded back
into the form, run here on warm workers (each run reaches History) or submitted to the cluster; and export."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as W

from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.results.reading import load_run

from .cluster import _cluster_submit_sweep
from .common import error_html, esc, span
from .export import EXPORT_FORMATS, export_sweep, export_text, load_sweep


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
            W.HBox([self.seeds, self.run_button, self.progress]), self.message,
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
        """The sweep as one submission (identical sets attach, finished ones are reused)."""
        try:
            names = _cluster_submit_sweep(list(self.sets))
            self.message.value = "Submitted: " + ", ".join(f"<code>{esc(n)}</code>" for n in names)
        except Exception as err:  # noqa: BLE001 - shown in the tab
            self.message.value = error_html(f"Sweep not submitted: {type(err).__name__}: {err}")
        self.form.jobs.refresh()

    def run_here(self) -> threading.Thread:
        """Run the sweep (x seeds) on this machine; the table lands in ``table``, each run in History.

        A thread: a sweep takes minutes and the kernel must keep answering; it changes only this tab's
        progress and message, and adds each finished run to History (a list the form only appends to).
        """
        from labkit.study.sweeps import expand, run_sweep

        seeds = self.seeds.value
        sets = [q for p in self.sets for q in (expand(p, seeds=seeds) if seeds > 1 else [p])]
        self.run_button.disabled = True
        self.progress.value, self.progress.max = 0, max(1, len(sets))
        self.message.value = f"Running {len(sets)} sets ..."

        def on_row(row: dict[str, Any], done: int, total: int) -> None:
            self.progress.max, self.progress.value = max(1, total), done
            self._to_history(row)

        def work() -> None:
            try:
                self.table = table = run_sweep(sets, progress=False, on_row=on_row)
                for row in table.to_dict("records"):
                    if row.get("action") == "reused":
                        self._to_history(row)
                counts = table["state"].value_counts().to_dict()
                reused = int((table["action"] == "reused").sum())
                self.message.value = esc(", ".join(f"{n} {state}" for state, n in counts.items())
                                         + f" ({reused} reused)") + " " + span("lk-hint", "each run is in History")
            except Exception as err:  # noqa: BLE001 - shown in the form, never raised into the event loop
                self.message.value = error_html(f"Sweep failed: {type(err).__name__}: {err}")
            finally:
                self.run_button.disabled = not self.sets

        thread = threading.Thread(target=work, name="labkit-form-sweep", daemon=True)
        thread.start()
        return thread

    def _to_history(self, row: dict[str, Any]) -> None:
        try:
            self.form.add_history(load_run(row["path"]))
        except (KeyError, OSError, LabkitError):
            pass

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
