"""Manifests: pure functions from (parameter set, settings, user) to Kubernetes objects.

Nothing here talks to a cluster, so ``labkit render`` and the tests need none. Every
manifest is a plain dict ready for the API (or YAML) and never carries a credential:
private registries are referenced through ``imagePullSecrets`` names, and the pod does
not even get an API token (``automountServiceAccountToken: false``).

Naming: ``labkit-<user>-<digest>`` where ``<digest>`` is :attr:`IcaParams.digest`, so
submitting the same parameter set twice finds the first Job instead of duplicating it.
A forced rerun appends a short hash of its run id.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

from labkit.params import IcaParams
from labkit.results.layout import new_run_id
from labkit.results.store import RECORDING_SHA_ENV
from labkit.runners.cluster.errors import SettingsError
from labkit.runners.cluster.names import (
    check_run_id,
    fit_slug,
    is_label_value,
    kubespawner_slug,
    sanitize_name,
    short_hash,
)
from labkit.runners.cluster.settings import ClusterSettings

APP = "labkit"
CONTAINER = "ica"
COMMAND = ["labkit", "entrypoint"]
VOLUME = "userdata"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "labkit.io/owner"
#: the owner's directory name in the storage path (KubeSpawner's {username}); k8s/admission-policy.yaml checks volumes by it
LABEL_OWNER_DIR = "labkit.io/owner-dir"
LABEL_RUN_ID = "labkit.io/run-id"
LABEL_DIGEST = "labkit.io/digest"
LABEL_SWEEP = "labkit.io/sweep-id"
ANN_VERSION = "labkit.io/version"
ANN_USER = "labkit.io/user"
ANN_PARAMS = "labkit.io/params"
ANN_VOLCANO_QUEUE = "scheduling.volcano.sh/queue-name"

VOLCANO_API = "batch.volcano.sh/v1alpha1"

def owner_label(user: str) -> str:
    """The ``labkit.io/owner`` value for a user: KubeSpawner's slug, injective over user names.

    It selects a user's objects; :func:`owned_by` also checks the exact name in ``labkit.io/user``.
    """
    return kubespawner_slug(user)


def legacy_owner_label(user: str) -> str:
    """The owner label labkit 0.1 wrote (``sanitize_name``; not injective): still read, never written."""
    return sanitize_name(user, 63)


@functools.lru_cache(maxsize=4096)
def owner_labels(user: str) -> tuple[str, ...]:
    """The owner label values a user's objects may carry: today's, then the legacy one if it differs.

    Cached: the hub service asks it for every object of a namespace-wide list."""
    return tuple(dict.fromkeys((owner_label(user), legacy_owner_label(user))))


def owner_selector(user: str) -> str:
    """A label selector for the user's labkit objects (set-based while legacy labels may exist)."""
    values = owner_labels(user)
    owner = f"{LABEL_OWNER}={values[0]}" if len(values) == 1 else f"{LABEL_OWNER} in ({','.join(values)})"
    return f"{LABEL_NAME}={APP},{owner}"


def owned_by(obj: dict[str, Any], user: str) -> bool:
    """True only for a labkit object of exactly ``user``: an owner label of theirs *and* their exact name.

    The label alone is a selector; the ``labkit.io/user`` annotation holds the hub's name
    verbatim, so two users never pass for one another, whatever their labels.
    """
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return False
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (labels.get(LABEL_NAME) == APP and labels.get(LABEL_OWNER) in owner_labels(user)
            and annotations.get(ANN_USER) == user)


def job_name(user: str, params: IcaParams, rerun: str | None = None) -> str:
    """``labkit-<user slug>-<digest>[-<rerun hash>]``: deterministic, DNS-1123, at most 63 characters."""
    tail = params.digest + (f"-{short_hash(rerun, 5)}" if rerun else "")
    room = 63 - len("labkit-") - len(tail) - 1
    return f"labkit-{fit_slug(owner_label(user), user, room)}-{tail}"


def sweep_name(user: str, params_list: Sequence[IcaParams], sweep_id: str | None = None) -> str:
    key = sweep_id or ",".join(sorted(p.digest for p in params_list))
    tail = short_hash(key, 10)
    room = 63 - len("labkit-sweep-") - len(tail) - 1
    return f"labkit-sweep-{fit_slug(owner_label(user), user, room)}-{tail}"


def default_sweep_id(params_list: Sequence[IcaParams]) -> str:
    """A sweep's id when none is given: a hash of its sets, so the same sweep gets the same id."""
    return short_hash(",".join(sorted(p.digest for p in params_list)), 10)


