"""The hub service's JSON API, under ``$JUPYTERHUB_SERVICE_PREFIX`` (``/services/labkit/``).

* ``GET api/profiles`` - the admin's profiles;
* ``POST api/runs`` ``{"params": {...}, "profile": ..., "run_id": ..., "force": false}``; the
  run id is the idempotency key: sending it again attaches to the Job it made;
* ``GET api/runs[?sweep=<id>][&wait=<s>&after=<fingerprint>]`` - my runs (long-poll with ``wait``);
* ``GET api/runs/<name>[?wait=<s>&after=<fingerprint>]`` - one run's status;
* ``GET api/runs/<name>/log[?follow=1]`` - its log, streamed;
* ``GET api/runs/<name>/result`` - where its result folder is in my directory;
* ``DELETE api/runs/<name>`` - cancel (again within the hour: succeeds, ``already``);
* ``POST api/sweeps`` ``{"sets": [...], "run_ids": [...], ...}``; ``GET``/``DELETE api/sweeps/<id>``;
* ``GET api/stored``, ``GET api/stored/<run_id>/...`` - my runs in the artifact store (:mod:`labkit.hub.stored`);
* ``GET api/health`` - no authentication, for the readiness probe: 200 only while every watch
  cache is alive and current, else 503 with the reason; ``GET api/health/live`` - for the
  liveness probe: 503 only once a cache's thread has died (a restart mends that, an API outage not).

Errors are JSON ``{"status", "error", "field"?}``, converted at one place (:meth:`Handler.write_error`).
The access log shows the path without its query string.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterator

from tornado import iostream, web

from labkit.errors import LabkitError, ParameterError
from labkit.hub.bodies import BodyError, SubmitBody, SweepBody, TooLarge, params_from, parse, recordings_from
from labkit.hub.identity import Refused, current_user
from labkit.hub.service import SERVICE_NAME, Service
from labkit.hub.stored import stored_list, stored_object
from labkit.results.layout import FOLDER_PREFIX
from labkit.runners.cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnavailable,
    NotYourJob,
)
from labkit.runners.cluster.manifests import LABEL_DIGEST, LABEL_RUN_ID, check_run_id, sweep_label
from labkit.runners.cluster.names import is_dns_label
from labkit.runners.cluster.status import JobPendingTooLong, JobStatus
from labkit.runners.cluster.submission import Submission

logger = logging.getLogger(__name__)
access_log = logging.getLogger("labkit.hub.access")

MAX_WAIT = 60.0


def status_json(status: JobStatus) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "done": status.done}


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def submission_json(sub: Submission, replayed: bool = False) -> dict[str, Any]:
    out = {"name": sub.name, "namespace": sub.namespace, "run_id": sub.run_id, "attached": sub.attached,
           "warnings": list(sub.warnings), "folder": f"{FOLDER_PREFIX}{sub.run_id}"}
    return {**out, "replayed": True} if replayed else out


def _status_of(err: BaseException) -> int:
    if isinstance(err, Refused):
        return err.status
    if isinstance(err, web.HTTPError):  # tornado's own: an unknown method, a malformed request
        return err.status_code
    if isinstance(err, TooLarge):
        return 413
    if isinstance(err, (BodyError, ParameterError)):
        return 400
    if isinstance(err, (ClusterNotFound, NotYourJob)):
        return 404
    if isinstance(err, ClusterConflict):
        return 409
    if isinstance(err, ClusterUnavailable):
        return 503
    if isinstance(err, ClusterForbidden):  # the API server or the admission policy said no: told as itself
        return 403
    if isinstance(err, ClusterInvalid):
        return 422
    if isinstance(err, ClusterError):
        return 502
    if isinstance(err, LabkitError):  # a setting the user chose (profile)
        return 400
    return 500


def _name(name: str) -> str:
    if not is_dns_label(name):
        raise BodyError("name", f"not a run name (a DNS label): {name[:80]!r}")
    return name


def _sweep_id(sweep: str) -> str:
    """The sweep's label value, cleaned as every writer cleans it (so the id a user typed finds its Jobs)."""
    if not sweep or len(sweep) > 253 or not sweep.isprintable():
        raise BodyError("sweep", f"not a sweep id (1-253 printable characters): {sweep[:80]!r}")
    return sweep_label(sweep)


