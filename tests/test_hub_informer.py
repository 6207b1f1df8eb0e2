"""The service's cache: one list + watch per kind, kept fresh through quiet streams, 410 Gone and 500s."""

from __future__ import annotations

import json
import time
from typing import Callable

import kmock
import pytest
from cluster_fixtures import NS, Emulator, emulator, user_dir  # noqa: F401 (fixtures)
from kubernetes import client as k8s

from labkit.cluster.manifests import build_job
from labkit.cluster.settings import ClusterSettings
from labkit.hub.informer import Informer, wait_ready
from labkit.params import IcaParams

pytestmark = pytest.mark.timeout(60)
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
SETTINGS = ClusterSettings.from_dict({"namespace": NS, "storage": {"nfs_server": "nfs"}})


def create(emu: Emulator, user: str, n: int) -> str:
    job = build_job(IcaParams(n_components=n), SETTINGS, user, f"r{n}")
    k8s.BatchV1Api(emu.api_client()).create_namespaced_job(NS, job)
    return job["metadata"]["name"]


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the cache did not catch up"
        time.sleep(0.05)


def informer(emu: Emulator, changed: list[str] | None = None) -> Informer:
    inf = Informer(k8s.BatchV1Api(emu.api_client()).list_namespaced_job, NS, "app.kubernetes.io/name=labkit",
                   "labkit Jobs", watch_timeout=0.5,
                   on_change=(lambda o: changed.append(o["metadata"]["name"])) if changed is not None else None)
    return inf.start()


def test_list_then_watch_keeps_the_cache_equal_to_the_cluster_even_when_quiet(emulator: Emulator) -> None:
    first = create(emulator, "alice", 3)
    changed: list[str] = []
    inf = informer(emulator, changed)
    try:
        wait_ready(inf)
        assert inf.get(first) is not None and changed == [first]
        time.sleep(4)  # longer than a watch's read timeout: quiet streams are renewed, not errors
        second = create(emulator, "bob", 4)
        eventually(lambda: inf.get(second) is not None)
        k8s.BatchV1Api(emulator.api_client()).delete_namespaced_job(first, NS)
        eventually(lambda: inf.get(first) is None)
        assert inf.stats["lists"] == 1 and inf.stats["errors"] == 0
    finally:
        inf.stop()


def test_410_lists_again_and_500_is_waited_out(emulator: Emulator) -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    boom = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}
    emulator.react(lambda k: k["get", JOBS, kmock.params({"watch": "true"})][:1]
                   << (b'"not an event"\n' + json.dumps(gone).encode() + b"\n"))
    emulator.react(lambda k: k["get", JOBS, kmock.params({"watch": "true"})][1:2] << json.dumps(boom).encode() + b"\n")
    inf = informer(emulator)
    try:
        wait_ready(inf)
        name = create(emulator, "alice", 5)
        eventually(lambda: inf.stats["errors"] >= 1)  # the 500 was met (after the 410's relist)
        assert inf.stats["lists"] >= 2
        eventually(lambda: inf.get(name) is not None)  # and the cache still follows the cluster
        later = create(emulator, "bob", 6)
        eventually(lambda: inf.get(later) is not None)
    finally:
        inf.stop()



def test_an_event_that_changes_nothing_is_not_told(emulator: Emulator) -> None:
    """A watch may replay what the list already gave, or delete what is already gone: listeners hear it once."""
    name = create(emulator, "alice", 3)
    listed = k8s.BatchV1Api(emulator.api_client()).list_namespaced_job(NS, _preload_content=False)
    obj = json.loads(listed.data)["items"][0]
    ghost = {**obj, "metadata": {**obj["metadata"], "name": "labkit-nobody-0"}}
    replay = [{"type": "ADDED", "object": obj}, {"type": "DELETED", "object": ghost}]
    emulator.react(lambda k: k["get", JOBS, kmock.params({"watch": "true"})][:1]
                   << b"".join(json.dumps(e).encode() + b"\n" for e in replay))
    changed: list[str] = []
    inf = informer(emulator, changed)
    try:
        wait_ready(inf)
        eventually(lambda: inf.stats["watches"] >= 3)  # the replay was read, and quiet watches after it
        assert changed == [name]
        k8s.BatchV1Api(emulator.api_client()).patch_namespaced_job_status(name, NS, {"status": {"active": 1}})
        eventually(lambda: ((inf.get(name) or {}).get("status") or {}).get("active") == 1)
        eventually(lambda: inf.stats["watches"] >= 6)
        assert changed == [name, name]  # the list, then the one real change
    finally:
        inf.stop()
