"""Submit, follow, explain, stream, cancel and list a user's labkit Jobs.

:class:`ClusterJobs` is the whole face: one object per (settings, user), every API call
through :func:`labkit.cluster.api.call`. A Job's state is computed by the pure function
:func:`describe` from the Job, its pods and the namespace's events, in words a
researcher understands, and tells infrastructure failures (image, scheduling, memory,
deadline) apart from an exception in a notebook cell (which names the cell).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

from kubernetes import client as k8s

from ..errors import LabkitError
from ..params import IcaParams
from ..results import RunResult, find_run, list_runs, new_run_id
from . import api
from .errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterGone,
    ClusterNotFound,
    NotYourJob,
    SettingsError,
)
from .manifests import (
    ANN_USER,
    APP,
    CONTAINER,
    LABEL_DIGEST,
    LABEL_NAME,
    LABEL_OWNER,
    LABEL_RUN_ID,
    LABEL_SWEEP,
    VOLCANO_API,
    build_job,
    build_volcano_job,
    cluster_params,
    default_sweep_id,
    job_name,
    owner_label,
    sweep_label,
    version_mismatch,
)
from .settings import ClusterSettings

logger = logging.getLogger(__name__)

PHASES = ("pending", "running", "succeeded", "failed")
FAILED_LINE = re.compile(r"labkit: run failed: (.*)")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
#: labels Volcano puts on the pods of a Volcano Job (older releases: ``volcano.sh/``, newer add ``batch.volcano.sh/``)
VOLCANO_JOB_LABELS = ("volcano.sh/job-name", "batch.volcano.sh/job-name")
VOLCANO_TASK_LABELS = ("volcano.sh/task-spec", "batch.volcano.sh/task-spec")
VOLCANO_GROUP, VOLCANO_VERSION = VOLCANO_API.split("/")
#: Volcano Job phases after which no task starts any more
VOLCANO_ENDED = ("Completed", "Failed", "Aborted", "Terminated")


class JobPendingTooLong(ClusterError):
    """The Job has not started within ``pending_timeout``; the message carries the scheduler's reason."""

    def __init__(self, status: "JobStatus", waited: float) -> None:
        self.status = status
        super().__init__(f"Job {status.name} is still pending after {waited:.0f} s: {status.reason}. "
                         f"It stays queued; cancel it with: labkit cancel {status.name}")


@dataclass(frozen=True)
class JobStatus:
    """A Job as a researcher sees it."""

    name: str
    namespace: str
    #: pending, running, succeeded or failed
    phase: str
    #: why it is in this phase, in plain words (empty when there is nothing to say)
    reason: str = ""
    #: for failures: True for the cluster's side (image, scheduling, memory, deadline), False for the analysis
    infrastructure: bool | None = None
    run_id: str = ""
    owner: str = ""
    digest: str = ""
    sweep_id: str = ""
    pod: str = ""
    node: str = ""
    #: the failing notebook cell's error ({reason, cell, ename, evalue}) when known
    cell_error: dict[str, Any] | None = None
    #: warning events seen for the Job and its pods (on failure / long pending)
    events: tuple[str, ...] = ()
    created: str = ""
    #: ``job`` (a batch/v1 Job), ``volcano`` (a whole Volcano sweep) or ``task`` (one run of a Volcano sweep)
    kind: str = "job"

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed")

    def summary(self) -> str:
        where = f" on {self.node}" if self.node else ""
        text = f"{self.name}: {self.phase}{where}"
        return f"{text} - {self.reason}" if self.reason else text


@dataclass(frozen=True)
class Submission:
    """What :meth:`ClusterJobs.submit` did."""

    name: str
    namespace: str
    run_id: str
    #: True when an identical parameter set was already submitted and this attached to its Job
    attached: bool
    manifest: dict[str, Any]
    warnings: tuple[str, ...] = ()
    #: a completed result folder of the identical set, reported instead of running it again (no Job created)
    existing: RunResult | None = None


