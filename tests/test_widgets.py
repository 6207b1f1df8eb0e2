"""The notebook form, driven through its widget models (set ``.value``, call ``.click()``), no browser."""

from __future__ import annotations

import html
import json
import shlex
import time
from pathlib import Path

import ipywidgets as W
import mne
import pytest
from cluster_fixtures import NS, Controllers, cluster_config, emulator  # noqa: F401 (fixtures)

from labkit import IcaParams, ParameterError
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.analysis.exclusions import CLEANED_FILE
from labkit.results.components import read_components_tsv
from labkit.results.layout import COMPONENTS_TSV, FAILED
from labkit.results.reading import load_run
from labkit.widgets import (
    IcaForm,
    JobsView,
    RecordingBrowser,
    ResultView,
    export_sweep,
    export_text,
)


def small_form(base: Path, **values) -> IcaForm:
    """A form on the demo recording with settings that fit in seconds (15 components so suspects can be flagged)."""
    form = IcaForm(base_dir=base)
    form.browser.choose(DEMO_FILENAME)
    settings = {"method": "picard", "n_components": 15, "crop_tmin": 0.0, "crop_tmax": 30.0, **values}
    for name, value in settings.items():
        form.controls[name].value = value
    assert form.problems == {}, form.problems
    return form


def expected_message(**changes) -> str:
    """What IcaParams itself says about a value, as the form shows it (HTML-escaped)."""
    with pytest.raises(ParameterError) as caught:
        IcaParams(**changes)
    return html.escape(str(caught.value))


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- choosing a recording ---------------------------------------------------------------------------------------
def test_browser_lists_only_recordings_inside_base_dir(demo_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret_raw.fif").write_bytes(b"x")
    (demo_dir / "escape_raw.fif").symlink_to(outside / "secret_raw.fif")
    (demo_dir / "escape_dir").symlink_to(outside, target_is_directory=True)
    (demo_dir / "notes.txt").write_text("not a recording")
    (demo_dir / ".hidden_raw.fif").write_bytes(b"x")
    browser = RecordingBrowser(demo_dir)
    assert browser.select.options == ("📁 labkit-demo/",)
    browser.select.value = "📁 labkit-demo/"
    assert "📄 demo_raw.fif" in browser.select.options and browser.UP in browser.select.options
    browser.select.value = "📄 demo_raw.fif"
    assert browser.value == DEMO_FILENAME
    browser.select.value = browser.UP
    assert browser.cwd == demo_dir.resolve()
    for bad in ("escape_raw.fif", "../outside/secret_raw.fif", "escape_dir/secret_raw.fif", "notes.txt"):
        with pytest.raises(ParameterError, match="raw_file_path"):
            browser.choose(bad)
    browser.browse(demo_dir / ".." / "outside")  # never leaves base_dir
    assert browser.cwd == demo_dir.resolve()


def test_header_bounds_every_control(demo_dir):
    form = IcaForm(base_dir=demo_dir)
    assert form.run_button.disabled and "raw_file_path" in form.problems
    form.browser.choose(DEMO_FILENAME)
    assert "raw_file_path" not in form.problems
    # ICA-fittable types with >= 2 good channels: the single ECG channel is for scoring, not offered
    assert dict(form.channel_type.options) == {"eeg (60 channels)": "eeg", "eog (2 channels)": "eog"}
    assert form.channel_type.value == "eeg"
    assert form.crop_tmin.max == pytest.approx(119.996) and form.crop_tmax.max == pytest.approx(119.996)  # last sample
    assert form.filter_fmax.max == pytest.approx(125.0) and form.filter_fmin.max == pytest.approx(125.0)
    assert form.n_components.max == 60
    assert "250 Hz" in form.header.value and "eeg 60" in form.header.value
    form.crop_tmax.value = 500  # clamped to the recording
    assert form.crop_tmax.value == pytest.approx(119.996)
    form.channel_type.value = "eog"
    assert form.n_components.max == 2 and form.n_components.value == 2
    form.channel_type.value = "eeg"
    assert form.n_components.max == 60


# -- validation ------------------------------------------------------------------------------------------------------
def test_invalid_combinations_shown_next_to_their_control_in_ica_params_words(demo_dir):
    form = small_form(demo_dir)
    assert not form.run_button.disabled and not form.sweep_button.disabled
    base = {"base_dir": str(demo_dir), "raw_file_path": DEMO_FILENAME}

    form.crop_tmin.value = 40.0  # crop end 30 is no longer after it
    assert set(form.problems) == {"crop_tmax"}
    assert form.errors["crop_tmax"].value.count(expected_message(**base, crop_tmin=40.0, crop_tmax=30.0)) == 1
    assert form.run_button.disabled and form.sweep_button.disabled and form.params is None
    assert form.errors["crop_tmin"].value == ""
    form.crop_tmin.value = 0.0
    assert form.problems == {} and not form.run_button.disabled

    form.filter_fmin.value = 40.0
    assert expected_message(**base, filter_fmin=40.0, filter_fmax=30.0) in form.errors["filter_fmax"].value
    form.filter_fmin.value = 1.0

    form.filter_fmax.value = 125.0  # the recording's Nyquist: only the header can say this is wrong
    assert "below the Nyquist frequency (125 Hz)" in html.unescape(form.errors["filter_fmax"].value)
    assert form.run_button.disabled
    form.filter_fmax.value = 30.0

    form.random_state.value = "abc"
    form.max_iter.value = "-3"
    assert expected_message(**base, random_state="abc") in form.errors["random_state"].value
    assert expected_message(**base, max_iter=-3) in form.errors["max_iter"].value
    assert form.run_button.disabled
    form.random_state.value = ""  # empty: a random seed
    form.max_iter.value = "auto"
    assert form.problems == {} and form.params.random_state is None


def test_method_options_shown_only_when_meaningful(demo_dir):
    form = small_form(demo_dir)
    assert form.rows["extended"].layout.display is None and form.rows["ortho"].layout.display is None
    assert form.extended.label == "method default" and form.params.extended is None
    form.ortho.value = "true"
    form.extended.value = "false"
    assert form.params.ortho is True and form.params.extended is False
    form.method.value = "infomax"
    assert form.rows["ortho"].layout.display == "none" and form.ortho.value == ""
    assert form.rows["extended"].layout.display is None
    form.method.value = "fastica"
    assert form.rows["extended"].layout.display == "none" and form.extended.value == ""
    assert form.params.mne_fit_params == {}


def test_cluster_button_disabled_with_a_reason(demo_dir, monkeypatch):
    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    form = small_form(demo_dir)
    assert form.cluster_button.disabled
    assert "LABKIT_CLUSTER_CONFIG" in form.cluster_reason.value
    form.sweep_button.click()
    assert form.sweep_cluster_button.disabled and "LABKIT_CLUSTER_CONFIG" in form.sweep_cluster_button.tooltip


# -- sweep and export -------------------------------------------------------------------------------------------------
def test_sweep_and_every_export_format(demo_dir):
    form = small_form(demo_dir)
    form.sweep_button.click()
    form.random_state.value = "7"
    form.method.value = "infomax"
    form.extended.value = "true"
    form.sweep_button.click()
    assert len(form.sweep) == 2 and len(form.sweep_select.options) == 2
    assert [p.random_state for p in form.sweep] == [97, 7]
    second = form.sweep[1]

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
    assert argv[3::3] == ["-p"] * len(pairs)
    assert pairs["method"] == "infomax" and pairs["extended"] == "True" and pairs["ortho"] == "None"
    assert pairs["random_state"] == "7" and pairs["n_components"] == "15"

    form.export_source.value = "whole sweep"
    form.export_format.value = "json"
    assert [IcaParams.from_dict(d) for d in json.loads(form.export_area.value)] == form.sweep
    assert json.loads(export_sweep(form.sweep)) == json.loads(form.export_area.value)
    form.export_format.value = "labkit run"
    assert form.export_area.value.count("labkit run") == 2

    form.export_source.value = "form"
    assert form.export_area.value == export_text(form.params, "labkit run")
    form.sweep_select.value = 0
    form.remove_button.click()
    assert form.sweep == [second]
    with pytest.raises(ValueError):
        export_text(second, "yaml")

    fresh = IcaForm(base_dir=demo_dir)  # a set loads back into a form unchanged
    fresh.set_params(second)
    assert fresh.params == second


# -- running ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_run_results_history_and_comparison(demo_dir):
    form = small_form(demo_dir)
    form.run_button.click()
    assert form.run_button.disabled, "no second run while one is running"
    result = form.wait(timeout=180)
    assert result is not None and result.state == "succeeded", result and result.error
    assert form.progress.value == form.progress.max and form.progress.bar_style == "success"
    assert "fit" in form.log_area.value or "INFO" in form.log_area.value
    assert not form.run_button.disabled and form.cancel_button.disabled

    view = form.result_view
    assert form.result_box.children == (view,)
    images = [w for w in view.topomaps.children if isinstance(w, W.Image)]
    assert images and images[0].value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "picard" in view.metrics_table.value and "n_components" in view.metrics_table.value
    suspects = sorted(set(result.metrics["eog_suspects"]) | set(result.metrics["ecg_suspects"]))
    assert suspects, "15 components on the demo data flag the blink/heartbeat"
    assert view.scores_table.value.count("class='suspect'") == len(suspects)
    assert view.excluded == suspects, "suspects are pre-marked for exclusion"
    assert "report.html" in view.links.value and "ica_run.ipynb" in view.links.value

    view.component.value = 0  # a click on a component: its properties, computed in the background
    wait_for(lambda: any(isinstance(w, W.Image) for w in view.properties.children), 90, "component properties")

    keep_one_more = next(i for i in range(15) if i not in suspects)
    view.exclude_boxes[keep_one_more].value = True
    view.save_button.click()
    tsv = result.file(COMPONENTS_TSV)
    header, *rows = tsv.read_text().splitlines()
    assert header.split("\t") == ["component", "type", "description", "status", "status_description",
                                  "ic_type", "ic_type_probability"], "the automatic labels are kept on save"
    assert len(rows) == 15
    assert read_components_tsv(tsv) == sorted(suspects + [keep_one_more])
    assert "marked bad by hand" in tsv.read_text()

    view.apply_button.click()
    cleaned = result.file(CLEANED_FILE)
    assert cleaned.exists(), view.message.value
    raw = mne.io.read_raw_fif(cleaned, verbose="error")
    assert raw.n_times == 120 * 250 and len(raw.ch_names) == 63
    assert ResultView(load_run(result.path)).excluded == sorted(suspects + [keep_one_more])

    form.random_state.value = "1"
    form.run_button.click()
    second = form.wait(timeout=180)
    assert second.state == "succeeded" and second.run_id != result.run_id
    assert [r.run_id for r in form.history] == [result.run_id, second.run_id]
    assert len(form.history_select.options) == 2
    form.compare_button.click()
    left, right = form.compare_box.children
    assert (left.result.run_id, right.result.run_id) == (result.run_id, second.run_id)
    assert all(isinstance(w, W.Image) for v in (left, right) for w in v.topomaps.children)
    form.history_select.value = 0
    form.show_button.click()
    assert form.result_view.result.run_id == result.run_id

    jobs = form.jobs
    jobs.refresh()
    assert {("machine", result.run_id), ("machine", second.run_id)} <= {v for _, v in jobs.select.options}
    assert "succeeded" in jobs.table.value
    jobs.select.value = ("machine", result.run_id)
    jobs.log_button.click()
    assert jobs.log_area.value
    jobs.open_button.click()
    assert isinstance(jobs.detail.children[0], ResultView)
    jobs.cancel_button.click()
    assert "already succeeded" in jobs.message.value and "nothing to cancel" in jobs.message.value


@pytest.mark.slow
def test_cancel_a_running_run(demo_dir):
    form = small_form(demo_dir, method="fastica", n_components=40, crop_tmax=120.0, max_iter="1000")
    form.run_button.click()
    assert not form.cancel_button.disabled
    wait_for(lambda: form.process.step() in ("load", "filter", "fit"), 60, "the run to start")
    form.cancel_button.click()
    result = form.wait(timeout=60)
    assert result.state == "cancelled" and result.path.name.endswith(FAILED)  # never read as a result
    assert form.progress.bar_style != "danger" and "cancelled" in form.step_label.value
    assert form.cancel_button.disabled and not form.run_button.disabled
    assert form.history[-1].run_id == result.run_id
    form.cancel_button.click()  # nothing running: said, not raised
    assert "Nothing is running" in form.step_label.value


def test_jobs_view_without_runs(tmp_path):
    view = JobsView(tmp_path)
    assert "No runs yet" in view.table.value
    view.log_button.click()
    assert "Select a run first" in view.message.value


@pytest.mark.timeout(30)
def test_cluster_submit_and_jobs_through_the_cluster_client(demo_dir, cluster_config, monkeypatch):
    """With a cluster configured, the form submits and the jobs view lists, tails and cancels cluster jobs.

    The widgets build their own ``ClusterJobs()`` from ``LABKIT_CLUSTER_CONFIG`` and ``KUBECONFIG``
    (the ``cluster_config`` fixture), which talk over HTTP to kmock's KubernetesEmulator; the test plays
    the cluster's controllers and reads what was created back with the official client.
    """
    from kubernetes import client as k8s

    from labkit.runners.cluster.manifests import LABEL_OWNER, LABEL_RUN_ID, LABEL_SWEEP

    emu = cluster_config
    monkeypatch.setenv("LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR", str(demo_dir))  # the form's directory, no results
    ctl = Controllers(emu.api_client())

    form = small_form(demo_dir)
    assert not form.cluster_button.disabled and "LABKIT_CLUSTER_CONFIG" not in form.cluster_reason.value
    form.cluster_button.click()
    name = f"labkit-anna-{form.params.digest}"
    assert f"<code>{name}</code>" in form.step_label.value, form.step_label.value
    job = ctl.batch.read_namespaced_job(name, NS)  # the Job as the cluster holds it
    assert job.metadata.labels[LABEL_OWNER] == "anna"
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["ICA_COMPONENTS_COUNT"] == "15" and env["LABKIT_RUN_ID"] == job.metadata.labels[LABEL_RUN_ID]

    assert form.sweep_cluster_button.disabled, "nothing in the sweep yet"
    form.sweep_button.click()  # the set already submitted ...
    form.random_state.value = "5"
    form.sweep_button.click()  # ... and a new one
    form.sweep_cluster_button.click()
    first, second = form.sweep
    second_name = f"labkit-anna-{second.digest}"
    message = html.unescape(form.sweep_message.value)
    assert message.startswith("Submitted:"), message
    assert f"{name} (attached to the identical job already submitted)" in message and second_name in message
    created = ctl.batch.read_namespaced_job(second_name, NS)
    assert created.metadata.labels.get(LABEL_SWEEP), "a sweep's Job carries its sweep id"
    env = {e.name: e.value for e in created.spec.template.spec.containers[0].env}
    assert IcaParams.from_env(env).random_state == 5
    assert sorted(j.metadata.name for j in ctl.batch.list_namespaced_job(NS).items) == sorted([name, second_name])

    jobs = form.jobs
    values = [v for _, v in jobs.select.options]
    assert ("cluster", name) in values and ("cluster", second_name) in values
    assert "cluster" in jobs.table.value and name in jobs.table.value and "queued" in jobs.table.value

    pod = ctl.create_pod(name, phase="Running", node="worker-1")  # scheduler and kubelet start it
    emu.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"]
              << "".join(f"line {i}\n" for i in range(30)).encode())
    jobs.refresh()
    assert f"cluster {name} [running]" in [label for label, _ in jobs.select.options]
    jobs.select.value = ("cluster", name)
    jobs.log_button.click()
    assert jobs.log_area.value.splitlines() == [f"line {i}" for i in range(10, 30)], jobs.message.value
    assert "Log tail" in jobs.message.value

    jobs.cancel_button.click()
    assert f"Cancelled run <code>{name}</code> (cancelled)" in jobs.message.value, jobs.message.value
    with pytest.raises(k8s.ApiException) as gone:
        ctl.batch.read_namespaced_job(name, NS)
    assert gone.value.status == 404
    assert f"cluster {name} [cancelled]" in [label for label, _ in jobs.select.options]  # told, not hidden
    assert f"cluster {second_name} [queued]" in [label for label, _ in jobs.select.options]


def test_the_progress_bar_knows_every_step_a_real_run_reports(demo_dir):
    """Each step the analysis announces moves the form's bar; the last one is the bar's last (then: Done)."""
    from labkit import widgets
    from labkit.analysis import ica

    reported: list[str] = []
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=3, crop_tmax=4.0)
    ica.run(params, demo_dir / "out", progress=reported.append)
    assert reported and [s for s in reported if s not in widgets.STEPS] == [], reported
    assert reported[0] == widgets.STEPS[0] and reported[-1] == widgets.STEPS[-1]


def test_unreadable_recording_is_reported_at_the_chooser(demo_dir):
    (demo_dir / "broken_raw.fif").write_bytes(b"not a fif file")
    form = small_form(demo_dir)
    form.browser.choose("broken_raw.fif")
    assert "Cannot read recording 'broken_raw.fif'" in html.unescape(form.errors["raw_file_path"].value)
    assert form.info is None and form.run_button.disabled and form.sweep_button.disabled
    form.browser.choose(DEMO_FILENAME)
    assert form.errors["raw_file_path"].value == "" and not form.run_button.disabled
