"""The hub service attacked as issue 17 did: on the real stack (JupyterHub, configurable-http-proxy,
`labkit hub-service` as its own process, kmock's emulator as the cluster), with real hub tokens.

Each test failed on the service before the hardening: colliding user names, tokens that
outlived their revocation, tokens in URLs, one user's log follows starving everyone, a
user choosing the scheduler, bodies that cost the service memory or a 500.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from typing import Any

import kmock
import pytest
import requests
from cluster_fixtures import NS, TRUE, Controllers, Emulator, user_dir  # noqa: F401 (fixtures)
from hub_fixtures import SQUATTERS, Hub, eventually, hub, module_emulator, service_jobs_watches  # noqa: F401
from hub_fixtures import service_health as health

from labkit.params import IcaParams
from labkit.runners.cluster.manifests import build_job, legacy_owner_label
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.hub import HubJobs

pytestmark = pytest.mark.timeout(180)

JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"


def jobs_in_cluster(hub: Hub) -> dict[str, dict[str, Any]]:
    api = hub.emulator.api_client()
    listed = Controllers(api).batch.list_namespaced_job(NS)
    return {j.metadata.name: api.sanitize_for_serialization(j) for j in listed.items}


def names_of(hub: Hub, user: str) -> list[str]:
    resp = hub.call(user, "GET", "api/runs")
    assert resp.status_code == 200, resp.text
    return [r["name"] for r in resp.json()["runs"]]


@pytest.mark.parametrize("victim", sorted(SQUATTERS))
def test_a_user_named_like_anothers_old_label_sees_and_touches_nothing_of_theirs(hub: Hub, victim: str) -> None:
    squatter = SQUATTERS[victim]
    for owner, other in ((victim, squatter), (squatter, victim)):
        sub = hub.call(owner, "POST", "api/runs", json={"params": {"n_components": 11}, "force": True})
        assert sub.status_code == 201, sub.text
        name = sub.json()["name"]
        assert name in names_of(hub, owner)
        assert name not in names_of(hub, other)
        for method, path in (("GET", f"api/runs/{name}"), ("GET", f"api/runs/{name}/log"),
                             ("GET", f"api/runs/{name}/result"), ("DELETE", f"api/runs/{name}")):
            resp = hub.call(other, method, path)
            assert resp.status_code == 404, (owner, other, method, path, resp.text)
            assert "belongs" not in resp.text and "not yours" not in resp.text  # not even that it exists
        assert name in jobs_in_cluster(hub)  # the cancel did nothing
        # the same parameter set from the other user is their own Job, never an attach to this one
        theirs = hub.call(other, "POST", "api/runs", json={"params": {"n_components": 11}, "force": True})
        assert theirs.status_code == 201 and theirs.json()["name"] != name, theirs.text
        job = jobs_in_cluster(hub)[theirs.json()["name"]]
        assert job["metadata"]["annotations"]["labkit.io/user"] == other
        assert job["metadata"]["labels"]["labkit.io/owner"] != jobs_in_cluster(hub)[name]["metadata"]["labels"][
            "labkit.io/owner"]


def test_jobs_labelled_the_old_way_keep_working_for_their_real_owner_only(hub: Hub) -> None:
    """A Job labkit 0.1 made for alice.b@lab.org (owner label ``alice-b-lab-org-00e968``) is hers alone."""
    owner, squatter = "alice.b@lab.org", SQUATTERS["alice.b@lab.org"]
    settings = ClusterSettings.from_dict({"namespace": NS, "image": "registry.lab.example/labkit:0.1.0",
                                          "storage": {"nfs_server": "nfs.lab.example",
                                                      "nfs_path": "/export/home/{username}"}})
    job = build_job(IcaParams(n_components=17), settings, owner, "legacy-run-1")
    job["metadata"]["name"] = "labkit-legacy-" + job["metadata"]["name"][-10:]
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        meta["labels"]["labkit.io/owner"] = legacy_owner_label(owner)
    assert legacy_owner_label(owner) == squatter  # the collision the old scheme had
    Controllers(hub.emulator.api_client()).batch.create_namespaced_job(NS, job)
    name = job["metadata"]["name"]
    deadline = time.monotonic() + 20
    while name not in names_of(hub, owner) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert name in names_of(hub, owner)
    assert name not in names_of(hub, squatter)
    assert hub.call(squatter, "DELETE", f"api/runs/{name}").status_code == 404
    assert hub.call(owner, "GET", f"api/runs/{name}").json()["run_id"] == "legacy-run-1"
    assert hub.call(owner, "DELETE", f"api/runs/{name}").status_code == 200
    assert name not in jobs_in_cluster(hub)


def test_a_revoked_token_and_a_deleted_users_token_are_refused_on_the_next_request(hub: Hub) -> None:
    token, token_id = hub.new_token("bob")
    auth = {"Authorization": f"token {token}"}
    assert requests.get(hub.service_url + "api/runs", headers=auth, timeout=20).status_code == 200
    assert hub.admin("DELETE", f"users/bob/tokens/{token_id}").status_code == 204
    resp = requests.get(hub.service_url + "api/runs", headers=auth, timeout=20)
    assert resp.status_code == 403 and "revoked" in resp.json()["error"], resp.text

    carol, _ = hub.new_token("carol")
    auth = {"Authorization": f"token {carol}"}
    assert requests.get(hub.service_url + "api/runs", headers=auth, timeout=20).status_code == 200
    assert hub.admin("DELETE", "users/carol").status_code == 204
    before = set(jobs_in_cluster(hub))
    resp = requests.post(hub.service_url + "api/runs", headers=auth, json={"params": {"n_components": 5}}, timeout=20)
    assert resp.status_code == 403, resp.text
    assert set(jobs_in_cluster(hub)) == before  # no Job for a user who is gone


def test_an_expired_token_is_refused_the_moment_it_expires(hub: Hub) -> None:
    token, _ = hub.new_token("bob", expires_in=2)
    auth = {"Authorization": f"token {token}"}
    assert requests.get(hub.service_url + "api/runs", headers=auth, timeout=20).status_code == 200
    time.sleep(2.5)
    assert requests.get(hub.service_url + "api/runs", headers=auth, timeout=20).status_code == 403


def _logged_runs_requests(hub: Hub) -> int:
    """How many ``GET .../api/runs`` the service's access log holds so far (its own process writes it)."""
    return (hub.dir / "service.log").read_text().count("GET /services/labkit/api/runs (")


