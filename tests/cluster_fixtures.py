"""A real HTTP Kubernetes API for the cluster tests: kmock's KubernetesEmulator in a thread.

The official (synchronous) ``kubernetes`` client talks to it over TCP exactly as it would
to a cluster; nothing in the client is patched. The test plays the cluster's controllers
(Job controller, scheduler, kubelet) through :class:`Controllers`, which writes pods,
statuses and events through the same HTTP API. Faults (410, 429, 500) are injected with
kmock's request-matching DSL via :meth:`Emulator.react`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import kmock
import pytest
from kubernetes import client as k8s

#: a boolean query parameter as the client sends it ("true", or "True" from older kubernetes clients; the API
#: server reads both): for matching requests such as ``kmock.params({"watch": TRUE})``
TRUE = re.compile(r"(?i)\Atrue\Z")

NS = "labkit-test"
VOLCANO = ("batch.volcano.sh", "v1alpha1")


class Emulator:
    """KubernetesEmulator + Server on a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the Kubernetes emulator did not start: {self._error!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as err:  # pragma: no cover - surfaced by __init__
            self._error = err
            self._ready.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emu, kmock.Server(emu) as server:
            self.kmock = emu
            # the kinds labkit reads; declared so that empty lists are lists, not 404s
            emu.resources["v1/pods"] = {"kind": "Pod", "namespaced": True}
            emu.resources["v1/events"] = {"kind": "Event", "namespaced": True}
            emu.resources["batch/v1/jobs"] = {"kind": "Job", "namespaced": True}
            emu.resources["batch.volcano.sh/v1alpha1/jobs"] = {"kind": "Job", "namespaced": True}  # Volcano's CRD
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the emulator's loop (the DSL and object store are not thread-safe)."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    # How kmock (0.8) counts for a sliced reaction such as ``k["get", path][:1] << 500``:
    # the slice is NOT counted per reaction nor from the reaction's creation. Every request is
    # appended to the root's history before it is handled (kmock/_internal/apps.py:288-289); a
    # reaction answers a request if ``request in reaction._source`` (apps.py:343-344), and for a
    # Slicer that materializes the filter over the root's WHOLE history and slices it
    # (dsl.py:353-355, membership by identity: dsl.py:142-146). So ``[:1]`` is "the first
    # matching request this emulator ever saw": added after matching requests were served (a
    # module-scoped emulator, or earlier requests in the same test), it never fires.
    # Also: among reactions of equal priority the OLDEST matching one answers (a stable sort,
    # apps.py:333-338), so an unsliced reaction shadows later ones on the same filter.
    # Each reaction records the requests it answered (dsl.py:467-479): ``len(reaction)`` on the
    # emulator's loop is how often it fired -- see :meth:`served`.
    def react(self, build: Callable[[Any], Any]) -> Any:
        """Add a reaction with the DSL, e.g. ``emu.react(lambda k: k['get /api/v1/...'][:1] << 500)``.

        A slice counts from the emulator's first request (see above); use :meth:`react_next`
        to count from now on.
        """
        return self.run(lambda: build(self.kmock))

    def react_next(self, where: Callable[[Any], Any], respond: Callable[[Any], Any], n: int | None = 1,
                   skip: int = 0) -> Any:
        """React to matching requests that arrive from now on: skip ``skip`` of them, then answer
        ``n`` (``None``: all the rest), whatever the emulator served before.

        ``where`` builds the filter, ``respond`` the reaction on the slice, e.g.
        ``emu.react_next(lambda k: k["get", path], lambda v: v << 500)``. Returns the reaction,
        for :meth:`served`. Counting and adding happen in one step on the emulator's loop, so no
        request slips in between.
        """

        def build() -> Any:
            view = where(self.kmock)
            start = len(view) + skip
            return respond(view[start:None if n is None else start + n])

        return self.run(build)

    def served(self, reaction: Any) -> int:
        """How many requests ``reaction`` (as returned by :meth:`react`/:meth:`react_next`) has answered."""
        return self.run(lambda: len(reaction))

    def answered(self, reaction: Any) -> list[Any]:
        """The requests ``reaction`` has answered (kmock Requests; ``.id`` is the place in the emulator's history)."""
        return self.run(lambda: list(reaction))

    def requests(self) -> list[Any]:
        return self.run(lambda: list(self.kmock))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def api_client(self) -> k8s.ApiClient:
        cfg = k8s.Configuration(host=self.url)
        return k8s.ApiClient(cfg)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controllers:
    """The cluster's controllers, played by the test, through the emulator's HTTP API."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str = NS) -> None:
        self.batch = k8s.BatchV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.ns = namespace
        self._pods = 0

    # Job controller
    def wait_for_job(self, job: str, timeout: float = 10) -> Any:
        """The Job once labkit has created it (the controller reacts to what labkit submits)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.batch.read_namespaced_job(job, self.ns)
            except k8s.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def create_pod(self, job: str, *, phase: str = "Pending", node: str | None = None,
                   status: dict[str, Any] | None = None) -> str:
        self._pods += 1
        name = f"{job}-p{self._pods:04d}"
        template = k8s.ApiClient().sanitize_for_serialization(self.batch.read_namespaced_job(job, self.ns).spec.template)
        return self._pod(name, template, {"job-name": job, "batch.kubernetes.io/job-name": job}, phase, node, status)

    def _pod(self, name: str, template: dict[str, Any], extra_labels: dict[str, str], phase: str,
             node: str | None, status: dict[str, Any] | None) -> str:
        labels = dict(template["metadata"].get("labels") or {}, **extra_labels)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": self.ns, "labels": labels, "creationTimestamp": now(),
                            "annotations": dict(template["metadata"].get("annotations") or {})},
               "spec": dict(template["spec"], **({"nodeName": node} if node else {})),
               "status": dict({"phase": phase}, **(status or {}))}
        self.core.create_namespaced_pod(self.ns, pod)
        return name

    # Volcano's job controller
    def wait_for_volcano_job(self, name: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.custom.get_namespaced_custom_object(*VOLCANO, self.ns, "jobs", name)
            except k8s.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def create_volcano_pod(self, vjob: str, task: str, *, phase: str = "Pending", node: str | None = None,
                           status: dict[str, Any] | None = None) -> str:
        """The pod Volcano creates for a task (``<job>-<task>-0``, labelled with job and task)."""
        obj = self.custom.get_namespaced_custom_object(*VOLCANO, self.ns, "jobs", vjob)
        template = next(t["template"] for t in obj["spec"]["tasks"] if t["name"] == task)
        labels = {"volcano.sh/job-name": vjob, "volcano.sh/task-spec": task, "volcano.sh/job-namespace": self.ns}
        return self._pod(f"{vjob}-{task}-0", dict(template, spec=dict(template["spec"], schedulerName="volcano")),
                         labels, phase, node, status)

    def volcano_status(self, vjob: str, phase: str, **counts: int) -> None:
        self.custom.patch_namespaced_custom_object_status(*VOLCANO, self.ns, "jobs", vjob,
                                                          {"status": {"state": {"phase": phase}, **counts}})

    def pod_status(self, pod: str, **status: Any) -> None:
        self.core.patch_namespaced_pod_status(pod, self.ns, {"status": status})

    def pod_spec(self, pod: str, **spec: Any) -> None:
        self.core.patch_namespaced_pod(pod, self.ns, {"spec": spec})

    def job_status(self, job: str, **status: Any) -> None:
        self.batch.patch_namespaced_job_status(job, self.ns, {"status": status})

    def job_condition(self, job: str, kind: str, reason: str = "", message: str = "") -> None:
        cond = {"type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": now(), "lastProbeTime": now()}
        self.job_status(job, conditions=[cond], active=0)

    # scheduler / kubelet
    def event(self, kind: str, name: str, reason: str, message: str, type_: str = "Warning") -> None:
        self._pods += 1
        self.core.create_namespaced_event(self.ns, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.ev{self._pods}", "namespace": self.ns},
            "involvedObject": {"kind": kind, "name": name, "namespace": self.ns},
            "reason": reason, "message": message, "type": type_, "lastTimestamp": now(), "count": 1,
        })


