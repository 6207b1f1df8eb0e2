"""The labkit hub service: submits, lists, follows and cancels Jobs for JupyterHub users.

Users hold no Kubernetes rights; this service does. Who is asking comes from the hub
(:class:`jupyterhub.services.auth.HubAuth` checks the request's token against the hub API,
and the token must carry ``access:services!service=labkit``), never from the body. Where
and how a run executes (namespace, storage, uid/gid, security context, image, resources,
queue) comes from the admin's :class:`~labkit.cluster.settings.ClusterSettings`; a user
chooses parameters and an admin-defined profile, nothing else (:mod:`labkit.hub.bodies`).

Statuses are read from one :class:`~labkit.hub.informer.Informer` per kind (Jobs, pods)
for the whole namespace: no API request per user look. The service keeps no state of its
own (everything is in the Jobs and their labels), so a restart loses nothing.

The JSON API, under ``$JUPYTERHUB_SERVICE_PREFIX`` (``/services/labkit/``):

* ``GET api/profiles`` - the admin's profiles;
* ``POST api/runs`` ``{"params": {...}, "profile": ..., "run_id": ..., "force": false}``;
* ``GET api/runs[?sweep=<id>][&wait=<s>&after=<fingerprint>]`` - my runs (long-poll with ``wait``);
* ``GET api/runs/<name>[?wait=<s>&after=<fingerprint>]`` - one run's status;
* ``GET api/runs/<name>/log[?follow=1]`` - its log, streamed;
* ``GET api/runs/<name>/result`` - where its result folder is in my directory;
* ``DELETE api/runs/<name>`` - cancel;
* ``POST api/sweeps`` ``{"sets": [...], ...}``; ``GET``/``DELETE api/sweeps/<id>``;
* ``GET api/health`` - no authentication, for probes.

Scopes: users need ``access:services!service=labkit``; the service itself needs none
(HubAuth asks the hub ``GET /hub/api/user`` with the *user's* token). It is registered in
``c.JupyterHub.services`` with its URL (and an ``api_token``, which JupyterHub requires for
a service it does not start; a hub-started service gets one in ``$JUPYTERHUB_API_TOKEN``).
It listens on the address of ``$JUPYTERHUB_SERVICE_URL`` (else 0.0.0.0), port
``$LABKIT_HUB_SERVICE_PORT`` (else the URL's port, else 8765), and needs the Kubernetes
rights of ``k8s/``'s service Role in one namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

from kubernetes import client as k8s
from tornado import web
from tornado.ioloop import IOLoop

from ..cluster import api
from ..cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterNotFound,
    ClusterUnavailable,
    NotYourJob,
    SettingsError,
)
from ..cluster.jobs import ClusterJobs, JobStatus, Submission, SweepStatus
from ..cluster.manifests import APP, LABEL_NAME, LABEL_OWNER, LABEL_SWEEP, owner_label
from ..cluster.names import is_dns_label, is_label_value
from ..cluster.settings import ClusterSettings
from ..cluster.status import JOB_NAME_LABELS, describe
from ..errors import LabkitError
from ..results import FOLDER_PREFIX
from .bodies import BodyError, SubmitBody, SweepBody, params_from, parse
from .informer import Informer, wait_ready

logger = logging.getLogger(__name__)

SERVICE_NAME = "labkit"
DEFAULT_PORT = 8765
MAX_WAIT = 60.0


class Service:
    """The service's state: settings, one API client, the informers and the long-poll waiters."""

    def __init__(self, settings: ClusterSettings, api_client: k8s.ApiClient, namespace: str | None = None) -> None:
        self.settings = settings
        self.client = api.own_retries(api_client)
        if "{user}" in settings.namespace:
            raise ClusterError("The hub service runs every user's Jobs in one namespace: set namespace without "
                               "{user} (the service's own namespace by default)")
        self.namespace = namespace or settings.namespace or api.current_namespace()
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="labkit-api")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[str, set[asyncio.Future[None]]] = {}
        selector = f"{LABEL_NAME}={APP}"
        self.jobs = Informer(k8s.BatchV1Api(self.client).list_namespaced_job, self.namespace, selector,
                             "labkit Jobs", on_change=self._changed, watch_timeout=settings.watch_timeout)
        self.pods = Informer(k8s.CoreV1Api(self.client).list_namespaced_pod, self.namespace, selector,
                             "labkit pods", on_change=self._changed, watch_timeout=settings.watch_timeout)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.jobs.start()
        self.pods.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.pods.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- per-user views --------------------------------------------------------------------
    def user_jobs(self, user: str, profile: str | None = None) -> ClusterJobs:
        """A ClusterJobs acting for ``user`` with the admin's settings (and the chosen profile)."""
        try:
            settings = self.settings.with_profile(profile)
        except SettingsError as err:
            raise BodyError("profile", str(err)) from None
        return ClusterJobs(settings, user, self.client, user_dir_here=False,
                           poll_interval=min(self.settings.watch_timeout, 10.0))

    def created(self, sub: Submission) -> None:
        if sub.manifest.get("kind") == "Job" and sub.manifest.get("apiVersion") == "batch/v1":
            self.jobs.remember(sub.manifest)

    def statuses(self, user: str, sweep: str | None = None) -> list[JobStatus]:
        """The user's Jobs from the cache, newest first (no API request)."""
        owner = owner_label(user)
        mine = [j for j in self.jobs.snapshot() if _labels(j).get(LABEL_OWNER) == owner
                and (sweep is None or _labels(j).get(LABEL_SWEEP) == sweep)]
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in self.pods.snapshot():
            labels = _labels(pod)
            if labels.get(LABEL_OWNER) == owner:
                job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), "")
                pods.setdefault(job, []).append(pod)
        out = [describe(j, pods.get(j["metadata"]["name"], [])) for j in mine]
        return sorted(out, key=lambda s: (s.created, s.name), reverse=True)

    def status(self, user: str, name: str) -> JobStatus:
        job = self.jobs.get(name)
        if job is None or _labels(job).get(LABEL_OWNER) != owner_label(user):
            raise ClusterNotFound(f"You have no run {name} (see: labkit jobs)")
        pods = [p for p in self.pods.snapshot() if any(_labels(p).get(k) == name for k in JOB_NAME_LABELS)]
        return describe(job, pods)

    # -- long-poll -------------------------------------------------------------------------
    def _changed(self, obj: dict[str, Any]) -> None:  # informer threads
        owner = _labels(obj).get(LABEL_OWNER)
        if owner and self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake, owner)

    def _wake(self, owner: str) -> None:
        for fut in self.waiters.pop(owner, set()):
            if not fut.done():
                fut.set_result(None)

    async def changed(self, user: str, seconds: float) -> None:
        """Return when one of the user's Jobs or pods changes, or after ``seconds``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(owner_label(user), set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout=seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiters.get(owner_label(user), set()).discard(fut)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def status_json(status: JobStatus) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "done": status.done}


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def submission_json(sub: Submission) -> dict[str, Any]:
    return {"name": sub.name, "namespace": sub.namespace, "run_id": sub.run_id, "attached": sub.attached,
            "warnings": list(sub.warnings), "folder": f"{FOLDER_PREFIX}{sub.run_id}"}


# -- handlers --------------------------------------------------------------------------------
class Handler(web.RequestHandler):
    """JSON in and out; the user from the hub; labkit errors as JSON with a status code."""

    user: str = ""

    def initialize(self, service: Service, hub_auth: Any, scopes: set[str]) -> None:
        self.service = service
        self.hub_auth = hub_auth
        self.scopes = scopes

    async def prepare(self) -> None:
        token = self.hub_auth.get_token(self, in_cookie=False)
        if not token:
            raise Refused(401, "no token: send 'Authorization: token <your JupyterHub API token>'")
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model:
            raise Refused(403, "the hub did not accept this token")
        if model.get("kind", "user") != "user":
            raise Refused(403, "only users run analyses (this token belongs to a service)")
        if not self.hub_auth.check_scopes(self.scopes, model):
            raise Refused(403, f"this token lacks the scope {sorted(self.scopes)[0]}")
        self.user = model["name"]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        err = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"status": status_code, "error": self._reason}
        if isinstance(err, LabkitError):
            body["error"] = str(err)
            if isinstance(err, BodyError):
                body["field"] = err.field
            elif getattr(err, "field", None):
                body["field"] = err.field
        elif status_code >= 500:
            body["error"] = "the labkit service failed; the admin can read why in its log"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        status = _status_of(e)
        if status is None:
            return super()._handle_request_exception(e)
        if self._finished:
            return None
        self.set_status(status)
        self.send_error(status, exc_info=(type(e), e, e.__traceback__))
        return None

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def body_of(self, model: type) -> Any:
        return parse(model, self.request.body)

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await IOLoop.current().run_in_executor(self.service.pool, fn, *args)

    def wait_seconds(self) -> float:
        text = self.get_query_argument("wait", "0")
        try:
            value = float(text)
        except ValueError:
            raise BodyError("wait", f"must be a number of seconds, got {text!r}") from None
        if not 0 <= value <= MAX_WAIT:
            raise BodyError("wait", f"must be from 0 to {MAX_WAIT:.0f} seconds, got {text!r}")
        return value

    async def long_poll(self, read: Callable[[], Any]) -> None:
        """Answer ``read()`` now, or once it differs from ``?after=<fingerprint>`` (within ``?wait``)."""
        wait, after = self.wait_seconds(), self.get_query_argument("after", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        data = read()
        while wait and fingerprint(data) == after and loop.time() < deadline:
            await self.service.changed(self.user, deadline - loop.time())
            data = read()
        self.send_json({**data, "fingerprint": fingerprint(data)} if isinstance(data, dict) else data)


class Refused(LabkitError):
    """A request refused before any work (authentication, authorization), with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _status_of(err: BaseException) -> int | None:
    if isinstance(err, Refused):
        return err.status
    if isinstance(err, BodyError):
        return 400
    if isinstance(err, (ClusterNotFound, NotYourJob)):
        return 404
    if isinstance(err, ClusterConflict):
        return 409
    if isinstance(err, ClusterUnavailable):
        return 503
    if isinstance(err, ClusterError):
        return 502
    if isinstance(err, LabkitError):  # a parameter, a setting the user chose (profile), a run id
        return 400
    return None


