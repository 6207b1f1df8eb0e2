"""One run's results, made for review: topomaps with an exclude toggle per component beside them, the
scores table, formatted metrics, properties on click, and Save / Apply with progress."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import ipywidgets as W

from labkit.analysis import recording
from labkit.analysis.exclusions import (
    apply_exclusions,
    excluded_components,
    n_components,
    save_exclusions,
    suspect_reasons,
)
from labkit.errors import LabkitError
from labkit.results.layout import NOTEBOOK_FILE, REPORT_FILE
from labkit.results.reading import RunResult

from .common import error_html, esc, figure_png, link, png_image, state_html, warnings_html

#: MNE's default z-score threshold of ``find_bads_eog`` (the ECG correlation threshold is MNE's "auto")
EOG_THRESHOLD = 3.0
#: (file, label, JupyterLab command, the link's title without the extension) of the result's documents
LINKS = (
    (REPORT_FILE, "HTML report", "labkit:open-report", "the run's HTML report (opens in a new browser tab)"),
    (NOTEBOOK_FILE, "executed notebook", "labkit:open-executed-notebook",
     "the executed notebook: opens as a file (its JSON) in a new browser tab, starting no kernel"),
)
#: metric -> (label, unit, format) for the metrics table; anything else is shown as it is
METRICS = {
    "method": ("Method", "", "{}"),
    "n_components": ("Components", "", "{}"),
    "n_channels": ("Channels", "", "{}"),
    "n_samples": ("Samples", "", "{:,}"),
    "fit_time_s": ("Fit time", "s", "{:.1f}"),
    "n_iter": ("Iterations", "", "{}"),
    "converged": ("Converged", "", "{}"),
    "explained_variance": ("Explained variance", "%", "{:.1f}"),
    "eog_suspects": ("EOG suspects", "", "{}"),
    "ecg_suspects": ("ECG suspects", "", "{}"),
    "topomaps_skipped": ("Topomaps skipped", "", "{}"),
}


def format_metric(key: str, value: Any) -> tuple[str, str]:
    """(label, text with its unit) of one metric: ``("Fit time", "2.3 s")``; lists as ``ICA000, ICA004``."""
    label, unit, fmt = METRICS.get(key, (key.replace("_", " ").capitalize(), "", "{}"))
    if isinstance(value, bool):
        return label, "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return label, ", ".join(f"ICA{int(i):03d}" if isinstance(i, int) else str(i) for i in value) or "none"
    if key == "explained_variance" and isinstance(value, (int, float)) and value <= 1:
        value = 100 * value
    try:
        text = fmt.format(value)
    except (ValueError, TypeError):
        text = str(value)
    return label, f"{text} {unit}".strip()


class ResultView(W.VBox):
    """A run's results: its state, warnings once, topomaps with the exclusion cards, metrics, scores, files."""

    def __init__(self, result: RunResult, *, compact: bool = False, **kwargs: Any) -> None:
        self.result = result
        self._raw = None
        self._lock = threading.Lock()
        #: the last Save or Apply in the background (tests and scripts join it)
        self.worker: threading.Thread | None = None
        m = result.metrics
        state = result.outcome
        title = W.HTML(f"<h4 style='margin:4px 0'>Run {esc(result.run_id)}: {state_html(state)}</h4>"
                       + (f"<p>{error_html(result.error)}</p>" if result.error else "")
                       + warnings_html(result.warnings))
        self.topomaps = W.VBox([png_image(p.read_bytes(), title=f"topomaps of the components ({p.name})")
                                for p in result.topomaps],
                               layout=W.Layout(max_width="760px"))
        if m.get("topomaps_skipped"):
            self.topomaps.children += (W.HTML(f"<i>Topomaps skipped: {esc(m['topomaps_skipped'])}</i>"),)
        self.metrics_table = W.HTML(self._metrics_html())
        complete = result.state == "succeeded" and bool(m)
        self.scores_table = W.HTML(self._scores_html() if complete else "")
        children: list[W.Widget] = [title, self.topomaps, self.metrics_table]
        if compact:
            super().__init__(children, **kwargs)
            return
        self.links = W.HTML(self._links_html())
        n = n_components(result) if complete else 0
        self.n_components = n
        self.suspects = suspect_reasons(m)
        marked = set(excluded_components(result)) if complete else set()
        labels = {r["component"]: f"{r['label']} {r['probability']:.2f}"
                  for r in (m.get("labels") or {}).get("labels", [])}
        #: component -> its automatic label and probability ("eye blink 0.99"), when the run labelled them
        self.labels = labels
        #: one exclude toggle per component, each with its label and suspect badge beside it
        self.exclude_boxes = [W.Checkbox(value=i in marked, description=f"Exclude ICA{i:03d}", indent=False,
                                         layout=W.Layout(width="auto")) for i in range(n)]
        cards = [W.VBox([box, W.HTML(self._card_html(i))], layout=W.Layout(width="170px", margin="2px"))
                 for i, box in enumerate(self.exclude_boxes)]
        self.cards = W.GridBox(cards, layout=W.Layout(grid_template_columns="repeat(auto-fill, 175px)",
                                                      max_width="760px"))
        self.component = W.Dropdown(options=[("choose a component", None)] +
                                    [(f"ICA{i:03d}" + (f" [{labels[i]}]" if i in labels else "")
                                      + (f" ({self.suspects[i]} suspect)" if i in self.suspects else ""), i)
                                     for i in range(n)], description="Properties")
        self.properties = W.VBox()
        self.save_button = W.Button(description="Save exclusions", icon="floppy-disk")
        self.apply_button = W.Button(description="Apply (write cleaned recording)", icon="wand-magic-sparkles",
                                     layout=W.Layout(width="auto"))
        self.busy = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="200px", visibility="hidden"))
        self.message = W.HTML()
        self.component.observe(self._on_component, names="value")
        self.save_button.on_click(lambda _: self._in_background("Saving the exclusions…", self._save_message))
        self.apply_button.on_click(lambda _: self._in_background("Applying ICA to the recording…",
                                                                 self._apply_message))
        if not complete:
            for w in (self.save_button, self.apply_button, self.component):
                w.disabled = True
        review = [W.HTML("<b>Exclude components</b> (suspects are pre-marked)"), self.cards,
                  W.HBox([self.save_button, self.apply_button, self.busy]), self.message] if n else []
        children = [title, W.HBox([self.topomaps, W.VBox(review)]) if n else self.topomaps,
                    self.scores_table, self.metrics_table, self.links, W.HBox([self.component]), self.properties]
        super().__init__(children, **kwargs)

    # -- tables ---------------------------------------------------------------------------------------
    def _card_html(self, i: int) -> str:
        parts = []
        if i in self.labels:
            parts.append(f"<span class='lk-hint'>{esc(self.labels[i])}</span>")
        if i in self.suspects:
            parts.append(f"<span class='lk-badge'>{esc(self.suspects[i])} suspect</span>")
        return " ".join(parts) or "<span class='lk-hint'>no label</span>"

    def metrics_frame(self):
        import pandas as pd

        summary = {k: v for k, v in self.result.summary().items() if k != "state"}
        rows = [format_metric(k, v) for k, v in summary.items()]
        return pd.DataFrame({"value": [v for _, v in rows]}, index=[k for k, _ in rows])

    def _metrics_html(self) -> str:
        summary = {k: v for k, v in self.result.summary().items() if k != "state"}
        if not summary:
            return ""
        rows = "".join(f"<tr><th style='text-align:left'>{esc(label)}</th><td>{esc(text)}</td></tr>"
                       for label, text in (format_metric(k, v) for k, v in summary.items()))
        return f"<b>Metrics</b><table>{rows}</table>"

    def _eog_names(self, count: int) -> list[str]:
        """The EOG channels' names from the recording's header, else ``EOG 1``, ``EOG 2``."""
        params = self.result.params
        try:
            raw = recording.read_raw(params.raw_path(), verbose="error")
            names = [raw.ch_names[i] for i, t in enumerate(raw.get_channel_types()) if t == "eog"]
            if len(names) == count:
                return [f"EOG {n}" for n in names]
        except Exception:  # noqa: BLE001 - a missing or moved recording only loses the names
            pass
        return ["EOG"] if count == 1 else [f"EOG {j + 1}" for j in range(count)]

    def score_columns(self) -> tuple[list[str], list[tuple[str, list[float], str]]]:
        """(score columns, rows of (component, scores, suspect reason)), suspects first; no columns when unscored.

        Plain lists, not pandas: the view is built the moment a run ends, and pandas' first import takes
        longer than the whole view (half a second, measured)."""
        m = self.result.metrics
        columns: list[str] = []
        values: list[list[float]] = []
        eog = m.get("eog_scores")
        if eog:
            eog = eog if isinstance(eog[0], (list, tuple)) else [eog]
            columns += self._eog_names(len(eog))
            values += [[float(v) for v in row] for row in eog]
        if m.get("ecg_scores"):
            columns.append("ECG")
            values.append([float(v) for v in m["ecg_scores"]])
        if not columns:
            return [], []
        reasons = suspect_reasons(m)
        rows = [(f"ICA{i:03d}", [col[i] for col in values], reasons.get(i, "")) for i in range(len(values[0]))]
        order = sorted(range(len(rows)), key=lambda i: (not rows[i][2], i))
        return columns, [rows[i] for i in order]

    def scores_frame(self):
        """Component x (EOG channel, ECG) correlation scores, suspects first, or an empty frame when none."""
        import pandas as pd

        columns, rows = self.score_columns()
        if not columns:
            return pd.DataFrame()
        frame = pd.DataFrame([scores for _, scores, _ in rows], columns=columns, index=[n for n, _, _ in rows])
        frame["suspect"] = [why for _, _, why in rows]
        return frame

    def _scores_html(self) -> str:
        columns, rows = self.score_columns()
        if not columns:
            return "<i>The recording has no EOG or ECG channels: components were not scored.</i>"
        head = "".join(f"<th>{esc(c)}</th>" for c in [*columns, "suspect"])
        body = "".join(f"<tr class='{'suspect' if why else ''}'><th>{name}</th>"
                       + "".join(f"<td>{v:+.3f}</td>" for v in scores) + f"<td>{esc(why)}</td></tr>"
                       for name, scores, why in rows)
        return (f"<b>EOG/ECG scores</b> (suspects first; MNE flags EOG scores beyond z = {EOG_THRESHOLD:g} and "
                f"ECG correlations beyond its automatic threshold)<table class='lk-scores labkit-scores'>"
                f"<tr><th>component</th>{head}</tr>" + body + "</table>")

    def _links_html(self) -> str:
        """The report and the executed notebook: the labkit JupyterLab extension opens them in a tab of this
        JupyterLab (rendered, trusted, read-only); without it each opens as a file in a new browser tab."""
        parts = []
        for name, label, command, title in LINKS:
            path = self.result.file(name)
            if path.exists():
                parts.append(link(path, label, title=title, command=command, run_id=self.result.run_id))
        return "<br>".join(parts) or "<i>No report or notebook in the result folder.</i>"

    # -- component properties ---------------------------------------------------------------------------
    def raw(self):
        """The analysed data again (same crop and filter as the fit), read once per view."""
        with self._lock:
            if self._raw is None:
                from labkit.analysis import ica as ica_mod
                params = self.result.params
                if params is None:
                    raise LabkitError(f"Run {self.result.run_id} has no readable params.json")
                raw = ica_mod.load(params, verbose="error")
                ica_mod.preprocess(raw, params, verbose="error")
                recording.ensure_positions(raw, params.channel_type)
                self._raw = raw
            return self._raw

    def properties_png(self, index: int) -> bytes:
        """``ICA.plot_properties`` of one component (topomap, spectrum, time course) as PNG."""
        ica = self.result.read_ica()
        figs = ica.plot_properties(self.raw(), picks=[index], show=False, verbose="error")
        return figure_png(figs[0])

    def _on_component(self, change: dict[str, Any]) -> None:
        index = change["new"]
        if index is None:
            return
        self.properties.children = (W.HTML(f"<i>Computing properties of ICA{index:03d}…</i>"),)

        def work() -> None:
            # a thread: plotting takes seconds; it only replaces this view's own properties box
            try:
                png = self.properties_png(index)
                self.properties.children = (W.HTML(f"<b>ICA{index:03d}</b>"), png_image(png, "700px", title=f"properties of ICA{index:03d}"))
            except Exception as err:  # noqa: BLE001 - shown, never raised into the event loop
                self.properties.children = (W.HTML(error_html(f"{type(err).__name__}: {err}")),)

        threading.Thread(target=work, daemon=True, name="labkit-properties").start()

    # -- exclusions -------------------------------------------------------------------------------------------
    @property
    def excluded(self) -> list[int]:
        return [i for i, box in enumerate(self.exclude_boxes) if box.value]

    def save(self) -> Path:
        return save_exclusions(self.result, self.excluded)

    def apply(self) -> Path:
        """Save the exclusions, then write the whole recording with them removed (``cleaned_raw.fif``)."""
        return apply_exclusions(self.result, self.excluded)

    def _save_message(self) -> str:
        path = self.save()
        return f"Saved {len(self.excluded)} excluded component(s) to {link(path, path.name)}"

    def _apply_message(self) -> str:
        excluded = self.excluded
        path = self.apply()
        names = ", ".join(f"ICA{i:03d}" for i in excluded) or "none"
        return f"Wrote the cleaned recording without components {esc(names)}: {link(path, path.name)}"

    def _in_background(self, doing: str, work: Any) -> threading.Thread:
        """Save or Apply in a thread, so the kernel keeps answering while the files are written.

        The thread changes only this view's buttons, progress and message; both buttons stay off until it ends.
        """
        for b in (self.save_button, self.apply_button):
            b.disabled = True
        self.busy.layout.visibility = "visible"
        self.busy.bar_style, self.busy.value = "info", 0
        self.message.value = f"<i>{esc(doing)}</i>"

        def run() -> None:
            try:
                self.message.value = work()
                self.busy.value, self.busy.bar_style = 1, "success"
            except Exception as err:  # noqa: BLE001 - shown in the view, never raised into the event loop
                self.message.value = error_html(str(err) if isinstance(err, LabkitError)
                                                else f"{type(err).__name__}: {err}")
                self.busy.bar_style = "danger"
            finally:
                for b in (self.save_button, self.apply_button):
                    b.disabled = False

        self.worker = threading.Thread(target=run, daemon=True, name="labkit-exclusions")
        self.worker.start()
        return self.worker
