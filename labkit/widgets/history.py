"""The form's History tab: every run of this form (its own and its sweeps'), by recording; show one, compare two."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import ipywidgets as W

from labkit.results.reading import RunResult

from .common import error_html
from .results import ResultView


def history_label(res: RunResult) -> str:
    """A History entry: run id, state, recording and the settings that tell runs apart."""
    p = res.params
    what = (f"{Path(p.raw_file_path).name} {p.method} n={p.n_components} {p.channel_type} "
            f"{p.filter_fmin:g}-{p.filter_fmax:g} Hz" if p else "?")
    return f"{res.run_id} [{res.outcome}] {what}"


class HistoryPanel(W.VBox):
    """Runs of this form, oldest first; "Show" puts a run's progress, log and results together in the Run view."""

    def __init__(self, form: Any, **kwargs: Any) -> None:
        self.form = form
        self.runs: list[RunResult] = []
        self._lock = threading.Lock()
        self.select = W.Select(options=[], rows=5, description="Runs", layout=W.Layout(width="95%"))
        self.show_button = W.Button(description="Show", icon="eye")
        self.compare_a = W.Dropdown(options=[], description="Left")
        self.compare_b = W.Dropdown(options=[], description="Right")
        self.compare_button = W.Button(description="Compare side by side", icon="table-columns",
                                       layout=W.Layout(width="auto"))
        self.compare_box = W.HBox()
        super().__init__([W.HBox([self.select, self.show_button]),
                          W.HBox([self.compare_a, self.compare_b, self.compare_button]), self.compare_box], **kwargs)
        self.show_button.on_click(self._on_show)
        self.compare_button.on_click(self._on_compare)

    def add(self, result: RunResult) -> None:
        """Add a finished run (a run already listed is replaced by its newer reading)."""
        with self._lock:  # the form's watcher and a sweep's thread may both add
            known = [i for i, r in enumerate(self.runs) if r.run_id == result.run_id]
            if known:
                self.runs[known[0]] = result
            else:
                self.runs.append(result)
            options = [(history_label(r), i) for i, r in enumerate(self.runs)]
            self.select.options = options
            self.compare_a.options = options
            self.compare_b.options = options
            if len(options) >= 2:
                self.compare_a.value, self.compare_b.value = options[-2][1], options[-1][1]

    def _on_show(self, _: Any) -> None:
        if self.select.value is None:
            return
        self.form.show_run(self.runs[self.select.value])

    def _on_compare(self, _: Any) -> None:
        a, b = self.compare_a.value, self.compare_b.value
        if a is None or b is None:
            self.compare_box.children = (W.HTML(error_html("Run at least two sets to compare them")),)
            return
        half = W.Layout(width="50%")
        self.compare_box.children = tuple(ResultView(self.runs[i], compact=True, layout=half) for i in (a, b))
