"""The API operations on a user's labkit Jobs: submit, read, list, cancel, results.

:class:`ClusterJobs` is the whole face: one object per (settings, user), every API call
through :func:`labkit.runners.cluster.api.call`. What a Job is doing is told by
:mod:`~labkit.runners.cluster.status` (pure); following it (watch, logs) lives in
:mod:`~labkit.runners.cluster.follow`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

from kubernetes import client as k8s

from labkit.params import IcaParams
from labkit.results.layout import new_run_id
from labkit.results.reading import RunResult
from labkit.runners.cluster import api
from labkit.runners.cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterNotFound,
    NotYourJob,
    SettingsError,
)
from labkit.runners.cluster.follow import Following, _selector
from labkit.runners.cluster.manifests import (
    APP,
    CONTAINER,
    LABEL_NAME,
    LABEL_RUN_ID,
    LABEL_SWEEP,
    build_job,
    build_volcano_job,
    check_run_id,
    default_sweep_id,
    job_name,
    owned_by,
    owner_label,
    owner_selector,
    short_hash,
    sweep_label,
    version_mismatch,
)
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.status import (
    JOB_NAME_LABELS,
    VOLCANO_GROUP,
    VOLCANO_JOB_LABELS,
    VOLCANO_TASK_LABELS,
    VOLCANO_VERSION,
    JobStatus,
    SweepStatus,
    _label,
    describe,
    describe_volcano,
    task_run_ids,
    volcano_summary,
)
from labkit.runners.cluster.submission import Submission, SweepSubmission, default_user
from labkit.runners.cluster.userdir import ResultsHere, run_to_result

logger = logging.getLogger(__name__)


def _delete_options(propagation: str) -> k8s.V1DeleteOptions:
    """How a cancel deletes: ``Background``/``Foreground`` also delete the pods, ``Orphan`` leaves them."""
    if propagation not in ("Background", "Foreground", "Orphan"):
        raise ClusterError(f"propagation must be Background, Foreground or Orphan, not {propagation!r}")
    return k8s.V1DeleteOptions(propagation_policy=propagation)


def _matches(labels: dict[str, str] | None, selector: dict[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())



# -- the face --------------------------------------------------------------------------------
class ClusterJobs(Following):
    """One user's labkit Jobs in their namespace.

    ``api_client`` defaults to in-cluster config, else kubeconfig; tests pass one
    pointing at an emulator. ``sleep`` is what retries wait with.
    """

    def __init__(self, settings: ClusterSettings | None = None, user: str | None = None,
                 api_client: k8s.ApiClient | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 poll_interval: float | None = None, user_dir_here: bool = True,
                 recordings: Mapping[str, str] | None = None) -> None:
        self.settings = settings or ClusterSettings.load()
        #: ``{raw_file_path: SHA-256}`` computed where the recordings are (the hub service gets them from the
        #: user's server): a store-mode pod fetches and verifies exactly those bytes
        self.recordings = dict(recordings or {})
        self.user = user or default_user()
        self.owner = owner_label(self.user)
        self.namespace = self.settings.namespace_for(self.user) or api.current_namespace()
        self.client = api.own_retries(api_client or api.load_api_client())
        self.batch = k8s.BatchV1Api(self.client)
        self.core = k8s.CoreV1Api(self.client)
        self.custom = k8s.CustomObjectsApi(self.client)
        self.sleep = sleep
        #: False in the hub service: the user's directory is not mounted there, so results are not looked up
        self.user_dir_here = user_dir_here
        self.here = ResultsHere(self.settings, user_dir_here)
        #: diagnostics of the last :meth:`watch`: how often its stream was renewed or re-listed (410)
        self.watch_state: dict[str, Any] = {}
        #: the longest a watch request is kept open before the state is re-read
        self.poll_interval = poll_interval if poll_interval is not None else min(self.settings.watch_timeout, 10.0)

    # -- plumbing --------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        return api.call(fn, *args, what=what, retries=self.settings.api_retries,
                        max_backoff=self.settings.api_max_backoff, sleep=self.sleep, **kwargs)

    def _dict(self, obj: Any) -> dict[str, Any]:
        return obj if isinstance(obj, dict) else self.client.sanitize_for_serialization(obj)

    def _check_owner(self, job: dict[str, Any]) -> dict[str, Any]:
        """The object if it is exactly this user's (:func:`~labkit.runners.cluster.manifests.owned_by`), else NotYourJob.

        The message never says whose it is: that too is another user's business.
        """
        meta = job.get("metadata") or {}
        name = meta.get("name")
        if (meta.get("labels") or {}).get(LABEL_NAME) != APP:
            raise NotYourJob(f"{name} is not a labkit Job; labkit only acts on Jobs it created")
        if not owned_by(job, self.user):
            raise NotYourJob(f"The Job {name} is not yours ({self.user}); labkit only shows, follows and cancels "
                             "your own Jobs")
        return job

    def _owner_selector(self, extra: dict[str, str] | None = None) -> str:
        return ",".join([owner_selector(self.user), *(f"{k}={v}" for k, v in (extra or {}).items())])

    def get_job(self, name: str) -> dict[str, Any]:
        """The Job as a dict, refused if it belongs to someone else."""
        job = self._dict(self.call(self.batch.read_namespaced_job, name, self.namespace, what=f"read Job {name}"))
        return self._check_owner(job)

    def pods(self, name: str) -> list[dict[str, Any]]:
        selector = {JOB_NAME_LABELS[1]: name}
        listed = self.call(self.core.list_namespaced_pod, self.namespace, label_selector=_selector(selector),
                           what=f"list the pods of Job {name}")
        items = [self._dict(p) for p in listed.items]
        return [p for p in items
                if any(((p.get("metadata") or {}).get("labels") or {}).get(k) == name for k in JOB_NAME_LABELS)]

    def events(self, job: dict[str, Any], pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        names = {job["metadata"]["name"]} | {p["metadata"]["name"] for p in pods}
        uid = (job.get("metadata") or {}).get("uid")
        try:
            listed = self.call(self.core.list_namespaced_event, self.namespace,
                               what=f"list the events of Job {job['metadata']['name']}")
        except ClusterError as err:  # events are a nicety; never fail a status on them
            logger.info("events unavailable: %s", err)
            return []
        out = []
        for ev in (self._dict(e) for e in listed.items):
            obj = ev.get("involvedObject") or {}
            oname = obj.get("name", "")
            if oname in names or (uid and uid in oname) or (obj.get("kind") == "PodGroup" and any(n in oname for n in names)):
                out.append(ev)
        return sorted(out, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    def log_tail(self, pod: str, lines: int = 50) -> str:
        try:
            resp = self.call(self.core.read_namespaced_pod_log, pod, self.namespace, container=CONTAINER,
                             tail_lines=lines, _preload_content=False, what=f"read the log of pod {pod}")
        except ClusterError:
            return ""
        try:
            return resp.data.decode("utf-8", "replace")
        finally:
            resp.release_conn()

    def result_status(self, run_id: str) -> dict[str, Any] | None:
        """The result folder's status.json, if the user's directory is visible here."""
        return self.here.status(run_id)

    def completed(self, params: IcaParams) -> RunResult | None:
        """The newest succeeded result folder of this very parameter set in the user's directory, if any."""
        return self.here.completed([params])[params.digest]

    def _completed(self, sets: Sequence[IcaParams]) -> dict[str, RunResult | None]:
        return self.here.completed(sets)

    def run(self, params: IcaParams, *, force: bool = False,
            on_change: Callable[[JobStatus], None] | None = None) -> RunResult:
        """Submit (or attach), follow to the end and return the result folder like a local run."""
        return run_to_result(self, params, force=force, on_change=on_change)

    def sweep_results(self, sweep: str | SweepStatus) -> list[RunResult]:
        """The result folders of a sweep's finished runs that are in the user's directory (any state)."""
        return self.here.sweep_results(sweep if isinstance(sweep, SweepStatus) else self.sweep_status(sweep))

    def result(self, name_or_status: str | JobStatus, local_base_dir: str | os.PathLike | None = None) -> RunResult:
        """The finished run's result folder, loaded exactly like a local run's."""
        st = name_or_status if isinstance(name_or_status, JobStatus) else self.status(name_or_status)
        return self.here.result(st.run_id, local_base_dir)

    # -- submit ----------------------------------------------------------------
    def render(self, params: IcaParams, *, force: bool = False, run_id: str | None = None,
               sweep_id: str | None = None) -> dict[str, Any]:
        manifest = build_job(params, self.settings, self.user, new_run_id(params) if run_id is None else run_id, sweep_id,
                             rerun=force, recording_sha256=self.recordings.get(params.raw_file_path))
        manifest["metadata"]["namespace"] = self.namespace
        return manifest

    def submit(self, params: IcaParams, *, force: bool = False, run_id: str | None = None,
               sweep_id: str | None = None) -> Submission:
        """Create the Job, unless ``force``: a set that already ran reports its result folder
        (:attr:`Submission.existing`), and an identical set still on the cluster attaches to its Job."""
        return self._submit(params, None if force else self.completed(params), force=force, run_id=run_id,
                            sweep_id=sweep_id)

    def _submit(self, params: IcaParams, done: RunResult | None, *, force: bool, run_id: str | None,
                sweep_id: str | None) -> Submission:
        warnings = []
        mismatch = version_mismatch(self.settings.image)
        if mismatch:
            logger.warning("labkit version: %s", mismatch)
            warnings.append(mismatch)
        manifest = self.render(params, force=force, run_id=run_id, sweep_id=sweep_id)
        name = manifest["metadata"]["name"]
        if done is not None:
            logger.info("parameter set %s already ran (run %s, %s): not submitting it again",
                        params.digest, done.run_id, done.path)
            warnings.append(f"the same parameter set already ran: run {done.run_id}, result {done.path} "
                            "(use --force to run it again)")
            return Submission(name, self.namespace, done.run_id, False, manifest, tuple(warnings), done)
        for _ in range(3):
            try:
                self.call(self.batch.create_namespaced_job, self.namespace, manifest, what=f"create Job {name}")
                break
            except ClusterConflict:
                existing = self.get_job(name)  # refuses another user's Job with the same name
                labels = existing["metadata"].get("labels") or {}
                old_run = labels.get(LABEL_RUN_ID, "")
                if old_run == manifest["metadata"]["labels"][LABEL_RUN_ID]:
                    # an earlier attempt of this very call went through before its answer was lost
                    logger.info("submitted Job %s (run %s; created by a retried attempt)", name, old_run)
                    return Submission(name, self.namespace, old_run, False, existing, tuple(warnings))
                old = describe(existing)
                if old.phase != "failed":
                    logger.info("Job %s already exists (run %s): attaching instead of duplicating", name, old_run)
                    warnings.append(f"the same parameter set was already submitted as {name} (run {old_run}); "
                                    "following it (use --force to run it again)")
                    return Submission(name, self.namespace, old_run, True, existing, tuple(warnings))
                self._replace_failed(name, old_run)
                warnings.append(f"replaced the failed Job {name} (run {old_run}: {old.reason})")
        else:
            raise ClusterConflict(f"Cannot create Job {name}: the failed Job of the same name is still being deleted; "
                                  "try again in a moment")
        run = manifest["metadata"]["labels"][LABEL_RUN_ID]
        logger.info("submitted Job %s (run %s) in namespace %s", name, run, self.namespace)
        return Submission(name, self.namespace, run, False, manifest, tuple(warnings))

    def _replace_failed(self, name: str, run_id: str, wait: float = 10.0) -> None:
        """Delete a failed Job (its pods in the background) and wait until its name is free."""
        logger.info("Job %s (run %s) failed: deleting it to run the set again", name, run_id)
        try:
            self.call(self.batch.delete_namespaced_job, name, self.namespace, body=_delete_options("Background"),
                      what=f"delete the failed Job {name}")
        except ClusterNotFound:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.call(self.batch.read_namespaced_job, name, self.namespace, what=f"read Job {name}")
            except ClusterNotFound:
                return
            self.sleep(0.2)

    def submit_sweep(self, params_list: Sequence[IcaParams], *, volcano: bool | None = None,
                     sweep_id: str | None = None, force: bool = False, min_available: int | None = None,
                     run_ids: Sequence[str] | None = None) -> SweepSubmission:
        """Submit a sweep: one Volcano Job with ``minAvailable`` (``volcano``, default: when the
        scheduler setting is Volcano; ``min_available``, default: ``scheduler.min_available``),
        else one batch/v1 Job per set labelled with the sweep id.

        Repeated sets run once; a set whose result is already in the user's directory is
        reported instead of run again, and an identical sweep attaches to its Jobs, unless ``force``.
        ``run_ids`` (one per distinct set, in order) make a forced sweep repeatable: sending the
        same ids again attaches to the Jobs they made instead of starting a second sweep.
        """
        volcano = self.settings.scheduler.name == "volcano" if volcano is None else volcano
        min_available = self.settings.scheduler.min_available if min_available is None else min_available
        distinct: dict[str, IcaParams] = {}
        for params in params_list:
            distinct.setdefault(params.digest, params)
        if not distinct:
            raise SettingsError("A sweep needs at least one parameter set")
        mismatch = version_mismatch(self.settings.image)
        warnings = [mismatch] if mismatch else []
        if len(distinct) < len(params_list):
            warnings.append(f"{len(params_list) - len(distinct)} repeated parameter set(s) run only once")
        sets = list(distinct.values())
        if run_ids is not None:
            if len(run_ids) != len(sets):
                raise SettingsError(f"run_ids: {len(run_ids)} ids for {len(sets)} distinct parameter sets")
            run_ids = [check_run_id(r, f"run_ids.{i}") for i, r in enumerate(run_ids)]
        sweep_id = sweep_label(sweep_id or default_sweep_id(sets))
        if force:  # a new sweep, not the earlier one; the same one again when the same run ids come back
            salt = short_hash(",".join(run_ids), 5) if run_ids else os.urandom(3).hex()[:5]
            sweep_id = sweep_label(f"{sweep_id}-{salt}")
        ids = dict(zip((p.digest for p in sets), run_ids or (), strict=False))
        if not volcano:
            done = {} if force else self._completed(sets)
            runs = tuple(self._submit(p, done.get(p.digest), force=force, run_id=ids.get(p.digest), sweep_id=sweep_id)
                         for p in sets)
            for sub in runs:
                if sub.attached and (sub.manifest["metadata"].get("labels") or {}).get(LABEL_SWEEP) != sweep_id:
                    warnings.append(f"{sub.name} was submitted before, outside this sweep: followed here, "
                                    f"but not listed by: labkit jobs --sweep {sweep_id}")
            return SweepSubmission(sweep_id, "jobs", runs, manifests=tuple(r.manifest for r in runs if not r.existing),
                                   warnings=tuple(warnings))
        done = {} if force else self._completed(sets)
        todo = [p for p in sets if done.get(p.digest) is None]
        existing = tuple(Submission(job_name(self.user, p), self.namespace, r.run_id, False, {}, (), r)
                         for p in sets if (r := done.get(p.digest)) is not None)
        if not todo:
            return SweepSubmission(sweep_id, "volcano", existing, warnings=tuple(warnings))
        manifest = build_volcano_job(todo, self.settings, self.user, sweep_id, min_available=min_available,
                                     run_ids=[ids[p.digest] for p in todo] if ids else None, recordings=self.recordings)
        manifest["metadata"]["namespace"] = self.namespace
        name = manifest["metadata"]["name"]
        attached = False
        try:
            self.call(self.custom.create_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION, self.namespace,
                      "jobs", manifest, what=f"create Volcano Job {name}")
        except ClusterConflict:
            ours = task_run_ids(manifest)
            manifest = self.get_volcano_job(name)  # refuses another user's sweep with the same name
            attached = task_run_ids(manifest) != ours  # else a retried create of ours had gone through
            if attached:
                warnings.append(f"this sweep was already submitted as {name}; following it "
                                "(use --force to run it again)")
        runs = tuple(Submission(f"{name}-{task['name']}", self.namespace, run_id, attached, task)
                     for task, run_id in zip(manifest["spec"]["tasks"], task_run_ids(manifest), strict=True))
        logger.info("%s Volcano Job %s (sweep %s, %d runs)", "attached to" if attached else "submitted", name,
                    sweep_id, len(runs))
        return SweepSubmission(sweep_id, "volcano", existing + runs, name, attached, (manifest,), tuple(warnings))

    # -- Volcano ----------------------------------------------------------------
    @staticmethod
    def volcano_task(name: str) -> tuple[str, str] | None:
        """(Volcano Job, task) for the name of a run of a Volcano sweep (``<Volcano Job>-r<i>-<digest>``)."""
        parts = name.rsplit("-", 2)
        if name.startswith("labkit-sweep-") and len(parts) == 3 and re.fullmatch(r"r\d+", parts[1]):
            return parts[0], f"{parts[1]}-{parts[2]}"
        return None

    def run_status(self, name: str, *, with_events: bool | None = None) -> JobStatus:
        """:meth:`status` of a Job, or of one run of a Volcano sweep."""
        task = self.volcano_task(name)
        if task is None:
            return self.status(name, with_events=with_events)
        for run in self._describe_volcano(self.get_volcano_job(task[0])).runs:
            if run.name == name:
                return run
        raise ClusterNotFound(f"The Volcano Job {task[0]} has no run {task[1]}")

    def run_pods(self, name: str) -> list[dict[str, Any]]:
        """The pods of a Job, or of one run of a Volcano sweep."""
        task = self.volcano_task(name)
        if task is None:
            return self.pods(name)
        return [p for p in self.volcano_pods(task[0]) if _label(p, VOLCANO_TASK_LABELS) == task[1]]

    def get_volcano_job(self, name: str) -> dict[str, Any]:
        """The Volcano Job as a dict, refused if it belongs to someone else."""
        job = self.call(self.custom.get_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION, self.namespace,
                        "jobs", name, what=f"read Volcano Job {name}")
        return self._check_owner(self._dict(job))

    def volcano_jobs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """This user's labkit Volcano Jobs; none when Volcano is not installed (or not allowed and not configured)."""
        selector = {LABEL_SWEEP: sweep_label(sweep_id)} if sweep_id else {}
        try:
            listed = self.call(self.custom.list_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION,
                               self.namespace, "jobs", label_selector=self._owner_selector(selector),
                               what="list your Volcano Jobs")
        except ClusterNotFound:  # no Volcano CRD in this cluster
            return []
        except ClusterForbidden:
            if self.settings.scheduler.name == "volcano":
                raise
            return []
        return [j for j in listed.get("items") or []
                if owned_by(j, self.user) and _matches((j.get("metadata") or {}).get("labels"), selector)]

    def volcano_pods(self, name: str) -> list[dict[str, Any]]:
        listed = self.call(self.core.list_namespaced_pod, self.namespace,
                           label_selector=_selector({VOLCANO_JOB_LABELS[0]: name}),
                           what=f"list the pods of Volcano Job {name}")
        return [p for p in (self._dict(p) for p in listed.items) if _label(p, VOLCANO_JOB_LABELS) == name]

    def _describe_volcano(self, vjob: dict[str, Any]) -> SweepStatus:
        pods = self.volcano_pods(vjob["metadata"]["name"])
        quick = describe_volcano(vjob, pods)
        events = self.events(vjob, pods) if any(r.phase == "pending" for r in quick.runs) else []
        results = {r.run_id: st for r in quick.runs if r.phase == "failed" and (st := self.result_status(r.run_id))}
        return describe_volcano(vjob, pods, events, results)

    def sweep_status(self, sweep_id: str, names: Sequence[str] = ()) -> SweepStatus:
        """Every run of the sweep (its Volcano Job's tasks, or its labelled Jobs plus ``names``)."""
        vjobs = self.volcano_jobs(sweep_id)
        if vjobs:
            parts = [self._describe_volcano(v) for v in vjobs]
            runs = tuple(r for part in parts for r in part.runs)
            return SweepStatus(sweep_label(sweep_id), runs, "volcano", parts[0].name, parts[0].volcano_phase)
        listed = {s.name: s for s in self.list(sweep_id, volcano=False)}
        for name in names:
            if name not in listed:
                listed[name] = self.status(name, with_events=False)
        if not listed:
            raise ClusterNotFound(f"No Jobs of sweep {sweep_id} (finished Jobs are removed after "
                                  "ttl_seconds_after_finished; their results stay in your directory)")
        runs = tuple(sorted(listed.values(), key=lambda s: s.name))
        return SweepStatus(sweep_label(sweep_id), runs, "jobs")

    # -- status ----------------------------------------------------------------
    def status(self, name: str, *, with_events: bool | None = None) -> JobStatus:
        job = self.get_job(name)
        pods = self.pods(name)
        quick = describe(job, pods)
        need_events = with_events if with_events is not None else (quick.phase in ("pending", "failed"))
        events = self.events(job, pods) if need_events else []
        tail = ""
        result = None
        if quick.phase == "failed":
            result = self.result_status(quick.run_id)
            if quick.pod and not result:
                tail = self.log_tail(quick.pod)
        return describe(job, pods, events, tail, result)


    # -- manage ----------------------------------------------------------------
    def cancel(self, name: str, propagation: str = "Background") -> None:
        """Delete the Job and (Background/Foreground propagation) its pods."""
        body = _delete_options(propagation)
        self.get_job(name)
        self.call(self.batch.delete_namespaced_job, name, self.namespace, body=body, what=f"cancel Job {name}")
        logger.info("cancelled Job %s (%s deletion)", name, propagation.lower())

    def cancel_sweep(self, sweep_id: str, propagation: str = "Background") -> list[str]:
        """Delete every Job of the sweep (its Volcano Job, or its labelled Jobs); returns their names."""
        body = _delete_options(propagation)
        names = []
        for vjob in self.volcano_jobs(sweep_id):
            name = vjob["metadata"]["name"]
            self.call(self.custom.delete_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION, self.namespace,
                      "jobs", name, body=body, what=f"cancel Volcano Job {name}")
            names.append(name)
        for st in self.list(sweep_id, volcano=False):
            self.call(self.batch.delete_namespaced_job, st.name, self.namespace, body=body,
                      what=f"cancel Job {st.name}")
            names.append(st.name)
        if not names:
            raise ClusterNotFound(f"No Jobs of sweep {sweep_id} to cancel (see: labkit jobs)")
        logger.info("cancelled sweep %s: %s", sweep_id, ", ".join(names))
        return names

    def list(self, sweep_id: str | None = None, *, volcano: bool = True) -> list[JobStatus]:
        """This user's labkit Jobs (selected by the owner label, checked again here), newest first.

        With ``volcano`` a Volcano sweep is one row (``kind='volcano'``) counting its runs.
        """
        selector = {LABEL_SWEEP: sweep_label(sweep_id)} if sweep_id else {}
        listed = self.call(self.batch.list_namespaced_job, self.namespace, label_selector=self._owner_selector(selector),
                           what="list your Jobs")
        jobs = [self._dict(j) for j in listed.items]
        mine = [j for j in jobs if owned_by(j, self.user) and _matches((j.get("metadata") or {}).get("labels"), selector)]
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        if mine:  # one call for all pods, so the table shows pod states (pull errors, node) too
            listed_pods = self.call(self.core.list_namespaced_pod, self.namespace,
                                    label_selector=self._owner_selector(), what="list your pods")
            names = {j["metadata"]["name"] for j in mine}
            for pod in (self._dict(p) for p in listed_pods.items):  # a pod is mine when its Job is
                labels = (pod.get("metadata") or {}).get("labels") or {}
                job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), None)
                if job in names:
                    pods_by_job.setdefault(job, []).append(pod)
        out = [describe(j, pods_by_job.get(j["metadata"]["name"], [])) for j in mine]
        for vjob in self.volcano_jobs(sweep_id) if volcano else []:
            out.append(volcano_summary(vjob, self.volcano_pods(vjob["metadata"]["name"])))
        return sorted(out, key=lambda s: (s.created, s.name), reverse=True)

