"""The JupyterLab server extension under a real JupyterHub: each user's own server (base URL /user/<name>/),
the labkit hub service submitting for them to the Kubernetes emulator.

alice's server starts a cluster run through the service and lists it with her local runs; bob's server
never lists it, and bob's token opens neither alice's server nor her run.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

import pytest
import requests
from cluster_fixtures import NS, Controllers, Emulator  # noqa: F401
from hub_fixtures import Hub, eventually, module_emulator  # noqa: F401 (fixtures)

from labkit.runners.cluster.manifests import LABEL_OWNER, owner_label

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SPAWN = """
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root", "--LabApp.news_url=", "--ServerApp.port_retries=0"]
c.Spawner.http_timeout = 90
c.Spawner.start_timeout = 120
# as k8s/jupyterhub-values.yaml gives them: the service for the server's token, the service's URL
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "access:services!service=labkit"]
c.Spawner.environment = {{
    "LABKIT_HUB_SERVICE_URL": "http://127.0.0.1:{public_port}/services/labkit/",
    "LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR": lambda spawner: "{dir}/home/" + spawner.user.name,
}}
c.JupyterHub.load_roles.append({{"name": "test-spawner", "scopes": ["servers"], "services": ["test-admin"]}})
"""


class SpawningHub(Hub):
    extra_config = SPAWN.replace("{python!r}", repr(sys.executable)).replace("{{", "{").replace("}}", "}")


@pytest.fixture(scope="module")
def lab_hub(module_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    if shutil.which("configurable-http-proxy") is None:
        pytest.fail("configurable-http-proxy is missing: make install-test installs it (npm)")
    h = SpawningHub(module_emulator, tmp_path_factory.mktemp("labhub"))
    try:
        for user in ("alice", "bob"):
            (h.dir / "home" / user).mkdir(parents=True)
            resp = h.admin("POST", f"users/{user}/server")
            assert resp.status_code in (201, 202), resp.text
        for user in ("alice", "bob"):
            assert eventually(lambda u=user: (h.admin("GET", f"users/{u}").json().get("servers", {}).get("", {})
                                              .get("ready")), timeout=120), (h.dir / "hub.log").read_text()[-3000:]
        yield h
    finally:
        for user in ("alice", "bob"):
            h.admin("DELETE", f"users/{user}/server")
        time.sleep(1)
        h.close()


def lab(hub: Hub, user: str, owner: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A request to ``owner``'s server's labkit API with ``user``'s token."""
    return requests.request(method, f"{hub.url}/user/{owner}/labkit/{path}", timeout=60,
                            headers={"Authorization": f"token {hub.tokens[user]}"}, **kwargs)


def test_alice_starts_a_cluster_run_from_her_server_and_only_she_sees_it(lab_hub: Hub) -> None:
    info = lab(lab_hub, "alice", "alice", "GET", "info")
    assert info.status_code == 200, info.text
    assert info.json()["backends"] == ["machine", "hub"] and info.json()["base_dir"].endswith("/home/alice")
    started = lab(lab_hub, "alice", "alice", "POST", "runs",
                  json={"params": {"n_components": 11, "raw_file_path": "sub-01_raw.fif"}, "backend": "hub"})
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["backend"] == "hub" and run["state"] in ("queued", "running")
    job = Controllers(lab_hub.emulator.api_client()).wait_for_job(run["name"])
    assert job.metadata.labels[LABEL_OWNER] == owner_label("alice")  # the service submitted it as alice

    listed = lab(lab_hub, "alice", "alice", "GET", "runs").json()["runs"]
    assert [r["name"] for r in listed if r["backend"] == "hub"] == [run["name"]]
    bobs = lab(lab_hub, "bob", "bob", "GET", "runs")
    assert bobs.status_code == 200 and run["name"] not in bobs.text and run["run_id"] not in bobs.text
    assert lab(lab_hub, "bob", "alice", "GET", "runs").status_code in (302, 403, 404)
    assert lab(lab_hub, "bob", "bob", "GET", f"runs/{run['run_id']}").status_code == 404
    assert lab(lab_hub, "bob", "bob", "POST", f"runs/{run['run_id']}/cancel").status_code == 404


