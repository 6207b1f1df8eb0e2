"""Following under faults (issue 9): watch ERROR 500, garbage lines in a watch, a log stream left open.

The faults are scripted with kmock's request-matching DSL on the emulator; the client is the
official one over HTTP, unpatched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import kmock
import pytest
from cluster_fixtures import NS, TRUE, Controllers, Emulator, emulator, user_dir  # noqa: F401 (fixtures)
from test_cluster_jobs import JOBS_PATH, Sleeps, follow, jobs_for, runs_then_completes

from labkit.params import IcaParams
from labkit.runners.cluster.errors import ClusterUnavailable
from labkit.runners.cluster.status import JobStatus

pytestmark = pytest.mark.timeout(30)

WATCH = kmock.params({"watch": TRUE})


def error_event(code: int, message: str) -> bytes:
    return json.dumps({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                   "code": code, "message": message}}).encode() + b"\n"


def test_a_watch_error_500_is_retried_with_backoff(emulator: Emulator) -> None:
    sleeps = Sleeps()
    jobs = jobs_for(emulator, sleeps=sleeps)
    sub = jobs.submit(IcaParams())
    errors = emulator.react_next(lambda k: k["get", JOBS_PATH, WATCH],
                                 lambda v: v << error_event(500, "etcdserver: leader changed"), n=2)
    ctl = Controllers(emulator.api_client())

    final, _ = follow(jobs, sub.name, runs_then_completes(ctl, sub.name, 0.3))
    assert isinstance(final, JobStatus) and final.phase == "succeeded", final
    assert emulator.served(errors) == 2
    assert jobs.watch_state.get("retried") == 2
    assert sleeps[:2] == [0.5, 1.0]  # bounded exponential backoff between the two errors


def test_a_watch_that_keeps_answering_500_gives_up_with_a_clear_error(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    emulator.react(lambda k: k["get", JOBS_PATH, WATCH] << error_event(500, "etcd down"))
    with pytest.raises(ClusterUnavailable, match=r"kept answering 500 \(etcd down\)"):
        jobs.watch(sub.name, timeout=10)


def test_lines_that_are_not_events_are_skipped_with_a_warning(emulator: Emulator,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    garbage = emulator.react_next(lambda k: k["get", JOBS_PATH, WATCH],
                                  lambda v: v << b'42\n"hello"\n[1, 2]\nnot json\n{"type": "ADDED"}\n')
    ctl = Controllers(emulator.api_client())

    with caplog.at_level(logging.WARNING, logger="labkit.runners.cluster.follow"):
        final, _ = follow(jobs, sub.name, runs_then_completes(ctl, sub.name))
    assert isinstance(final, JobStatus) and final.phase == "succeeded", final
    skipped = [r.getMessage() for r in caplog.records if "not an event" in r.getMessage()]
    assert emulator.served(garbage) == 1
    assert len(skipped) == 5 and "'42'" in skipped[0]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


def test_a_log_stream_left_open_after_the_pod_ended_returns(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    sub = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())
    pod = ctl.create_pod(sub.name, phase="Running", node="n1")
    sent = threading.Event()
    path = f"get /api/v1/namespaces/{NS}/pods/{pod}/log"
    # the kubelet sends the last line and then never closes the stream
    emulator.react(lambda k: k[path] >> sent << (b"2026-01-01T00:00:01Z load\n2026-01-01T00:00:02Z done\n",
                                                 lambda: asyncio.sleep(60)))
    threading.Thread(target=lambda: sent.wait(10) and ctl.pod_status(pod, phase="Succeeded"), daemon=True).start()
    started = time.monotonic()
    lines = list(jobs.logs(sub.name, follow=True))
    assert lines == ["load", "done"]
    assert time.monotonic() - started < 10  # bounded by the read timeout, not the open stream
