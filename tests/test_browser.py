"""A researcher's path in a real JupyterLab: open ica_explore.ipynb, run it, fill the form, Run here, see topomaps.

Starts ``python -m jupyterlab`` on loopback with a temporary base directory (the demo
recording plus a copy of the notebook) and drives it with Playwright in the system's
headless Chromium (``/usr/bin/chromium``; ``LABKIT_CHROMIUM`` overrides). The server and
its kernels are always stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RUN_TIMEOUT_MS = 180_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_lab(root: Path, home: Path):
    """A JupyterLab server rooted at ``root`` (config, runtime and settings under ``home``); always stopped."""
    port, token = free_port(), secrets.token_hex(16)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BASE_DIR": str(root),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "MPLBACKEND": "Agg",
    }
    env.pop("LABKIT_CLUSTER_CONFIG", None)
    log_path = home / "jupyterlab.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not answer within 90 s")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root}
    finally:
        server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        try:  # anything left in the session this server started (kernels, labkit runs)
            os.killpg(server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        log.close()


@pytest.fixture
def lab(tmp_path, demo_dir):
    """A JupyterLab server rooted at a base directory holding the demo recording and ica_explore.ipynb."""
    shutil.copy(REPO / "notebooks" / "ica_explore.ipynb", demo_dir / "ica_explore.ipynb")
    with serve_lab(demo_dir, tmp_path / "jupyter-home") as served:
        yield served


@pytest.fixture(scope="module")
def form_lab(tmp_path_factory, demo_source):
    """One JupyterLab for this module: the demo recording, a 6 s recording and ica_explore.ipynb."""
    from test_widgets_form import write_recording

    root = tmp_path_factory.mktemp("form-lab") / "userdata"
    shutil.copytree(demo_source, root)
    write_recording(root / "short_raw.fif", 6.0)
    shutil.copy(REPO / "notebooks" / "ica_explore.ipynb", root / "ica_explore.ipynb")
    with serve_lab(root, root.parent / "jupyter-home") as served:
        yield served


@contextlib.contextmanager
def lab_page(lab, path: str, viewport: tuple[int, int]):
    """A page of the system's headless Chromium on ``lab``'s ``path`` (with its token); the browser always closes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(60_000)
            page.goto(f"{lab['url']}{path}?token={lab['token']}")
            yield page
        finally:
            browser.close()


def accept_kernel_dialog(page, wait_s: float = 10.0) -> None:
    """JupyterLab may ask which kernel to start; the preselected one (Python 3) is right."""
    dialog = page.locator(".jp-Dialog")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if dialog.count() and dialog.first.is_visible():
            dialog.locator("button.jp-mod-accept").first.click()
            dialog.first.wait_for(state="detached", timeout=30_000)
            return
        time.sleep(0.25)


def control(page, label: str):
    """The input of the ipywidgets control whose description is ``label``."""
    return page.locator(".widget-inline-hbox", has=page.locator(f"label:text-is('{label}')")).locator(
        "input, select").first


def type_into(page, label: str, value: str) -> None:
    box = control(page, label)
    box.fill(value)
    box.press("Enter")


def assert_accessible(page, selector: str) -> None:
    """axe-core finds no colour-contrast or other serious violation inside ``selector`` (each told in full)."""
    from test_lab_browser import contrast_violations

    found = contrast_violations(page, selector)
    assert found == [], "\n".join(found)


def set_theme(page, name: str, light: bool) -> None:
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Theme'))").click()
    page.locator(f".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{name}'))").click()
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true" if light else "false")