def test_tokens_only_from_the_header_and_never_in_the_log(hub: Hub) -> None:
    alice, bob = hub.tokens["alice"], hub.tokens["bob"]
    logged = _logged_runs_requests(hub)
    alone = requests.get(hub.service_url + "api/runs", params={"token": alice}, timeout=20,
                         headers={"Sec-Fetch-Mode": "websocket"})
    assert alone.status_code == 400 and "Authorization" in alone.json()["error"], alone.text
    both = requests.get(hub.service_url + "api/runs", params={"token": alice}, timeout=20,
                        headers={"Authorization": f"token {bob}"})
    assert both.status_code == 400, both.text
    assert requests.get(hub.service_url + "api/runs", headers={"Authorization": f"Bearer {bob}"},
                        timeout=20).status_code == 200
    assert requests.get(hub.service_url + "api/runs", headers={"Authorization": "token"},
                        timeout=20).status_code == 401
    assert eventually(lambda: _logged_runs_requests(hub) >= logged + 4), "the service did not log the 4 requests"
    log = (hub.dir / "service.log").read_text()
    assert "/services/labkit/api/runs" in log  # the access log is there, without the query
    assert alice not in log and bob not in log


def open_follow(hub: Hub, user: str, name: str, token: str | None = None) -> socket.socket:
    """A raw ``GET .../log?follow=1`` through the proxy (which sends no headers before the first line)."""
    sock = socket.create_connection(("127.0.0.1", hub.public_port), timeout=30)
    sock.sendall(f"GET /services/labkit/api/runs/{name}/log?follow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: token {token or hub.tokens[user]}\r\n\r\n".encode())
    return sock