def sweep_label(sweep_id: str) -> str:
    """The ``labkit.io/sweep-id`` label value for a sweep id (the same on Jobs, Volcano Jobs and pods)."""
    return sweep_id if is_label_value(sweep_id) else sanitize_name(sweep_id)


def cluster_params(params: IcaParams, settings: ClusterSettings) -> IcaParams:
    """The same analysis seen from inside the pod: ``base_dir`` is the mount path.

    An absolute ``raw_file_path`` under the local ``base_dir`` becomes relative, so
    ``/home/jovyan/eeg/s01.fif`` (hub) is ``/userdata/eeg/s01.fif`` (pod).
    """
    raw_text = params.raw_file_path  # relative paths are kept verbatim: they are part of the digest
    raw = PurePosixPath(raw_text)
    if raw.is_absolute():
        try:
            raw_text = str(raw.relative_to(PurePosixPath(params.base_dir)))
        except ValueError:
            raise SettingsError(
                f"The recording {params.raw_file_path} is not inside base_dir {params.base_dir}, so the cluster "
                "cannot see it; copy it into your data directory"
            ) from None
    base = settings.store.work_dir if settings.use_store else settings.storage.mount_path
    return params.replace(base_dir=base, raw_file_path=raw_text)


def labels_for(user: str, params: IcaParams, run_id: str, sweep_id: str | None = None) -> dict[str, str]:
    labels = {
        LABEL_NAME: APP,
        LABEL_COMPONENT: "ica-run",
        LABEL_MANAGED_BY: APP,
        LABEL_OWNER: owner_label(user),
        LABEL_RUN_ID: run_id,
        LABEL_DIGEST: params.digest,
    }
    if sweep_id:
        labels[LABEL_SWEEP] = sweep_label(sweep_id)
    return labels


#: the pod's scratch volume in store mode: the recording comes in from the store, the result goes out to it
WORK_VOLUME = "work"
#: where boto3 reads the store's credentials in the pod (filled from the admin's Secret by reference)
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _volume(settings: ClusterSettings, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if settings.use_store:  # no share: an emptyDir the pod fills from the store and empties into it
        return {"name": WORK_VOLUME, "emptyDir": {}}, {"name": WORK_VOLUME, "mountPath": settings.store.work_dir}
    st = settings.storage
    mount: dict[str, Any] = {"name": VOLUME, "mountPath": st.mount_path}
    if st.read_only:
        mount["readOnly"] = True
    if st.pvc:
        volume: dict[str, Any] = {"name": VOLUME, "persistentVolumeClaim": {"claimName": st.pvc.replace("{user}", owner_label(user))}}
        if st.pvc_sub_path:
            mount["subPath"] = st.user_path(st.pvc_sub_path, user)
    elif st.nfs_server:
        volume = {"name": VOLUME, "nfs": {"server": st.nfs_server, "path": st.user_path(st.nfs_path, user)}}
    else:
        raise SettingsError(
            "No storage configured for cluster runs: set storage.nfs_server (and nfs_path) or storage.pvc "
            "in the cluster settings (LABKIT_CLUSTER_STORAGE__NFS_SERVER=...)"
        )
    return volume, mount


def store_env(settings: ClusterSettings, user: str, recording_sha256: str) -> list[dict[str, Any]]:
    """What the pod needs to use the store: where it is (plain values), the recording's fingerprint,
    and the credentials by ``secretKeyRef`` to the admin's Secret (never a value)."""
    store = settings.store
    values = {"LABKIT_CLUSTER_STORE__KIND": store.kind, "LABKIT_CLUSTER_STORE__BUCKET": store.bucket,
              "LABKIT_CLUSTER_STORE__PREFIX": store.url(user).split("/", 3)[3],
              "LABKIT_CLUSTER_STORE__ENDPOINT": store.endpoint, "LABKIT_CLUSTER_STORE__REGION": store.region,
              "LABKIT_CLUSTER_STORE__VERIFY_TLS": str(store.verify_tls).lower(), "LABKIT_CLUSTER_USE_STORE": "true",
              RECORDING_SHA_ENV: recording_sha256}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items() if v]  # no SHA: by name
    if store.secret_name:
        for name, key in zip(CREDENTIAL_ENV, (store.access_key_key, store.secret_key_key), strict=True):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": store.secret_name, "key": key}}})
    return env