@dataclass(frozen=True)
class SweepStatus:
    """A sweep as a researcher sees it: one :class:`JobStatus` per run."""

    sweep_id: str
    runs: tuple[JobStatus, ...]
    #: ``volcano`` (one Volcano Job) or ``jobs`` (one batch/v1 Job per set)
    kind: str = "jobs"
    #: the Volcano Job's name (empty for plain Jobs)
    name: str = ""
    #: the Volcano Job's own phase (``Pending``, ``Running``, ``Completed``, ...), when there is one
    volcano_phase: str = ""

    def counts(self) -> dict[str, int]:
        return {p: sum(r.phase == p for r in self.runs) for p in PHASES if any(r.phase == p for r in self.runs)}

    @property
    def phase(self) -> str:
        if self.runs and all(r.done for r in self.runs):
            return "succeeded" if all(r.phase == "succeeded" for r in self.runs) else "failed"
        if any(r.phase != "pending" for r in self.runs):
            return "running"
        return "pending"

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed")

    @property
    def reason(self) -> str:
        counts = ", ".join(f"{n} {p}" for p, n in self.counts().items())
        return f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''}: {counts}" if self.runs else "no runs"

    def summary(self) -> str:
        what = f"Volcano Job {self.name}" if self.name else "Jobs"
        return f"sweep {self.sweep_id} ({what}): {self.phase} - {self.reason}"


@dataclass(frozen=True)
class SweepSubmission:
    """What :meth:`ClusterJobs.submit_sweep` did, run by run."""

    sweep_id: str
    #: ``volcano`` or ``jobs``
    kind: str
    #: one per distinct parameter set, in order: submitted, attached, or ``existing`` (already done)
    runs: tuple[Submission, ...]
    #: the Volcano Job's name (empty for plain Jobs)
    name: str = ""
    #: True when the identical Volcano sweep already existed and this attached to it
    attached: bool = False
    manifests: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()


def default_user() -> str:
    user = os.environ.get("JUPYTERHUB_USER") or os.environ.get("LABKIT_USER") or os.environ.get("USER") or ""
    if not user:
        raise ClusterError("Cannot tell who you are: set JUPYTERHUB_USER (or pass --user)")
    return user


