"""Cluster settings: one typed object, configured once by the cluster or JupyterHub admin.

Sources, later wins: the defaults below, a YAML/JSON file (``LABKIT_CLUSTER_CONFIG`` or an
explicit path), then ``LABKIT_CLUSTER_*`` environment variables. Nested fields use ``__``
in variable names, e.g. ``LABKIT_CLUSTER_STORAGE__NFS_SERVER=nfs.lab.example`` or
``LABKIT_CLUSTER_SCHEDULER__QUEUE=eeg``; list and mapping values are given as JSON or
YAML (``LABKIT_CLUSTER_NODE_SELECTOR='{"disk": "ssd"}'``).

Settings never hold credentials: registry secrets are referenced by name
(``image_pull_secrets``) and the API credentials come from the service account token
(in a hub pod) or the user's kubeconfig.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import SettingsError
from .names import sanitize_name

ENV_PREFIX = "LABKIT_CLUSTER_"
CONFIG_ENV = "LABKIT_CLUSTER_CONFIG"
DEFAULT_IMAGE_REPO = "ghcr.io/labkit/labkit"


def _default_image() -> str:
    from .. import __version__

    return f"{DEFAULT_IMAGE_REPO}:{__version__}"


@dataclass(frozen=True)
class StorageSettings:
    """Where the user's directory comes from and where the container sees it."""

    #: NFS server host name or address (used when ``pvc`` is empty)
    nfs_server: str = ""
    #: exported path on the NFS server; ``{user}`` is replaced by the user name
    nfs_path: str = "/userdata/{user}"
    #: name of an existing PersistentVolumeClaim to mount instead of NFS (``{user}`` allowed)
    pvc: str = ""
    #: subdirectory of the PVC to mount (``{user}`` allowed); empty mounts the whole claim
    pvc_sub_path: str = ""
    #: where the directory is mounted in the container; becomes ``BASE_DIR``
    mount_path: str = "/userdata"
    #: mount read-only (the run writes its result folder, so normally False)
    read_only: bool = False
    #: where the same directory is visible here (e.g. the hub's ``/home/jovyan``), to read results and
    #: to find completed runs of a parameter set; empty means ``$BASE_DIR``, else the home directory
    local_base_dir: str = ""

    def local_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        """The user's directory as mounted here: ``local_base_dir``, else ``$BASE_DIR``, else home."""
        environ = os.environ if environ is None else environ
        return Path(self.local_base_dir or environ.get("BASE_DIR") or Path.home()).expanduser()


@dataclass(frozen=True)
class ResourceSettings:
    """CPU and memory for the container (Kubernetes quantities, e.g. ``"2"``, ``"4Gi"``)."""

    #: guaranteed CPU cores
    cpu_request: str = "1"
    #: guaranteed memory
    memory_request: str = "2Gi"
    #: CPU cap (empty for none)
    cpu_limit: str = "2"
    #: memory cap; exceeding it kills the run (OOMKilled)
    memory_limit: str = "4Gi"


@dataclass(frozen=True)
class SecuritySettings:
    """Pod security: run as the user's uid/gid so NFS permissions hold; never root."""

    #: uid the container runs as (the user's uid on the NFS server); None leaves the image's user
    run_as_user: int | None = 1000
    #: gid the container runs as
    run_as_group: int | None = 100
    #: supplementary group owning the mounted volume (ignored by NFS, honoured by most PVCs)
    fs_group: int | None = 100
    #: refuse to start a container that would run as root
    run_as_non_root: bool = True
    #: seccomp profile type (``RuntimeDefault`` or ``Unconfined``)
    seccomp_profile: str = "RuntimeDefault"


@dataclass(frozen=True)
class SchedulerSettings:
    """Which scheduler places the pods: Kubernetes' default or Volcano (with a queue)."""

    #: ``default`` or ``volcano``
    name: str = "default"
    #: Volcano queue (``scheduling.volcano.sh/queue-name``); empty means Volcano's ``default``
    queue: str = ""
    #: Volcano PriorityClass name for the pods (empty for none)
    priority_class: str = ""


