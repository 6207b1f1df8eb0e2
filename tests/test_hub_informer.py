"""The service's cache: one list + watch per kind, kept fresh through quiet streams, 410 Gone and 500s,
never killed by what the cluster sends, and honest about how current it is (``health``)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import kmock
import pytest
from cluster_fixtures import NS, Emulator, emulator, user_dir  # noqa: F401 (fixtures)
from kubernetes import client as k8s

from labkit.hub.informer import Informer, wait_ready
from labkit.params import IcaParams
from labkit.runners.cluster import api
from labkit.runners.cluster.manifests import build_job
from labkit.runners.cluster.settings import ClusterSettings

pytestmark = pytest.mark.timeout(60)
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
SETTINGS = ClusterSettings.from_dict({"namespace": NS, "storage": {"nfs_server": "nfs"}})
BOOM = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}


def create(emu: Emulator, user: str, n: int) -> str:
    job = build_job(IcaParams(n_components=n), SETTINGS, user, f"r{n}")
    k8s.BatchV1Api(emu.api_client()).create_namespaced_job(NS, job)
    return job["metadata"]["name"]


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the cache did not catch up"
        time.sleep(0.05)


def make(emu: Emulator, changed: list[str] | None = None, **options: Any) -> Informer:
    """An informer of labkit Jobs as the service makes it (urllib3's own retries off), not started, with
    short timeouts and backoffs (tests are fast)."""
    options = {"watch_timeout": 0.5, "relist_interval": 0.2, "max_backoff": 0.2, **options}
    return Informer(k8s.BatchV1Api(api.own_retries(emu.api_client())).list_namespaced_job, NS, "app.kubernetes.io/name=labkit",
                    "labkit Jobs", **options,
                    on_change=(lambda o: changed.append(o["metadata"]["name"])) if changed is not None else None)


def informer(emu: Emulator, changed: list[str] | None = None, **options: Any) -> Informer:
    return make(emu, changed, **options).start()


def line(event: Any) -> bytes:
    return json.dumps(event).encode() + b"\n"


def watches(k: Any) -> Any:
    return k[kmock.action.WATCH, JOBS]


def lists(k: Any) -> Any:
    return k[kmock.action.LIST, JOBS]


# kmock 0.8 counts a slice such as ``k[...][:1]`` over the emulator's WHOLE request history, from its
# first matching request, not from when the reaction was added: every request is appended to the
# root's history before it is handled (kmock/_internal/apps.py:289), a reaction answers a request
# that is in its source (apps.py:344, membership by identity: dsl.py:146), and a Slicer materializes
# its filter over that whole history before slicing it (dsl.py:355). So ``next_requests`` starts the
# slices at the number of matching requests seen so far, counted and added in one step on the
# emulator's loop; each reaction records what it answered (dsl.py:472), which ``served`` counts.
def next_requests(emu: Emulator, where: Callable[[Any], Any], *answers: Callable[[Any], Any]) -> list[Any]:
    """Answer the next ``len(answers)`` requests matching ``where``, one answer each, in order."""

    def build() -> list[Any]:
        start = len(where(emu.kmock))
        return [answer(where(emu.kmock)[start + i:start + i + 1]) for i, answer in enumerate(answers)]

    return emu.run(build)


def served(emu: Emulator, reactions: list[Any]) -> int:
    return emu.run(lambda: sum(len(r) for r in reactions))


def test_list_then_watch_keeps_the_cache_equal_to_the_cluster_even_when_quiet(emulator: Emulator) -> None:
    first = create(emulator, "alice", 3)
    changed: list[str] = []
    inf = informer(emulator, changed)
    try:
        wait_ready(inf)
        assert inf.get(first) is not None and changed == [first]
        eventually(lambda: inf.stats["renewed"] >= 2)  # two quiet watches ended at their timeout and were renewed
        assert inf.health().ok and inf.stats["errors"] == 0 and inf.stats["watches"] >= 3
        second = create(emulator, "bob", 4)
        eventually(lambda: inf.get(second) is not None)
        k8s.BatchV1Api(emulator.api_client()).delete_namespaced_job(first, NS)
        eventually(lambda: inf.get(first) is None)
        assert inf.stats["lists"] == 1 and inf.stats["errors"] == 0 and inf.stats["malformed"] == 0
    finally:
        inf.stop()


def test_410_lists_again_and_500_is_waited_out(emulator: Emulator) -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    injected = next_requests(emulator, watches, lambda v: v << line(gone), lambda v: v << line(BOOM))
    inf = informer(emulator)
    try:
        wait_ready(inf)
        name = create(emulator, "alice", 5)
        eventually(lambda: inf.stats["errors"] >= 1)  # the 500 was met (after the 410's relist)
        assert served(emulator, injected) == 2 and inf.stats["lists"] >= 2
        eventually(lambda: inf.get(name) is not None)  # and the cache still follows the cluster
        later = create(emulator, "bob", 6)
        eventually(lambda: inf.get(later) is not None)
        eventually(lambda: inf.health().ok)
    finally:
        inf.stop()


def test_an_event_that_changes_nothing_is_not_told(emulator: Emulator) -> None:
    """A watch may replay what the list already gave, or delete what is already gone: listeners hear it once."""
    name = create(emulator, "alice", 3)
    listed = k8s.BatchV1Api(emulator.api_client()).list_namespaced_job(NS, _preload_content=False)
    obj = json.loads(listed.data)["items"][0]
    ghost = {**obj, "metadata": {**obj["metadata"], "name": "labkit-nobody-0"}}
    replay = [{"type": "ADDED", "object": obj}, {"type": "DELETED", "object": ghost}]
    next_requests(emulator, watches, lambda v: v << b"".join(line(e) for e in replay))
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


def test_malformed_events_are_skipped_counted_and_relisted(emulator: Emulator,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Each bad line ends its watch (it may have hidden a change) and the informer lists again; none kills it."""
    first = create(emulator, "alice", 3)
    bad = [line({"type": "MODIFIED", "object": {}}),
           line({"type": "MODIFIED", "object": "not an object"}),
           line({"type": "DELETED", "object": [{"metadata": {"name": first}}]}),
           line({"type": "ADDED", "object": {"metadata": {"labels": {}}}}),  # no name
           line({"type": "MODIFIED", "object": {"metadata": {"name": 7, "pad": "x" * 10_000}}}),
           line({"type": "SURPRISE", "object": {"metadata": {"name": first}}}),
           line({"type": "BOOKMARK", "object": {"metadata": {}}}),  # a bookmark without a resource version
           line([{"type": "ADDED"}]),
           line("not an event"),
           b"{not json at all\n"]
    injected = next_requests(emulator, watches, *[lambda v, b=b: v << b for b in bad])
    caplog.set_level(logging.WARNING, logger="labkit.hub.informer")
    inf = informer(emulator)
    try:
        eventually(lambda: served(emulator, injected) == len(bad))
        eventually(lambda: inf.stats["malformed"] == len(bad))
        eventually(lambda: inf.stats["lists"] == 1 + len(bad))  # the first list, then one per bad line
        later = create(emulator, "bob", 4)
        eventually(lambda: inf.get(later) is not None and inf.get(first) is not None)
        eventually(lambda: inf.health().ok)
        assert inf.alive and inf.stats["lists"] == 1 + len(bad) and inf.stats["errors"] == 0
    finally:
        inf.stop()
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == len(bad) and all(len(w) < 300 for w in warnings)
    assert "type 'MODIFIED'" in warnings[0]


def test_a_flood_of_malformed_events_is_not_a_flood_of_lists(emulator: Emulator) -> None:
    injected = next_requests(emulator, watches, *[lambda v: v << line({"type": "MODIFIED", "object": {}})] * 4)
    started = time.monotonic()
    inf = informer(emulator, relist_interval=0.5)
    try:
        eventually(lambda: inf.stats["lists"] == 5)  # the first list and one per malformed event
        assert time.monotonic() - started >= 4 * 0.5  # lists start at least relist_interval apart
        assert served(emulator, injected) == 4 and inf.stats["malformed"] == 4
    finally:
        inf.stop()


def test_watch_errors_make_health_fail_until_the_watch_delivers_again(emulator: Emulator) -> None:
    """Six watch ERROR 500s in a row: not healthy the whole time (no flicker on the relists between them);
    afterwards healthy, and what changed meanwhile (a delete no watch replays) is in the cache: it relisted."""
    first = create(emulator, "alice", 3)
    inf = informer(emulator)
    try:
        wait_ready(inf)
        eventually(lambda: inf.health().ok)
        n = 6
        injected = next_requests(emulator, watches, *[lambda v: v << line(BOOM)] * n)
        eventually(lambda: inf.stats["errors"] >= 1, timeout=5)
        k8s.BatchV1Api(emulator.api_client()).delete_namespaced_job(first, NS)
        second = create(emulator, "bob", 4)
        seen = []
        while True:
            health = inf.health()  # read before the count: it was taken inside the streak
            if inf.stats["errors"] >= n:
                break
            assert not health.ok, health.reason
            seen.append(health.reason)
            time.sleep(0.02)
        assert seen and all("watch failing" in r and "last: the watch answered 500 (etcd)" in r for r in seen)
        assert served(emulator, injected) == n and inf.stats["lists"] >= 2
        eventually(lambda: inf.health().ok)
        assert inf.get(first) is None and inf.get(second) is not None
    finally:
        inf.stop()


def test_the_first_list_is_retried_until_it_works(emulator: Emulator) -> None:
    """429 with Retry-After, four times: more than one call's retries; the informer keeps trying."""
    name = create(emulator, "alice", 3)
    too_many = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "rate limited"}
    limited = next_requests(emulator, lists,
                            *[lambda v: v << 429 << kmock.headers({"Retry-After": "1"}) << too_many] * 4)
    inf = informer(emulator)
    try:
        assert not inf.health().ok
        eventually(lambda: inf.stats["errors"] >= 1)  # one call's three attempts were not enough
        health = inf.health()
        assert inf.ready.is_set() or ("never listed yet (last error:" in health.reason and "429" in health.reason)
        wait_ready(inf, timeout=15)
        assert served(emulator, limited) == 4 and inf.get(name) is not None
        eventually(lambda: inf.health().ok)
    finally:
        inf.stop()


