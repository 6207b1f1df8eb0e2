"""Following Jobs: watches that survive timeouts, cut streams and 410 Gone, and log streams that resume.

:class:`Following` is a mixin of :class:`~labkit.runners.cluster.jobs.ClusterJobs`: it only needs the
face's ``call``, ``status``, ``run_status``, ``run_pods`` and ``sweep_status``. Every wait is
bounded (``poll_interval``), so a silent stream never hangs a reader.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import urllib3

from labkit.runners.cluster import api
from labkit.runners.cluster.errors import ClusterError, ClusterGone, ClusterNotFound, ClusterUnavailable
from labkit.runners.cluster.manifests import CONTAINER, LABEL_SWEEP, owner_selector
from labkit.runners.cluster.status import VOLCANO_GROUP, VOLCANO_VERSION, JobPendingTooLong, JobStatus, SweepStatus

logger = logging.getLogger(__name__)


class FollowClock:
    """When following a run or sweep must stop: pending past ``pending_timeout``, or past ``timeout``.

    One home for this bookkeeping, shared by the direct follower and the hub client's long-poll.
    """

    def __init__(self, pending_timeout: float, timeout: float | None) -> None:
        self.pending_timeout = pending_timeout
        self.timeout = timeout
        self.started = time.monotonic()
        self._pending_since: float | None = None

    def left(self) -> float | None:
        """Seconds left before ``timeout`` (None: no timeout)."""
        return None if self.timeout is None else max(0.0, self.timeout - (time.monotonic() - self.started))

    def check(self, current: Any, too_long: Callable[[Any, float], ClusterError],
              timed_out: Callable[[Any], ClusterError]) -> None:
        """Raise ``too_long(current, waited)`` or ``timed_out(current)`` when following should stop."""
        now = time.monotonic()
        if current.phase == "pending":
            self._pending_since = self._pending_since or now
            if now - self._pending_since > self.pending_timeout:
                raise too_long(current, now - self._pending_since)
        else:
            self._pending_since = None
        if self.timeout is not None and now - self.started >= self.timeout:
            raise timed_out(current)


def _lines(resp: Any) -> Iterator[str]:
    """Lines of a streamed response, including a last line without a newline."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=True):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