def recording_fingerprint(params: IcaParams) -> str:
    """The recording's content fingerprint, read here (where ``labkit push`` sent it from); empty when the
    recording is not visible here (the hub service): the pod then looks it up by the name it was pushed as."""
    from labkit.errors import LabkitError
    from labkit.results.layout import cache_dir
    from labkit.results.provenance import fingerprint

    try:
        return fingerprint(params.raw_path(), cache_dir(params.base_dir))
    except (OSError, ValueError, LabkitError):
        return ""


def recording_fingerprints(sets: Sequence[IcaParams]) -> dict[str, str]:
    """``{raw_file_path: SHA-256}`` of the sets' recordings visible here (remembered in the base directory's
    cache, so submitting again reads nothing): what a hub submit sends, so a pod without the share fetches
    exactly the bytes the user ran it on, by content."""
    out: dict[str, str] = {}
    for params in sets:
        if params.raw_file_path not in out and (sha := recording_fingerprint(params)):
            out[params.raw_file_path] = sha
    return out


def _env(params: IcaParams, run_id: str, settings: ClusterSettings) -> list[dict[str, str]]:
    env = dict(params.to_env())
    env["LABKIT_RUN_ID"] = run_id
    env["LABKIT_IMAGE"] = settings.image  # part of the result's provenance (labkit.results.provenance)
    # arbitrary uids have no writable home: keep caches in /tmp
    env.setdefault("HOME", "/tmp")
    env.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")
    env.setdefault("MNE_DONTWRITE_HOME", "true")
    env.update(settings.extra_env)
    return [{"name": k, "value": str(v)} for k, v in env.items()]