def _name(name: str) -> str:
    if not is_dns_label(name):
        raise BodyError("name", f"not a run name (a DNS label): {name[:80]!r}")
    return name


def _sweep_id(sweep: str) -> str:
    if not sweep or not is_label_value(sweep):
        raise BodyError("sweep", f"not a sweep id (a label value): {sweep[:80]!r}")
    return sweep


class HealthHandler(web.RequestHandler):
    def initialize(self, service: Service) -> None:
        self.service = service

    def get(self) -> None:
        ready = self.service.jobs.ready.is_set() and self.service.pods.ready.is_set()
        self.set_status(200 if ready else 503)
        self.finish({"ready": ready, "jobs": self.service.jobs.stats, "pods": self.service.pods.stats})


class ProfilesHandler(Handler):
    def get(self) -> None:
        self.send_json({"profiles": {name: p.model_dump(mode="json")
                                     for name, p in self.service.settings.profiles.items()}})


class RunsHandler(Handler):
    async def get(self) -> None:
        sweep = self.get_query_argument("sweep", None)
        sweep = _sweep_id(sweep) if sweep is not None else None
        await self.long_poll(lambda: {"runs": [status_json(s) for s in self.service.statuses(self.user, sweep)]})

    async def post(self) -> None:
        body: SubmitBody = self.body_of(SubmitBody)
        params = params_from(body.params)
        jobs = self.service.user_jobs(self.user, body.profile)
        sub = await self.blocking(lambda: jobs._submit(params, None, force=body.force, run_id=body.run_id,
                                                       sweep_id=None))
        self.service.created(sub)
        self.send_json(submission_json(sub), 200 if sub.attached else 201)


