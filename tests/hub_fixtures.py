"""A real JupyterHub (with configurable-http-proxy from npm) and the real labkit service, on loopback.

The hub uses JupyterHub's DummyAuthenticator (no PAM); the labkit service is registered in
``c.JupyterHub.services`` as an external service (its URL and token), started here as its
own process (``labkit hub-service``) so a test can restart it. It talks to kmock's
Kubernetes emulator (in this process) through a kubeconfig. Users and their tokens come
from the hub's own REST API, with an admin service's token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import pytest
import requests
import yaml
from cluster_fixtures import NS, TRUE, Emulator, write_kubeconfig

from labkit.runners.cluster.manifests import APP, LABEL_NAME, legacy_owner_label

#: a 70-character hub name, and the clean name labkit 0.1 turned it into (its old owner label)
LONG_USER = "maria.sklodowska-curie.radioactivity.labs@physics.sorbonne.example.org"
#: hub users literally named as labkit 0.1's owner labels of alice.b@lab.org and LONG_USER (issue 17)
SQUATTERS = {"alice.b@lab.org": "alice-b-lab-org-00e968", LONG_USER: legacy_owner_label(LONG_USER)}
USERS = ("alice", "bob", "alice.b@lab.org", LONG_USER, *SQUATTERS.values())
SERVICE = "labkit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, ok: tuple[int, ...] = (200,), proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


HUB_CONFIG = """
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.services = [
    {{"name": "labkit", "url": "http://127.0.0.1:{service_port}", "api_token": "{service_token}"}},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    # every user may use the labkit service; the service itself needs no scope (HubAuth checks
    # a user's token with that token)
    {{"name": "user", "scopes": ["self", "access:services!service=labkit"]}},
    {{"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]}},
]
"""


class Hub:
    """JupyterHub + configurable-http-proxy + the labkit service, for one test module."""

    #: more jupyterhub_config.py lines (a subclass's: spawning user servers)
    extra_config = ""

    def __init__(self, emulator: Emulator, directory: Path) -> None:
        self.dir = directory
        self.emulator = emulator
        self.public_port, self.hub_port, self.proxy_api_port, self.service_port = (free_port() for _ in range(4))
        self.service_token, self.admin_token = secrets.token_hex(16), secrets.token_hex(16)
        (directory / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            public_port=self.public_port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port,
            service_port=self.service_port, service_token=self.service_token, admin_token=self.admin_token,
            dir=directory) + self.extra_config.replace("{dir}", str(directory)).replace("{public_port}", str(self.public_port)))
        self.url = f"http://127.0.0.1:{self.public_port}"
        self.api = f"{self.url}/hub/api"
        self.service_url = f"{self.url}/services/{SERVICE}/"
        self.settings_file = directory / "cluster.yaml"
        self.settings_file.write_text(yaml.safe_dump({"cluster": {
            "namespace": NS, "image": "registry.lab.example/labkit:0.1.0",
            "storage": {"nfs_server": "nfs.lab.example", "nfs_path": "/export/home/{username}"},
            "watch_timeout": 5, "api_retries": 2, "api_max_backoff": 2, "hub": {"token_recheck_seconds": 1},
            "profiles": {"large-memory": {"description": "64 GiB", "resources": {"memory_limit": "64Gi"}},
                         "edge": {"node_selector": {"site": "edge"},
                                  "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}]}},
        }}))
        self.kubeconfig = write_kubeconfig(emulator, directory)
        env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
        # the service starts first: the hub waits up to 30 s for an external service to answer
        self.service: subprocess.Popen[bytes] | None = None
        self.start_service(wait=False)
        self.hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(directory / "jupyterhub_config.py")],
                                    cwd=directory, env=env, stdout=open(directory / "hub.log", "wb"),
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_service()
            wait_http(f"{self.api}/", proc=self.hub)
        except BaseException:
            self.close()
            raise
        self.tokens = {u: self.user_token(u) for u in USERS}

    # -- the labkit service, as its own process -------------------------------------------------
    def service_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_CLUSTER_", "JUPYTERHUB_"))}
        env.update(JUPYTERHUB_API_URL=f"http://127.0.0.1:{self.hub_port}/hub/api",
                   JUPYTERHUB_API_TOKEN=self.service_token, JUPYTERHUB_SERVICE_NAME=SERVICE,
                   JUPYTERHUB_SERVICE_PREFIX=f"/services/{SERVICE}/",
                   JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{self.service_port}",
                   LABKIT_CLUSTER_CONFIG=str(self.settings_file), KUBECONFIG=str(self.kubeconfig))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        return env

    def start_service(self, ready: bool = True, wait: bool = True) -> None:
        """Start ``labkit hub-service``; ``wait`` until it answers its health probe (``ready``: with 200)."""
        labkit = shutil.which("labkit") or "labkit"
        log = open(self.dir / "service.log", "ab")
        self.service = subprocess.Popen([sys.executable, "-c", "from labkit.cli.main import main; main()", "hub-service"]
                                        if not labkit else [labkit, "hub-service"], env=self.service_env(),
                                        cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_service(ready)

    def wait_service(self, ready: bool = True) -> None:
        wait_http(f"http://127.0.0.1:{self.service_port}/services/{SERVICE}/api/health", proc=self.service,
                  ok=(200,) if ready else (200, 503))

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(10)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(5)

    # -- the hub's REST API -------------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        resp = requests.request(method, f"{self.api}/{path}", headers={"Authorization": f"token {self.admin_token}"},
                                timeout=20, **kwargs)
        return resp

    def user_token(self, user: str) -> str:
        return self.new_token(user)[0]

    def new_token(self, user: str, expires_in: int = 3600) -> tuple[str, str]:
        """(token, token id) of a new API token of ``user`` (created if need be)."""
        resp = self.admin("POST", f"users/{requests.utils.quote(user, safe='')}")
        assert resp.status_code in (201, 409), resp.text
        resp = self.admin("POST", f"users/{requests.utils.quote(user, safe='')}/tokens",
                          json={"note": "labkit tests", "expires_in": expires_in})
        assert resp.status_code == 201, resp.text
        return resp.json()["token"], resp.json()["id"]

    def call(self, user: str | None, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"token {self.tokens.get(user, user)}"
        return requests.request(method, self.service_url + path, headers=headers, timeout=30, **kwargs)

    def close(self) -> None:
        self.stop_service()
        if self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.hub.pid, signal.SIGKILL)
        pid_file = self.dir / "proxy.pid"  # the proxy the hub started, if the hub could not stop it
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass


def service_jobs_watches(k: Any) -> Any:
    """The hub service's Jobs watches (its informer's label selector; a ClusterJobs watch selects one name)."""
    return k["get", f"/apis/batch/v1/namespaces/{NS}/jobs",
             kmock.params({"watch": TRUE, "labelSelector": f"{LABEL_NAME}={APP}"})]


def service_health(hub: Hub) -> tuple[int, dict[str, Any]]:
    """(status, JSON) of the service's health: 200 while its caches are current, 503 with a reason otherwise."""
    resp = hub.call(None, "GET", "api/health")
    assert resp.status_code in (200, 503), resp.text
    return resp.status_code, resp.json()


def eventually(check: Any, timeout: float = 40.0) -> bool:
    """Poll ``check`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def module_emulator():
    emu = Emulator()
    try:
        yield emu
    finally:
        emu.close()


@pytest.fixture(scope="module")
def hub(module_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("configurable-http-proxy") is None:
        pytest.fail("configurable-http-proxy is missing: make install-test installs it (npm)")
    h = Hub(module_emulator, tmp_path_factory.mktemp("hub"))
    try:
        yield h
    finally:
        h.close()
