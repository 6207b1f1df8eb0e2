"""The notebook face: a form that builds ICA parameter sets, runs them and shows their results inline.

Everything here is an ipywidgets 8 container driven through its models (set a
control's ``.value``, call a button's ``.click()``), so tests need no browser:

* :class:`RecordingBrowser` - pick a recording inside ``base_dir`` (never outside it);
* :class:`IcaForm` - the form: header-bound controls, validation next to each control,
  Run here / Submit to cluster / Add to sweep, progress, results, history, export;
* :class:`ResultView` - one run's topomaps, component properties, metrics, scores,
  exclusions (``components.tsv``) and "apply" (``cleaned_raw.fif``);
* :class:`JobsView` - the user's runs (and cluster jobs) with status, log tail, cancel, open.

Slow work (runs, property plots) happens in background threads that only set widget
traits, so the notebook stays responsive.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import os
import shlex
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import traitlets
from IPython.display import HTML, clear_output, display

from labkit.analysis import recording
from labkit.analysis.exclusions import (
    apply_exclusions,
    excluded_components,
    n_components,
    save_exclusions,
    suspect_reasons,
)
from labkit.errors import LabkitError, ParameterError
from labkit.params import (
    CHANNEL_TYPES,
    FIELD_BY_NAME,
    METHODS,
    IcaParams,
    coerce_values,
)
from labkit.results.layout import LOG_FILE, NOTEBOOK_FILE, REPORT_FILE
from labkit.results.reading import RunResult
from labkit.schema import check_draft

logger = logging.getLogger(__name__)

#: where papermill finds the run template, for exported command lines
PAPERMILL_TEMPLATE = "notebooks/ica_run.ipynb"
EXPORT_FORMATS = ("json", "env", "labkit run", "papermill")
POLL_S = 0.5
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(IcaParams)}
_ERR_STYLE = "color:#b00020;font-size:90%"


#: the steps of a run, for the progress bar (mirrors labkit.analysis.ica.STEPS; checked in tests)
STEPS = ("load", "filter", "fit", "score", "plot", "label", "report")


# -- export -------------------------------------------------------------------------------------------
def _papermill_text(value: Any) -> str:
    # papermill -p resolves True/False/None and numbers from text; everything else stays a string
    return repr(value) if value is None or isinstance(value, bool) else str(value)


def export_text(params: IcaParams, fmt: str) -> str:
    """One parameter set as JSON, env assignments, a ``labkit run`` or a papermill command line."""
    if fmt == "json":
        return params.to_json()
    if fmt == "env":
        return "\n".join(f"{k}={shlex.quote(v)}" for k, v in params.to_env().items())
    if fmt == "labkit run":
        return shlex.join(["labkit", "run", *params.to_cli_args()])
    if fmt == "papermill":
        args = ["papermill", PAPERMILL_TEMPLATE, f"ica_run_{params.digest}.ipynb"]
        for key, value in params.to_papermill().items():
            args += ["-p", key, _papermill_text(value)]
        return shlex.join(args)
    raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")


def export_sweep(sets: list[IcaParams]) -> str:
    """A sweep as a JSON list of parameter sets (each loads back with ``IcaParams.from_dict``)."""
    return json.dumps([p.to_dict() for p in sets], indent=2, sort_keys=True)


# -- cluster (optional) ---------------------------------------------------------------------------------
def cluster_status() -> tuple[bool, str]:
    """Whether cluster submission is possible here (the hub's labkit service, or cluster settings),
    and a one-line reason when it is not."""
    if not os.environ.get("LABKIT_CLUSTER_CONFIG") and not os.environ.get("LABKIT_HUB_SERVICE_URL"):
        return False, ("No cluster configured (LABKIT_CLUSTER_CONFIG is not set, and no labkit hub service "
                       "in LABKIT_HUB_SERVICE_URL).")
    try:
        from labkit.runners.cluster.jobs import ClusterJobs  # noqa: F401
    except Exception as err:  # missing module or missing kubernetes client
        return False, f"Cluster support unavailable: {type(err).__name__}: {err}"
    return True, ""


def _cluster() -> Any:
    """The user's :class:`labkit.runners.cluster.jobs.ClusterJobs` (settings from ``LABKIT_CLUSTER_CONFIG``)."""
    from labkit.runners.hub import cluster_jobs

    return cluster_jobs()


def _describe_submission(sub: Any) -> str:
    """One line per run: a new Job, an identical Job attached to, or a finished result reused."""
    if sub.existing is not None:
        return f"{sub.run_id} (already done: {sub.existing.path.name})"
    return f"{sub.name} (attached to the identical job already submitted)" if sub.attached else sub.name


def _cluster_submit(params: IcaParams) -> str:
    return _describe_submission(_cluster().submit(params))


def _cluster_submit_sweep(sets: list[IcaParams]) -> list[str]:
    """The whole sweep at once: a Volcano Job when the scheduler is Volcano, else one Job per set."""
    return [_describe_submission(sub) for sub in _cluster().submit_sweep(sets).runs]


# -- helpers ------------------------------------------------------------------------------------------
def _png_image(data: bytes, width: str = "100%") -> W.Image:
    return W.Image(value=data, format="png", layout=W.Layout(max_width=width, height="auto"))


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _error_html(message: str) -> str:
    return f"<span style='{_ERR_STYLE}'>{html.escape(message)}</span>" if message else ""


def _href(path: Path) -> str:
    """``path`` relative to the kernel's cwd (the notebook's folder).

    JupyterLab resolves it against the notebook's page (``<base>/lab/tree/<folder>/``), so the
    link opens the report or executed notebook in a JupyterLab tab; elsewhere it is a plain path.
    """
    return "/".join(Path(os.path.relpath(path, os.getcwd())).parts)


def _link(path: Path, label: str) -> str:
    """A link a JupyterLab page can follow (opens in a new tab), with the file's full path."""
    try:
        href = _href(path)
    except ValueError:
        href = str(path)
    return (f"<a href='{html.escape(href)}' target='_blank' rel='noopener'>{html.escape(label)}</a> "
            f"<code style='font-size:80%'>{html.escape(str(path))}</code>")


def _warnings_html(warnings: list[str]) -> str:
    """A run's warnings as a list (why it is "succeeded with warnings"), or nothing."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return f"<div class='labkit-warnings' style='color:#8a4b00'><b>Warnings</b><ul>{items}</ul></div>"


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# -- the file chooser -------------------------------------------------------------------------------------
class RecordingBrowser(W.VBox):
    """Browse ``base_dir`` for recordings: only readable formats, only inside it (symlinks included).

    Pick an entry in :attr:`select`: a folder opens it, a file chooses it and sets
    :attr:`value` (the path relative to ``base_dir``); ``observe(..., names="value")``.
    """

    UP = "⬆ .."
    #: the chosen recording, relative to base_dir ("" until one is chosen)
    value = traitlets.Unicode("")

    def __init__(self, base_dir: str | os.PathLike, **kwargs: Any) -> None:
        self.base = Path(base_dir).resolve()
        self.cwd = self.base
        self.where = W.HTML()
        self.select = W.Select(options=[], rows=8, layout=W.Layout(width="95%"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh", layout=W.Layout(width="auto"))
        self.chosen = W.HTML()
        self._paths: dict[str, Path] = {}
        self._browsing = False
        super().__init__([W.HBox([self.where, self.refresh_button]), self.select, self.chosen], **kwargs)
        self.select.observe(self._on_select, names="value")
        self.refresh_button.on_click(lambda _: self.browse(self.cwd))
        self.browse(self.base)

    def inside(self, path: Path) -> Path | None:
        """``path`` resolved, or None when it (or a symlink on the way) leaves ``base_dir``."""
        try:
            real = path.resolve()
            real.relative_to(self.base)
        except (OSError, ValueError, RuntimeError):
            return None
        return real

    def entries(self, folder: Path) -> dict[str, Path]:
        """Label -> path for the folders and recordings directly in ``folder``."""
        out: dict[str, Path] = {}
        if folder != self.base:
            out[self.UP] = folder.parent
        try:
            children = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError:
            return out
        for child in children:
            if child.name.startswith("."):
                continue
            real = self.inside(child)
            if real is None:
                continue
            if recording.is_recording(child):
                out[f"📄 {child.name}"] = child
            elif real.is_dir():
                out[f"📁 {child.name}/"] = child
        return out

    def browse(self, folder: Path) -> None:
        real = self.inside(folder)
        if real is None or not real.is_dir():
            real = self.base
        self.cwd = real
        self._paths = self.entries(real)
        rel = real.relative_to(self.base).as_posix()
        self.where.value = f"<b>{html.escape(str(self.base))}</b>/{html.escape('' if rel == '.' else rel)}"
        self._browsing = True
        try:
            self.select.options = list(self._paths)
            self.select.value = None
        finally:
            self._browsing = False

    def choose(self, rel_path: str) -> None:
        """Choose a recording by its path relative to ``base_dir`` (opens its folder)."""
        path = self.base / rel_path
        real = self.inside(path)
        if real is None or not recording.is_recording(path):
            raise ParameterError("raw_file_path", rel_path, f"a recording file inside base_dir {str(self.base)!r}")
        self.browse(path.parent)
        self.select.value = f"📄 {path.name}"

    def _on_select(self, change: dict[str, Any]) -> None:
        label = change["new"]
        if label is None or self._browsing:
            return
        path = self._paths[label]
        if label == self.UP or label.startswith("📁"):
            self.browse(path)
            return
        real = self.inside(path)
        if real is None:  # changed on disk since listing
            self.browse(self.cwd)
            return
        rel = path.relative_to(self.base).as_posix() if path.is_relative_to(self.base) else \
            real.relative_to(self.base).as_posix()
        self.chosen.value = f"Recording: <code>{html.escape(rel)}</code>"
        self.value = rel


# -- one run's results ----------------------------------------------------------------------------------------
class ResultView(W.VBox):
    """A run's results: topomaps, per-component properties, metrics, scores, exclusions and apply."""

    def __init__(self, result: RunResult, *, compact: bool = False, **kwargs: Any) -> None:
        self.result = result
        self._raw = None
        self._lock = threading.Lock()
        m = result.metrics
        title = W.HTML(f"<h4 style='margin:4px 0'>Run {html.escape(result.run_id)}: {html.escape(result.outcome)}</h4>"
                       + (f"<p style='{_ERR_STYLE}'>{html.escape(result.error)}</p>" if result.error else "")
                       + _warnings_html(result.warnings))
        self.topomaps = W.VBox([_png_image(p.read_bytes()) for p in result.topomaps])
        if m.get("topomaps_skipped"):
            self.topomaps.children += (W.HTML(f"<i>Topomaps skipped: {html.escape(str(m['topomaps_skipped']))}</i>"),)
        self.metrics_table = W.HTML(self._metrics_html())
        self.scores_table = W.HTML(self._scores_html())
        children: list[W.Widget] = [title, self.topomaps, self.metrics_table]
        if compact:
            super().__init__(children, **kwargs)
            return
        self.links = W.HTML(self._links_html())
        n = n_components(result)
        self.n_components = n
        self.suspects = suspect_reasons(m)
        marked = set(excluded_components(result))
        self.exclude_boxes = [
            W.Checkbox(value=i in marked, description=f"ICA{i:03d}" + (" ⚠" if i in self.suspects else ""),
                       indent=False, layout=W.Layout(width="110px"))
            for i in range(n)
        ]
        labels = {r["component"]: f"{r['label']} {r['probability']:.2f}"
                  for r in (m.get("labels") or {}).get("labels", [])}
        #: component -> its automatic label and probability ("eye blink 0.99"), when the run labelled them
        self.labels = labels
        self.component = W.Dropdown(options=[("choose a component", None)] +
                                    [(f"ICA{i:03d}" + (f" [{labels[i]}]" if i in labels else "")
                                      + (f" ({self.suspects[i]} suspect)" if i in self.suspects else ""), i)
                                     for i in range(n)], description="Properties")
        self.properties = W.VBox()
        self.save_button = W.Button(description="Save exclusions", icon="save")
        self.apply_button = W.Button(description="Apply (write cleaned recording)", icon="magic",
                                     layout=W.Layout(width="auto"))
        self.message = W.HTML()
        self.output = W.Output()
        self.component.observe(self._on_component, names="value")
        self.save_button.on_click(self._on_save)
        self.apply_button.on_click(self._on_apply)
        if result.state != "succeeded":
            for w in (self.save_button, self.apply_button, self.component):
                w.disabled = True
        children += [
            self.scores_table, self.links,
            W.HBox([self.component]), self.properties,
            W.HTML("<b>Exclude components</b> (⚠ = EOG/ECG suspect, pre-marked)"),
            W.GridBox(self.exclude_boxes, layout=W.Layout(grid_template_columns="repeat(auto-fill, 115px)")),
            W.HBox([self.save_button, self.apply_button]), self.message, self.output,
        ]
        super().__init__(children, **kwargs)

    # -- tables ---------------------------------------------------------------------------------------
    def metrics_frame(self):
        import pandas as pd

        summary = self.result.summary()
        return pd.DataFrame({"value": [str(v) for v in summary.values()]}, index=list(summary))

    def _metrics_html(self) -> str:
        return "<b>Metrics</b>" + self.metrics_frame().to_html(border=0)

    def scores_frame(self):
        """Component x (EOG channel, ECG) correlation scores, or an empty frame when none were computed."""
        import numpy as np
        import pandas as pd

        m = self.result.metrics
        cols: dict[str, Any] = {}
        eog = m.get("eog_scores")
        if eog:
            eog = np.atleast_2d(np.asarray(eog, dtype=float))
            for j, row in enumerate(eog):
                cols["EOG" if len(eog) == 1 else f"EOG {j + 1}"] = row
        if m.get("ecg_scores"):
            cols["ECG"] = np.asarray(m["ecg_scores"], dtype=float)
        if not cols:
            return pd.DataFrame()
        frame = pd.DataFrame(cols)
        frame.index = [f"ICA{i:03d}" for i in range(len(frame))]
        frame["suspect"] = [suspect_reasons(self.result.metrics).get(i, "") for i in range(len(frame))]
        return frame

    def _scores_html(self) -> str:
        frame = self.scores_frame()
        if frame.empty:
            return "<i>No EOG/ECG channels: components were not scored.</i>"
        rows = []
        head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
        for name, row in frame.iterrows():
            style = " style='background:#ffe0b2;font-weight:bold'" if row["suspect"] else ""
            cells = "".join(f"<td>{v:+.3f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                            for v in row.values)
            rows.append(f"<tr class='{'suspect' if row['suspect'] else ''}'{style}><th>{name}</th>{cells}</tr>")
        return (f"<b>EOG/ECG scores</b> (suspects highlighted)<table class='labkit-scores'><tr><th></th>{head}</tr>"
                + "".join(rows) + "</table>")

    def _links_html(self) -> str:
        parts = []
        for name, label in ((REPORT_FILE, "HTML report"), (NOTEBOOK_FILE, "executed notebook")):
            path = self.result.file(name)
            if path.exists():
                parts.append(_link(path, label))
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
        return _figure_png(figs[0])

    def _on_component(self, change: dict[str, Any]) -> None:
        index = change["new"]
        if index is None:
            return
        self.properties.children = (W.HTML(f"<i>Computing properties of ICA{index:03d}…</i>"),)

        def work() -> None:
            try:
                png = self.properties_png(index)
                self.properties.children = (W.HTML(f"<b>ICA{index:03d}</b>"), _png_image(png, "700px"))
            except Exception as err:  # shown, never raised into the event loop
                self.properties.children = (W.HTML(_error_html(f"{type(err).__name__}: {err}")),)

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

    def _on_save(self, _: Any) -> None:
        with self.output:
            clear_output(wait=True)
            try:
                path = self.save()
                self.message.value = f"Saved {len(self.excluded)} excluded component(s) to {_link(path, path.name)}"
            except Exception as err:
                self.message.value = _error_html(f"{type(err).__name__}: {err}")

    def _on_apply(self, _: Any) -> None:
        self.apply_button.disabled = True
        self.message.value = "<i>Applying ICA to the recording…</i>"
        with self.output:
            clear_output(wait=True)
            try:
                path = self.apply()
                self.message.value = (f"Wrote the cleaned recording without components {self.excluded}: "
                                      f"{_link(path, path.name)}")
            except Exception as err:
                self.message.value = _error_html(f"{type(err).__name__}: {err}")
                display(HTML(self.message.value))
            finally:
                self.apply_button.disabled = False


# -- the form ---------------------------------------------------------------------------------------------------
#: optional booleans as text ("" is the method's default): a Dropdown's None would mean "nothing selected"
_OPTIONAL_BOOL = [("method default", ""), ("true", "true"), ("false", "false")]


def _bool_text(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


class IcaForm(W.VBox):
    """Choose a recording, set the parameters (bounded by its header), run, inspect, compare, export."""

    def __init__(self, base_dir: str | os.PathLike | None = None, *, raw_file_path: str | None = None,
                 **kwargs: Any) -> None:
        self.base_dir = str(Path(base_dir or os.environ.get("BASE_DIR") or os.getcwd()).resolve())
        self.info: recording.RecordingInfo | None = None
        self.sweep: list[IcaParams] = []
        self.sweep_table: Any = None  # the last "Run sweep here" table (pandas)
        self.history: list[RunResult] = []
        self.process: Any = None
        self.processes: dict[str, Any] = {}
        self._watcher: threading.Thread | None = None
        self.problems: dict[str, str] = {}

        self.browser = RecordingBrowser(self.base_dir)
        self.header = W.HTML("<i>Choose a recording to set its parameters.</i>")
        style = {"description_width": "130px"}
        lay = W.Layout(width="330px")
        self.method = W.Dropdown(options=list(METHODS), value=_DEFAULTS["method"], description="Method",
                                 style=style, layout=lay)
        self.extended = W.Dropdown(options=_OPTIONAL_BOOL, value="", description="Extended", style=style, layout=lay)
        self.ortho = W.Dropdown(options=_OPTIONAL_BOOL, value="", description="Orthogonal", style=style, layout=lay)
        self.channel_type = W.Dropdown(options=[], description="Channel type", style=style, layout=lay)
        self.n_components = W.BoundedIntText(value=_DEFAULTS["n_components"], min=2, max=10_000,
                                             description="Components", style=style, layout=lay)
        self.crop_tmin = W.BoundedFloatText(value=0.0, min=0.0, max=1e9, step=1.0, description="Crop start (s)",
                                            style=style, layout=lay)
        self.crop_tmax = W.BoundedFloatText(value=60.0, min=0.0, max=1e9, step=1.0, description="Crop end (s)",
                                            style=style, layout=lay)
        self.filter_fmin = W.BoundedFloatText(value=_DEFAULTS["filter_fmin"], min=0.0, max=1e6, step=0.5,
                                              description="High-pass (Hz)", style=style, layout=lay)
        self.filter_fmax = W.BoundedFloatText(value=_DEFAULTS["filter_fmax"], min=0.0, max=1e6, step=0.5,
                                              description="Low-pass (Hz)", style=style, layout=lay)
        self.random_state = W.Text(value=str(_DEFAULTS["random_state"]), description="Random seed",
                                   placeholder="empty: random", style=style, layout=lay)
        self.max_iter = W.Text(value="auto", description="Max iterations", style=style, layout=lay)
        self.label_threshold = W.Text(value="", description="Label threshold", placeholder="empty: labels advise only",
                                      style=style, layout=lay)
        #: field name -> control, for every field the form sets
        self.controls: dict[str, W.Widget] = {
            "method": self.method, "extended": self.extended, "ortho": self.ortho,
            "channel_type": self.channel_type, "n_components": self.n_components,
            "crop_tmin": self.crop_tmin, "crop_tmax": self.crop_tmax,
            "filter_fmin": self.filter_fmin, "filter_fmax": self.filter_fmax,
            "random_state": self.random_state, "max_iter": self.max_iter,
            "label_threshold": self.label_threshold,
        }
        #: field name -> the HTML next to its control holding the validation message
        self.errors: dict[str, W.HTML] = {name: W.HTML() for name in FIELD_BY_NAME}
        self.rows: dict[str, W.HBox] = {}
        for name, control in self.controls.items():
            control.tooltip = FIELD_BY_NAME[name].help
            self.rows[name] = W.HBox([control, self.errors[name]])

        available, reason = cluster_status()
        self.run_button = W.Button(description="Run here", icon="play", button_style="primary", disabled=True)
        self.cluster_button = W.Button(description="Submit to cluster", icon="cloud-upload", disabled=True,
                                       tooltip=reason)
        self.cluster_available = available
        self.cluster_reason = W.HTML(f"<span style='color:#666;font-size:90%'>{html.escape(reason)}</span>")
        self.cancel_button = W.Button(description="Cancel", icon="stop", button_style="danger", disabled=True)
        self.sweep_button = W.Button(description="Add to sweep", icon="plus", disabled=True)

        self.progress = W.IntProgress(value=0, min=0, max=len(STEPS), description="Idle",
                                      style={"description_width": "130px"}, layout=W.Layout(width="500px"))
        self.step_label = W.HTML()
        self.log_area = W.Textarea(value="", rows=8, disabled=True, layout=W.Layout(width="95%"),
                              placeholder="the run's log appears here")
        self.output = W.Output()
        self.result_box = W.VBox()

        self.history_select = W.Select(options=[], rows=5, description="Runs", layout=W.Layout(width="95%"))
        self.show_button = W.Button(description="Show", icon="eye")
        self.compare_a = W.Dropdown(options=[], description="Left")
        self.compare_b = W.Dropdown(options=[], description="Right")
        self.compare_button = W.Button(description="Compare side by side", icon="columns", layout=W.Layout(width="auto"))
        self.compare_box = W.HBox()

        self.sweep_select = W.Select(options=[], rows=5, description="Sets", layout=W.Layout(width="95%"))
        self.remove_button = W.Button(description="Remove set", icon="minus")
        self.sweep_cluster_button = W.Button(description="Submit sweep to cluster", icon="cloud-upload",
                                             disabled=True, tooltip=reason, layout=W.Layout(width="auto"))
        self.sweep_message = W.HTML()
        self.sweep_seeds = W.BoundedIntText(value=1, min=1, max=1000, description="x seeds",
                                            tooltip="run every set with seeds 0..N-1 (random_state)")
        self.sweep_run_button = W.Button(description="Run sweep here", icon="play", disabled=True,
                                         tooltip="warm parallel workers; finished sets are reused")
        self.sweep_progress = W.IntProgress(value=0, min=0, max=1, description="Sweep")
        self.export_source = W.ToggleButtons(options=["form", "selected set", "whole sweep"], value="form",
                                             description="Export")
        self.export_format = W.Dropdown(options=list(EXPORT_FORMATS), value="json", description="As")
        self.export_area = W.Textarea(value="", rows=10, layout=W.Layout(width="95%"))

        self.jobs = JobsView(self.base_dir, form=self)

        params_box = W.VBox([self.rows[n] for n in ("method", "extended", "ortho", "channel_type", "n_components",
                                                    "crop_tmin", "crop_tmax", "filter_fmin", "filter_fmax",
                                                    "random_state", "max_iter", "label_threshold")])
        run_box = W.VBox([
            W.HBox([self.run_button, self.cancel_button, self.cluster_button, self.sweep_button]),
            self.cluster_reason, W.HBox([self.progress, self.step_label]), self.log_area, self.output, self.result_box,
        ])
        history_box = W.VBox([W.HBox([self.history_select, self.show_button]),
                              W.HBox([self.compare_a, self.compare_b, self.compare_button]), self.compare_box])
        sweep_box = W.VBox([W.HBox([self.sweep_select, W.VBox([self.remove_button, self.sweep_cluster_button])]),
                            W.HBox([self.sweep_seeds, self.sweep_run_button, self.sweep_progress]),
                            self.sweep_message,
                            W.HBox([self.export_source, self.export_format]), self.export_area])
        self.tabs = W.Tab(children=[run_box, history_box, sweep_box, self.jobs])
        for i, title in enumerate(("Run", "History", "Sweep & export", "Jobs")):
            self.tabs.set_title(i, title)
        super().__init__([
            W.HTML("<h3 style='margin:4px 0'>labkit ICA</h3>"),
            self.browser, self.errors["raw_file_path"], self.header, params_box, self.tabs,
        ], **kwargs)

        self.browser.observe(self._on_recording, names="value")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.run_button.on_click(self._on_run)
        self.cancel_button.on_click(self._on_cancel)
        self.cluster_button.on_click(self._on_submit)
        self.sweep_button.on_click(self._on_add_to_sweep)
        self.remove_button.on_click(self._on_remove)
        self.sweep_cluster_button.on_click(self._on_submit_sweep)
        self.sweep_run_button.on_click(lambda _: self.run_sweep_here())
        self.show_button.on_click(self._on_show)
        self.compare_button.on_click(self._on_compare)
        for w in (self.export_source, self.export_format, self.sweep_select):
            w.observe(lambda _: self._update_export(), names="value")
        self._update_visibility()
        if raw_file_path:
            self.browser.choose(raw_file_path)
        self.validate()

    # -- recording ---------------------------------------------------------------------------------------------------
    def _on_recording(self, change: dict[str, Any]) -> None:
        self.load_recording(change["new"])

    def load_recording(self, rel_path: str) -> None:
        """Read only the header and bound every control to the recording."""
        self.recording_error = ""
        try:
            info = recording.describe(Path(self.base_dir) / rel_path)
        except LabkitError as err:
            self.info = None
            self.recording_error = str(err)
            self.header.value = ""
            self.validate()
            return
        self.info = info
        counts = {t: n for t, n in info.ica_types.items() if t in CHANNEL_TYPES}  # ICA-fittable, >= 2 good
        options = [(f"{t} ({n} channels)", t) for t, n in counts.items()]
        with self.hold_sync():
            current = self.channel_type.value
            self.channel_type.options = options
            preferred = [t for t in (current, "eeg", "meg", "mag", "grad") if t in counts]
            self.channel_type.value = preferred[0] if preferred else options[0][1]
            self.crop_tmin.max = info.end
            self.crop_tmax.max = info.end
            self.crop_tmax.value = min(self.crop_tmax.value or info.end, info.end) \
                if self.crop_tmax.value > self.crop_tmin.value else info.end
            self.filter_fmin.max = info.nyquist
            self.filter_fmax.max = info.nyquist
            self._bound_components()
        self.header.value = (
            f"<b>{html.escape(Path(rel_path).name)}</b>: {info.duration:.1f} s at {info.sfreq:g} Hz "
            f"(Nyquist {info.nyquist:g} Hz); channels: "
            + ", ".join(f"{html.escape(t)} {n}" for t, n in info.channel_counts.items())
        )
        self.validate()

    def _bound_components(self) -> None:
        if self.info is None or not self.channel_type.value:
            return
        rank = self.info.rank(self.channel_type.value)
        if rank >= 2:
            self.n_components.max = rank
        self.n_components.tooltip = f"at most the rank of the good {self.channel_type.value} channels ({rank})"

    # -- values and validation -----------------------------------------------------------------------------------------
    def _on_change(self, change: dict[str, Any]) -> None:
        if change["owner"] is self.channel_type:
            self._bound_components()
        if change["owner"] is self.method:
            self._update_visibility()
        self.validate()

    def _update_visibility(self) -> None:
        """Show ``extended`` for picard/infomax and ``ortho`` for picard only; hidden options go back to default."""
        method = self.method.value
        for name, meaningful in (("extended", method in ("picard", "infomax")), ("ortho", method == "picard")):
            self.rows[name].layout.display = None if meaningful else "none"
            if not meaningful:
                self.controls[name].value = ""

    def values(self) -> dict[str, Any]:
        """The form's raw values, one per ``IcaParams`` field."""
        out = {name: control.value for name, control in self.controls.items()}
        out["base_dir"] = self.base_dir
        out["raw_file_path"] = self.browser.value
        return out

    def validate(self) -> dict[str, str]:
        """Every problem of the current values (field -> IcaParams' message); updates labels and buttons."""
        values = self.values()
        chosen = bool(values["raw_file_path"])
        if not chosen:
            values["raw_file_path"] = "none.fif"
        info = self.info
        draft = check_draft(values, header_problems=None if info is None
                            else (lambda p: recording.header_problems(p, info)))
        problems = draft.problems
        if not chosen:
            problems["raw_file_path"] = ParameterError("raw_file_path", "", "a recording chosen in the browser above")
        self.problems = {k: str(v) for k, v in problems.items()}
        if getattr(self, "recording_error", ""):
            self.problems["raw_file_path"] = self.recording_error
        for name, label in self.errors.items():
            label.value = _error_html(self.problems.get(name, ""))
        ok = not self.problems and self.info is not None
        running = self.process is not None and not self.process.done()
        self.run_button.disabled = not ok or running
        self.cluster_button.disabled = not ok or not self.cluster_available
        self.sweep_button.disabled = not ok
        self._update_export()
        return self.problems

    @property
    def params(self) -> IcaParams | None:
        """The valid parameter set the form shows, or None while anything is invalid."""
        if self.validate():
            return None
        return IcaParams(**coerce_values(self.values()))

    def set_params(self, params: IcaParams) -> None:
        """Fill the form from a set (its recording must be inside this form's base_dir)."""
        self.browser.choose(params.raw_file_path)
        with self.hold_sync():
            self.method.value = params.method
            for name in ("n_components", "crop_tmin", "filter_fmin", "filter_fmax", "channel_type"):
                self.controls[name].value = getattr(params, name)
            self.crop_tmax.value = params.crop_tmax if params.crop_tmax is not None else self.crop_tmax.max
            self.random_state.value = "" if params.random_state is None else str(params.random_state)
            self.max_iter.value = str(params.max_iter)
            self.extended.value = _bool_text(params.extended)
            self.ortho.value = _bool_text(params.ortho)
            self.label_threshold.value = "" if params.label_threshold is None else f"{params.label_threshold:g}"
        self.validate()

    # -- running -------------------------------------------------------------------------------------------------------
    def _on_run(self, _: Any) -> None:
        self._button_action(self.run_here)

    def _button_action(self, action: Callable[[], Any]) -> None:
        """A button's action, in a cleared output area; any error is shown, not raised into the event loop."""
        with self.output:
            clear_output(wait=True)
            try:
                action()
            except Exception as err:
                self._show_error(err)

    def _show_error(self, err: BaseException) -> None:
        text = str(err) if isinstance(err, LabkitError) else f"{type(err).__name__}: {err}"
        self.step_label.value = _error_html(text)
        display(HTML(_error_html(text)))

    def run_here(self):
        """Start the current set in a child process and watch it; returns the process handle."""
        from labkit.runners import local as runners

        params = self.params
        if params is None:
            raise LabkitError("The form has invalid values: " + "; ".join(self.problems.values()))
        if self.process is not None and not self.process.done():
            raise LabkitError(f"Run {self.process.run_id} is still running; cancel it or wait")
        self.run_button.disabled = True
        self.result_box.children = ()
        self.log_area.value = ""
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = "Starting"
        proc = runners.start_local(params)
        self.process = proc
        self.processes[proc.run_id] = proc
        self.cancel_button.disabled = False
        self.step_label.value = f"Run <code>{html.escape(proc.run_id)}</code> started"
        self._watcher = threading.Thread(target=self._watch, args=(proc,), daemon=True, name="labkit-watch")
        self._watcher.start()
        return proc

    def _watch(self, proc: Any) -> None:
        """Background: mirror the child's step and log into the widgets, then show its result."""
        try:
            while not proc.done():
                self._show_progress(proc)
                time.sleep(POLL_S)
            result = proc.wait()
            self._show_progress(proc)
            self._finished(result)
        except Exception as err:  # never die silently in a thread
            logger.exception("watching run %s failed", getattr(proc, "run_id", "?"))
            self.step_label.value = _error_html(f"{type(err).__name__}: {err}")
            self.progress.bar_style = "danger"
        finally:
            self.cancel_button.disabled = True
            self.validate()
            self.jobs.refresh()

    def _show_progress(self, proc: Any) -> None:
        try:
            step = proc.step() or ""
        except Exception:
            step = ""
        if step in STEPS:
            self.progress.value = STEPS.index(step)
            self.progress.description = f"{STEPS.index(step) + 1}/{len(STEPS)} {step}"
        try:
            tail = proc.log_tail(20)
        except Exception:
            tail = ""
        if tail != self.log_area.value:
            self.log_area.value = tail

    def _finished(self, result: RunResult) -> None:
        self.history.append(result)
        self._update_history()
        if result.state == "succeeded":
            self.progress.value = len(STEPS)
            self.progress.bar_style = "warning" if result.warnings else "success"
            self.progress.description = "Done"
            self.step_label.value = (f"Run <code>{html.escape(result.run_id)}</code> {html.escape(result.outcome)}"
                                     + (f" ({len(result.warnings)})" if result.warnings else ""))
        elif result.state == "cancelled":  # stopped on purpose: said plainly, not as an error
            self.progress.bar_style = ""
            self.progress.description = "Cancelled"
            self.step_label.value = (f"Run <code>{html.escape(result.run_id)}</code> cancelled: "
                                     f"{html.escape(result.error or '')}")
        else:
            self.progress.bar_style = "danger"
            self.progress.description = result.state.capitalize()
            self.step_label.value = _error_html(f"Run {result.run_id} {result.state}: {result.error or ''}")
        self.log_area.value = (_tail(result.file(LOG_FILE), 20) or self.log_area.value
                               or (self.process.output_tail(20) if self.process is not None else ""))
        self.result_view = ResultView(result)
        self.result_box.children = (self.result_view,)

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """Block until the current run is finished and shown (for tests and scripts)."""
        if self._watcher is not None:
            self._watcher.join(timeout)
        return self.history[-1] if self.history else None

    def _on_cancel(self, _: Any) -> None:
        self._button_action(self.cancel)

    def cancel(self) -> None:
        if self.process is None or self.process.done():
            raise LabkitError("Nothing is running")
        self.step_label.value = f"Cancelling run <code>{html.escape(self.process.run_id)}</code>…"
        self.cancel_button.disabled = True
        self.process.cancel()

    def _on_submit(self, _: Any) -> None:
        self._button_action(self.submit_to_cluster)

    def submit_to_cluster(self) -> str:
        """Submit the form's parameter set as a cluster Job; return the Job's name."""
        params = self.params
        if params is None:
            raise LabkitError("The form has invalid values")
        name = _cluster_submit(params)
        self.step_label.value = f"Submitted to the cluster as <code>{html.escape(name)}</code>"
        self.jobs.refresh()
        return name

    # -- history and comparison ----------------------------------------------------------------------------------------
    def _label(self, res: RunResult) -> str:
        p = res.params
        what = f"{p.method} n={p.n_components} {p.channel_type} {p.filter_fmin:g}-{p.filter_fmax:g} Hz" if p else "?"
        return f"{res.run_id} [{res.state}] {what}"

    def _update_history(self) -> None:
        options = [(self._label(r), i) for i, r in enumerate(self.history)]
        self.history_select.options = options
        self.compare_a.options = options
        self.compare_b.options = options
        if len(options) >= 2:
            self.compare_a.value, self.compare_b.value = options[-2][1], options[-1][1]

    def _on_show(self, _: Any) -> None:
        if self.history_select.value is None:
            return
        res = self.history[self.history_select.value]
        self.result_view = ResultView(res)
        self.result_box.children = (self.result_view,)
        self.tabs.selected_index = 0

    def _on_compare(self, _: Any) -> None:
        a, b = self.compare_a.value, self.compare_b.value
        if a is None or b is None:
            self.compare_box.children = (W.HTML(_error_html("Run at least two sets to compare them")),)
            return
        half = W.Layout(width="50%")
        self.compare_box.children = tuple(ResultView(self.history[i], compact=True, layout=half) for i in (a, b))

    # -- sweep and export --------------------------------------------------------------------------------------------
    def _on_add_to_sweep(self, _: Any) -> None:
        params = self.params
        if params is None:
            return
        self.sweep.append(params)
        self._update_sweep()
        self.sweep_select.value = len(self.sweep) - 1

    def _on_remove(self, _: Any) -> None:
        if self.sweep_select.value is not None:
            del self.sweep[self.sweep_select.value]
            self._update_sweep()

    def _on_submit_sweep(self, _: Any) -> None:
        """The sweep as one submission (identical sets attach, finished ones are reused)."""
        try:
            names = _cluster_submit_sweep(list(self.sweep))
            self.sweep_message.value = "Submitted: " + ", ".join(f"<code>{html.escape(n)}</code>" for n in names)
        except Exception as err:
            self.sweep_message.value = _error_html(f"Sweep not submitted: {type(err).__name__}: {err}")
        self.jobs.refresh()

    def run_sweep_here(self) -> threading.Thread:
        """Run the sweep (x seeds) on this machine in a background thread; the table lands in ``sweep_table``."""
        from labkit.study.sweeps import expand, run_sweep

        seeds = self.sweep_seeds.value
        sets = [q for p in self.sweep for q in (expand(p, seeds=seeds) if seeds > 1 else [p])]
        self.sweep_run_button.disabled = True
        self.sweep_progress.value, self.sweep_progress.max = 0, max(1, len(sets))
        self.sweep_message.value = f"Running {len(sets)} sets ..."

        def progress(row: dict[str, Any], done: int, total: int) -> None:
            self.sweep_progress.max, self.sweep_progress.value = max(1, total), done

        def work() -> None:
            try:
                self.sweep_table = table = run_sweep(sets, progress=False, on_row=progress)
                counts = table["state"].value_counts().to_dict()
                reused = int((table["action"] == "reused").sum())
                self.sweep_message.value = html.escape(
                    ", ".join(f"{n} {state}" for state, n in counts.items()) + f" ({reused} reused)")
            except Exception as err:  # noqa: BLE001 - shown in the form, never raised into the event loop
                self.sweep_message.value = _error_html(f"Sweep failed: {type(err).__name__}: {err}")
            finally:
                self.sweep_run_button.disabled = not self.sweep

        thread = threading.Thread(target=work, name="labkit-form-sweep", daemon=True)
        thread.start()
        return thread

    def _update_sweep(self) -> None:
        self.sweep_run_button.disabled = not self.sweep
        self.sweep_cluster_button.disabled = not (self.sweep and self.cluster_available)
        self.sweep_select.options = [
            (f"{i + 1}. {p.method} n={p.n_components} {p.channel_type} crop {p.crop_tmin:g}-{p.crop_tmax} s "
             f"{p.filter_fmin:g}-{p.filter_fmax:g} Hz seed {p.random_state} ({p.digest})", i)
            for i, p in enumerate(self.sweep)
        ]

    def _update_export(self) -> None:
        if not hasattr(self, "export_area"):
            return
        source, fmt = self.export_source.value, self.export_format.value
        if source == "whole sweep":
            if not self.sweep:
                text = "# the sweep is empty: use 'Add to sweep'"
            elif fmt == "json":
                text = export_sweep(self.sweep)
            else:
                text = "\n".join(export_text(p, fmt) + ("\n" if fmt == "env" else "") for p in self.sweep)
        elif source == "selected set":
            index = self.sweep_select.value
            text = export_text(self.sweep[index], fmt) if index is not None else "# select a set in the sweep"
        else:
            if self.problems or self.info is None:
                text = "# the form is not valid yet: " + "; ".join(self.problems.values())
            else:
                text = export_text(IcaParams(**coerce_values(self.values())), fmt)
        self.export_area.value = text


# -- jobs ------------------------------------------------------------------------------------------------------
class JobsView(W.VBox):
    """The user's runs here (under ``base_dir``) and on the cluster when one is configured, through the
    runs interface (:mod:`labkit.runners.backend`): state, step, log tail, cancel, open."""

    def __init__(self, base_dir: str | os.PathLike, *, form: IcaForm | None = None, auto_refresh: float = 0,
                 **kwargs: Any) -> None:
        from labkit.runners.machine import MachineBackend

        self.base_dir = Path(base_dir)
        self.form = form
        #: the backends shown, by name: this machine always, the cluster (directly or via the hub) when configured
        self.backends: dict[str, Any] = {"machine": MachineBackend(self.base_dir)}
        self.runs: list[Any] = []
        self.table = W.HTML()
        self.select = W.Select(options=[], rows=6, description="Run", layout=W.Layout(width="95%"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.log_button = W.Button(description="Log tail", icon="file-text")
        self.cancel_button = W.Button(description="Cancel", icon="stop", button_style="danger")
        self.open_button = W.Button(description="Open results", icon="folder-open")
        self.auto = W.Checkbox(value=bool(auto_refresh), description="Live (every 2 s)", indent=False)
        self.log_area = W.Textarea(value="", rows=8, disabled=True, layout=W.Layout(width="95%"))
        self.message = W.HTML()
        self.detail = W.VBox()
        self.output = W.Output()
        super().__init__([
            W.HBox([self.refresh_button, self.auto]), self.table, self.select,
            W.HBox([self.log_button, self.cancel_button, self.open_button]),
            self.message, self.log_area, self.output, self.detail,
        ], **kwargs)
        self.refresh_button.on_click(lambda _: self.refresh())
        self.log_button.on_click(self._on_log)
        self.cancel_button.on_click(self._on_cancel)
        self.open_button.on_click(self._on_open)
        self.auto.observe(self._on_auto, names="value")
        self._stop = threading.Event()
        self.refresh()
        if auto_refresh:
            self._on_auto({"new": True})

    def _cluster_backend(self) -> Any:
        ok, _reason = cluster_status()
        if ok and "cluster" not in self.backends:
            from labkit.runners.cluster.backend import JobsBackend
            from labkit.runners.hub import HubJobs

            jobs = _cluster()
            self.backends["cluster"] = JobsBackend(jobs, "hub" if isinstance(jobs, HubJobs) else "cluster")
        return self.backends.get("cluster")

    def refresh(self) -> None:
        self.runs = []
        try:
            self.runs += self.backends["machine"].runs()
        except (OSError, LabkitError) as err:
            self.message.value = _error_html(str(err))
        try:
            cluster = self._cluster_backend()
            self.runs += cluster.runs() if cluster is not None else []
        except Exception as err:
            self.message.value = _error_html(f"Cluster jobs unavailable: {type(err).__name__}: {err}")
        rows = []
        for r in self.runs:
            colour = {"succeeded": "#1b5e20", "failed": "#b00020", "running": "#0d47a1"}.get(r.state, "#555")
            where = "local" if r.backend == "machine" else r.backend
            rows.append(f"<tr><td><code>{html.escape(r.name)}</code></td><td style='color:{colour}'>"
                        f"{html.escape(r.state)}</td><td>{html.escape(r.step)}</td>"
                        f"<td>{html.escape(r.created)}</td><td>{html.escape(where)}</td></tr>")
        self.table.value = ("<table><tr><th>run</th><th>state</th><th>step</th><th>created</th><th>where</th></tr>"
                            + "".join(rows) + "</table>") if rows else "<i>No runs yet under this base directory.</i>"
        current = self.select.value
        options = [(f"{r.run_id} [{r.state}]" if r.backend == "machine" else f"{r.backend} {r.name} [{r.state}]",
                    (r.backend if r.backend == "machine" else "cluster", r.name)) for r in self.runs]
        self.select.options = options
        if current in [v for _, v in options]:
            self.select.value = current

    def _selected(self) -> tuple[Any, str] | None:
        """(backend, run name) of the selected run, or None (and a message) when nothing is selected."""
        if not self.select.value:
            self.message.value = _error_html("Select a run first")
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
        except Exception as err:
            self.message.value = _error_html(f"{type(err).__name__}: {err}")

    def _on_log(self, _: Any) -> None:
        def tail(backend: Any, name: str) -> str:
            self.log_area.value = "\n".join(backend.log(name, tail=20))
            return f"Log tail of <code>{html.escape(name)}</code> ({html.escape(backend.status(name).state)})"

        self._act(tail)

    def _on_cancel(self, _: Any) -> None:
        def cancel(backend: Any, name: str) -> str:
            told = backend.cancel(name)
            return f"Cancelled run <code>{html.escape(name)}</code> ({html.escape(told.state)})"

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
                while not self._stop.wait(2.0):
                    try:
                        self.refresh()
                    except Exception:  # pragma: no cover
                        logger.exception("jobs refresh failed")

            threading.Thread(target=loop, daemon=True, name="labkit-jobs").start()
        else:
            self._stop.set()
