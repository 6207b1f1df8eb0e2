"""The notebook form's model, no browser: the right data per recording, validation in the form's words,
the chooser, sweeps and export (driven through the widget models: set ``.value``, call ``.click()``)."""

from __future__ import annotations

import html
import json
import re
import shlex

import mne
import numpy as np
import pytest

from labkit import IcaParams, ParameterError
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.results.folder import RunFolder
from labkit.widgets import IcaForm, RecordingBrowser, export_sweep, export_text

DEMO_END = 119.996  # the demo's last sample (120 s at 250 Hz)


def small_form(base, **values) -> IcaForm:
    """A form on the demo recording with settings that fit in seconds (15 components so suspects can be flagged)."""
    form = IcaForm(base_dir=base)
    form.browser.choose(DEMO_FILENAME)
    for name, value in {"method": "picard", "n_components": 15, "crop_tmax": 30.0, **values}.items():
        form.controls[name].value = value
    assert form.problems == {}, form.problems
    return form


def text(widget) -> str:
    """What the researcher reads in an HTML widget (tags dropped)."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def write_recording(path, seconds: float, *, ch_type: str = "eeg", n: int = 8, sfreq: float = 250.0) -> None:
    """A small synthetic recording (noise) of ``seconds`` with ``n`` channels of ``ch_type``."""
    rng = np.random.default_rng(0)
    info = mne.create_info([f"{ch_type.upper()}{i:03d}" for i in range(n)], sfreq, ch_type)
    mne.io.RawArray(rng.normal(0, 1e-6 if ch_type == "eeg" else 1e-12, (n, int(seconds * sfreq))), info,
                    verbose="error").save(path, verbose="error")


# -- the chooser ------------------------------------------------------------------------------------------------------
def test_chooser_lists_recordings_only_inside_base_dir_with_icon_font_icons(demo_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret_raw.fif").write_bytes(b"x")
    (demo_dir / "escape_raw.fif").symlink_to(outside / "secret_raw.fif")
    (demo_dir / "escape_dir").symlink_to(outside, target_is_directory=True)
    (demo_dir / "notes.txt").write_text("not a recording")
    (demo_dir / ".hidden_raw.fif").write_bytes(b"x")
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME)
    folder = RunFolder.create(params, "r1").path  # a result folder, with an ICA file in it
    (folder / "components-ica.fif").write_bytes(b"x")
    (demo_dir / "labkit-demo" / "sub_ica.fif").write_bytes(b"x")
    browser = RecordingBrowser(demo_dir)
    assert browser.options == ("labkit-demo/",), "no result folder, no symlink out, no text file"
    assert browser.buttons["labkit-demo/"].icon == "folder"
    browser.buttons["labkit-demo/"].click()
    assert browser.options == (browser.UP, "demo_raw.fif"), "an ICA file is not a recording"
    assert browser.buttons["demo_raw.fif"].icon == "file" and browser.buttons[browser.UP].icon == "arrow-up"
    assert all(ord(ch) < 0x2000 for label in browser.options for ch in label), "no emoji in labels"
    browser.buttons["demo_raw.fif"].click()
    assert browser.value == DEMO_FILENAME
    browser.buttons[browser.UP].click()
    assert browser.cwd == demo_dir.resolve()
    for bad in ("escape_raw.fif", "../outside/secret_raw.fif", "escape_dir/secret_raw.fif", "notes.txt"):
        with pytest.raises(ParameterError, match="raw_file_path"):
            browser.choose(bad)
    browser.browse(demo_dir / ".." / "outside")  # never leaves base_dir
    assert browser.cwd == demo_dir.resolve()


# -- the right data ------------------------------------------------------------------------------------------------
def test_a_long_recording_after_a_short_one_gets_its_own_span_and_says_so(demo_dir):
    write_recording(demo_dir / "short_raw.fif", 6.0)
    form = IcaForm(base_dir=demo_dir)
    form.browser.choose("short_raw.fif")
    assert form.crop_tmax.value == "5.996", "a short recording is analysed to its end"
    assert "5.996 s, the recording's end" in text(form.recording_note)
    assert form.n_components.value == "8", "at most its 8 channels"
    assert "Components set to 8" in text(form.recording_note)
    form.browser.choose(DEMO_FILENAME)
    assert form.crop_tmax.value == "60" and form.crop_tmin.value == "0"
    assert "60 s, the default span" in text(form.recording_note) and "120.0 s" in text(form.recording_note)
    assert form.params.crop_tmax == 60.0 and form.params.channel_type == "eeg"
    assert "up to 119.996 s" in text(form.hints["crop_tmax"])
    assert "below 125 Hz" in text(form.hints["filter_fmax"]) and "2 to 60" in text(form.hints["n_components"])


def test_channel_types_and_bounds_come_from_the_header(demo_dir):
    form = IcaForm(base_dir=demo_dir)
    form.browser.choose(DEMO_FILENAME)
    assert dict(form.channel_type.options) == {"eeg (60 channels)": "eeg", "eog (2 channels)": "eog"}
    assert "250 Hz" in form.header.value and "eeg 60" in form.header.value
    form.channel_type.value = "eog"
    assert "2 to 2" in text(form.hints["n_components"])
    assert "Components: got 30; allowed: at most the 2 picked eog channels." in text(form.errors["n_components"])


# -- validation ------------------------------------------------------------------------------------------------------
def test_nothing_is_validated_before_a_recording_and_the_disabled_run_says_why(demo_dir):
    form = IcaForm(base_dir=demo_dir)
    form.filter_fmax.value = "abc"
    assert set(form.problems) == {"raw_file_path"}
    assert all(e.value == "" for e in form.errors.values()), "no red text before anything is chosen"
    assert form.run_button.disabled and "Run is off: Recording: choose one" in text(form.run_reason)
    assert "lk-error" not in form.run_reason.value, "no red text before anything is done"
    form.browser.choose(DEMO_FILENAME)
    assert form.filter_fmax.value == "abc", "what was typed stays"
    assert text(form.errors["filter_fmax"]).startswith("Low-pass (Hz): got abc; allowed:")
    form.filter_fmax.value = "30"
    assert form.problems == {} and not form.run_button.disabled and form.run_reason.value == ""
    assert all(e.value == "" for e in form.errors.values())


def test_typed_out_of_range_values_are_kept_and_told_with_the_label_and_the_typed_value(demo_dir):
    form = small_form(demo_dir)
    form.filter_fmax.value = "200"
    assert form.filter_fmax.value == "200", "never clamped"
    shown = text(form.errors["filter_fmax"])
    assert shown == "Low-pass (Hz): got 200; allowed: below the Nyquist frequency (125 Hz)."
    assert "filter_fmax" not in shown and "Low-pass (Hz)" in text(form.run_reason) and form.run_button.disabled
    form.filter_fmax.value = "30"
    form.n_components.value = "100"
    assert form.n_components.value == "100"
    assert text(form.errors["n_components"]).startswith("Components: got 100; allowed: at most")
    form.n_components.value = "15"
    form.filter_fmin.value = "-5"
    assert text(form.errors["filter_fmin"]) == "High-pass (Hz): got -5; allowed: a frequency above 0 Hz."
    form.filter_fmin.value = "40"
    assert text(form.errors["filter_fmax"]) == ("Low-pass (Hz): got 30; allowed: greater than High-pass (Hz) "
                                                "(40.0 Hz).")
    form.filter_fmin.value = "1"
    form.crop_tmin.value = "40"
    assert "Crop end (s): got 30.0; allowed: greater than Crop start (s)" in text(form.errors["crop_tmax"])
    form.crop_tmin.value = "0"
    form.crop_tmax.value = "9999"  # past the end: kept, and the run would clamp it, so it is said before
    assert form.crop_tmax.value == "9999" and form.problems == {}
    assert "Crop end (s) 9999 is past the recording's end" in text(form.warnings_box)
    form.random_state.value = "abc"
    form.max_iter.value = "-3"
    assert text(form.errors["random_state"]).startswith("Random seed: got abc; allowed:")
    assert text(form.errors["max_iter"]).startswith("Max iterations: got -3; allowed:")
    form.random_state.value = ""  # empty: a random seed
    form.max_iter.value = "auto"
    assert form.problems == {} and form.params.random_state is None


def test_errors_appear_only_on_fields_the_user_touched(demo_dir):
    form = IcaForm(base_dir=demo_dir)
    form.browser.choose(DEMO_FILENAME)
    form.crop_tmin.value = "80"  # past the 60 s default end: the start is what is wrong, and it is shown
    assert "crop_tmin" in form.problems and "Crop start (s): got 80" in text(form.errors["crop_tmin"])
    assert form.errors["crop_tmax"].value == "" and form.errors["n_components"].value == ""
    form.browser.choose(DEMO_FILENAME.replace("demo_raw", "demo_raw"))  # the same choice again changes nothing
    assert form.crop_tmin.value == "80"


def test_header_predicted_warnings_are_shown_before_the_run(demo_dir):
    form = small_form(demo_dir, n_components=30, crop_tmax=4.0)
    shown = text(form.warnings_box)
    assert "Before you run" in shown and "1001 samples, fewer than the 9000 (10 x 30^2)" in shown
    assert not form.run_button.disabled, "a warning does not stop a run"
    form.crop_tmax.value = "60"
    assert form.warnings_box.value == ""
    write_recording(demo_dir / "meg_raw.fif", 30.0, ch_type="mag", n=6)
    form.browser.choose("meg_raw.fif")
    assert form.channel_type.value == "mag" and form.crop_tmax.value == "29.996"
    assert "MEGnet labels components only with at least 60 s of data" in text(form.warnings_box)


def test_method_options_shown_only_when_meaningful(demo_dir):
    form = small_form(demo_dir)
    assert form.rows["extended"].layout.display is None and form.rows["ortho"].layout.display is None
    assert form.extended.label == "method default" and form.params.extended is None
    form.ortho.value = "true"
    form.extended.value = "false"
    assert form.params.ortho is True and form.params.extended is False
    form.method.value = "infomax"
    assert form.rows["ortho"].layout.display == "none" and form.ortho.value == ""
    form.method.value = "fastica"
    assert form.rows["extended"].layout.display == "none" and form.extended.value == ""
    assert form.params.mne_fit_params == {}


def test_unreadable_recording_is_reported_at_the_chooser(demo_dir):
    (demo_dir / "broken_raw.fif").write_bytes(b"not a fif file")
    form = small_form(demo_dir)
    form.browser.choose("broken_raw.fif")
    assert "Cannot read recording 'broken_raw.fif'" in text(form.errors["raw_file_path"])
    assert form.info is None and form.run_button.disabled and form.sweep_button.disabled
    form.browser.choose(DEMO_FILENAME)
    assert form.errors["raw_file_path"].value == "" and not form.run_button.disabled


def test_cluster_button_disabled_with_a_reason(demo_dir, monkeypatch):
    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    monkeypatch.delenv("LABKIT_HUB_SERVICE_URL", raising=False)
    form = small_form(demo_dir)
    assert form.cluster_button.disabled and "LABKIT_CLUSTER_CONFIG" in form.cluster_reason.value
    form.sweep_button.click()
    assert form.sweep_cluster_button.disabled and "LABKIT_CLUSTER_CONFIG" in form.sweep_cluster_button.tooltip


# -- sweep and export -------------------------------------------------------------------------------------------------
def test_sweep_refuses_duplicates_by_name_loads_a_set_back_and_exports(demo_dir):
    form = small_form(demo_dir)
    form.sweep_button.click()
    form.sweep_button.click()  # the same set again: refused, naming the set it repeats
    assert len(form.sweep) == 1
    first = form.sweep[0]
    assert f"already in the sweep as set 1 ({first.digest})" in text(form.sweep_message)
    form.random_state.value = "7"
    form.method.value = "infomax"
    form.extended.value = "true"
    form.sweep_button.click()
    assert [p.random_state for p in form.sweep] == [97, 7] and len(form.sweep_select.options) == 2
    assert "demo_raw.fif infomax" in form.sweep_select.options[1][0]
    second = form.sweep[1]

    form.sweep_select.value = 0
    form.sweep_load_button.click()  # the first set back in the form
    assert form.params == first and "Set 1 is in the form" in text(form.sweep_message)

    form.export_source.value = "selected set"
    form.sweep_select.value = 1
    form.export_format.value = "json"
    assert IcaParams.from_json(form.export_area.value) == second
    form.export_format.value = "env"
    env = dict(line.split("=", 1) for line in form.export_area.value.splitlines())
    assert IcaParams.from_env({k: shlex.split(v)[0] if v != "''" else "" for k, v in env.items()}) == second
    form.export_format.value = "labkit run"
    argv = shlex.split(form.export_area.value)
    assert argv[:2] == ["labkit", "run"] and argv[2:] == second.to_cli_args()
    form.export_format.value = "papermill"
    argv = shlex.split(form.export_area.value)
    assert argv[:3] == ["papermill", "notebooks/ica_run.ipynb", f"ica_run_{second.digest}.ipynb"]
    pairs = dict(zip(argv[4::3], argv[5::3], strict=True))
    assert pairs["method"] == "infomax" and pairs["extended"] == "True" and pairs["ortho"] == "None"

    form.export_source.value = "whole sweep"
    form.export_format.value = "json"
    exported = form.export_area.value
    assert [IcaParams.from_dict(d) for d in json.loads(exported)] == form.sweep
    assert json.loads(export_sweep(form.sweep)) == json.loads(exported)
    form.export_source.value = "form"
    assert form.export_area.value == export_text(form.params, "json")
    form.sweep_select.value = 0
    form.remove_button.click()
    assert form.sweep == [second]
    with pytest.raises(ValueError):
        export_text(second, "yaml")

    fresh = IcaForm(base_dir=demo_dir)  # a whole sweep loads back; a set already there is said, not added
    fresh.sweep_panel.import_area.value = exported
    fresh.sweep_panel.import_button.click()
    assert fresh.sweep == [first, second] and "Loaded 2 set(s)" in text(fresh.sweep_message)
    fresh.sweep_panel.import_button.click()
    assert len(fresh.sweep) == 2 and "2 already in the sweep" in text(fresh.sweep_message)
    fresh.sweep_panel.import_area.value = "[{"
    fresh.sweep_panel.import_button.click()
    assert "'sweep'" in text(fresh.sweep_message) and "JSON" in text(fresh.sweep_message)
    fresh.set_params(second)
    assert fresh.params == second


# -- links to a run's documents ------------------------------------------------------------------------------------
def test_report_and_notebook_links_carry_the_extensions_command_and_a_file_fallback(tmp_path, monkeypatch):
    from labkit.analysis.datasets import write_demo
    from labkit.results.reading import load_run
    from labkit.widgets import ResultView

    base = tmp_path / 'runs "a" & <b>'
    base.mkdir()
    write_demo(base)
    folder = RunFolder.create(IcaParams(base_dir=str(base), raw_file_path=DEMO_FILENAME), "r1").path
    for name in ("report.html", "ica_run.ipynb"):
        (folder / name).write_text("x")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-1.json").write_text(json.dumps({"root_dir": str(tmp_path), "base_url": "/user/al&ce/",
                                                         "pid": 1}))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.chdir(base)
    markup = ResultView(load_run(folder)).links.value
    links = re.findall(r"<a ([^>]*)>([^<]*)</a>", markup)
    assert [label for _, label in links] == ["HTML report", "executed notebook"]
    attrs = [dict(re.findall(r'([\w-]+)="([^"]*)"', a)) for a, _ in links]
    assert [a["data-labkit-command"] for a in attrs] == ["labkit:open-report", "labkit:open-executed-notebook"]
    assert {a["data-labkit-run-id"] for a in attrs} == {"r1"}
    rel = "runs%20%22a%22%20%26%20%3Cb%3E/" + folder.name
    assert [html.unescape(a["href"]) for a in attrs] == [f"/user/al&ce/files/{rel}/report.html",
                                                         f"/user/al&ce/files/{rel}/ica_run.ipynb"]
    assert all(a["target"] == "_blank" for a in attrs), "the fallback opens no second JupyterLab here"
    assert "opens as a file" in attrs[1]["title"]
    assert '"a" & <b>' not in markup and "&quot;a&quot; &amp; &lt;b&gt;" in markup, "the path is escaped"

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "no-server"))
    href = re.search(r'href="([^"]*)"', ResultView(load_run(folder)).links.value).group(1)
    assert html.unescape(href) == (folder / "report.html").resolve().as_uri(), "outside Jupyter: the file itself"
