"""The notebook form: choose a recording, set the parameters (bounded by its header), run, review, compare, export.

Everything is an ipywidgets 8 container driven through its models (set a control's ``.value``, call a
button's ``.click()``), so tests need no browser. Rules come from :func:`labkit.schema.check_draft`;
runs go through the runs interface (:class:`~labkit.runners.machine.MachineBackend`, shared with the
jobs view), so the form, the CLI and the JupyterLab extension tell a run in the same words.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from labkit.analysis import recording
from labkit.errors import LabkitError
from labkit.params import FIELD_BY_NAME, METHODS, IcaParams
from labkit.results.layout import LOG_FILE
from labkit.results.reading import RunResult
from labkit.results.states import CANCELLED, FAILED, QUEUED, RUNNING, WITH_WARNINGS
from labkit.runners.backend import Run
from labkit.schema import check_draft, default

from . import fields
from .chooser import RecordingBrowser
from .cluster import _cluster_submit, cluster_status
from .common import POLL_S, STEPS, STYLE, error_html, esc, span, state_html, tail
from .history import HistoryPanel
from .results import ResultView
from .runs import JobsView
from .sweep import SweepPanel

#: optional booleans as text ("" is the method's default): a Dropdown's None would mean "nothing selected"
_OPTIONAL_BOOL = [("method default", ""), ("true", "true"), ("false", "false")]
_TEXT_FIELDS = ("n_components", "crop_tmin", "crop_tmax", "filter_fmin", "filter_fmax", "random_state",
                "max_iter", "label_threshold")


def _bool_text(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _text(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class IcaForm(W.VBox):
    """Choose a recording, set the parameters (bounded by its header), run, inspect, compare, export."""

    def __init__(self, base_dir: str | os.PathLike | None = None, *, raw_file_path: str | None = None,
                 **kwargs: Any) -> None:
        from labkit.runners.machine import MachineBackend

        self.base_dir = str(Path(base_dir or os.environ.get("BASE_DIR") or os.getcwd()).resolve())
        #: where this form's runs execute (shared with its jobs view)
        self.backend = MachineBackend(self.base_dir)
        self.info: recording.RecordingInfo | None = None
        self.recording_error = ""
        self.problems: dict[str, str] = {}
        #: fields the user has changed since the recording was chosen: only their problems are shown
        self.touched: set[str] = set()
        #: the run whose progress, log and results the Run view shows (None: none yet)
        self.current: str | None = None
        self.predicted: list[str] = []
        self._setting = False
        self._watcher: threading.Thread | None = None
        #: the run whose cancel was asked for and not yet sent (its watcher sends it)
        self._cancel_asked: str | None = None
        self._last: RunResult | None = None

        self.browser = RecordingBrowser(self.base_dir)
        self.header = W.HTML("<i>Choose a recording to set its parameters.</i>")
        self.recording_note = W.HTML()
        style, lay = {"description_width": "120px"}, W.Layout(width="300px")
        self.method = W.Dropdown(options=list(METHODS), value=default("method"), description="Method",
                                 style=style, layout=lay)
        self.extended = W.Dropdown(options=_OPTIONAL_BOOL, value="", description="Extended", style=style, layout=lay)
        self.ortho = W.Dropdown(options=_OPTIONAL_BOOL, value="", description="Orthogonal", style=style, layout=lay)
        self.channel_type = W.Dropdown(options=[], description="Channel type", style=style, layout=lay)
        for name in _TEXT_FIELDS:  # text boxes without bounds: what was typed stays, the rules judge it
            value = {"max_iter": "auto"}.get(name, _text(default(name)))
            setattr(self, name, fields.TypedText(value=value, description=fields.LABELS[name], style=style,
                                                 layout=lay, continuous_update=False))
        self.random_state.placeholder = "empty: random"
        self.label_threshold.placeholder = "empty: labels advise only"
        #: field name -> control, for every field the form sets
        self.controls: dict[str, W.Widget] = {n: getattr(self, n) for n in (
            "method", "extended", "ortho", "channel_type", *_TEXT_FIELDS)}
        #: field name -> the problem shown under its control (once the field has been touched)
        self.errors: dict[str, W.HTML] = {name: W.HTML() for name in FIELD_BY_NAME}
        #: field name -> the range it allows, shown under its control
        self.hints: dict[str, W.HTML] = {name: W.HTML() for name in self.controls}
        self.rows: dict[str, W.VBox] = {}
        for name, control in self.controls.items():
            control.tooltip = FIELD_BY_NAME[name].help
            self.rows[name] = W.VBox([control, self.hints[name], self.errors[name]],
                                     layout=W.Layout(margin="0 0 4px 0"))

        available, reason = cluster_status()
        self.cluster_available = available
        self.run_button = W.Button(description="Run here", icon="play", button_style="primary", disabled=True)
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=True)
        self.cluster_button = W.Button(description="Submit to cluster", icon="cloud-arrow-up", disabled=True,
                                       tooltip=reason)
        self.sweep_button = W.Button(description="Add to sweep", icon="plus", disabled=True)
        self.run_reason = W.HTML()
        self.cluster_reason = W.HTML(span("lk-muted", reason))
        self.warnings_box = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=len(STEPS), description="Idle",
                                      style={"description_width": "110px"}, layout=W.Layout(width="95%"))
        self.step_label = W.HTML()
        self.step_label.add_class("lk-status")
        self.progress.add_class("lk-progress")
        self.log_text = ""
        self.log_area = W.HTML(self._log_html(""))
        self.result_box = W.VBox()
        self.result_view: ResultView | None = None

        self.history_panel = HistoryPanel(self)
        # the Sweep and Jobs tabs are built when first opened or used (each widget is a message to the browser:
        # about a third of the form's), and the jobs are listed when their tab opens (the store, the cluster)
        self._cluster_reason, self._sweep_tab, self._jobs_tab = reason, W.VBox(), W.VBox()
        self._sweep_panel: SweepPanel | None = None
        self._jobs: JobsView | None = None

        sections = {title: W.VBox([W.HTML(f"<b>{title}</b>"), *(self.rows[n] for n in names)])
                    for title, names in fields.SECTIONS.items() if title != "Advanced"}
        self.advanced = W.Accordion(children=[W.VBox([self.rows[n] for n in fields.SECTIONS["Advanced"]])],
                                    titles=("Advanced",), selected_index=None)
        recording_box = W.VBox([W.HTML("<b>Recording</b>"), self.browser, self.errors["raw_file_path"],
                                self.header, self.recording_note])
        left = W.VBox([recording_box, sections["Filter"], sections["ICA"], self.advanced])
        right = W.VBox([W.HBox([self.run_button, self.cancel_button, self.cluster_button, self.sweep_button],
                               layout=W.Layout(flex_flow="row wrap")),
                        self.run_reason, self.cluster_reason, self.warnings_box, self.progress, self.step_label,
                        self.log_area])
        columns = W.GridBox([left, right], layout=W.Layout(
            grid_template_columns="repeat(auto-fit, minmax(360px, 1fr))", grid_gap="8px 24px", width="100%"))
        self.tabs = W.Tab(children=[self.result_box, self.history_panel, self._sweep_tab, self._jobs_tab],
                          titles=("Results", "History", "Sweep & export", "Jobs"))
        super().__init__([W.HTML(STYLE + "<h3 style='margin:4px 0'>labkit ICA</h3>"), columns, self.tabs], **kwargs)
        self.add_class("lk-form")

        self.browser.observe(self._on_recording, names="value")
        self.tabs.observe(self._on_tab, names="selected_index")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.run_button.on_click(lambda _: self._button(self.run_here))
        self.cancel_button.on_click(lambda _: self._button(self.cancel))
        self.cluster_button.on_click(lambda _: self._button(self.submit_to_cluster))
        self.sweep_button.on_click(lambda _: self._button(self.add_to_sweep))
        self._update_visibility()
        if raw_file_path:
            self.browser.choose(raw_file_path)
        self.validate()

    @property
    def sweep_panel(self) -> SweepPanel:
        """The "Sweep & export" tab, built on first use."""
        if self._sweep_panel is None:
            self._sweep_panel = SweepPanel(self, cluster_available=self.cluster_available,
                                           cluster_reason=self._cluster_reason)
            self._sweep_tab.children = (self._sweep_panel,)
        return self._sweep_panel

    @property
    def jobs(self) -> JobsView:
        """The "Jobs" tab, built on first use; its runs are listed when it opens."""
        if self._jobs is None:
            self._jobs = JobsView(self.base_dir, form=self, machine=self.backend, listed=False)
            self._jobs_tab.children = (self._jobs,)
        return self._jobs

    def _on_tab(self, change: dict[str, Any]) -> None:
        if change["new"] == 2:
            self.sweep_panel.update_export()
        elif change["new"] == 3:
            self.jobs.refresh()

    @property
    def history(self) -> list[RunResult]:
        """Every finished run of this form (its own and its sweeps'), oldest first."""
        return self.history_panel.runs

    @property
    def sweep(self) -> list[IcaParams]:
        return self.sweep_panel.sets

    @property
    def sweep_table(self) -> Any:
        return self.sweep_panel.table

    def run_sweep_here(self) -> threading.Thread:
        return self.sweep_panel.run_here()

    # -- recording ---------------------------------------------------------------------------------------------------
    def _on_recording(self, change: dict[str, Any]) -> None:
        self.load_recording(change["new"])

    def load_recording(self, rel_path: str) -> None:
        """Read only the header; set every value that depends on it, and say which were set."""
        self.recording_error = ""
        try:
            info = recording.describe(Path(self.base_dir) / rel_path)
        except LabkitError as err:
            self.info = None
            self.recording_error = str(err)
            self.header.value = self.recording_note.value = ""
            self.validate()
            return
        self.info = info
        values, said = fields.recording_defaults(info, {n: c.value for n, c in self.controls.items()})
        self.touched -= set(values)  # set from the header: nothing the user typed is judged there yet
        self._setting = True
        try:
            with self.hold_sync():
                self.channel_type.options = [(f"{t} ({n} channels)", t) for t, n in info.ica_types.items()]
                for name, value in values.items():
                    if value != "":
                        self.controls[name].value = value
        finally:
            self._setting = False
        self.header.value = (
            f"<b>{esc(Path(rel_path).name)}</b>: {info.duration:.1f} s at {info.sfreq:g} Hz "
            f"(Nyquist {info.nyquist:g} Hz); channels: "
            + ", ".join(f"{esc(t)} {n}" for t, n in info.channel_counts.items()))
        self.recording_note.value = span("lk-hint", " ".join(said))
        self.validate()

    # -- values and validation ---------------------------------------------------------------------------------------
    def _on_change(self, change: dict[str, Any]) -> None:
        name = next(n for n, c in self.controls.items() if c is change["owner"])
        if not self._setting:
            self.touched |= {name, *fields.RELATED.get(name, ())}
        if name == "method":
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
        """The form's values as typed, one per ``IcaParams`` field."""
        out = {name: control.value for name, control in self.controls.items()}
        out["base_dir"] = self.base_dir
        out["raw_file_path"] = self.browser.value
        return out

    def validate(self) -> dict[str, str]:
        """Every problem of the current values (field -> message with its label and the typed value); updates
        the messages under the touched fields, the ranges, the predicted warnings and the buttons."""
        values = self.values()
        self.predicted, draft = [], None
        if self.recording_error:
            self.problems = {"raw_file_path": self.recording_error}
        elif not values["raw_file_path"] or self.info is None:
            self.problems = {"raw_file_path": "Recording: choose one in the list above."}
        else:
            info = self.info
            draft = check_draft(values, header_problems=lambda p: recording.header_problems(p, info))
            self.problems = {name: fields.message(err, values.get(name)) for name, err in draft.problems.items()}
            if draft.params is not None:
                self.predicted = fields.predicted_warnings(draft.params, info)
        self._draft = draft
        for name, label in self.errors.items():
            shown = name == "raw_file_path" and self.recording_error or name in self.touched
            label.value = error_html(self.problems.get(name, "")) if shown else ""
        for name, hint in fields.hints(self.info, self.channel_type.value or "").items():
            self.hints[name].value = span("lk-hint", hint) if self.info is not None else ""
        self.warnings_box.value = ("<div class='lk-banner'><b>Before you run</b><ul style='margin:2px 0'>"
                                   + "".join(f"<li>{esc(w)}</li>" for w in self.predicted) + "</ul></div>"
                                   if self.predicted else "")
        ok = not self.problems
        running = self.running
        self.run_button.disabled = not ok or running
        self.cluster_button.disabled = not ok or not self.cluster_available
        self.sweep_button.disabled = not ok
        why = ("Run is off while run " + (self.current or "") + " runs: cancel it or wait." if running and ok else
               "Run is off: " + " ".join(self.problems.values()) if not ok else "")
        self.run_reason.value = span("lk-muted", why)  # an explanation, not an error: the fields carry those
        self.run_button.tooltip = why or "run this set on this machine"
        if self._sweep_panel is not None:
            self._sweep_panel.update_export()
        return self.problems

    def current_params(self) -> IcaParams | None:
        """The valid set the form shows, or None (without validating again)."""
        return None if self._draft is None or self.problems else self._draft.params

    @property
    def params(self) -> IcaParams | None:
        """The valid parameter set the form shows, or None while anything is invalid."""
        self.validate()
        return self.current_params()

    def set_params(self, params: IcaParams) -> None:
        """Fill the form from a set (its recording must be inside this form's base_dir)."""
        self.browser.choose(params.raw_file_path)
        if self.browser.value == params.raw_file_path and self.info is None:
            self.load_recording(params.raw_file_path)
        with self.hold_sync():
            self.method.value = params.method
            self.channel_type.value = params.channel_type
            for name in _TEXT_FIELDS:
                self.controls[name].value = _text(getattr(params, name))
            self.extended.value = _bool_text(params.extended)
            self.ortho.value = _bool_text(params.ortho)
        self.validate()

    # -- running -------------------------------------------------------------------------------------------------------
    def _button(self, action: Any) -> None:
        """A button's action; an error is shown beside the Run button, never raised into the event loop."""
        try:
            action()
        except Exception as err:  # noqa: BLE001 - shown, one line
            self.step_label.value = error_html(str(err) if isinstance(err, LabkitError) else
                                               f"{type(err).__name__}: {err}")

    @property
    def running(self) -> bool:
        watcher = self._watcher  # read once: the watcher thread clears it as it ends
        return watcher is not None and watcher.is_alive()

    def run_here(self) -> Run:
        """Start the current set on this machine and follow it; returns the run as first told (queued)."""
        params = self.params
        if params is None:
            raise LabkitError("Run is off: " + " ".join(self.problems.values()))
        if self.running:
            raise LabkitError(f"Run {self.current} is still running; cancel it or wait")
        run = self.backend.submit(params)
        self.current = run.run_id
        self.result_box.children, self.result_view = (), None
        self.tabs.selected_index = 0
        self._set_log("")
        self._show_state(run)
        self.cancel_button.disabled = False
        # a thread: the run takes seconds to minutes and the notebook must stay usable meanwhile; it only
        # changes this run's progress, log and results (stopping once another run is shown) and sends its cancel
        self._watcher = threading.Thread(target=self._watch, args=(run.run_id,), daemon=True, name="labkit-watch")
        self._watcher.start()
        self.validate()
        return run

    def _watch(self, run_id: str) -> None:
        """Follow one run: its state and step, its log's newest lines, then its result (the watcher thread)."""
        try:
            last = None
            while True:
                if self._cancel_asked == run_id:  # asked from the kernel's thread: stopping waits for the child
                    self._cancel_asked = None
                    try:
                        self.backend.cancel(run_id)
                    except LabkitError:
                        pass  # it ended meanwhile: the next status shows how
                run = self.backend.status(run_id)
                if run != last:
                    self._show_state(run)
                last = run
                if self.current == run_id:
                    self._set_log("\n".join(self.backend.log(run_id, tail=20)))
                if run.done:
                    break
                time.sleep(POLL_S)
            try:
                result = self.backend.result(run_id)
            except LabkitError:
                result = None
            if result is not None:
                self.add_history(result)
            if self.current == run_id:
                self._show_final(run, result)
        except Exception as err:  # noqa: BLE001 - a watcher never dies silently
            if self.current == run_id:
                self.step_label.value = error_html(f"Following run {run_id} failed: {type(err).__name__}: {err}")
        finally:
            self.cancel_button.disabled = True
            self._watcher = None
            self.validate()
            if self._jobs is not None and self._jobs.listed:
                self._jobs.refresh()

    def _show_state(self, run: Run) -> None:
        if self.current != run.run_id:
            return
        head = f"Run <code>{esc(run.run_id)}</code> {state_html(run.state)}"
        if run.state == QUEUED:
            self.progress.value, self.progress.bar_style, self.progress.description = 0, "info", "Queued"
            self.step_label.value = head + (f": {esc(run.reason)}" if run.reason else "")
        elif run.state == RUNNING:
            step = run.step if run.step in STEPS else ""
            self.progress.bar_style = "info"
            if step:
                self.progress.value = STEPS.index(step)
                self.progress.description = f"{STEPS.index(step) + 1}/{len(STEPS)} {step}"
            else:
                self.progress.description = "Running"
            self.step_label.value = head + (f": step {esc(step)}" if step else "")

    def _show_final(self, run: Run, result: RunResult | None) -> None:
        """A finished run's state, log and results, all of that one run."""
        self.current = run.run_id
        view = ResultView(result) if result is not None else None  # built first: state and results show together
        state, bar = run.state, self.progress
        head = f"Run <code>{esc(run.run_id)}</code> {state_html(state)}"
        if state == CANCELLED:  # stopped on purpose: said plainly, not as an error
            bar.bar_style, bar.description = "", "Cancelled"
            self.step_label.value = head + (f": {esc(run.reason)}" if run.reason else "")
        elif state == FAILED:
            bar.bar_style, bar.description = "danger", "Failed"
            self.step_label.value = head + ": " + error_html(run.reason or "no reason was recorded")
        else:
            bar.value, bar.description = bar.max, "Done"
            bar.bar_style = "warning" if state == WITH_WARNINGS else "success"
            count = len(dict.fromkeys(run.warnings))
            self.step_label.value = head + (f" ({count}: see the banner below)" if count else "")
        logged = tail(result.file(LOG_FILE), 20) if result is not None else ""
        self._set_log(logged or self.log_text)
        self.result_view, self.result_box.children = view, (view,) if view is not None else ()

    def show_run(self, result: RunResult) -> None:
        """Show a finished run from History: its state, log and results together."""
        from labkit.runners.backend import run_of

        self._show_final(run_of(result), result)
        self.tabs.selected_index = 0

    def add_history(self, result: RunResult) -> None:
        self.history_panel.add(result)

    def _log_html(self, text: str) -> str:
        """The log, scrolled to its newest line (a reversed column starts at the bottom), focusable, selectable."""
        body = esc(text) if text else "<i>the run's log appears here</i>"
        return ("<div class='lk-log' tabindex='0' role='log' aria-label='run log' style='display:flex;"
                "flex-direction:column-reverse;max-height:14em;overflow:auto;border:1px solid "
                "var(--jp-border-color2, #ccc);background:var(--jp-layout-color0);padding:2px 6px'>"
                f"<pre style='margin:0;white-space:pre-wrap;overflow:visible;user-select:text'>{body}</pre></div>")

    def _set_log(self, text: str) -> None:
        if text != self.log_text or not text:
            self.log_text = text
            self.log_area.value = self._log_html(text)

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """Block until the current run is finished and shown (for tests and scripts); TimeoutError past ``timeout``."""
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout)
            if watcher.is_alive():
                raise TimeoutError(f"run {self.current} is not finished and shown after {timeout} s")
        return self.history[-1] if self.history else None

    def cancel(self) -> None:
        """Stop the current run; the watcher then shows it as cancelled."""
        if not self.running or self.current is None:
            raise LabkitError("Nothing is running")
        run_id = self.current
        self.step_label.value = f"Cancelling run <code>{html.escape(run_id)}</code>…"
        self.cancel_button.disabled = True
        self._cancel_asked = run_id  # the run's watcher cancels it (stopping takes seconds) and shows it cancelled

    def submit_to_cluster(self) -> str:
        """Submit the form's parameter set as a cluster Job; return the Job's name."""
        params = self.params
        if params is None:
            raise LabkitError("Run is off: " + " ".join(self.problems.values()))
        name = _cluster_submit(params)
        self.step_label.value = f"Submitted to the cluster as <code>{esc(name)}</code>"
        self.jobs.refresh()
        return name

    def add_to_sweep(self) -> bool:
        params = self.params
        if params is None:
            raise LabkitError("Not added: " + " ".join(self.problems.values()))
        added = self.sweep_panel.add(params)
        self.tabs.selected_index = 2
        return added


#: the tabs' controls under the form's own names (``form.sweep_select`` is ``form.sweep_panel.select``)
_ALIASES = {"history_panel": "select:history_select show_button compare_box compare_a compare_b compare_button",
            "sweep_panel": "select:sweep_select remove_button cluster_button:sweep_cluster_button message:sweep_message "
                           "seeds:sweep_seeds run_button:sweep_run_button progress:sweep_progress "
                           "load_button:sweep_load_button export_source export_format export_area"}
for _panel, _names in _ALIASES.items():
    for _item in _names.split():
        _attr, _, _alias = _item.partition(":")
        setattr(IcaForm, _alias or _attr, property(lambda self, p=_panel, a=_attr: getattr(getattr(self, p), a),
                                                   doc=f"``{_panel}.{_attr}``"))