# -- describing a Job (pure) --------------------------------------------------------------
def _cond(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and str(c.get("status")) == "True":
            return c
    return None


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == CONTAINER:
            return cs
    return statuses[0] if statuses else {}


def _image(pod: dict[str, Any]) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == CONTAINER:
            return c.get("image", "")
    return ""


def _memory_limit(pod: dict[str, Any]) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == CONTAINER:
            return ((c.get("resources") or {}).get("limits") or {}).get("memory", "")
    return ""


WAITING_WORDS = {
    "ImagePullBackOff": "the image {image} cannot be pulled (ImagePullBackOff): check the image name and tag, "
                        "and the registry pull secret",
    "ErrImagePull": "the image {image} cannot be pulled (ErrImagePull): check the image name and tag, "
                    "and the registry pull secret",
    "InvalidImageName": "the image name {image} is not valid (InvalidImageName)",
    "CreateContainerConfigError": "the container cannot be configured (CreateContainerConfigError): {message}",
    "ContainerCreating": "the container is being created (pulling the image, mounting your directory)",
    "PodInitializing": "the pod is initialising",
}


def _pod_pending_reason(pod: dict[str, Any]) -> tuple[str, bool]:
    """(reason, is_infrastructure_problem) for a pod that has not started running."""
    status = pod.get("status") or {}
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        template = WAITING_WORDS.get(waiting["reason"], "the container is waiting ({reason}): {message}")
        text = template.format(image=_image(pod), reason=waiting["reason"], message=waiting.get("message", ""))
        return text.rstrip(": "), waiting["reason"] not in ("ContainerCreating", "PodInitializing")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and str(cond.get("status")) == "False":
            message = cond.get("message") or cond.get("reason") or "no reason given"
            return f"waiting for a node: the scheduler says: {message}", True
    if not (pod.get("spec") or {}).get("nodeName"):
        return "waiting to be scheduled on a node", False
    return "starting", False


def _volcano_reason(events: Sequence[dict[str, Any]]) -> str | None:
    for ev in reversed(list(events)):
        message = ev.get("message") or ""
        if "queue" in message.lower() or ev.get("reason") in ("Unschedulable", "PodGroupPending"):
            obj = (ev.get("involvedObject") or {}).get("kind", "")
            if "queue" in message.lower() or obj == "PodGroup":
                return f"the Volcano queue has no room for it: {message}"
    return None


def _event_lines(events: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    out = []
    for ev in events:
        if ev.get("type") == "Normal":
            continue
        obj = ev.get("involvedObject") or {}
        out.append(f"{obj.get('kind', '?')}/{obj.get('name', '?')}: {ev.get('reason', '')}: {ev.get('message', '')}")
    return tuple(out)


def describe(job: dict[str, Any], pods: Sequence[dict[str, Any]] = (), events: Sequence[dict[str, Any]] = (),
             log_tail: str = "", result_status: dict[str, Any] | None = None) -> JobStatus:
    """The researcher's view of a Job from its manifest/status, pods, events, log tail and status.json.

    Pure: no API calls. ``pods`` newest last; ``result_status`` is the result folder's
    ``status.json`` when the user's directory is visible here.
    """
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    jstatus = job.get("status") or {}
    pods = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    pod = pods[-1] if pods else {}
    pod_name = (pod.get("metadata") or {}).get("name", "")
    node = (pod.get("spec") or {}).get("nodeName") or ""
    base = JobStatus(
        name=meta.get("name", ""), namespace=meta.get("namespace", ""), phase="pending",
        run_id=labels.get(LABEL_RUN_ID, ""), owner=labels.get(LABEL_OWNER, ""), digest=labels.get(LABEL_DIGEST, ""),
        sweep_id=labels.get(LABEL_SWEEP, ""), pod=pod_name, node=node, created=str(meta.get("creationTimestamp") or ""),
    )
    complete = _cond(job, "Complete") or _cond(job, "SuccessCriteriaMet")
    if complete:
        return replace(base, phase="succeeded", reason="finished; the result folder is complete")
    failed = _cond(job, "Failed") or _cond(job, "FailureTarget")
    if failed:
        return _describe_failure(base, failed, pods, events, log_tail, result_status)
    if meta.get("deletionTimestamp"):
        return replace(base, phase="failed", reason="cancelled (the Job is being deleted)", infrastructure=False)
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        p = running[-1]
        return replace(base, phase="running", pod=p["metadata"]["name"], node=(p.get("spec") or {}).get("nodeName", ""),
                       reason="running the notebook")
    pod_phase = (pod.get("status") or {}).get("phase") if pod else None
    if pod_phase == "Failed":
        return replace(base, phase="running", reason="a pod failed; the Job retries it unless the backoff limit "
                                                     "is reached")
    if pod_phase == "Succeeded":
        return replace(base, phase="running", reason="the run finished; waiting for the Job to record it")
    if not pods and (jstatus.get("ready") or jstatus.get("active")):
        started = "running" if jstatus.get("ready") else "starting"
        return replace(base, phase="running", reason=f"a pod is {started}")
    if pod:
        reason, _ = _pod_pending_reason(pod)
        if "scheduler" in reason or "waiting to be scheduled" in reason:
            volcano = _volcano_reason(events)
            if volcano:
                reason = volcano
        return replace(base, phase="pending", reason=reason, events=_event_lines(events))
    volcano = _volcano_reason(events)
    if volcano:
        return replace(base, phase="pending", reason=volcano, events=_event_lines(events))
    return replace(base, phase="pending", reason="queued; no pod created yet", events=_event_lines(events))


def _describe_failure(base: JobStatus, cond: dict[str, Any], pods: Sequence[dict[str, Any]],
                      events: Sequence[dict[str, Any]], log_tail: str,
                      result_status: dict[str, Any] | None) -> JobStatus:
    job_reason = cond.get("reason") or ""
    ev = _event_lines(events)
    # the pods tell what actually happened; look at the newest terminated one
    for pod in reversed(list(pods)):
        cs = _container_status(pod)
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
        if term.get("reason") == "OOMKilled":
            limit = _memory_limit(pod)
            words = f" (limit {limit})" if limit else ""
            return replace(base, phase="failed", infrastructure=True, events=ev,
                           reason=f"ran out of memory and was killed (OOMKilled){words}: raise "
                                  "resources.memory_limit, crop a shorter span or use fewer components")
        if term:
            break
        reason, infra = _pod_pending_reason(pod)
        if infra and (pod.get("status") or {}).get("phase") in ("Pending", None):
            return replace(base, phase="failed", infrastructure=True, reason=f"never started: {reason}", events=ev)
    if job_reason == "DeadlineExceeded":
        return replace(base, phase="failed", infrastructure=True, events=ev,
                       reason="took longer than its time limit (activeDeadlineSeconds) and was stopped "
                              "(DeadlineExceeded); raise active_deadline_seconds or shorten the analysis")
    cell = (result_status or {}).get("error") if result_status else None
    if cell:
        where = f" in cell {cell['cell']}" if cell.get("cell") is not None else ""
        exc = f": {cell.get('ename')}: {cell.get('evalue')}" if cell.get("ename") else f": {cell.get('reason')}"
        return replace(base, phase="failed", infrastructure=False, cell_error=dict(cell), events=ev,
                       reason=f"the notebook failed{where}{exc}")
    match = None
    for line in reversed(log_tail.splitlines()):
        match = FAILED_LINE.search(line)
        if match:
            break
    if match:
        return replace(base, phase="failed", infrastructure=False, events=ev,
                       reason=f"the analysis failed: {match.group(1).strip()}")
    if job_reason == "BackoffLimitExceeded":
        return replace(base, phase="failed", infrastructure=None, events=ev,
                       reason="the run failed on every retry (BackoffLimitExceeded); see: labkit logs " + base.name)
    message = cond.get("message") or job_reason or "no reason given"
    return replace(base, phase="failed", infrastructure=None, reason=f"failed: {message}", events=ev)


def task_run_ids(vjob: dict[str, Any]) -> list[str]:
    """The run id of each task of a Volcano Job, in task order."""
    return [((t.get("template") or {}).get("metadata") or {}).get("labels", {}).get(LABEL_RUN_ID, "")
            for t in (vjob.get("spec") or {}).get("tasks") or []]


def _label(obj: dict[str, Any], keys: Sequence[str]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return next((labels[k] for k in keys if labels.get(k)), "")


def describe_volcano(vjob: dict[str, Any], pods: Sequence[dict[str, Any]] = (),
                     events: Sequence[dict[str, Any]] = (),
                     results: dict[str, dict[str, Any]] | None = None) -> SweepStatus:
    """The researcher's view of a Volcano sweep: one :class:`JobStatus` per task (run). Pure.

    Each task is described by :func:`describe` as if it were a Job: its pods say
    pending / running / why it failed (OOMKilled, image, scheduling), a succeeded pod
    is a succeeded run, and once the Volcano Job has ended (``Aborted``, ``Failed``, ...)
    a run that never finished is failed. ``results`` maps run ids to ``status.json``.
    """
    meta = vjob.get("metadata") or {}
    labels = meta.get("labels") or {}
    vphase = (((vjob.get("status") or {}).get("state") or {}).get("phase")) or "Pending"
    by_task: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        by_task.setdefault(_label(pod, VOLCANO_TASK_LABELS), []).append(pod)
    runs = []
    for task in (vjob.get("spec") or {}).get("tasks") or []:
        template_meta = (task.get("template") or {}).get("metadata") or {}
        tpods = sorted(by_task.get(task.get("name", ""), []),
                       key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        phase = ((tpods[-1].get("status") or {}).get("phase") if tpods else None) or ""
        condition = None
        if phase == "Succeeded":
            condition = {"type": "Complete", "status": "True"}
        elif phase == "Failed":
            condition = {"type": "Failed", "status": "True", "reason": "PodFailed", "message": "its pod failed"}
        elif vphase in VOLCANO_ENDED:
            condition = {"type": "Failed", "status": "True", "reason": f"Volcano{vphase}",
                         "message": f"the Volcano Job ended ({vphase}) before this run finished"}
        pseudo = {"metadata": {"name": f"{meta.get('name', '')}-{task.get('name', '')}",
                               "namespace": meta.get("namespace", ""), "labels": template_meta.get("labels") or {},
                               "creationTimestamp": meta.get("creationTimestamp")},
                  "status": {"conditions": [condition] if condition else []}}
        run_id = (template_meta.get("labels") or {}).get(LABEL_RUN_ID, "")
        status = describe(pseudo, tpods, events if phase in ("", "Pending") else (), "",
                          (results or {}).get(run_id))
        runs.append(replace(status, kind="task"))
    return SweepStatus(sweep_id=labels.get(LABEL_SWEEP, ""), runs=tuple(runs), kind="volcano",
                       name=meta.get("name", ""), volcano_phase=vphase)


def _delete_options(propagation: str) -> k8s.V1DeleteOptions:
    """How a cancel deletes: ``Background``/``Foreground`` also delete the pods, ``Orphan`` leaves them."""
    if propagation not in ("Background", "Foreground", "Orphan"):
        raise ClusterError(f"propagation must be Background, Foreground or Orphan, not {propagation!r}")
    return k8s.V1DeleteOptions(propagation_policy=propagation)


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


def _matches(labels: dict[str, str] | None, selector: dict[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _selector(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


# -- the face --------------------------------------------------------------------------------
class ClusterJobs:
    """One user's labkit Jobs in their namespace.

    ``api_client`` defaults to in-cluster config, else kubeconfig; tests pass one
    pointing at an emulator. ``sleep`` is what retries wait with.
    """

    def __init__(self, settings: ClusterSettings | None = None, user: str | None = None,
                 api_client: k8s.ApiClient | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 poll_interval: float | None = None) -> None:
        self.settings = settings or ClusterSettings.load()
        self.user = user or default_user()
        self.owner = owner_label(self.user)
        self.namespace = self.settings.namespace_for(self.user) or api.current_namespace()
        self.client = api.own_retries(api_client or api.load_api_client())
        self.batch = k8s.BatchV1Api(self.client)
        self.core = k8s.CoreV1Api(self.client)
        self.custom = k8s.CustomObjectsApi(self.client)
        self.sleep = sleep
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
        labels = (job.get("metadata") or {}).get("labels") or {}
        name = (job.get("metadata") or {}).get("name")
        if labels.get(LABEL_NAME) != APP:
            raise NotYourJob(f"{name} is not a labkit Job; labkit only acts on Jobs it created")
        owner = labels.get(LABEL_OWNER)
        if owner != self.owner:
            who = (job.get("metadata") or {}).get("annotations", {}).get(ANN_USER) or owner or "nobody"
            raise NotYourJob(f"The Job {name} belongs to {who}, not to you ({self.user}); "
                             "labkit only shows, follows and cancels your own Jobs")
        return job

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
        base = self.settings.storage.local_dir()
        if not run_id or not base.is_dir():
            return None
        try:
            return find_run(base, run_id).status
        except LabkitError:
            return None

    # -- submit ----------------------------------------------------------------
    def render(self, params: IcaParams, *, force: bool = False, run_id: str | None = None,
               sweep_id: str | None = None) -> dict[str, Any]:
        manifest = build_job(params, self.settings, self.user, run_id or new_run_id(params), sweep_id, rerun=force)
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
        try:
            self.call(self.batch.create_namespaced_job, self.namespace, manifest, what=f"create Job {name}")
        except ClusterConflict:
            existing = self.get_job(name)  # refuses another user's Job with the same name
            labels = existing["metadata"].get("labels") or {}
            old_run = labels.get(LABEL_RUN_ID, "")
            if old_run == manifest["metadata"]["labels"][LABEL_RUN_ID]:
                # an earlier attempt of this very call went through before its answer was lost
                logger.info("submitted Job %s (run %s; created by a retried attempt)", name, old_run)
                return Submission(name, self.namespace, old_run, False, existing, tuple(warnings))
            logger.info("Job %s already exists (run %s): attaching instead of duplicating", name, old_run)
            warnings.append(f"the same parameter set was already submitted as {name} (run {old_run}); "
                            "following it (use --force to run it again)")
            return Submission(name, self.namespace, old_run, True, existing, tuple(warnings))
        run = manifest["metadata"]["labels"][LABEL_RUN_ID]
        logger.info("submitted Job %s (run %s) in namespace %s", name, run, self.namespace)
        return Submission(name, self.namespace, run, False, manifest, tuple(warnings))

    def completed(self, params: IcaParams) -> RunResult | None:
        """The newest succeeded result folder of this very parameter set in the user's directory, if any.

        Looks in ``storage.local_base_dir`` (else ``$BASE_DIR``, else home): the user's NFS
        directory as mounted here. A set matches by digest as submitted and as the pod saw
        it (``base_dir`` is not part of the digest; an absolute recording path becomes relative).
        """
        return self._completed([params])[params.digest]

    def _completed(self, sets: Sequence[IcaParams]) -> dict[str, RunResult | None]:
        """:meth:`completed` for many sets, reading the user's directory once."""
        base = self.settings.storage.local_dir()
        newest: dict[str, RunResult] = {}
        for run in list_runs(base) if base.is_dir() else []:  # oldest first: the newest wins
            if run.params is not None and run.state == "succeeded":
                newest[run.params.digest] = run
        out: dict[str, RunResult | None] = {}
        for params in sets:
            digests = [params.digest]
            try:
                digests.append(cluster_params(params, self.settings).digest)
            except SettingsError:
                pass
            found = [newest[d] for d in digests if d in newest]
            out[params.digest] = max(found, key=lambda r: r.path.name) if found else None
        return out

    def submit_sweep(self, params_list: Sequence[IcaParams], *, volcano: bool | None = None,
                     sweep_id: str | None = None, force: bool = False, min_available: int = 1) -> SweepSubmission:
        """Submit a sweep: one Volcano Job with ``minAvailable`` (``volcano``, default: when the
        scheduler setting is Volcano), else one batch/v1 Job per set labelled with the sweep id.

        Repeated sets run once; a set whose result is already in the user's directory is
        reported instead of run again, and an identical sweep attaches to its Jobs, unless ``force``.
        """
        volcano = self.settings.scheduler.name == "volcano" if volcano is None else volcano
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
        sweep_id = sweep_label(sweep_id or default_sweep_id(sets))
        if force:
            sweep_id = sweep_label(f"{sweep_id}-{os.urandom(3).hex()[:5]}")  # a new sweep, not the earlier one
        if not volcano:
            done = {} if force else self._completed(sets)
            runs = tuple(self._submit(p, done.get(p.digest), force=force, run_id=None, sweep_id=sweep_id)
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
        manifest = build_volcano_job(todo, self.settings, self.user, sweep_id, min_available=min_available)
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

    def _wait_for_run(self, name: str, state: dict[str, Any]) -> None:
        task = self.volcano_task(name)
        if task is None:
            self._wait_for_change(name, state)
        else:
            self._wait_for_volcano(task[0], state)

    def _wait_for_volcano(self, name: str, state: dict[str, Any]) -> None:
        self._wait(self.custom.list_namespaced_custom_object, (VOLCANO_GROUP, VOLCANO_VERSION, self.namespace, "jobs"),
                   f"Volcano Job {name}", state, {"field_selector": f"metadata.name={name}"}, name)

    def get_volcano_job(self, name: str) -> dict[str, Any]:
        """The Volcano Job as a dict, refused if it belongs to someone else."""
        job = self.call(self.custom.get_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION, self.namespace,
                        "jobs", name, what=f"read Volcano Job {name}")
        return self._check_owner(self._dict(job))

    def volcano_jobs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """This user's labkit Volcano Jobs; none when Volcano is not installed (or not allowed and not configured)."""
        selector = {LABEL_NAME: APP, LABEL_OWNER: self.owner}
        if sweep_id:
            selector[LABEL_SWEEP] = sweep_label(sweep_id)
        try:
            listed = self.call(self.custom.list_namespaced_custom_object, VOLCANO_GROUP, VOLCANO_VERSION,
                               self.namespace, "jobs", label_selector=_selector(selector),
                               what="list your Volcano Jobs")
        except ClusterNotFound:  # no Volcano CRD in this cluster
            return []
        except ClusterForbidden:
            if self.settings.scheduler.name == "volcano":
                raise
            return []
        return [j for j in listed.get("items") or [] if _matches((j.get("metadata") or {}).get("labels"), selector)]

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
                selector = _selector({LABEL_OWNER: self.owner, LABEL_SWEEP: current.sweep_id})
                self._wait(self.batch.list_namespaced_job, (self.namespace,), f"the Jobs of sweep {sweep_id}",
                           state, {"label_selector": selector})

        return self._follow(lambda: self.sweep_status(sweep_id, names), report, wait, timeout, too_long, timed_out,
                            {})

    # -- follow ----------------------------------------------------------------
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
            for line in _lines(resp):
                if not line:
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        self._relist(list_fn, args, what, state, selector)
                        return
                    raise ClusterError(f"Cannot watch {what}: the cluster answered {obj.get('code')} "
                                       f"({obj.get('message') or obj.get('reason')})")
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
        except ValueError as err:  # a garbled line: start over
            logger.debug("watch of %s sent an unreadable line (%s); renewing", what, err)
        finally:
            resp.release_conn()

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

        self.watch_state = {}
        return self._follow(lambda: self.status(name), report, lambda _, state: self._wait_for_change(name, state),
                            timeout, too_long, timed_out, self.watch_state)

    def _follow(self, read: Callable[[], Any], report: Callable[[Any], None],
                wait: Callable[[Any, dict[str, Any]], None], timeout: float | None,
                too_long: Callable[[Any, float], ClusterError], timed_out: Callable[[Any], ClusterError],
                state: dict[str, Any]) -> Any:
        """Read, report and wait for a change until ``read()`` is done (a JobStatus or a SweepStatus).

        Raises ``too_long(current, waited)`` once it has been pending longer than
        ``settings.pending_timeout``, and ``timed_out(current)`` after ``timeout`` seconds.
        """
        started = time.monotonic()
        pending_since: float | None = None
        while True:
            current = read()
            report(current)
            if current.done:
                return current
            now = time.monotonic()
            if current.phase == "pending":
                pending_since = pending_since or now
                if now - pending_since > self.settings.pending_timeout:
                    raise too_long(current, now - pending_since)
            else:
                pending_since = None
            if timeout is not None and now - started > timeout:
                raise timed_out(current)
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
        for attempt in range(max_resumes + 1):
            kwargs: dict[str, Any] = {"container": CONTAINER, "follow": True, "timestamps": True,
                                      "_preload_content": False}
            if last_ts:  # the client offers since_seconds only: overlap generously, duplicates are skipped
                kwargs["since_seconds"] = _seconds_since(last_ts) + 10
            resp = self.call(self.core.read_namespaced_pod_log, pod, self.namespace,
                             what=f"read the log of pod {pod}", **kwargs)
            skip = shown_at_last if last_ts else 0
            try:
                for raw in _lines(resp):
                    ts, sep, text = raw.partition(" ")
                    if not sep or not re.match(r"^\d{4}-\d\d-\d\dT", ts):
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
                logger.info("log stream of %s broke (%s)", pod, type(err).__name__)
            finally:
                resp.release_conn()
            current = [p for p in self.run_pods(name) if (p.get("metadata") or {}).get("name") == pod]
            if not current or (current[0].get("status") or {}).get("phase") != "Running":
                return  # the container ended: the stream ended with it
            logger.info("log stream of %s ended while it runs; resuming (%d)", pod, attempt + 1)
            self.sleep(min(1.0, 0.1 * (attempt + 1)))
        logger.warning("gave up following the log of %s; run labkit logs -f %s again", pod, name)

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
        selector = {LABEL_NAME: APP, LABEL_OWNER: self.owner}
        if sweep_id:
            selector[LABEL_SWEEP] = sweep_id
        listed = self.call(self.batch.list_namespaced_job, self.namespace, label_selector=_selector(selector),
                           what="list your Jobs")
        jobs = [self._dict(j) for j in listed.items]
        mine = [j for j in jobs if _matches((j.get("metadata") or {}).get("labels"), selector)]
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        if mine:  # one call for all pods, so the table shows pod states (pull errors, node) too
            pod_selector = {LABEL_NAME: APP, LABEL_OWNER: self.owner}
            listed_pods = self.call(self.core.list_namespaced_pod, self.namespace,
                                    label_selector=_selector(pod_selector), what="list your pods")
            for pod in (self._dict(p) for p in listed_pods.items):
                labels = (pod.get("metadata") or {}).get("labels") or {}
                if not _matches(labels, pod_selector):
                    continue
                job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), None)
                if job:
                    pods_by_job.setdefault(job, []).append(pod)
        out = [describe(j, pods_by_job.get(j["metadata"]["name"], [])) for j in mine]
        for vjob in self.volcano_jobs(sweep_id) if volcano else []:
            sweep = describe_volcano(vjob, self.volcano_pods(vjob["metadata"]["name"]))
            meta = vjob.get("metadata") or {}
            out.append(JobStatus(name=sweep.name, namespace=meta.get("namespace", ""), phase=sweep.phase,
                                 reason=f"Volcano {sweep.volcano_phase}; {sweep.reason}", owner=self.owner,
                                 sweep_id=sweep.sweep_id, created=str(meta.get("creationTimestamp") or ""),
                                 kind="volcano"))
        return sorted(out, key=lambda s: (s.created, s.name), reverse=True)

    # -- results ----------------------------------------------------------------
    def run(self, params: IcaParams, *, force: bool = False,
            on_change: Callable[[JobStatus], None] | None = None) -> RunResult:
        """Submit (or attach), follow to the end and return the result folder like a local run.

        For notebooks: ``ClusterJobs().run(params)`` displays inline exactly as
        ``LocalRunner().run(params)`` does. A failed Job raises :class:`RunFailed` with
        the reason in words (and the folder, when the analysis itself failed).
        """
        from ..errors import RunFailed

        sub = self.submit(params, force=force)
        if sub.existing is not None:
            return sub.existing
        final = self.watch(sub.name, on_change=on_change)
        if final.phase == "succeeded":
            return self.result(final)
        folder = None
        if final.infrastructure is False:
            try:
                folder = self.result(final).path
            except LabkitError:
                folder = None
        kind = "cluster problem" if final.infrastructure else "analysis error" if final.infrastructure is False else "failed"
        raise RunFailed(f"Cluster run {final.run_id} ({final.name}) failed [{kind}]: {final.reason}", folder)

    def sweep_results(self, sweep: str | SweepStatus) -> list[RunResult]:
        """The result folders of a sweep's finished runs that are in the user's directory (any state).

        ``labkit.sweeps.table(jobs.sweep_results(sweep_id))`` compares them like a local sweep.
        """
        status = sweep if isinstance(sweep, SweepStatus) else self.sweep_status(sweep)
        base = self.settings.storage.local_dir()
        found = []
        for run in status.runs:
            if run.done and run.run_id:
                try:
                    found.append(find_run(base, run.run_id))
                except LabkitError:
                    logger.info("no result folder for run %s under %s", run.run_id, base)
        return found

    def result(self, name_or_status: str | JobStatus, local_base_dir: str | os.PathLike | None = None) -> RunResult:
        """The finished run's result folder, loaded exactly like a local run's."""
        st = name_or_status if isinstance(name_or_status, JobStatus) else self.status(name_or_status)
        base = local_base_dir or self.settings.storage.local_dir()
        try:
            return find_run(base, st.run_id)
        except LabkitError as err:
            raise ClusterError(f"{err}; if your data directory is mounted elsewhere here, set "
                               "storage.local_base_dir (LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR)") from None