@pytest.fixture
def emulator():
    emu = Emulator()
    try:
        yield emu
    finally:
        emu.close()


@pytest.fixture(autouse=True)
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's NFS directory as mounted here (``$BASE_DIR``): empty, never the real home."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("BASE_DIR", str(path))
    monkeypatch.delenv("LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR", raising=False)
    return path


def write_kubeconfig(emulator: Emulator, directory: Path) -> Path:
    """A kubeconfig whose current context is the emulator, as user anna in the test namespace."""
    import yaml

    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emulator.url}}],
        "users": [{"name": "anna", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "anna", "namespace": NS}}],
    }))
    return kubeconfig


@pytest.fixture
def cluster_config(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator configured the way a notebook finds a cluster: a settings file named by
    ``LABKIT_CLUSTER_CONFIG`` and a kubeconfig (``KUBECONFIG``) pointing at the emulator, as user anna.

    Code that builds ``ClusterJobs()`` with no arguments (the notebook widgets) talks to the emulator.
    """
    import os

    import yaml

    from labkit import __version__

    kubeconfig = write_kubeconfig(emulator, tmp_path)
    home = tmp_path / "cluster-home"  # the user's NFS directory as mounted here: empty, never the real home
    home.mkdir(exist_ok=True)
    settings_file = tmp_path / "cluster.yaml"
    settings_file.write_text(yaml.safe_dump({"cluster": {
        "namespace": NS, "image": f"ghcr.io/labkit/labkit:{__version__}",
        "storage": {"nfs_server": "nfs.lab.example", "local_base_dir": str(home)},
        "watch_timeout": 1, "api_retries": 1,
    }}))
    for key in [k for k in os.environ if k.startswith("LABKIT_CLUSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LABKIT_CLUSTER_CONFIG", str(settings_file))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("JUPYTERHUB_USER", "anna")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not inside a pod: use the kubeconfig
    return emulator
