"""The labkit hub service: submits, lists, follows and cancels Jobs for JupyterHub users.

Users hold no Kubernetes rights; this service does. Who is asking comes from the hub, asked
afresh on every request (:mod:`labkit.hub.identity`), never from the body. Where and how a
run executes (namespace, storage, uid/gid, security context, image, resources, scheduler,
queue, gang size) comes from the admin's :class:`~labkit.runners.cluster.settings.ClusterSettings`;
a user chooses parameters and an admin-defined profile, nothing else (:mod:`labkit.hub.bodies`).

Ownership: a user's objects carry their owner label (KubeSpawner's slug, injective over
names) *and* their exact hub name in the ``labkit.io/user`` annotation;
:func:`~labkit.runners.cluster.manifests.owned_by` checks both on every read, attach and cancel.

Statuses are read from one :class:`~labkit.hub.informer.Informer` per kind (Jobs, pods, and
Volcano Jobs when the admin's scheduler is Volcano) for the whole namespace: no API request
per user look. While an informer is not current (starting, or its watch failing) a read goes
to the API directly instead, so a stale state is never served as the current one. The
service keeps no state of its own beyond an hour of cancellations (so a repeated cancel
says what it cancelled): everything is in the Jobs and their labels.

The HTTP API is in :mod:`labkit.hub.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from kubernetes import client as k8s
from tornado.ioloop import IOLoop

from labkit.hub.bodies import BodyError
from labkit.hub.fairness import Slots
from labkit.hub.informer import Informer
from labkit.runners.cluster import api
from labkit.runners.cluster.errors import ClusterError, ClusterNotFound, NotYourJob, SettingsError
from labkit.runners.cluster.jobs import ClusterJobs
from labkit.runners.cluster.manifests import ANN_USER, APP, LABEL_NAME, LABEL_RUN_ID, LABEL_SWEEP, owned_by, sweep_label
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.status import (
    JOB_NAME_LABELS,
    VOLCANO_GROUP,
    VOLCANO_JOB_LABELS,
    VOLCANO_VERSION,
    JobStatus,
    SweepStatus,
    describe,
    describe_volcano,
    volcano_summary,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "labkit"
DEFAULT_PORT = 8765
T = TypeVar("T")


class Cancellations:
    """What each user cancelled in the last hour, so cancelling again succeeds and says what was cancelled."""

    def __init__(self, keep_seconds: float = 3600.0, per_user: int = 2000) -> None:
        self.keep_seconds = keep_seconds
        self.per_user = per_user
        self._by_user: dict[str, OrderedDict[str, tuple[float, str]]] = {}

    def add(self, user: str, name: str, sweep_id: str = "") -> None:
        mine = self._by_user.setdefault(user, OrderedDict())
        mine[name] = (time.monotonic(), sweep_id)
        mine.move_to_end(name)
        while len(mine) > self.per_user:
            mine.popitem(last=False)

    def _fresh(self, user: str) -> OrderedDict[str, tuple[float, str]]:
        mine = self._by_user.get(user, OrderedDict())
        cutoff = time.monotonic() - self.keep_seconds
        for name in [n for n, (when, _) in mine.items() if when < cutoff]:
            del mine[name]
        return mine

    def has(self, user: str, name: str) -> bool:
        return name in self._fresh(user)

    def of_sweep(self, user: str, sweep_id: str) -> list[str]:
        return [n for n, (_, sweep) in self._fresh(user).items() if sweep == sweep_id]


class Service:
    """The service's state: settings, one API client, the informers, the pools and the per-user limits."""

    def __init__(self, settings: ClusterSettings, api_client: k8s.ApiClient, namespace: str | None = None) -> None:
        self.settings = settings
        self.limits = settings.hub
        self.client = api.own_retries(api_client)
        if "{user}" in settings.namespace:
            raise ClusterError("The hub service runs every user's Jobs in one namespace: set namespace without "
                               "{user} (the service's own namespace by default)")
        self.namespace = namespace or settings.namespace or api.current_namespace()
        # short API calls and log streams never share threads, so followers cannot delay a submit
        self.api_pool = ThreadPoolExecutor(self.limits.api_threads, thread_name_prefix="labkit-api")
        self.follow_pool = ThreadPoolExecutor(self.limits.follow_threads, thread_name_prefix="labkit-follow")
        self.follows = Slots("log follows", self.limits.follows_per_user, self.limits.follow_threads,
                             self.limits.retry_after)
        self.polls = Slots("long-polls", self.limits.polls_per_user, None, self.limits.retry_after)
        self.cancelled = Cancellations()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._submitting: dict[tuple[str, str], asyncio.Lock] = {}
        self._stores: dict[str, Any] = {}
        #: each user's stored runs as last listed (monotonic time, answer): panels polling the listing every few
        #: seconds list the bucket once per :data:`~labkit.hub.stored.LIST_SECONDS`, not once per poll
        self.stored_lists: dict[str, tuple[float, dict[str, Any]]] = {}
        selector = f"{LABEL_NAME}={APP}"
        kw = {"on_change": self._changed, "watch_timeout": settings.watch_timeout,
              "max_backoff": settings.api_max_backoff, "index": _user_of}
        self.jobs = Informer(k8s.BatchV1Api(self.client).list_namespaced_job, self.namespace, selector,
                             "labkit Jobs", **kw)
        self.pods = Informer(k8s.CoreV1Api(self.client).list_namespaced_pod, self.namespace, selector,
                             "labkit pods", **kw)
        self.informers = [self.jobs, self.pods]
        self.volcano: Informer | None = None
        if settings.scheduler.name == "volcano":
            custom = k8s.CustomObjectsApi(self.client)

            def list_volcano_jobs(namespace: str, **kwargs: Any) -> Any:
                return custom.list_namespaced_custom_object(VOLCANO_GROUP, VOLCANO_VERSION, namespace, "jobs",
                                                            **kwargs)

            self.volcano = Informer(list_volcano_jobs, self.namespace, selector, "labkit Volcano Jobs", **kw)
            self.informers.append(self.volcano)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for inf in self.informers:
            inf.start()

    def stop(self) -> None:
        for inf in self.informers:
            inf.stop()
        self.api_pool.shutdown(wait=False, cancel_futures=True)
        self.follow_pool.shutdown(wait=False, cancel_futures=True)

    # -- health ------------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(ready, why not): ready only while every informer is alive and current."""
        problems = [reason for ok, reason in (inf.health() for inf in self.informers) if not ok]
        return not problems, "; ".join(problems)

    def alive(self) -> bool:
        """False once an informer's thread has ended: only a restart mends that."""
        return all(inf.alive for inf in self.informers)

    def current(self) -> bool:
        return self.health()[0]

    # -- per-user views ----------------------------------------------------------------------
    def user_jobs(self, user: str, profile: str | None = None) -> ClusterJobs:
        """A ClusterJobs acting for ``user`` with the admin's settings (and the chosen profile)."""
        try:
            settings = self.settings.with_profile(profile)
        except SettingsError as err:
            raise BodyError("profile", str(err)) from None
        return ClusterJobs(settings, user, self.client, user_dir_here=False,
                           poll_interval=min(self.settings.watch_timeout, 10.0))

    def keeps_store(self) -> bool:
        """Whether the admin's settings configure an artifact store (``store.kind`` and ``store.bucket``)."""
        return bool(self.settings.store.kind and self.settings.store.bucket)

    def user_store(self, user: str) -> Any:
        """``user``'s part of the artifact store, with the service's credentials (one client per user, kept).

        Only the prefix of this exact hub name (:func:`~labkit.runners.cluster.names.store_prefix`, injective) is
        ever opened."""
        store = self._stores.get(user)
        if store is None:
            if not self.keeps_store():
                raise ClusterNotFound("This hub keeps no artifact store (store.kind and store.bucket are not set): "
                                      "there are no stored runs")
            store = self.settings.store.open(user)
            if len(self._stores) >= 1000:
                self._stores.pop(next(iter(self._stores)))
            self._stores[user] = store
        return store

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the short-call pool (Kubernetes calls block)."""
        return await IOLoop.current().run_in_executor(self.api_pool, fn, *args)

    async def follow(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the log-stream pool."""
        return await IOLoop.current().run_in_executor(self.follow_pool, fn, *args)

    def remember(self, manifest: dict[str, Any]) -> None:
        """Read your own writes: what this process just created is in the cache at once."""
        if manifest.get("kind") == "Job" and manifest.get("apiVersion") == "batch/v1":
            self.jobs.remember(manifest)
        elif manifest.get("kind") == "Job" and self.volcano is not None:
            self.volcano.remember(manifest)

    def submitting(self, user: str, run_id: str) -> asyncio.Lock:
        """One submit at a time per idempotency key, so a retry racing its original attaches to it."""
        if len(self._submitting) > 10_000:
            self._submitting = {k: v for k, v in self._submitting.items() if v.locked()}
        return self._submitting.setdefault((user, run_id), asyncio.Lock())

    def job_with_run_id(self, user: str, run_id: str) -> dict[str, Any] | None:
        """The user's Job carrying ``run_id`` in the cache (a submit already made with this key)."""
        return next((j for j in self.jobs.indexed(user) if _labels(j).get(LABEL_RUN_ID) == run_id
                     and owned_by(j, user)), None)

    # -- statuses: from the cache while it is current, else from the API ---------------------
    async def statuses(self, user: str, sweep: str | None = None) -> list[JobStatus]:
        """The user's runs, newest first (a Volcano sweep is one row)."""
        if not self.current():
            return await self.run(lambda: self.user_jobs(user).list(sweep))
        label = sweep_label(sweep) if sweep else None
        mine = [j for j in self.jobs.indexed(user) if owned_by(j, user)
                and (label is None or _labels(j).get(LABEL_SWEEP) == label)]
        pods = self._pods_by_job({j["metadata"]["name"] for j in mine}, user)
        out = [describe(j, pods.get(j["metadata"]["name"], [])) for j in mine]
        out += [volcano_summary(v, self._volcano_pods(v)) for v in self._volcano_jobs(user, label)]
        return sorted(out, key=lambda s: (s.created, s.name), reverse=True)

    async def status(self, user: str, name: str) -> JobStatus:
        """One run (a Job, or one run of a Volcano sweep) of the user's; 404 for anyone else's."""
        missing = ClusterNotFound(f"You have no run {name} (see: labkit jobs)")
        if not self.current():
            try:
                return await self.run(self.user_jobs(user).run_status, name)
            except NotYourJob:
                raise missing from None
        task = ClusterJobs.volcano_task(name)
        if task is not None and self.volcano is not None:
            vjob = self.volcano.get(task[0])
            if vjob is not None and owned_by(vjob, user):
                run = next((r for r in describe_volcano(vjob, self._volcano_pods(vjob)).runs if r.name == name), None)
                if run is not None:
                    return run
            raise missing
        job = self.jobs.get(name)
        if job is None or not owned_by(job, user):
            raise missing
        return describe(job, self._pods_by_job({name}, user).get(name, []))

    async def sweep(self, user: str, sweep_id: str) -> SweepStatus:
        """Every run of the user's sweep (its Volcano Job's tasks, or its labelled Jobs)."""
        if not self.current():
            try:
                return await self.run(self.user_jobs(user).sweep_status, sweep_id)
            except NotYourJob:
                raise ClusterNotFound(f"You have no sweep {sweep_id} (see: labkit jobs)") from None
        label = sweep_label(sweep_id)
        vjobs = self._volcano_jobs(user, label)
        if vjobs:
            parts = [describe_volcano(v, self._volcano_pods(v)) for v in vjobs]
            return SweepStatus(label, tuple(r for p in parts for r in p.runs), "volcano", parts[0].name,
                               parts[0].volcano_phase)
        runs = [s for s in await self.statuses(user, sweep_id) if s.kind == "job"]
        if not runs:
            raise ClusterNotFound(f"You have no sweep {sweep_id} (see: labkit jobs)")
        return SweepStatus(label, tuple(sorted(runs, key=lambda s: s.name)), "jobs")

    def _pods_by_job(self, names: set[str], user: str) -> dict[str, list[dict[str, Any]]]:
        """The pods of these Jobs (of ``user``'s: pods carry their Job's template annotations)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for pod in self.pods.indexed(user):
            labels = _labels(pod)
            job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), "")
            if job in names:
                out.setdefault(job, []).append(pod)
        return out

    def _volcano_jobs(self, user: str, sweep_label_value: str | None = None) -> list[dict[str, Any]]:
        if self.volcano is None:
            return []
        return [v for v in self.volcano.indexed(user) if owned_by(v, user)
                and (sweep_label_value is None or _labels(v).get(LABEL_SWEEP) == sweep_label_value)]

    def _volcano_pods(self, vjob: dict[str, Any]) -> list[dict[str, Any]]:
        name, user = vjob["metadata"]["name"], _user_of(vjob)
        return [p for p in self.pods.indexed(user or "") if any(_labels(p).get(k) == name for k in VOLCANO_JOB_LABELS)]

    # -- long-poll ---------------------------------------------------------------------------
    def _changed(self, obj: dict[str, Any]) -> None:  # informer threads
        user = _user_of(obj)
        if user is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake, user)

    def _wake(self, user: str) -> None:
        for fut in self.waiters.pop(user, set()):
            if not fut.done():
                fut.set_result(None)

    async def changed(self, user: str, seconds: float) -> None:
        """Return when one of the user's Jobs or pods changes, or after ``seconds``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(user, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout=seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiters.get(user, set()).discard(fut)


def _user_of(obj: dict[str, Any]) -> str | None:
    """The exact hub name an object was made for (``labkit.io/user``): the caches' index."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = (meta.get("annotations") if isinstance(meta, dict) else None) or {}
    user = annotations.get(ANN_USER) if isinstance(annotations, dict) else None
    return user if isinstance(user, str) else None


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return ((meta or {}).get("labels") or {}) if isinstance(meta, dict) else {}