def test_the_form_in_jupyterlab_right_span_kept_values_states_and_both_themes(form_lab, tmp_path):
    """A researcher's path: open ica_explore.ipynb, choose a short then the long recording, type a value out
    of range, run (states in order, log following), review, cancel a run, a run with warnings, dark theme."""
    from playwright.sync_api import expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    with lab_page(form_lab, "/lab/tree/ica_explore.ipynb", (1440, 900)) as page:
        page.locator(".jp-Notebook").wait_for()
        accept_kernel_dialog(page)
        expect(page.get_by_text("Python 3 (ipykernel) | Idle").first).to_be_visible(timeout=90_000)
        accept_kernel_dialog(page)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()

        form = page.locator(".lk-form")
        entry = form.locator(".lk-chooser button")
        expect(entry.filter(has_text="short_raw.fif")).to_be_visible(timeout=90_000)
        assert form.locator(".lk-error").count() == 0 or not form.locator(".lk-error").first.inner_text()
        entry.filter(has_text="short_raw.fif").click()
        expect(control(page, "Crop end (s)")).to_have_value("5.996")
        entry.filter(has_text="labkit-demo/").click()
        entry.filter(has_text="demo_raw.fif").click()
        expect(page.get_by_text("Nyquist 125 Hz")).to_be_visible()
        expect(control(page, "Crop end (s)")).to_have_value("60")  # the long one's own default span
        expect(form.get_by_text("Crop end set to 60 s, the default span")).to_be_visible()

        type_into(page, "Low-pass (Hz)", "200")
        expect(control(page, "Low-pass (Hz)")).to_have_value("200")  # kept as typed
        expect(form.locator(".lk-error", has_text="Low-pass (Hz): got 200")).to_have_count(1)
        run = page.locator("button", has_text="Run here")
        expect(run).to_be_disabled()
        expect(form.get_by_text("Run is off: Low-pass (Hz)")).to_be_visible()
        page.screenshot(path=str(shots / "1-typed-out-of-range.png"))
        type_into(page, "Low-pass (Hz)", "30")
        control(page, "Method").select_option("picard")
        type_into(page, "Components", "5")
        type_into(page, "Crop end (s)", "8")
        expect(run).to_be_enabled()
        run_box, progress = run.bounding_box(), form.locator(".lk-progress").first.bounding_box()
        assert run_box["y"] + run_box["height"] <= 900 and progress["y"] + progress["height"] <= 900, \
            (run_box, progress)
        assert_accessible(page, ".lk-form")
        page.screenshot(path=str(shots / "2-form-light.png"))

        run.click()
        status = form.locator(".lk-status [class^='lk-state-']")
        expect(status).to_have_text("running", timeout=60_000)
        page.screenshot(path=str(shots / "3-running.png"))
        expect(status).to_have_text(re.compile(r"^succeeded"), timeout=RUN_TIMEOUT_MS)  # 8 s: MNE may warn
        topomap = form.locator("img.lk-figure").first
        expect(topomap).to_be_visible(timeout=60_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=topomap.element_handle())
        log = form.get_by_role("log", name="run log")
        assert log.evaluate("el => el.scrollHeight <= el.clientHeight + 1 || el.scrollTop >= -1"), \
            "the log shows its newest line"
        expect(form.locator(".widget-checkbox", has_text="Exclude ICA")).to_have_count(5)  # one per component
        report = form.locator("a", has_text="HTML report").first  # the extension opens it in a tab of this Lab
        run_dir = next(p for p in Path(form_lab["root"]).glob("PreExperiment_ICA_*") if p.is_dir()).name
        assert report.get_attribute("data-labkit-command") == "labkit:open-report"
        assert report.get_attribute("data-labkit-run-id") == run_dir.removeprefix("PreExperiment_ICA_")
        # without the extension: the file as the server serves it, in a new tab (no second JupyterLab)
        assert report.evaluate("a => a.href") == f"{form_lab['url']}/files/{run_dir}/report.html"
        assert report.get_attribute("target") == "_blank"
        page.screenshot(path=str(shots / "4-results.png"), full_page=True)
        assert_accessible(page, ".lk-form")
        run_id = run_dir.removeprefix("PreExperiment_ICA_")
        report.click()  # the labkit extension opens the report in a tab of this JupyterLab, not a browser tab
        expect(page.locator(f"#labkit-report-{run_id}")).to_be_visible()
        assert len(page.context.pages) == 1, "no second browser tab, no second JupyterLab"
        page.locator(".lm-TabBar-tab", has_text="ica_explore.ipynb").first.click()
        expect(form.locator(".widget-checkbox", has_text="Exclude ICA").first).to_be_visible()

        form.get_by_text("Advanced", exact=True).click()  # the folded section
        type_into(page, "Max iterations", "2")  # a run that does not converge
        control(page, "Method").select_option("fastica")
        run.click()
        expect(status).to_have_text(re.compile(r"^(queued|running)$"), timeout=60_000)  # this run, not the last
        expect(status).to_have_text("succeeded with warnings", timeout=RUN_TIMEOUT_MS)
        expect(form.locator(".lk-banner li", has_text="did not converge").first).to_be_visible()
        told = form.locator(".labkit-warnings li").all_inner_texts()
        assert told and len(told) == len(set(told)), told  # each warning once
        page.screenshot(path=str(shots / "5-warnings.png"))

        type_into(page, "Max iterations", "1000")
        type_into(page, "Components", "40")
        type_into(page, "Crop end (s)", "120")
        run.click()
        expect(status).to_have_text("running", timeout=60_000)
        page.locator("button", has_text="Cancel").first.click()
        expect(status).to_have_text("cancelled", timeout=60_000)
        assert "lk-state-cancelled" in status.get_attribute("class")
        page.screenshot(path=str(shots / "6-cancelled.png"))

        set_theme(page, "JupyterLab Dark", light=False)
        page.screenshot(path=str(shots / "7-dark.png"))
        assert_accessible(page, ".lk-form")
    assert (shots / "4-results.png").stat().st_size > 10_000