def sign_in(page: Any, hub: Hub, user: str) -> None:
    """Through the hub's login page (the dummy authenticator) to the user's own JupyterLab."""
    page.goto(f"{hub.url}/hub/login?next=/user/{user}/lab")
    page.locator("#username_input").fill(user)
    page.locator("#password_input").fill("any")
    page.locator("#login_submit").click()
    page.wait_for_url(f"**/user/{user}/lab**")
    page.locator(".jp-DirListing").wait_for()


@pytest.mark.browser
def test_alice_submits_from_her_panel_and_follows_her_job_while_bobs_panel_never_shows_it(
        lab_hub: Hub, demo_source, tmp_path) -> None:  # noqa: F811
    """In Chromium, through the hub's proxy: alice's Lab at /user/alice/ submits to the cluster from the file
    browser's dialog, her run view shows the Job's state and its pod's log; bob's panel lists nothing of hers."""
    from playwright.sync_api import expect, sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    from labkit.analysis.datasets import DEMO_FILENAME

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    shutil.copytree(demo_source, lab_hub.dir / "home" / "alice", dirs_exist_ok=True)
    ctl = Controllers(lab_hub.emulator.api_client())
    before = {r["run_id"] for r in lab(lab_hub, "alice", "alice", "GET", "runs").json()["runs"]}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.set_default_timeout(90_000)
            sign_in(page, lab_hub, "alice")
            page.locator(".jp-DirListing-item[title^='Name: labkit-demo']").dblclick()
            page.locator(f".jp-DirListing-item[title^='Name: {DEMO_FILENAME.split('/')[-1]}']").click(button="right")
            page.locator(".lm-Menu-item", has_text="Run ICA on this recording…").click()
            dialog = page.locator(".jp-Dialog")
            dialog.locator("#labkit-field-n_components").fill("5")
            dialog.locator("#labkit-field-backend").select_option("hub")
            page.screenshot(path=shots / "1-alice-dialog.png")
            dialog.locator("button.jp-mod-accept").click()

            view = page.locator(".jp-labkit-runview")
            expect(view.locator(".jp-labkit-runhead .jp-labkit-chip")).to_have_text("queued")
            panel = page.locator("#labkit-runs")
            rows = panel.locator("li[data-run-id]")
            expect(rows).to_have_count(len(before) + 1)
            run_id = next(i for i in rows.evaluate_all("els => els.map(e => e.dataset.runId)") if i not in before)
            expect(panel.locator(f"li[data-run-id='{run_id}'] .jp-labkit-run-meta")).to_contain_text("hub")
            name = next(r["name"] for r in lab(lab_hub, "alice", "alice", "GET", "runs").json()["runs"]
                        if r["run_id"] == run_id)
            ctl.wait_for_job(name)
            pod = ctl.create_pod(name, phase="Running", node="n1")
            lab_hub.emulator.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"]
                                   << b"2026-01-01T00:00:01Z reading recording on the cluster\n")
            expect(view.locator(".jp-labkit-runhead .jp-labkit-chip")).to_contain_text("running")
            expect(view.locator(".jp-labkit-log")).to_contain_text("reading recording on the cluster")
            expect(view.locator(".jp-labkit-message").first).to_have_text("")  # "no pod yet" was before the pod
            expect(panel.locator(f"li[data-run-id='{run_id}'] .jp-labkit-chip")).to_have_text("running")
            page.screenshot(path=shots / "2-alice-running.png")

            bob = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            bob.set_default_timeout(90_000)
            sign_in(bob, lab_hub, "bob")
            bob.locator("li[data-id='labkit-runs']").click()
            expect(bob.locator("#labkit-runs .jp-labkit-empty")).to_contain_text("No runs yet")
            assert bob.locator(f"#labkit-runs li[data-run-id='{run_id}']").count() == 0
            assert run_id not in bob.locator("#labkit-runs").inner_text()
            bob.screenshot(path=shots / "3-bob-panel.png")
        finally:
            browser.close()