def test_answers_nobody_foresaw_never_kill_the_thread(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """A list that is a JSON array, items that are not a list: unexpected exceptions, logged with their
    traceback and waited out; list items without a name are skipped and counted."""
    name = create(emulator, "alice", 3)
    odd = next_requests(emulator, lists, lambda v: v << b"[1, 2]", lambda v: v << {"items": 5},
                        lambda v: v << {"metadata": {"resourceVersion": "1"}, "items": ["x", {"metadata": {}}]})
    caplog.set_level(logging.WARNING, logger="labkit.hub.informer")
    inf = informer(emulator)
    try:
        wait_ready(inf, timeout=15)
        assert served(emulator, odd) == 3
        assert inf.stats["unexpected"] == 2 and inf.stats["errors"] >= 2 and inf.stats["malformed"] == 2
        eventually(lambda: inf.get(name) is not None)  # the watch (from the odd list's version) brought it
        later = create(emulator, "bob", 4)
        eventually(lambda: inf.get(later) is not None)
        eventually(lambda: inf.health().ok)
    finally:
        inf.stop()
    assert any(r.exc_info for r in caplog.records if "unexpectedly" in r.getMessage())


def test_health_says_when_the_cache_is_too_old_or_the_thread_stopped(emulator: Emulator) -> None:
    assert make(emulator).max_age == 2 * 0.5 + 10  # the default: two quiet watches and a margin
    inf = make(emulator, max_age=1.0)
    assert inf.health() == (False, "labkit Jobs: informer thread not running") and not inf.health()
    inf.start()
    try:
        wait_ready(inf)
        # no Jobs, so no events: only the end of each quiet watch (2.5 s here) says it is current
        eventually(lambda: "no news from the cluster" in inf.health().reason)
        assert not inf.is_current() and inf.is_current(max_age=30)
    finally:
        inf.stop()
    assert inf.health() == (False, "labkit Jobs: informer thread stopped")


def test_the_index_answers_one_owners_objects_through_lists_watches_and_deletes(emulator: Emulator) -> None:
    """``index`` (the service's: the exact hub name) is kept with the cache, so a look needs no namespace-wide pass."""
    first = create(emulator, "anna", 61)
    inf = informer(emulator, index=lambda o: o["metadata"]["annotations"]["labkit.io/user"])
    try:
        wait_ready(inf)
        assert [o["metadata"]["name"] for o in inf.indexed("anna")] == [first]
        second, bobs = create(emulator, "anna", 62), create(emulator, "bob", 63)
        eventually(lambda: len(inf.indexed("anna")) == 2 and len(inf.indexed("bob")) == 1)
        k8s.BatchV1Api(emulator.api_client()).delete_namespaced_job(first, NS)
        eventually(lambda: [o["metadata"]["name"] for o in inf.indexed("anna")] == [second])
        assert [o["metadata"]["name"] for o in inf.indexed("bob")] == [bobs] and inf.indexed("carol") == []
        inf.forget(second)
        assert inf.indexed("anna") == []
    finally:
        inf.stop()
