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