def _seconds_since(timestamp: str) -> int:
    """Whole seconds from an RFC 3339 timestamp (nanoseconds allowed) until now, at least 1."""
    import datetime as dt

    text = re.sub(r"(\.\d{1,6})\d*", r"\1", timestamp.replace("Z", "+00:00"))
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return 3600
    return max(1, int((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) + 1)


def watch_events(lines: Iterable[str], what: str) -> Iterator[dict[str, Any]]:
    """The events of a watch stream; a line that is not a JSON object with an ``object`` is skipped, with a warning."""
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            logger.warning("watch of %s sent a line that is not an event; skipped: %.80r", what, line)
            continue
        yield event


def _selector(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


class Following:
    """Watch a Job or sweep until it ends; stream a run's log (mixin of ClusterJobs)."""

    def _wait_for_run(self, name: str, state: dict[str, Any]) -> None:
        task = self.volcano_task(name)
        if task is None:
            self._wait_for_change(name, state)
        else:
            self._wait_for_volcano(task[0], state)

    def _wait_for_volcano(self, name: str, state: dict[str, Any]) -> None:
        self._wait(self.custom.list_namespaced_custom_object, (VOLCANO_GROUP, VOLCANO_VERSION, self.namespace, "jobs"),
                   f"Volcano Job {name}", state, {"field_selector": f"metadata.name={name}"}, name)

    def watch_sweep(self, sweep_id: str, on_change: Callable[[JobStatus], None] | None = None,
                    timeout: float | None = None, names: Sequence[str] = ()) -> SweepStatus:
        """Follow every run of a sweep until all are done; ``on_change`` gets each run's new states.

        Raises ClusterError when nothing of the sweep has started after ``pending_timeout``
        (with the scheduler's reason) or after ``timeout``.
        """
        last: dict[str, JobStatus] = {}

        def report(current: SweepStatus) -> None:
            for run in current.runs:
                if last.get(run.name) != run:
                    logger.info("%s", run.summary())
                    if on_change:
                        on_change(run)
                    last[run.name] = run

        def too_long(current: SweepStatus, waited: float) -> ClusterError:
            reason = next((r.reason for r in current.runs if r.reason), "no reason given")
            return ClusterError(f"Sweep {sweep_id} is still pending after {waited:.0f} s: {reason}. "
                                f"It stays queued; see: labkit jobs --sweep {sweep_id}")

        def timed_out(current: SweepStatus) -> ClusterError:
            return ClusterError(f"Stopped following sweep {sweep_id} after {timeout:.0f} s: {current.reason}. "
                                f"Follow it again with: labkit jobs --sweep {sweep_id} --watch")

        def wait(current: SweepStatus, state: dict[str, Any]) -> None:
            if current.kind == "volcano":
                self._wait_for_volcano(current.name, state)
            else:
                selector = f"{owner_selector(self.user)},{LABEL_SWEEP}={current.sweep_id}"
                self._wait(self.batch.list_namespaced_job, (self.namespace,), f"the Jobs of sweep {sweep_id}",
                           state, {"label_selector": selector})

        return self._follow(lambda: self.sweep_status(sweep_id, names), report, wait, timeout, too_long, timed_out,
                            {})

    def _wait_for_change(self, name: str, state: dict[str, Any]) -> None:
        """Block until the Job changes, or ``poll_interval`` passes; survives timeouts and 410 Gone."""
        self._wait(self.batch.list_namespaced_job, (self.namespace,), f"Job {name}", state,
                   {"field_selector": f"metadata.name={name}"}, name)

    def _wait(self, list_fn: Callable[..., Any], args: tuple[Any, ...], what: str, state: dict[str, Any],
              selector: dict[str, str], name: str | None = None) -> None:
        """Block until an object listed by ``list_fn(*args, **selector)`` changes, or ``poll_interval`` passes.

        The watch request itself goes through :meth:`call` (so it is retried like any
        other); its stream is read here: a broken or timed-out stream just ends this
        wait, and an expired resource version (410 Gone) is answered by listing again
        and resuming from the list's resource version. With ``name``, only that object counts.
        """
        kwargs: dict[str, Any] = {**selector, "watch": True, "allow_watch_bookmarks": True,
                                  "timeout_seconds": max(1, int(self.poll_interval)),
                                  "_request_timeout": self.poll_interval, "_preload_content": False}
        if state.get("rv"):
            kwargs["resource_version"] = state["rv"]
        try:
            resp = self.call(list_fn, *args, what=f"watch {what}", **kwargs)
        except ClusterGone:
            self._relist(list_fn, args, what, state, selector)
            return
        try:
            for event in watch_events(_lines(resp), what):
                obj = event["object"]
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        self._relist(list_fn, args, what, state, selector)
                        return
                    self._watch_error(what, obj, state)
                    return
                state["errors"] = 0
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    state["rv"] = rv
                if event.get("type") == "BOOKMARK" or (name and (obj.get("metadata") or {}).get("name") != name):
                    continue
                key = (obj.get("metadata") or {}).get("name", "")
                fingerprint = rv or json.dumps(obj.get("status"), sort_keys=True, default=str)
                seen = state.setdefault("seen", {})
                if seen.get(key) == fingerprint:
                    continue  # a replay of what we already know
                seen[key] = fingerprint
                return
        except api.CONNECTION_ERRORS as err:
            logger.debug("watch of %s ended (%s); renewing", what, type(err).__name__)
            state["renewed"] = state.get("renewed", 0) + 1
        finally:
            resp.release_conn()

    def _watch_error(self, what: str, status: dict[str, Any], state: dict[str, Any]) -> None:
        """An ERROR event other than 410: wait and watch again (bounded backoff) if it is transient, else raise."""
        code = status.get("code")
        problem = f"{code} ({status.get('message') or status.get('reason') or 'no details'})"
        if code not in api.RETRY_STATUSES:
            raise ClusterError(f"Cannot watch {what}: the cluster answered {problem}")
        errors = state["errors"] = state.get("errors", 0) + 1
        if errors > self.settings.api_retries:
            raise ClusterUnavailable(f"Cannot watch {what}: the cluster kept answering {problem} "
                                     f"{errors} times; try again later")
        delay = min(self.settings.api_max_backoff, 0.5 * 2 ** (errors - 1))
        logger.warning("watch of %s: the cluster answered %s (%d/%d); watching again in %.1f s",
                       what, problem, errors, self.settings.api_retries, delay)
        state["retried"] = state.get("retried", 0) + 1
        self.sleep(delay)

    def _relist(self, list_fn: Callable[..., Any], args: tuple[Any, ...], what: str, state: dict[str, Any],
                selector: dict[str, str]) -> None:
        logger.info("watch of %s expired (410 Gone); listing again to resume", what)
        listed = self.call(list_fn, *args, what=f"list {what}", **selector)
        meta = listed.get("metadata") if isinstance(listed, dict) else listed.metadata
        rv = (meta or {}).get("resourceVersion") if isinstance(meta, dict) else getattr(meta, "resource_version", None)
        state["rv"] = rv
        state["relisted"] = state.get("relisted", 0) + 1

    def watch(self, name: str, on_change: Callable[[JobStatus], None] | None = None,
              timeout: float | None = None) -> JobStatus:
        """Follow the Job until it succeeds or fails; call ``on_change`` on every new state.

        Raises :class:`JobPendingTooLong` (with the scheduler's reason) when it stays
        pending longer than ``settings.pending_timeout``, and ClusterError on ``timeout``.
        """
        last: list[JobStatus | None] = [None]

        def report(current: JobStatus) -> None:
            if current != last[0]:
                logger.info("%s", current.summary())
                if on_change:
                    on_change(current)
                last[0] = current

        def too_long(current: JobStatus, waited: float) -> ClusterError:
            return JobPendingTooLong(self.status(name, with_events=True), waited)

        def timed_out(current: JobStatus) -> ClusterError:
            return ClusterError(f"Stopped following {name} after {timeout:.0f} s; it is {current.phase} "
                                f"({current.reason}). Follow it again with: labkit logs -f {name}")

        def read() -> JobStatus:
            try:
                return self.status(name)
            except ClusterNotFound:  # deleted while followed: its owner (or an admin) cancelled it
                if last[0] is None:
                    raise
                return dataclasses.replace(last[0], phase="failed", infrastructure=False,
                                           reason="cancelled (its Job was deleted while it was followed)")

        self.watch_state = {}
        return self._follow(read, report, lambda _, state: self._wait_for_change(name, state),
                            timeout, too_long, timed_out, self.watch_state)

    def _follow(self, read: Callable[[], Any], report: Callable[[Any], None],
                wait: Callable[[Any, dict[str, Any]], None], timeout: float | None,
                too_long: Callable[[Any, float], ClusterError], timed_out: Callable[[Any], ClusterError],
                state: dict[str, Any]) -> Any:
        """Read, report and wait for a change until ``read()`` is done (a JobStatus or a SweepStatus).

        Raises ``too_long(current, waited)`` once it has been pending longer than
        ``settings.pending_timeout``, and ``timed_out(current)`` after ``timeout`` seconds.
        """
        clock = FollowClock(self.settings.pending_timeout, timeout)
        while True:
            current = read()
            report(current)
            if current.done:
                return current
            clock.check(current, too_long, timed_out)
            wait(current, state)

    def logs(self, name: str, follow: bool = False, wait: float | None = None) -> Iterator[str]:
        """The run's log lines; with ``follow``, waits for the pod to start and streams until it ends."""
        deadline = time.monotonic() + (wait if wait is not None else self.settings.pending_timeout)
        state: dict[str, Any] = {}
        while True:
            st = self.run_status(name, with_events=False)
            if st.pod and st.phase != "pending":
                break
            if not follow:
                if st.pod:
                    break
                raise ClusterNotFound(f"{name} has no pod yet ({st.reason}); try: labkit logs -f {name}")
            if time.monotonic() > deadline:
                raise JobPendingTooLong(self.run_status(name, with_events=True), wait or self.settings.pending_timeout)
            self._wait_for_run(name, state)
        if not follow:
            resp = self.call(self.core.read_namespaced_pod_log, st.pod, self.namespace, container=CONTAINER,
                             _preload_content=False, what=f"read the log of pod {st.pod}")
            try:
                yield from _lines(resp)
            finally:
                resp.release_conn()
            return
        yield from self._follow_log(name, st.pod)

    def _follow_log(self, name: str, pod: str, max_resumes: int = 50) -> Iterator[str]:
        """Stream a running pod's log; if the stream drops while the pod still runs, resume where it broke.

        Lines are requested with timestamps; a resumed request starts at the last
        timestamp seen and skips the lines already shown.
        """
        last_ts = ""
        shown_at_last = 0
        read_timeout = max(1.0, self.poll_interval)
        breaks = 0
        while breaks <= max_resumes:
            kwargs: dict[str, Any] = {"container": CONTAINER, "follow": True, "timestamps": True,
                                      "_preload_content": False, "_request_timeout": (10.0, read_timeout)}
            if last_ts:  # the client offers since_seconds only: overlap generously, duplicates are skipped
                kwargs["since_seconds"] = _seconds_since(last_ts) + 10
            resp = self.call(self.core.read_namespaced_pod_log, pod, self.namespace,
                             what=f"read the log of pod {pod}", **kwargs)
            skip = shown_at_last if last_ts else 0
            quiet = False
            try:
                for raw in _lines(resp):
                    ts, sep, text = raw.partition(" ")
                    if not sep or not re.match(r"\d{4}-\d\d-\d\dT", ts):
                        ts, text = "", raw
                    if ts and last_ts and ts < last_ts:
                        continue
                    if ts and ts == last_ts and skip > 0:
                        skip -= 1
                        continue
                    if ts and ts == last_ts:
                        shown_at_last += 1
                    elif ts:
                        last_ts, shown_at_last = ts, 1
                    yield text
            except api.CONNECTION_ERRORS as err:
                # a read timeout is a quiet stream: maybe a long fit, maybe a stream left open after the pod ended
                quiet = isinstance(err, urllib3.exceptions.ReadTimeoutError) or "timed out" in str(err)
                logger.info("log stream of %s %s (%s)", pod, "went quiet" if quiet else "broke", type(err).__name__)
            finally:
                resp.release_conn()
            current = [p for p in self.run_pods(name) if (p.get("metadata") or {}).get("name") == pod]
            if not current or (current[0].get("status") or {}).get("phase") != "Running":
                return  # the container ended: the stream ended with it (or was left open by mistake)
            if not quiet:
                breaks += 1
                logger.info("log stream of %s ended while it runs; resuming (%d)", pod, breaks)
                self.sleep(min(1.0, 0.1 * breaks))
        logger.warning("gave up following the log of %s; run labkit logs -f %s again", pod, name)
