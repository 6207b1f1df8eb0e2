"""What a Job is doing, in a researcher's words: pure functions from API objects to statuses.

:func:`describe` turns a Job, its pods, the namespace's events, its log tail and the result
folder's ``status.json`` into a :class:`JobStatus`; :func:`describe_volcano` does the same
for each run of a Volcano sweep. Nothing here calls the API, so the hub service can describe
Jobs from its watch cache and the CLI from fresh reads with the same words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

from labkit.runners.cluster.errors import ClusterError
from labkit.runners.cluster.manifests import (
    ANN_PARAMS,
    CONTAINER,
    LABEL_DIGEST,
    LABEL_OWNER,
    LABEL_RUN_ID,
    LABEL_SWEEP,
    LABKIT_EXIT_CODES,
    VOLCANO_API,
)

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
    #: the recording and ICA method of its parameter set (from the Job's annotation), when known
    recording: str = ""
    method: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed")

    def summary(self) -> str:
        where = f" on {self.node}" if self.node else ""
        text = f"{self.name}: {self.phase}{where}"
        return f"{text} - {self.reason}" if self.reason else text


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
        **_set_of(meta.get("annotations") or {}),
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
    if job_reason == "PodFailurePolicy":
        code = re.search(r"exit code (\d+)", cond.get("message") or "")
        what = LABKIT_EXIT_CODES.get(int(code.group(1))) if code else None
        if what:
            said = [line.strip() for line in log_tail.splitlines() if line.startswith("labkit: ")]
            detail = f": {said[-1][len('labkit: '):]}" if said else f"; see: labkit logs {base.name}"
            return replace(base, phase="failed", infrastructure=False, events=ev,
                           reason=f"the analysis failed ({what}, exit code {code.group(1)}; not retried){detail}")
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


def volcano_summary(vjob: dict[str, Any], pods: Sequence[dict[str, Any]] = ()) -> JobStatus:
    """A whole Volcano sweep as one row of a run list (``kind='volcano'``), counting its runs. Pure."""
    sweep = describe_volcano(vjob, pods)
    meta = vjob.get("metadata") or {}
    return JobStatus(name=sweep.name, namespace=meta.get("namespace", ""), phase=sweep.phase,
                     reason=f"Volcano {sweep.volcano_phase}; {sweep.reason}",
                     owner=(meta.get("labels") or {}).get(LABEL_OWNER, ""), sweep_id=sweep.sweep_id,
                     created=str(meta.get("creationTimestamp") or ""), kind="volcano")


def _set_of(annotations: dict[str, str]) -> dict[str, str]:
    """The recording and method of the Job's parameter set annotation (nothing when it cannot be read)."""
    try:
        doc = json.loads(annotations.get(ANN_PARAMS) or "{}")
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {"recording": str(doc.get("raw_file_path") or ""), "method": str(doc.get("method") or "")}