def answered(sock: socket.socket, seconds: float = 0.2) -> bytes:
    """What the service answered so far (nothing while a follow waits for its run's pod)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""


def test_one_users_log_follows_cannot_delay_anothers_submit_and_cancel(hub: Hub) -> None:
    pending = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 19}, "force": True})
    assert pending.status_code == 201, pending.text
    name = pending.json()["name"]  # no pod: every follow waits for it
    follows = [open_follow(hub, "bob", name) for _ in range(70)]
    try:
        check_follows_and_alices_latency(hub, follows)
    finally:
        for sock in follows:
            sock.close()
    # bob's followers stop when his clients go: his slots come back
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again = open_follow(hub, "bob", name)
        time.sleep(0.5)
        reply = answered(again)
        again.close()
        if not reply:
            break
    assert not reply, reply[:200]


def answers_once_refused(follows: list[socket.socket], refusals: int, timeout: float = 30.0) -> list[bytes]:
    """What each follow answered, read as it arrives until ``refusals`` complete 429 answers came (or ``timeout``)."""
    answers = {s: b"" for s in follows}
    ended: set[socket.socket] = set()

    def refused() -> int:
        return sum(a.startswith(b"HTTP/1.1 429") and b"per user" in a for a in answers.values())

    deadline = time.monotonic() + timeout
    while refused() < refusals and time.monotonic() < deadline:
        readable, _, _ = select.select([s for s in follows if s not in ended], [], [], 0.2)
        for s in readable:
            chunk = s.recv(65536)
            answers[s] += chunk
            if not chunk:
                ended.add(s)
    return [answers[s] or answered(s) for s in follows]  # the rest: still silent (they wait for the pod)


def check_follows_and_alices_latency(hub: Hub, follows: list[socket.socket]) -> None:
    answers = answers_once_refused(follows, 66)
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
    waiting = [s for s, a in zip(follows, answers, strict=True) if not a]
    assert len(refused) == 66 and len(waiting) == 4, [a[:12] for a in answers]
    assert b"retry-after: 5" in refused[0].lower() and b"the limit is 4 per user" in refused[0]
    # alice, meanwhile, at her normal latency
    for _ in range(3):
        started = time.monotonic()
        sub = hub.call("alice", "POST", "api/runs", json={"params": {"n_components": 4}, "force": True})
        assert sub.status_code == 201, sub.text
        assert hub.call("alice", "DELETE", f"api/runs/{sub.json()['name']}").status_code == 200
        assert time.monotonic() - started < 3.0


def test_a_log_follow_stops_once_its_token_is_revoked(hub: Hub) -> None:
    """A follow lasts hours: the service asks the hub again every ``hub.token_recheck_seconds`` (1 s here)."""
    token, token_id = hub.new_token("bob")
    name = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 29}, "force": True}).json()["name"]
    ctl = Controllers(hub.emulator.api_client())
    pod = ctl.create_pod(name, phase="Running", node="n1")

    async def slow_log() -> Any:
        for i in range(60):
            yield f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z line {i}\n".encode()
            await asyncio.sleep(0.25)

    hub.emulator.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << slow_log())
    assert eventually(lambda: hub.call("bob", "GET", f"api/runs/{name}").json()["phase"] == "running")
    sock = open_follow(hub, "bob", name, token)
    received = b""
    while b"line 1\n" not in received:
        chunk = answered(sock, 10)
        assert chunk, received
        received += chunk
    assert hub.admin("DELETE", f"users/bob/tokens/{token_id}").status_code == 204
    deadline = time.monotonic() + 10
    while b"no longer accepts your token" not in received and time.monotonic() < deadline:
        received += answered(sock, 1)
    sock.close()
    assert b"no longer accepts your token" in received, received[-300:]
    assert b"line 59" not in received  # stopped long before the log ended


def test_long_polls_are_limited_per_user(hub: Hub) -> None:
    fp = hub.call("bob", "GET", "api/runs").json()["fingerprint"]
    results: list[int] = []

    def poll() -> None:
        results.append(hub.call("bob", "GET", "api/runs", params={"wait": 3, "after": fp}).status_code)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results).count(200) == 8 and results.count(429) == 4, results


def test_a_user_cannot_choose_the_scheduler_or_the_gang_size(hub: Hub) -> None:
    for extra in ({"volcano": True}, {"min_available": 2}, {"volcano": True, "min_available": 2}):
        resp = hub.call("bob", "POST", "api/sweeps", json={"sets": [{"n_components": 3}], **extra})
        assert resp.status_code == 400, resp.text
        assert resp.json()["field"] in extra and "admin" in resp.json()["error"]


def test_the_client_refuses_volcano_choices_on_a_hub_before_sending(hub: Hub) -> None:
    jobs = HubJobs(ClusterSettings(), "bob", url=hub.service_url, token=hub.tokens["bob"], user_dir_here=False)
    with pytest.raises(Exception, match="admin's settings choose the scheduler"):
        jobs.submit_sweep([IcaParams(n_components=3)], volcano=True)


@pytest.mark.parametrize("run_id", ["a.partial", "b.failed",  # new: the runner's own refusal, now at the door
                                    "../x", "x" * 64, "-x"])  # refused before too: regression guards
def test_run_ids_the_runner_refuses_are_refused_at_the_door(hub: Hub, run_id: str) -> None:
    resp = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 35 + len(run_id) % 7,
                                                                "random_state": len(run_id)},
                                                     "run_id": run_id, "force": True})
    assert resp.status_code == 400 and resp.json()["field"] == "run_id", resp.text
    assert "allowed" in resp.json()["error"]
    assert not [j for j in jobs_in_cluster(hub).values() if j["metadata"]["labels"].get("labkit.io/run-id") == run_id]


def test_bodies_are_bounded_in_depth_and_size_and_never_echoed_at_length(hub: Hub) -> None:
    deep = b'{"params": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    resp = hub.call("bob", "POST", "api/runs", data=deep, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "nested too deeply" in resp.json()["error"], resp.text
    big_key = json.dumps({"x" * 10_000_00: 1}).encode()  # a 1 MB unknown key
    resp = hub.call("bob", "POST", "api/runs", data=big_key, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and len(resp.content) < 2_000, len(resp.content)
    huge = json.dumps({"params": {"raw_file_path": "y" * 3_000_000}}).encode()
    resp = hub.call("bob", "POST", "api/runs", data=huge, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and "limit" in resp.json()["error"] and len(resp.content) < 2_000, resp.text


def test_the_same_idempotency_key_twice_makes_one_job(hub: Hub) -> None:
    body = {"params": {"n_components": 26}, "force": True, "run_id": "bob-key-1"}
    answers: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(hub.call("bob", "POST", "api/runs", json=body)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["name"] for a in answers}) == 1
    made = [j for j in jobs_in_cluster(hub).values() if j["metadata"]["labels"]["labkit.io/run-id"] == "bob-key-1"]
    assert len(made) == 1


def test_a_run_id_already_used_for_another_set_is_a_conflict_not_a_replay(hub: Hub) -> None:
    first = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 36}, "run_id": "bob-key-2"})
    assert first.status_code == 201, first.text
    other = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 37}, "run_id": "bob-key-2"})
    assert other.status_code == 409 and first.json()["name"] in other.json()["error"], other.text
    made = [j for j in jobs_in_cluster(hub).values() if j["metadata"]["labels"]["labkit.io/run-id"] == "bob-key-2"]
    assert len(made) == 1


def test_a_slow_create_retried_by_the_client_makes_one_job(hub: Hub) -> None:
    slowly = threading.Event()

    async def slow(request: Any) -> None:  # the API server takes 3 s to create: the client gives up at 1 s
        if slowly.is_set():
            await asyncio.sleep(3)

    hub.emulator.react(lambda k: k["post", JOBS] >> slow)  # a side effect only: the emulator then creates
    slowly.set()
    try:
        jobs = HubJobs(ClusterSettings(), "bob", url=hub.service_url, token=hub.tokens["bob"], user_dir_here=False,
                       timeout=1.0)
        params = IcaParams(n_components=27)
        sub = jobs.submit(params, force=True)
    finally:
        slowly.clear()
    made = [j for j in jobs_in_cluster(hub).values() if j["metadata"]["labels"]["labkit.io/run-id"] == sub.run_id]
    assert len(made) == 1
    same_set = [j for j in jobs_in_cluster(hub).values() if j["metadata"]["labels"]["labkit.io/digest"] == params.digest
                and j["metadata"]["annotations"]["labkit.io/user"] == "bob"]
    assert len(same_set) == 1, [j["metadata"]["name"] for j in same_set]


def test_cancelling_again_succeeds_and_says_what_was_cancelled(hub: Hub) -> None:
    sweep = hub.call("bob", "POST", "api/sweeps", json={"sets": [{"n_components": n} for n in (31, 32, 33)],
                                                        "sweep_id": "bob-again", "force": True})
    assert sweep.status_code == 201, sweep.text
    sweep_id = sweep.json()["sweep_id"]
    names = sorted(r["name"] for r in sweep.json()["runs"])
    first = hub.call("bob", "DELETE", f"api/sweeps/{sweep_id}")
    assert first.status_code == 200 and sorted(first.json()["cancelled"]) == names and not first.json()["already"]
    again = hub.call("bob", "DELETE", f"api/sweeps/{sweep_id}")
    assert again.status_code == 200, again.text
    assert sorted(again.json()["cancelled"]) == names == sorted(again.json()["already"])
    assert hub.call("alice", "DELETE", f"api/sweeps/{sweep_id}").status_code == 404  # bob's record, not alice's
    run = hub.call("bob", "POST", "api/runs", json={"params": {"n_components": 34}, "force": True}).json()["name"]
    assert hub.call("bob", "DELETE", f"api/runs/{run}").json() == {"name": run, "cancelled": True, "already": False}
    assert hub.call("bob", "DELETE", f"api/runs/{run}").json() == {"name": run, "cancelled": True, "already": True}
    assert hub.call("alice", "DELETE", f"api/runs/{run}").status_code == 404


def bobs_job(hub: Hub, n_components: int) -> str:
    """A Job of bob's made behind the service's back (as another replica would): only its watch can tell."""
    settings = ClusterSettings.from_dict({"namespace": NS, "image": "registry.lab.example/labkit:0.1.0",
                                          "storage": {"nfs_server": "nfs.lab.example",
                                                      "nfs_path": "/export/home/{username}"}})
    job = build_job(IcaParams(n_components=n_components), settings, "bob", f"bob-behind-{n_components}")
    Controllers(hub.emulator.api_client()).batch.create_namespaced_job(NS, job)
    return job["metadata"]["name"]


def test_a_malformed_event_neither_kills_the_cache_nor_hides_what_comes_after(hub: Hub) -> None:
    before = health(hub)[1]["jobs"]["malformed"]
    bad = hub.emulator.react_next(service_jobs_watches, lambda v: v << b'{"type": "MODIFIED", "object": {}}\n'
                                  b'{"type": "ADDED", "object": {"metadata": {"name": 7}}}\n')
    assert eventually(lambda: hub.emulator.served(bad) == 1), "the service's Jobs watch never met the bad events"
    name = bobs_job(hub, 41)
    assert eventually(lambda: name in names_of(hub, "bob")), "a Job made after the bad events never appeared"
    # the first is counted; the rest of that watch is dropped, and the informer lists again
    assert health(hub)[1]["jobs"]["malformed"] >= before + 1
    Controllers(hub.emulator.api_client()).job_condition(name, "Complete")
    assert eventually(lambda: hub.call("bob", "GET", f"api/runs/{name}").json()["phase"] == "succeeded")
    assert eventually(lambda: health(hub)[0] == 200)
    assert health(hub)[1]["alive"] is True


def test_watch_errors_make_health_503_and_no_stale_state_is_served(hub: Hub) -> None:
    name = bobs_job(hub, 42)
    assert eventually(lambda: name in names_of(hub, "bob"))
    error = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}).encode()
    failing = hub.emulator.react_next(service_jobs_watches, lambda v: v << error + b"\n", n=10)
    try:
        check_503_and_fresh_reads(hub, failing, name)
    finally:  # all ten used up, so none is left over for the next test
        eventually(lambda: hub.emulator.served(failing) == 10, 90)
    assert eventually(lambda: health(hub)[0] == 200, 90), health(hub)
    assert hub.call("bob", "GET", f"api/runs/{name}").json()["phase"] == "succeeded"


def check_503_and_fresh_reads(hub: Hub, failing: Any, name: str) -> None:
    assert eventually(lambda: hub.emulator.served(failing) >= 1)
    assert eventually(lambda: health(hub)[0] == 503, 20)
    status, body = health(hub)
    assert body["ready"] is False and "labkit Jobs" in body["reason"] and "500" in body["reason"], body
    # the Job completes while the service's watch is failing: what users read is the cluster's state
    Controllers(hub.emulator.api_client()).job_condition(name, "Complete")
    seen = hub.call("bob", "GET", f"api/runs/{name}").json()
    listed = {r["name"]: r["phase"] for r in hub.call("bob", "GET", "api/runs").json()["runs"]}
    still_failing = health(hub)[0] == 503
    assert still_failing, "the watch recovered before the reads: the test proved nothing"
    assert seen["phase"] == "succeeded" and listed[name] == "succeeded", (seen, listed)


def test_the_service_waits_out_a_throttling_api_server_instead_of_exiting(hub: Hub) -> None:
    """Its first five lists answered 429 with Retry-After 9 s: about 40 s, past the old 30 s start-up limit."""
    hub.stop_service()
    lists = hub.emulator.react_next(
        lambda k: k["get", JOBS, kmock.params({"labelSelector": "app.kubernetes.io/name=labkit"})]
        - k["get", JOBS, kmock.params({"watch": TRUE})],
        lambda v: v << 429 << kmock.headers({"Retry-After": "9"}) << {"kind": "Status", "code": 429,
                                                                      "message": "slow down"}, n=5)
    try:
        hub.start_service(ready=False)
        status, body = health(hub)
        assert status == 503 and body["ready"] is False and "labkit Jobs" in body["reason"], body
        assert hub.call("bob", "GET", "api/runs").status_code in (200, 503)  # answered, not hung
        assert eventually(lambda: health(hub)[0] == 200, 120), health(hub)
        assert hub.emulator.served(lists) == 5
        assert hub.service is not None and hub.service.poll() is None  # it never exited
    finally:
        if hub.service is None or hub.service.poll() is not None:
            hub.start_service()


def test_a_volcano_sweep_is_the_admins_choice_and_is_listed_followed_and_cancelled(hub: Hub) -> None:
    """With the admin's scheduler Volcano (gang size 2), a user's sweep is one Volcano Job they see and manage."""
    import yaml

    original = hub.settings_file.read_text()
    settings = yaml.safe_load(original)
    settings["cluster"]["scheduler"] = {"name": "volcano", "queue": "eeg", "min_available": 2}
    hub.settings_file.write_text(yaml.safe_dump(settings))
    hub.stop_service()
    try:
        hub.start_service()
        sub = hub.call("bob", "POST", "api/sweeps", json={"sets": [{"n_components": n} for n in (51, 52, 53)],
                                                          "sweep_id": "bob-volcano"})
        assert sub.status_code == 201 and sub.json()["kind"] == "volcano", sub.text
        vjob = Controllers(hub.emulator.api_client()).wait_for_volcano_job(sub.json()["name"])
        assert vjob["spec"]["minAvailable"] == 2 and vjob["spec"]["queue"] == "eeg"
        assert eventually(lambda: sub.json()["name"] in names_of(hub, "bob"))
        assert sub.json()["name"] not in names_of(hub, "alice")
        sweep = hub.call("bob", "GET", "api/sweeps/bob-volcano")
        assert sweep.status_code == 200 and sweep.json()["kind"] == "volcano" and len(sweep.json()["runs"]) == 3
        run = sweep.json()["runs"][0]["name"]
        assert hub.call("bob", "GET", f"api/runs/{run}").json()["phase"] == "pending"
        assert hub.call("alice", "GET", f"api/runs/{run}").status_code == 404
        one = hub.call("bob", "DELETE", f"api/runs/{run}")  # a run of a sweep goes with its sweep, never "cancelled"
        assert one.status_code == 400 and "DELETE api/sweeps/bob-volcano" in one.json()["error"], one.text
        assert hub.call("alice", "DELETE", "api/sweeps/bob-volcano").status_code == 404
        cancelled = hub.call("bob", "DELETE", "api/sweeps/bob-volcano")
        assert cancelled.status_code == 200 and cancelled.json()["cancelled"] == [sub.json()["name"]], cancelled.text
        assert eventually(lambda: sub.json()["name"] not in names_of(hub, "bob"))
    finally:
        hub.settings_file.write_text(original)
        hub.stop_service()
        hub.start_service()