@dataclass(frozen=True)
class ClusterSettings:
    """Everything labkit needs to turn a parameter set into a Job in a user's namespace."""

    #: namespace the Jobs are created in; ``{user}`` allowed (e.g. ``jupyter-{user}``); empty means the
    #: hub pod's own namespace (its service account), else the kubeconfig context's, else ``default``
    namespace: str = ""
    #: container image holding labkit (its tag should be labkit's version)
    image: str = dataclasses.field(default_factory=_default_image)
    #: ``IfNotPresent``, ``Always`` or ``Never``
    image_pull_policy: str = "IfNotPresent"
    #: names of registry Secrets for private images (referenced, never embedded)
    image_pull_secrets: tuple[str, ...] = ()
    #: service account the pod runs as (empty: the namespace's default)
    service_account: str = ""
    #: the user's storage
    storage: StorageSettings = field(default_factory=StorageSettings)
    #: CPU and memory
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    #: node labels the pod must land on
    node_selector: Mapping[str, str] = field(default_factory=dict)
    #: tolerations, as Kubernetes dicts (``key``, ``operator``, ``value``, ``effect``)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    #: pod retries before the Job fails (the prototype's 4)
    backoff_limit: int = 4
    #: wall-clock cap for the whole Job, seconds (None: no cap)
    active_deadline_seconds: int | None = 6 * 3600
    #: finished Jobs are deleted this long after finishing, seconds (None: kept)
    ttl_seconds_after_finished: int | None = 7 * 24 * 3600
    #: pod security
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: scheduler and queue
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    #: a Job still pending after this many seconds is reported with the scheduler's reason
    pending_timeout: float = 600.0
    #: how long one watch request lasts before it is renewed, seconds
    watch_timeout: float = 60.0
    #: retries of one API call (connection errors, 5xx, 429) before giving up
    api_retries: int = 5
    #: cap on the wait between retries, seconds
    api_max_backoff: float = 30.0
    #: extra environment for the container (non-secret values only, e.g. ``LABKIT_BLAS_THREADS``)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingsError("Invalid cluster settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        out = []
        if self.scheduler.name not in ("default", "volcano"):
            out.append(f"scheduler.name must be 'default' or 'volcano', got {self.scheduler.name!r}")
        if self.image_pull_policy not in ("IfNotPresent", "Always", "Never"):
            out.append(f"image_pull_policy must be IfNotPresent, Always or Never, got {self.image_pull_policy!r}")
        if self.backoff_limit < 0:
            out.append("backoff_limit must be 0 or more")
        if not self.storage.mount_path.startswith("/"):
            out.append(f"storage.mount_path must be absolute, got {self.storage.mount_path!r}")
        if self.security.run_as_non_root and self.security.run_as_user == 0:
            out.append("security.run_as_user is 0 (root) while run_as_non_root is true")
        for key in self.extra_env:
            if any(word in key.upper() for word in ("TOKEN", "PASSWORD", "SECRET", "KEY")):
                out.append(f"extra_env must not carry credentials ({key}); use a Secret the admin mounts")
        return out

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClusterSettings":
        """Build from nested plain data (as in the YAML file); unknown keys are an error."""
        return _build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes: Any) -> "ClusterSettings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ClusterSettings":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as err:
            raise SettingsError(f"Cannot read the cluster settings file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise SettingsError(f"The cluster settings file {path} is not valid YAML/JSON: {err}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"The cluster settings file {path} must hold a mapping")
        return cls.from_dict(data.get("cluster", data))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None,
             environ: Mapping[str, str] | None = None) -> "ClusterSettings":
        """Defaults, then the file (``path`` or ``$LABKIT_CLUSTER_CONFIG``), then ``LABKIT_CLUSTER_*``."""
        environ = os.environ if environ is None else environ
        path = path or environ.get(CONFIG_ENV) or None
        data: dict[str, Any] = cls.from_file(path).to_dict() if path else {}
        for key, text in environ.items():
            if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
                continue
            parts = key[len(ENV_PREFIX):].lower().split("__")
            target = data
            for part in parts[:-1]:
                target = target.setdefault(part, {})
                if not isinstance(target, dict):
                    raise SettingsError(f"{key}: {part} is not a group of settings")
            target[parts[-1]] = _env_value(text)
        return cls.from_dict(data)

    # -- per-user values ------------------------------------------------------
    def namespace_for(self, user: str) -> str:
        if "{user}" not in self.namespace:
            return self.namespace
        room = 63 - len(self.namespace.replace("{user}", ""))
        return self.namespace.replace("{user}", sanitize_name(user, max(room, 8)))


def _env_value(text: str) -> Any:
    """Environment values: JSON/YAML scalars, lists and mappings; anything else stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SettingsError(f"Cluster setting {where.rstrip('.') or 'root'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsError(f"Unknown cluster setting {where}{unknown[0]!r}; known: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = _convert(hint, value, f"{where}{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # pragma: no cover - defensive
        raise SettingsError(f"Invalid cluster settings {where}: {err}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, where + ".")
    if origin is tuple:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"Cluster setting {where} must be a list, got {value!r}")
        return tuple(dict(v) if isinstance(v, Mapping) else v for v in value)
    if hint is Mapping[str, str] or origin in (Mapping, dict) or str(hint).startswith("typing.Mapping"):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SettingsError(f"Cluster setting {where} must be a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError(value)
            return int(float(value))
        if hint is float:
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"Cluster setting {where} must be {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value