def _run_id(run_id: str, field: str) -> str:
    try:
        return check_run_id(run_id, field)
    except ParameterError as err:
        raise BodyError(field, str(err)) from None


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log line without the query string (it could carry what a client should not send)."""
    req, status = handler.request, handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %s (%s) %.1f ms", status, req.method, req.path, req.remote_ip,
                   1000.0 * req.request_time())


class Handler(web.RequestHandler):
    """JSON in and out; the user from the hub, checked on every request; errors as JSON."""

    user: str = ""

    def initialize(self, service: Service, hub_auth: Any, scopes: set[str]) -> None:
        self.service = service
        self.hub_auth = hub_auth
        self.scopes = scopes
        self.gone = asyncio.Event()

    async def prepare(self) -> None:
        self.user = await current_user(self.hub_auth, self.request, self.scopes)

    def on_connection_close(self) -> None:
        self.gone.set()

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Unexpected errors with their traceback; refusals in one line. Paths only, never query strings."""
        if _status_of(value) >= 500 and not isinstance(value, (LabkitError, web.HTTPError)):
            logger.error("%s %s failed", self.request.method, self.request.path, exc_info=(typ, value, tb))
        else:
            logger.info("%s %s refused: %s", self.request.method, self.request.path, value)

    async def still_allowed(self) -> bool:
        """Is the request's token still good? Asked again during long answers (a follow lasts hours)."""
        try:
            return await current_user(self.hub_auth, self.request, self.scopes) == self.user
        except Refused:
            return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        err = kwargs.get("exc_info", (None, None, None))[1]
        if err is not None:
            status_code = _status_of(err)
            self.set_status(status_code)
        body: dict[str, Any] = {"status": status_code, "error": HTTPStatus(status_code).phrase}
        if isinstance(err, LabkitError):
            body["error"] = str(err)
            if getattr(err, "field", None) is not None:  # "" names the body as a whole
                body["field"] = err.field
            for key, value in getattr(err, "headers", {}).items():
                self.set_header(key, value)
        elif status_code >= 500:
            body["error"] = "the labkit service failed; the admin can read why in its log"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def body_of(self, model: type) -> Any:
        limits = self.service.limits
        return parse(model, self.request.body, max_bytes=limits.max_body_bytes, max_depth=limits.max_body_depth)

    def wait_seconds(self) -> float:
        text = self.get_query_argument("wait", "0")
        try:
            value = float(text)
        except ValueError:
            raise BodyError("wait", f"must be a number of seconds, got {text[:40]!r}") from None
        if not 0 <= value <= MAX_WAIT:
            raise BodyError("wait", f"must be from 0 to {MAX_WAIT:.0f} seconds, got {text[:40]!r}")
        return value

    async def until_changed(self, seconds: float) -> None:
        """Wait for a change to the user's runs, the client leaving, or ``seconds``."""
        gone = asyncio.ensure_future(self.gone.wait())
        change = asyncio.ensure_future(self.service.changed(self.user, seconds))
        await asyncio.wait({gone, change}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (gone, change):
            fut.cancel()

    async def long_poll(self, read: Callable[[], Awaitable[Any]]) -> None:
        """Answer ``read()`` now, or once it differs from ``?after=<fingerprint>`` (within ``?wait``)."""
        wait, after = self.wait_seconds(), self.get_query_argument("after", "")
        data = await read()
        if wait and fingerprint(data) == after:
            with self.service.polls.hold(self.user):
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait
                while fingerprint(data) == after and loop.time() < deadline and not self.gone.is_set():
                    await self.until_changed(deadline - loop.time())
                    data = await read()
        if self.gone.is_set():
            return
        self.send_json({**data, "fingerprint": fingerprint(data)} if isinstance(data, dict) else data)


class HealthHandler(web.RequestHandler):
    def initialize(self, service: Service) -> None:
        self.service = service

    def get(self, live: str | None = None) -> None:
        ready, reason = self.service.health()
        ok = self.service.alive() if live else ready
        stats = {inf.what: inf.stats for inf in self.service.informers}
        self.set_status(200 if ok else 503)
        self.finish({"ready": ready, "alive": self.service.alive(), "reason": reason,
                     "jobs": self.service.jobs.stats, "pods": self.service.pods.stats, "informers": stats})


class ProfilesHandler(Handler):
    def get(self) -> None:
        self.send_json({"profiles": {name: p.model_dump(mode="json")
                                     for name, p in self.service.settings.profiles.items()}})


class RunsHandler(Handler):
    async def get(self) -> None:
        sweep = self.get_query_argument("sweep", None)
        sweep = _sweep_id(sweep) if sweep is not None else None

        async def read() -> dict[str, Any]:
            return {"runs": [status_json(s) for s in await self.service.statuses(self.user, sweep)]}

        await self.long_poll(read)

    async def post(self) -> None:
        body: SubmitBody = self.body_of(SubmitBody)
        params = params_from(body.params)
        run_id = _run_id(body.run_id, "run_id") if body.run_id is not None else None
        jobs = self.service.user_jobs(self.user, body.profile)
        jobs.recordings = recordings_from(body.recordings, [params], jobs.settings.use_store)
        if run_id is None:
            sub = await self.service.run(lambda: jobs.submit(params, force=body.force))
            self.service.remember(sub.manifest)
            return self.send_json(submission_json(sub), 200 if sub.attached else 201)
        async with self.service.submitting(self.user, run_id):
            earlier = self.service.job_with_run_id(self.user, run_id)
            if earlier is not None:  # the same key again: what the first request made
                meta = earlier["metadata"]
                if meta["labels"].get(LABEL_DIGEST) != params.digest:
                    raise ClusterConflict(f"run_id: {run_id!r} already names your run {meta['name']} of another "
                                          "parameter set; choose another run id (or none)")
                sub = Submission(meta["name"], meta.get("namespace", ""), meta["labels"][LABEL_RUN_ID], False, earlier)
                return self.send_json(submission_json(sub, replayed=True), 200)
            sub = await self.service.run(lambda: jobs.submit(params, force=body.force, run_id=run_id))
            self.service.remember(sub.manifest)
        self.send_json(submission_json(sub), 200 if sub.attached else 201)


class RunHandler(Handler):
    async def get(self, name: str) -> None:
        _name(name)

        async def read() -> dict[str, Any]:  # 404 unless it is the user's
            return status_json(await self.service.status(self.user, name))

        await self.long_poll(read)

    async def delete(self, name: str) -> None:
        _name(name)
        try:
            st = await self.service.status(self.user, name)
        except ClusterNotFound:
            if not self.service.cancelled.has(self.user, name):
                raise
            return self.send_json({"name": name, "cancelled": True, "already": True})
        if st.kind == "task":
            raise BodyError("name", f"{name} is one run of a Volcano sweep: cancel the sweep "
                                    f"(DELETE api/sweeps/{st.sweep_id})")
        jobs = self.service.user_jobs(self.user)
        try:
            await self.service.run(jobs.cancel, name)
        except ClusterNotFound:  # gone between the look and the delete: cancelled all the same
            pass
        self.service.cancelled.add(self.user, name, st.sweep_id)
        self.service.jobs.forget(name)
        self.send_json({"name": name, "cancelled": True, "already": False})


class ResultHandler(Handler):
    async def get(self, name: str) -> None:
        st = await self.service.status(self.user, _name(name))
        self.send_json({"name": name, "run_id": st.run_id, "phase": st.phase, "done": st.done,
                        "folder": f"{FOLDER_PREFIX}{st.run_id}", "reason": st.reason})


class LogHandler(Handler):
    """A run's log; with ``follow`` it waits (without a thread) for the pod, then streams until the run
    ends or the client leaves. Each user holds at most ``hub.follows_per_user`` follows."""

    async def get(self, name: str) -> None:
        await self.service.status(self.user, _name(name))
        follow = self.get_query_argument("follow", "0") in ("1", "true", "yes")
        jobs = self.service.user_jobs(self.user)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if not follow:
            self.finish("".join(line + "\n" for line in await self.service.run(lambda: list(jobs.logs(name)))))
            return
        with self.service.follows.hold(self.user):
            await self.flush()  # the follow is accepted: headers now, lines as they come
            try:
                if await self.pod_started(name):
                    await self.stream(jobs.logs(name, follow=True, wait=0))
            except LabkitError as err:  # the answer has begun: the reason is the last line
                self.write(f"labkit: {err}\n")
            except iostream.StreamClosedError:
                pass
        if not self.gone.is_set():
            self.finish()

    async def stream(self, lines: Iterator[str]) -> None:
        """Send ``lines`` as they come, on the follow pool; stop when the client leaves."""
        done = object()
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            while not self.gone.is_set():
                line = await self.service.follow(next, lines, done)
                if line is done:
                    break
                if loop.time() - checked > self.service.limits.token_recheck_seconds:
                    if not await self.still_allowed():
                        self.write("labkit: the hub no longer accepts your token; log follow stopped\n")
                        break
                    checked = loop.time()
                self.write(line + "\n")
                await self.flush()
        finally:
            await self.service.follow(lines.close)

    async def pod_started(self, name: str) -> bool:
        """Wait on the cache (no thread, no API request) until the run has a started pod; False if the client left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.service.settings.pending_timeout
        while not self.gone.is_set():
            st = await self.service.status(self.user, name)
            if st.done or (st.pod and st.phase != "pending"):
                return True
            if loop.time() > deadline:
                raise JobPendingTooLong(st, self.service.settings.pending_timeout)
            await self.until_changed(min(10.0, deadline - loop.time()))
        return False


class SweepsHandler(Handler):
    async def post(self) -> None:
        body: SweepBody = self.body_of(SweepBody)
        sets = [params_from(s, f"sets.{i}") for i, s in enumerate(body.sets)]
        if body.sweep_id is not None:
            _sweep_id(body.sweep_id)
        run_ids = [_run_id(r, f"run_ids.{i}") for i, r in enumerate(body.run_ids)] if body.run_ids else None
        if run_ids is not None and len(run_ids) != len({p.digest for p in sets}):
            raise BodyError("run_ids", f"{len(run_ids)} ids for {len({p.digest for p in sets})} distinct sets; "
                                       "send one per distinct set, in order")
        jobs = self.service.user_jobs(self.user, body.profile)  # the admin's scheduler, queue and gang size
        jobs.recordings = recordings_from(body.recordings, sets, jobs.settings.use_store)
        sub = await self.service.run(lambda: jobs.submit_sweep(sets, sweep_id=body.sweep_id, force=body.force,
                                                                run_ids=run_ids))
        for manifest in sub.manifests:
            self.service.remember(manifest)
        self.send_json({"sweep_id": sub.sweep_id, "kind": sub.kind, "name": sub.name, "attached": sub.attached,
                        "runs": [submission_json(r) for r in sub.runs], "warnings": list(sub.warnings)}, 201)


class SweepHandler(Handler):
    async def get(self, sweep: str) -> None:
        _sweep_id(sweep)

        async def read() -> dict[str, Any]:  # 404 unless it is the user's
            st = await self.service.sweep(self.user, sweep)
            return {"sweep_id": st.sweep_id, "kind": st.kind, "name": st.name, "phase": st.phase,
                    "reason": st.reason, "done": st.done, "runs": [status_json(r) for r in st.runs]}

        await self.long_poll(read)

    async def delete(self, sweep: str) -> None:
        _sweep_id(sweep)
        jobs = self.service.user_jobs(self.user)
        try:
            names = await self.service.run(jobs.cancel_sweep, sweep)
        except ClusterNotFound:
            names = []
        already = [n for n in self.service.cancelled.of_sweep(self.user, sweep) if n not in names]
        if not names and not already:
            raise ClusterNotFound(f"You have no sweep {sweep} to cancel (see: labkit jobs)")
        for name in names:
            self.service.cancelled.add(self.user, name, sweep)
            self.service.jobs.forget(name)
            if self.service.volcano is not None:
                self.service.volcano.forget(name)
        self.send_json({"sweep_id": sweep, "cancelled": names + already, "already": already})


class StoredRunsHandler(Handler):
    async def get(self) -> None:
        self.send_json(await stored_list(self.service, self.user))


class StoredObjectHandler(Handler):
    """A stored run's manifest or one of its files, streamed (the client checks each file's SHA-256)."""

    async def get(self, run_id: str, rest: str) -> None:
        found = await stored_object(self.service, self.user, run_id, rest)
        if isinstance(found, bytes):
            self.set_header("Content-Type", "application/json")
            return self.finish(found)
        chunk, pieces = found
        self.set_header("Content-Type", "application/octet-stream")
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            while chunk and not self.gone.is_set():
                self.write(chunk)
                await self.flush()
                if loop.time() - checked > self.service.limits.token_recheck_seconds:
                    if not await self.still_allowed():  # revoked mid-file: cut, never a short "complete" file
                        self.request.connection.close()
                        return
                    checked = loop.time()
                chunk = await self.service.run(next, pieces, b"")
        except iostream.StreamClosedError:
            pass
        except LabkitError as err:  # the store failed mid-object: the answer is cut, never a short "complete" one
            logger.warning("GET %s: the store stopped mid-object: %s", self.request.path, err)
            self.request.connection.close()
            return
        finally:
            await self.service.run(pieces.close)
        if not self.gone.is_set():
            self.finish()


def make_app(service: Service, hub_auth: Any, prefix: str = f"/services/{SERVICE_NAME}/",
             scopes: set[str] | None = None) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/"
    scopes = scopes or {f"access:services!service={SERVICE_NAME}"}
    args = {"service": service, "hub_auth": hub_auth, "scopes": scopes}
    routes: list[tuple[str, type, dict[str, Any]]] = [
        (r"api/profiles", ProfilesHandler, args),
        (r"api/runs", RunsHandler, args),
        (r"api/runs/([^/]+)", RunHandler, args),
        (r"api/runs/([^/]+)/log", LogHandler, args),
        (r"api/runs/([^/]+)/result", ResultHandler, args),
        (r"api/sweeps", SweepsHandler, args),
        (r"api/sweeps/([^/]+)", SweepHandler, args),
        (r"api/health(?:/(live))?", HealthHandler, {"service": service}),
    ]
    routes += [(r"api/stored", StoredRunsHandler, args), (r"api/stored/([^/]+)/(.+)", StoredObjectHandler, args)]
    return web.Application([(prefix + path, handler, kw) for path, handler, kw in routes], log_function=log_request)
