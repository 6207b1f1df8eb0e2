"""The notebook form's runs, no browser: states in order, the log following, results for review, cancel,
History, the jobs view and the cluster (driven through the widget models: set ``.value``, call ``.click()``)."""

from __future__ import annotations

import html
import re
import time

import mne
import pytest
from cluster_fixtures import NS, Controllers, cluster_config, emulator  # noqa: F401 (fixtures)
from test_widgets_form import small_form

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.analysis.exclusions import CLEANED_FILE
from labkit.results.components import read_components_tsv
from labkit.results.layout import COMPONENTS_TSV, FAILED
from labkit.results.reading import load_run
from labkit.widgets import JobsView, ResultView
from labkit.widgets.common import png_of


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def text(widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


# -- running ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_run_results_history_and_comparison(demo_dir):
    form = small_form(demo_dir)
    seen: list[str] = []
    form.progress.observe(lambda change: seen.append(change["new"]), names="description")
    form.run_button.click()
    assert form.run_button.disabled, "no second run while one is running"
    assert "while run" in text(form.run_reason), "the disabled Run says why"
    result = form.wait(timeout=180)
    assert result is not None and result.state == "succeeded", result and result.error
    assert seen[0] == "Queued" and seen[-1] == "Done", seen
    steps = [d.split(" ", 1)[1] for d in seen if "/" in d]
    assert steps and steps == sorted(steps, key=["load", "filter", "fit", "score", "plot", "label",
                                                 "report"].index), "the steps in order"
    assert form.progress.value == form.progress.max and form.progress.bar_style == "success"
    logged = result.file("run.log").read_text().splitlines()
    first, newest = logged[0], logged[-1]
    p = result.params
    assert first.endswith(f"run {result.run_id}: picard, 15 components, eeg 1-30 Hz, crop 0-30 s, "
                          f"seed {p.random_state}, demo_raw.fif (every parameter: params.json)"), first
    assert "{" not in first and len(first) < 200, "a line to read, not the parameters' JSON"
    assert form.log_text.splitlines()[-1] == newest, "the log ends on its newest line"
    assert "tabindex='0'" in form.log_area.value, "the log can be focused (and its text selected)"
    assert not form.run_button.disabled and form.cancel_button.disabled

    view = form.result_view
    assert form.result_box.children == (view,)
    images = [png_of(w) for w in view.topomaps.children if png_of(w)]
    assert images and images[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert "alt='topomaps of the components" in view.topomaps.children[0].value
    metrics = text(view.metrics_table)
    assert "Method" in metrics and "picard" in metrics and "n_components" not in metrics
    assert re.search(r"Fit time\d+\.\d s", metrics), metrics
    suspects = sorted(set(result.metrics["eog_suspects"]) | set(result.metrics["ecg_suspects"]))
    assert suspects, "15 components on the demo data flag the blink/heartbeat"
    assert view.scores_table.value.count("class='suspect'") == len(suspects)
    rows = re.findall(r"<tr class='(suspect)?'><th>ICA(\d+)", view.scores_table.value)
    assert [bool(flag) for flag, _ in rows] == [True] * len(suspects) + [False] * (15 - len(suspects)), \
        "suspects first"
    assert "EOG EOG" in view.scores_table.value, "EOG columns carry the channel names"
    for i in suspects:  # each toggle has its suspect badge beside it
        assert "suspect" in view.cards.children[i].children[1].value
    assert view.excluded == suspects, "suspects are pre-marked for exclusion"
    assert "report.html" in view.links.value and "ica_run.ipynb" in view.links.value

    view.component.value = 0  # a click on a component: its properties, computed in the background
    wait_for(lambda: any(png_of(w) for w in view.properties.children), 90, "component properties")

    keep_one_more = next(i for i in range(15) if i not in suspects)
    view.exclude_boxes[keep_one_more].value = True
    view.save_button.click()
    view.worker.join(30)
    assert "Saved" in view.message.value
    tsv = result.file(COMPONENTS_TSV)
    header, *rows = tsv.read_text().splitlines()
    assert header.split("\t") == ["component", "type", "description", "status", "status_description",
                                  "ic_type", "ic_type_probability"], "the automatic labels are kept on save"
    assert len(rows) == 15
    assert read_components_tsv(tsv) == sorted(suspects + [keep_one_more])
    assert "marked bad by hand" in tsv.read_text()

    view.apply_button.click()
    assert view.save_button.disabled and view.apply_button.disabled, "no second write while one runs"
    view.worker.join(120)
    assert not view.apply_button.disabled
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
    assert all(png_of(w) for v in (left, right) for w in v.topomaps.children)
    form.history_select.value = 0
    form.show_button.click()
    assert form.result_view.result.run_id == result.run_id
    assert result.run_id in form.step_label.value and form.log_text.splitlines()[-1] == newest, \
        "progress, log and results of the run shown"
    assert "demo_raw.fif picard" in form.history_select.options[0][0], "History names the recording"

    jobs = form.jobs
    assert not jobs.listed and "listed when this tab opens" in jobs.table.value, "the form opens without listing"
    assert form.tabs.titles[3] == "Jobs"
    form.tabs.selected_index = 3  # the Jobs tab: its runs listed as it opens
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
    wait_for(lambda: form.backend.status(form.current).state == "running", 60, "the run to start")
    form.cancel_button.click()
    result = form.wait(timeout=60)
    assert result.state == "cancelled" and result.path.name.endswith(FAILED)  # never read as a result
    assert form.progress.bar_style == "" and form.progress.description == "Cancelled"
    assert "lk-state-cancelled" in form.step_label.value and "cancelled" in text(form.step_label)
    view = form.result_view
    assert view.exclude_boxes == [] and "not scored" not in view.scores_table.value, \
        "a cancelled run offers no review and claims nothing about its channels"
    assert form.cancel_button.disabled and not form.run_button.disabled
    assert form.history[-1].run_id == result.run_id
    form.cancel_button.click()  # nothing running: said, not raised
    assert "Nothing is running" in form.step_label.value


@pytest.mark.slow
def test_a_run_that_did_not_converge_says_each_warning_once(demo_dir):
    form = small_form(demo_dir, method="fastica", n_components=5, crop_tmax=10.0, max_iter="2")
    form.run_button.click()
    result = form.wait(timeout=120)
    assert result.outcome == "succeeded with warnings", result.error
    assert form.progress.bar_style == "warning"
    banner = form.result_view.children[0].value
    assert "did not converge" in banner
    for warning in set(result.warnings):
        assert banner.count(html.escape(warning)) == 1, warning
    assert text(form.step_label).count("succeeded with warnings") == 1


@pytest.mark.slow
def test_a_sweep_here_shows_each_sets_state_step_and_link_then_the_metrics_that_differ(demo_dir):
    form = small_form(demo_dir, method="fastica", n_components=5, crop_tmax=10.0)
    form.sweep_button.click()
    form.random_state.value = "3"
    form.sweep_button.click()
    live = form.sweep_panel.live
    seen: list[str] = []
    live.table.observe(lambda change: seen.append(text(live.table)), names="value")
    form.sweep_run_button.click()
    form.sweep_panel.watcher.join(240)
    states = {w for shown in seen for w in re.findall(r"succeeded|queued|running|failed|cancelled", shown)}
    assert {"queued", "running", "succeeded"} <= states, seen
    assert any(re.search(r"running(load|filter|fit|score|plot|label|report)", shown) for shown in seen), \
        "a running set's row names its step"
    assert len(live.rows) == 2 and all(r.run.state in ("succeeded", "succeeded with warnings") for r in live.rows), \
        [r.run for r in live.rows]
    links = re.findall(r'<a [^>]*data-labkit-command="labkit:open-report" data-labkit-run-id="([^"]+)"',
                       live.table.value)
    assert links == [r.result.run_id for r in live.rows], "each finished set links its report"
    assert "random_state" in live.frame.columns and "method" not in live.frame.columns, "what differs only"
    assert "lk-sweep-results" in live.results.value
    assert sorted(r.run_id for r in form.history) == sorted(links), "the sweep's runs are in History"
    assert all("demo_raw.fif fastica" in label for label, _ in form.history_select.options)

    form.sweep_run_button.click()  # the same sets again: reused, each row says so
    form.sweep_panel.watcher.join(60)
    assert [r.note for r in live.rows] == ["reused", "reused"] and "(2 reused)" in form.sweep_message.value
    assert len(form.history) == 2


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
    live = form.sweep_panel.live
    assert [r.handle for r in live.rows] == [name, second_name]
    assert text(live.table).count("queued") == 2, "each set's row, in the run states' words"
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
    wait_for(lambda: "running" in text(live.table), 10, "the sweep's row following its Job")
    assert live.rows[0].run.state == "running" and live.rows[1].run.state == "queued"
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
    wait_for(lambda: "cancelled" in text(live.table), 10, "the sweep's row told cancelled")
    assert live.rows[0].run.state == "cancelled"


def test_the_progress_bar_knows_every_step_a_real_run_reports(demo_dir):
    """Each step the analysis announces moves the form's bar; the last one is the bar's last (then: Done)."""
    from labkit import widgets
    from labkit.analysis import ica

    reported: list[str] = []
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=3, crop_tmax=4.0)
    ica.run(params, demo_dir / "out", progress=reported.append)
    assert reported and [s for s in reported if s not in widgets.STEPS] == [], reported
    assert reported[0] == widgets.STEPS[0] and reported[-1] == widgets.STEPS[-1]