def _pod_spec(params: IcaParams, settings: ClusterSettings, user: str, run_id: str,
              recording_sha256: str = "") -> dict[str, Any]:
    volume, mount = _volume(settings, user)
    res = settings.resources
    requests = {k: v for k, v in (("cpu", res.cpu_request), ("memory", res.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", res.cpu_limit), ("memory", res.memory_limit)) if v}
    sec = settings.security
    pod_sec: dict[str, Any] = {"runAsNonRoot": sec.run_as_non_root}
    if sec.run_as_user is not None:
        pod_sec["runAsUser"] = sec.run_as_user
    if sec.run_as_group is not None:
        pod_sec["runAsGroup"] = sec.run_as_group
    if sec.fs_group is not None:
        pod_sec["fsGroup"] = sec.fs_group
    if sec.seccomp_profile:
        pod_sec["seccompProfile"] = {"type": sec.seccomp_profile}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(COMMAND),
        "env": _env(params, run_id, settings) + (store_env(settings, user, recording_sha256)
                                                 if settings.use_store else []),
        "volumeMounts": [mount],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "runAsNonRoot": sec.run_as_non_root,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if requests or limits:
        container["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_sec,
        "containers": [container],
        "volumes": [volume],
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.scheduler.name == "volcano":
        spec["schedulerName"] = "volcano"
    if settings.scheduler.priority_class:
        spec["priorityClassName"] = settings.scheduler.priority_class
    return spec


def _annotations(user: str, params: IcaParams, settings: ClusterSettings) -> dict[str, str]:
    from labkit import __version__

    ann = {ANN_VERSION: __version__, ANN_USER: user, ANN_PARAMS: json.dumps(params.to_dict(), sort_keys=True)}
    if settings.scheduler.name == "volcano":
        ann[ANN_VOLCANO_QUEUE] = settings.scheduler.queue or "default"
    return ann


#: labkit's own exit codes: a retry would fail the same way (labkit.errors)
LABKIT_EXIT_CODES = {2: "bad parameters", 3: "the recording cannot be read", 4: "the notebook failed"}


def pod_failure_policy() -> dict[str, Any]:
    """Fail the Job at once on labkit's own exit codes; a disrupted pod (eviction, preemption,
    node drain) is retried without counting against ``backoffLimit``. Everything else (OOM,
    node failure) is retried up to ``backoffLimit``."""
    return {"rules": [
        # the empty onPodConditions: the 1.26-1.28 OpenAPI schemas wrongly mark it required (fixed in 1.29)
        {"action": "FailJob", "onPodConditions": [],
         "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": sorted(LABKIT_EXIT_CODES)}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


def build_job(params: IcaParams, settings: ClusterSettings, user: str, run_id: str | None = None,
              sweep_id: str | None = None, *, rerun: bool = False,
              recording_sha256: str | None = None) -> dict[str, Any]:
    """The ``batch/v1`` Job running ``labkit entrypoint`` for ``params`` on ``user``'s directory.

    With ``settings.use_store`` the pod mounts no share: it fetches the recording by its content
    fingerprint (``recording_sha256``, else read from the recording here) and uploads its result.

    ``run_id`` names the result folder (``PreExperiment_ICA_<run_id>``) before the Job
    runs; it defaults to a fresh :func:`labkit.results.layout.new_run_id`. With ``rerun`` the
    name also carries a hash of the run id, so it does not attach to an earlier Job.
    """
    if not user:
        raise SettingsError("A user name is needed to build a cluster Job (set $JUPYTERHUB_USER or --user)")
    inner = cluster_params(params, settings)
    if settings.use_store and not recording_sha256:
        recording_sha256 = recording_fingerprint(params)
    run_id = check_run_id(run_id) if run_id is not None else new_run_id(params)
    labels = labels_for(user, params, run_id, sweep_id)
    directory = settings.storage.owner_dir(user)
    if directory:
        labels[LABEL_OWNER_DIR] = directory
    annotations = _annotations(user, inner, settings)
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": _pod_spec(inner, settings, user, run_id, recording_sha256 or ""),
        },
    }
    if settings.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(user, params, run_id if rerun else None),
            "namespace": settings.namespace_for(user) or "default",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def build_volcano_job(params_list: Sequence[IcaParams], settings: ClusterSettings, user: str,
                      sweep_id: str | None = None, run_ids: Sequence[str] | None = None,
                      min_available: int = 1, recordings: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A sweep as one Volcano Job (``batch.volcano.sh/v1alpha1``): one task per parameter set.

    Policies fit independent runs: an evicted pod restarts its own task
    (``PodEvicted -> RestartTask``), never the whole sweep; there is deliberately no
    ``TaskCompleted -> CompleteJob``, which would end the sweep when the first run
    finished. ``minAvailable`` (1 by default) lets runs start as the queue has room
    instead of waiting for capacity for all of them at once (gang scheduling).
    """
    if not params_list:
        raise SettingsError("A sweep needs at least one parameter set")
    if run_ids is not None and len(run_ids) != len(params_list):
        raise SettingsError("run_ids must have one run id per parameter set")
    volcano = settings.replace(scheduler=settings.scheduler.__class__(
        name="volcano", queue=settings.scheduler.queue, priority_class=settings.scheduler.priority_class))
    name = sweep_name(user, params_list, sweep_id)
    sweep_id = sweep_id or name[len("labkit-sweep-"):]
    tasks = []
    for i, params in enumerate(params_list):
        run_id = run_ids[i] if run_ids is not None else f"{new_run_id(params)}-{i}"
        job = build_job(params, volcano, user, run_id, sweep_id,
                        recording_sha256=(recordings or {}).get(params.raw_file_path))
        template = job["spec"]["template"]
        template["spec"].pop("schedulerName", None)  # set once at the Volcano Job level
        tasks.append({"name": f"r{i}-{params.digest}", "replicas": 1, "template": template})
    labels = {LABEL_NAME: APP, LABEL_COMPONENT: "ica-sweep", LABEL_MANAGED_BY: APP,
              LABEL_OWNER: owner_label(user), LABEL_SWEEP: sweep_label(sweep_id)}
    directory = settings.storage.owner_dir(user)
    if directory:
        labels[LABEL_OWNER_DIR] = directory
    from labkit import __version__

    spec: dict[str, Any] = {
        "schedulerName": "volcano",
        "queue": settings.scheduler.queue or "default",
        "minAvailable": max(1, min(min_available, len(tasks))),
        "maxRetry": settings.backoff_limit,
        "policies": [{"event": "PodEvicted", "action": "RestartTask"}],
        "tasks": tasks,
    }
    if settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if settings.scheduler.priority_class:
        spec["priorityClassName"] = settings.scheduler.priority_class
    return {
        "apiVersion": VOLCANO_API,
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace_for(user) or "default", "labels": labels,
                     "annotations": {ANN_VERSION: __version__, ANN_USER: user}},
        "spec": spec,
    }


def image_version(image: str) -> str | None:
    """The tag of an image reference (``repo:tag``; a registry port is not a tag)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def version_mismatch(image: str) -> str | None:
    """A warning when the image's tag names another labkit version than this one, else None."""
    from labkit import __version__

    tag = image_version(image)
    if tag is None or tag == "latest":
        return (f"the image {image} has no version tag; its labkit may differ from this labkit "
                f"{__version__} (tag the image with the version)")
    if re.match(r"^v?\d+(\.\d+)*", tag) and tag.lstrip("v") != __version__:
        return (f"the image {image} carries labkit {tag.lstrip('v')} but this notebook has labkit {__version__}; "
                "results may differ - rebuild the image or set the matching image")
    return None


def to_yaml(*manifests: dict[str, Any]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in manifests)