class RunHandler(Handler):
    async def get(self, name: str) -> None:
        _name(name)
        self.service.status(self.user, name)  # 404 unless it is the user's
        await self.long_poll(lambda: status_json(self.service.status(self.user, name)))

    async def delete(self, name: str) -> None:
        self.service.status(self.user, _name(name))
        jobs = self.service.user_jobs(self.user)
        await self.blocking(jobs.cancel, name)
        self.service.jobs.forget(name)
        self.send_json({"name": name, "cancelled": True})


class ResultHandler(Handler):
    def get(self, name: str) -> None:
        st = self.service.status(self.user, _name(name))
        self.send_json({"name": name, "run_id": st.run_id, "phase": st.phase, "done": st.done,
                        "folder": f"{FOLDER_PREFIX}{st.run_id}", "reason": st.reason})


class LogHandler(Handler):
    async def get(self, name: str) -> None:
        self.service.status(self.user, _name(name))
        follow = self.get_query_argument("follow", "0") in ("1", "true", "yes")
        jobs = self.service.user_jobs(self.user)
        lines = await self.blocking(lambda: jobs.logs(name, follow=follow))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        done = object()
        while True:
            line = await self.blocking(next, lines, done)
            if line is done:
                break
            self.write(line + "\n")
            await self.flush()
        self.finish()


