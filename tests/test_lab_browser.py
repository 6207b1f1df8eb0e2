"""The JupyterLab extension in a real JupyterLab, driven in the system's headless Chromium.

The base directory holds a failed and a cancelled run; the test starts a run from the file
browser's "Run ICA on this recording…", watches it in the ICA runs panel and its notification,
reviews it (topomaps, labels, an exclusion saved to components.tsv), opens its report in a Lab
tab, and checks colour contrast with axe-core in the light and the dark theme. Screenshots of
each step are kept in the folder the test prints (``<tmp>/screenshots``).
"""

from __future__ import annotations

import pytest
from test_browser import RUN_TIMEOUT_MS, lab, lab_page  # noqa: F401 (the JupyterLab fixture)

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.results.folder import RunFolder
from labkit.results.layout import COMPONENTS_TSV

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def seeded(demo_dir):
    """The lab's base directory, with a failed and a cancelled run already in it."""
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=5, crop_tmax=8)
    RunFolder.create(params, "old-failed").fail("the recording was too short")
    RunFolder.create(params, "old-cancelled").finish_cancelled("cancelled: stopped by its owner")
    return demo_dir


def contrast_violations(page, selector: str) -> list[str]:
    """axe-core's serious or critical findings (colour contrast included) inside ``selector``."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=selector, options={"resultTypes": ["violations"]})
    return [f"{v['id']}: {n['target']} {n.get('failureSummary', '')}" for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical") for n in v["nodes"]]


def test_runs_panel_run_from_the_file_browser_review_and_themes(seeded, lab, tmp_path):
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    with lab_page(lab, "/lab", (1440, 900)) as page:
        page.locator(".jp-DirListing").wait_for()

        page.locator("li[data-id='labkit-runs']").click()  # the ICA runs tab in the left sidebar
        panel = page.locator("#labkit-runs")
        expect(panel.locator("[data-run-id='old-failed'] .jp-labkit-chip")).to_have_text("failed")
        expect(panel.locator("[data-run-id='old-cancelled'] .jp-labkit-chip")).to_have_text("cancelled")
        expect(panel.locator("[data-run-id='old-failed'] .jp-labkit-run-name")).to_have_text("demo_raw.fif")
        page.screenshot(path=shots / "1-panel.png")
        assert contrast_violations(page, "#labkit-runs") == []

        page.locator("li[data-id='filebrowser']").click()
        page.locator(".jp-DirListing-item[title^='Name: labkit-demo']").dblclick()
        recording = page.locator(".jp-DirListing-item[title^='Name: demo_raw.fif']")
        recording.click(button="right")
        page.locator(".lm-Menu-item", has_text="Run ICA on this recording…").click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog.locator(".jp-labkit-form")).to_contain_text("250")
        dialog.locator("#labkit-field-n_components").fill("5")
        start_error = dialog.locator(".jp-labkit-field:has(#labkit-field-crop_tmin) .jp-labkit-error")
        dialog.locator("#labkit-field-crop_tmin").fill("500")  # past the end: told under the field, as typed
        expect(start_error).to_contain_text("crop_tmin")
        expect(dialog.locator("#labkit-field-crop_tmin")).to_have_value("500")
        dialog.locator("#labkit-field-crop_tmin").fill("0")
        dialog.locator("#labkit-field-crop_tmax").fill("8")
        dialog.locator("#labkit-field-method").select_option("picard")
        expect(start_error).to_have_text("")
        page.screenshot(path=shots / "2-dialog.png")
        logs_asked: list[str] = []
        page.on("request", lambda r: logs_asked.append(r.url) if "/log?" in r.url else None)
        dialog.locator("button.jp-mod-accept").click()

        view = page.locator(".jp-labkit-runview")
        expect(view.locator(".jp-labkit-runhead .jp-labkit-chip")).to_contain_text("succeeded",
                                                                                 timeout=RUN_TIMEOUT_MS)
        expect(view.locator(".jp-labkit-log")).to_contain_text("fit: done")
        assert sum("follow=1" in u for u in logs_asked) == 1, ("the going run's log is streamed, once", logs_asked)
        toast = page.locator(".Toastify__toast", has_text="demo_raw.fif (picard)")
        expect(toast).to_have_count(1)  # one notification, updated in place from started to finished
        expect(toast).to_contain_text("succeeded")
        expect(view.locator("img.jp-labkit-figure").first).to_be_visible()
        assert view.locator("img.jp-labkit-figure").first.evaluate("img => img.naturalWidth") > 100
        expect(view.locator(".jp-labkit-component")).to_have_count(5)
        page.screenshot(path=shots / "3-run-view.png")

        run_id = page.locator("#labkit-runs li[data-run-id]").first.get_attribute("data-run-id")
        view.locator("input[data-component='1']").check()
        view.locator("button", has_text="Save").click()
        expect(view.locator(".jp-labkit-message")).to_contain_text("Saved 1 excluded")
        tsv = next(lab["root"].glob(f"*{run_id}")) / COMPONENTS_TSV
        assert tsv.read_text().splitlines()[2].split("\t")[3] == "bad"

        view.locator("button", has_text="Open report").click()
        frame = page.locator(f"#labkit-report-{run_id} iframe")
        expect(frame).to_have_attribute("sandbox", "allow-scripts")
        expect(page.frame_locator(f"#labkit-report-{run_id} iframe").locator("body")).to_contain_text("ICA")
        page.screenshot(path=shots / "4-report.png")

        review_components_notebook_and_form(page, lab, view, run_id, shots)
        sweep_ids = watch_a_sweep_fill_in(page, lab, shots)
        compare_two_runs(page, sweep_ids, shots)

        page.locator(".lm-MenuBar-item", has_text="Settings").click()
        page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Theme'))").click()
        page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('JupyterLab Dark'))").click()
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="ICA demo_raw.fif").click()
        page.screenshot(path=shots / "10-dark.png")
        assert contrast_violations(page, "#labkit-runs") == []
        assert contrast_violations(page, ".jp-labkit-runview") == []
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Sweep lab-sweep").click()
        page.screenshot(path=shots / "11-dark-sweep.png")
        assert contrast_violations(page, ".jp-labkit-sweepview") == []


def review_components_notebook_and_form(page, lab, view, run_id: str, shots) -> None:
    """Each component's own map; a click shows its properties; the scores name the EOG/ECG channels; the executed
    notebook opens read-only without a kernel; "Open in the form" opens a notebook calling IcaForm."""
    from playwright.sync_api import expect

    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="ICA demo_raw.fif").click()
    maps = view.locator("img.jp-labkit-map")
    expect(maps).to_have_count(5)
    page.wait_for_function("imgs => imgs.every(i => i.complete && i.naturalWidth > 50)", arg=maps.element_handles())
    expect(view.locator(".jp-labkit-component[data-component='1']")).to_contain_text("ICA001")
    view.locator(".jp-labkit-component[data-component='2'] .jp-labkit-map-button").click()
    props = view.locator(".jp-labkit-properties")
    expect(props.locator("figcaption")).to_have_text("Properties of ICA002", timeout=60_000)
    assert props.locator("img").evaluate("img => img.naturalWidth") > 300
    expect(view.locator(".jp-labkit-scores thead")).to_contain_text("EOG1")
    expect(view.locator(".jp-labkit-scores thead")).to_contain_text("ECG")
    expect(view.locator(".jp-labkit-scores tbody tr")).to_have_count(5)
    props.scroll_into_view_if_needed()
    page.screenshot(path=shots / "5-properties.png")

    view.locator("button", has_text="Open notebook").click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-labkit-readonly-tab", has_text="ica_run.ipynb")
    expect(tab).to_have_count(1, timeout=60_000)
    assert "(read-only)" in tab.locator(".lm-TabBar-tabLabel").evaluate("e => getComputedStyle(e, '::after').content")
    notebook = page.locator(".jp-labkit-readonly")
    expect(notebook.locator(".jp-Cell").first).to_be_visible()
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator, .jp-KernelName").first).to_contain_text("No Kernel")
    page.screenshot(path=shots / "6-notebook.png")

    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="ICA demo_raw.fif").click()
    view.locator("button", has_text="Open in the form").click()
    form_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"ica-form-{run_id}.ipynb")
    expect(form_tab).to_have_count(1, timeout=60_000)
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_contain_text("IcaForm(")
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_contain_text("raw_file_path=")
    open_the_forms_links_here(page, lab, run_id)


def open_the_forms_links_here(page, lab, run_id: str) -> None:
    """The notebook form's report and executed-notebook links (anchors naming a labkit command and the run) open
    their Lab tabs, never a browser tab."""
    from playwright.sync_api import expect

    page.evaluate("""runId => {
        const cell = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
        for (const [command, text] of [['labkit:open-report', 'report'], ['labkit:open-executed-notebook', 'notebook']]) {
            const a = Object.assign(document.createElement('a'), {href: 'files/elsewhere.html', target: '_blank',
                                                                  textContent: `the run's ${text}`});
            a.dataset.labkitCommand = command;
            a.dataset.labkitRunId = runId;
            cell.appendChild(a);
        }
    }""", run_id)
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
    page.locator("a[data-labkit-command]", has_text="the run's report").click()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(f"Report {run_id}")
    tabs.filter(has_text=f"ica-form-{run_id}.ipynb").click()
    page.locator("a[data-labkit-command]", has_text="the run's notebook").click()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-labkit-readonly-tab")).to_contain_text(
        "ica_run.ipynb")
    assert len(page.context.pages) == 1  # nothing opened beside JupyterLab
    folder = next(lab["root"].glob(f"*{run_id}"))
    assert (folder / "ica_run.ipynb").is_file()  # opening it read-only never renames the run's record


def watch_a_sweep_fill_in(page, lab, shots) -> list[str]:
    """A sweep of two seeds started through the API fills its matrix in, cell by cell, then offers its statistics."""
    from playwright.sync_api import expect

    sets = [{"raw_file_path": DEMO_FILENAME, "n_components": 4, "crop_tmax": 6, "method": "picard", "random_state": s}
            for s in (1, 2)]
    started = page.request.post(f"{lab['url']}/labkit/sweeps?token={lab['token']}",
                                data={"sets": sets, "sweep_id": "lab-sweep"})
    assert started.status == 201, started.text()
    ids = [r["run_id"] for r in started.json()["runs"]]
    page.locator("li[data-id='labkit-runs']").click()
    page.locator(f"#labkit-runs li[data-run-id='{ids[0]}'] .jp-labkit-sweep-link").click()
    sweep = page.locator(".jp-labkit-sweepview")
    cells = sweep.locator(".jp-labkit-sweep-cell")
    expect(cells).to_have_count(2, timeout=30_000)
    expect(sweep.locator(".jp-labkit-sweep-matrix thead")).to_contain_text("1")
    page.screenshot(path=shots / "7-sweep-going.png")
    for run_id in ids:
        expect(sweep.locator(f".jp-labkit-sweep-cell[data-run-id='{run_id}']")).to_contain_text(
            "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(sweep.locator(".jp-labkit-sweep-stats code")).to_contain_text("labkit compare")
    expect(sweep.locator(".jp-labkit-sweep-stats code")).to_contain_text("--sweep lab-sweep")
    expect(sweep.locator("button", has_text="Rerun failed")).to_be_disabled()
    page.screenshot(path=shots / "8-sweep-done.png")
    return ids


def compare_two_runs(page, ids: list[str], shots) -> None:
    """Two runs ticked in the panel open side by side: each map of the first beside its match in the second."""
    from playwright.sync_api import expect

    panel = page.locator("#labkit-runs")
    compare = panel.locator("button", has_text="Compare")
    expect(compare).to_be_disabled()
    for run_id in ids:
        panel.locator(f"li[data-run-id='{run_id}'] input.jp-labkit-select").check()
    compare.click()
    view = page.locator(".jp-labkit-compare")
    rows = view.locator(".jp-labkit-compare-maps tbody tr")
    expect(rows).to_have_count(4, timeout=60_000)
    expect(rows.first.locator("td")).to_contain_text("r = ")
    expect(view.locator(".jp-labkit-compare-metrics")).to_contain_text("Fit time")
    page.wait_for_function("imgs => imgs.every(i => i.complete && i.naturalWidth > 50)",
                           arg=view.locator("img.jp-labkit-map").element_handles())
    page.screenshot(path=shots / "9-compare.png")
    assert contrast_violations(page, ".jp-labkit-compare") == []
