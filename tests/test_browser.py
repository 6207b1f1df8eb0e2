"""A researcher's path in a real JupyterLab: open ica_explore.ipynb, run it, fill the form, Run here, see topomaps.

Starts ``python -m jupyterlab`` on loopback with a temporary base directory (the demo
recording plus a copy of the notebook) and drives it with Playwright in the system's
headless Chromium (``/usr/bin/chromium``; ``LABKIT_CHROMIUM`` overrides). The server and
its kernels are always stopped.
"""

from __future__ import annotations

import contextlib
import os
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


@pytest.fixture
def lab(tmp_path, demo_dir):
    """A JupyterLab server rooted at a base directory holding the demo recording and ica_explore.ipynb."""
    root = demo_dir
    shutil.copy(REPO / "notebooks" / "ica_explore.ipynb", root / "ica_explore.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter-home"
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
    log = (tmp_path / "jupyterlab.log").open("w")
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
                raise RuntimeError(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
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
        try:  # anything left in the session this test started (kernels, labkit runs)
            os.killpg(server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        log.close()


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


def test_explore_notebook_runs_and_shows_topomaps(lab, tmp_path):
    from playwright.sync_api import expect

    with lab_page(lab, "/lab/tree/ica_explore.ipynb", (1400, 1000)) as page:
        page.locator(".jp-Notebook").wait_for()
        accept_kernel_dialog(page)
        expect(page.get_by_text("Python 3 (ipykernel) | Idle").first).to_be_visible(timeout=90_000)
        accept_kernel_dialog(page)

        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()

        chooser = page.locator(".widget-select select").first
        expect(chooser.locator("option", has_text="labkit-demo/")).to_be_attached(timeout=90_000)
        chooser.select_option(label="📁 labkit-demo/")
        expect(chooser.locator("option", has_text="demo_raw.fif")).to_be_attached()
        chooser.select_option(label="📄 demo_raw.fif")
        expect(page.get_by_text("Nyquist 125 Hz")).to_be_visible()

        control(page, "Method").select_option("picard")
        for label, value in (("Components", "15"), ("Crop end (s)", "30")):
            box = control(page, label)
            box.fill(value)
            box.press("Enter")
        run = page.locator("button", has_text="Run here")
        expect(run).to_be_enabled()
        page.screenshot(path=str(tmp_path / "form.png"), full_page=True)
        run.click()

        topomap = page.locator(".widget-image").first
        expect(topomap).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(page.locator(".jp-OutputArea").get_by_text("succeeded").first).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 100",
                               arg=topomap.element_handle())
        topomap.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "topomaps.png"), full_page=True)

        # the report link opens the run's report (relative to the notebook, which sits in the root)
        report = page.locator("a", has_text="HTML report").first
        href = report.evaluate("a => a.href")
        run_dir = next(Path(lab["root"]).glob("PreExperiment_ICA_*")).name
        assert href == f"{lab['url']}/lab/tree/{run_dir}/report.html", href
        response = page.request.get(f"{lab['url']}/files/{run_dir}/report.html?token={lab['token']}")
        assert response.ok and b"<html" in response.body().lower(), response.status
    assert (tmp_path / "topomaps.png").stat().st_size > 10_000
    runs = sorted(Path(lab["root"]).glob("PreExperiment_ICA_*"))
    assert len(runs) == 1 and not runs[0].name.endswith((".partial", ".failed")), runs