class SweepsHandler(Handler):
    async def post(self) -> None:
        body: SweepBody = self.body_of(SweepBody)
        sets = [params_from(s, f"sets.{i}") for i, s in enumerate(body.sets)]
        if body.sweep_id is not None:
            _sweep_id(body.sweep_id)
        jobs = self.service.user_jobs(self.user, body.profile)
        sub = await self.blocking(lambda: jobs.submit_sweep(sets, volcano=body.volcano, sweep_id=body.sweep_id,
                                                            force=body.force, min_available=body.min_available))
        for run in sub.runs:
            self.service.created(run)
        self.send_json({"sweep_id": sub.sweep_id, "kind": sub.kind, "name": sub.name, "attached": sub.attached,
                        "runs": [submission_json(r) for r in sub.runs], "warnings": list(sub.warnings)}, 201)


class SweepHandler(Handler):
    async def get(self, sweep: str) -> None:
        _sweep_id(sweep)

        def read() -> dict[str, Any]:
            runs = self.service.statuses(self.user, sweep)
            status = SweepStatus(sweep, tuple(sorted(runs, key=lambda s: s.name)), "jobs")
            return {"sweep_id": sweep, "kind": "jobs", "phase": status.phase, "reason": status.reason,
                    "done": status.done, "runs": [status_json(r) for r in status.runs]}

        if not self.service.statuses(self.user, sweep):
            if self.service.settings.scheduler.name != "volcano":
                raise ClusterNotFound(f"You have no sweep {sweep} (see: labkit jobs)")
            jobs = self.service.user_jobs(self.user)  # Volcano sweeps are read from the API
            st: SweepStatus = await self.blocking(jobs.sweep_status, sweep)
            self.send_json({"sweep_id": st.sweep_id, "kind": st.kind, "name": st.name, "phase": st.phase,
                            "reason": st.reason, "done": st.done, "runs": [status_json(r) for r in st.runs]})
            return
        await self.long_poll(read)

    async def delete(self, sweep: str) -> None:
        jobs = self.service.user_jobs(self.user)
        names = await self.blocking(jobs.cancel_sweep, _sweep_id(sweep))
        for name in names:
            self.service.jobs.forget(name)
        self.send_json({"sweep_id": sweep, "cancelled": names})


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
        (r"api/health", HealthHandler, {"service": service}),
    ]
    return web.Application([(prefix + path, handler, kw) for path, handler, kw in routes])


def listen_address(environ: dict[str, str] | None = None) -> tuple[str, int]:
    """(host, port): from ``$JUPYTERHUB_SERVICE_URL`` when set; ``$LABKIT_HUB_SERVICE_PORT`` wins for the port."""
    environ = dict(os.environ if environ is None else environ)
    url = urlparse(environ.get("JUPYTERHUB_SERVICE_URL", ""))
    host = url.hostname or "0.0.0.0"
    port_text = environ.get("LABKIT_HUB_SERVICE_PORT") or (str(url.port) if url.port else str(DEFAULT_PORT))
    try:
        port = int(port_text)
    except ValueError:
        raise ClusterError(f"LABKIT_HUB_SERVICE_PORT must be a port number, got {port_text!r}") from None
    return host, port


def hub_auth_from_env() -> Any:
    """HubAuth checking users' tokens against the hub API (``$JUPYTERHUB_API_URL``)."""
    from jupyterhub.services.auth import HubAuth

    if not os.environ.get("JUPYTERHUB_API_URL"):
        raise ClusterError("JUPYTERHUB_API_URL is not set: the labkit service runs as a JupyterHub service "
                           "(see k8s/README.md)")
    return HubAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""), api_url=os.environ["JUPYTERHUB_API_URL"],
                   cache_max_age=60)


async def serve(settings: ClusterSettings | None = None, api_client: k8s.ApiClient | None = None,
                ready: Callable[[Service], Awaitable[None] | None] | None = None) -> None:
    """Run the service until cancelled."""
    settings = settings or ClusterSettings.load()
    service = Service(settings, api_client or api.load_api_client())
    service.start()
    await IOLoop.current().run_in_executor(None, wait_ready, service.jobs, service.pods)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", SERVICE_NAME)
    app = make_app(service, hub_auth_from_env(), prefix, {f"access:services!service={name}"})
    host, port = listen_address()
    server = app.listen(port, address=host, xheaders=True)
    logger.info("labkit hub service on http://%s:%d%s (namespace %s)", host, port, prefix, service.namespace)
    try:
        if ready is not None:
            result = ready(service)
            if result is not None:
                await result
        await asyncio.Event().wait()
    finally:
        server.stop()
        service.stop()
