"""Cluster settings: one typed object, configured once by the cluster or JupyterHub admin.

Loaded with pydantic-settings. Sources, later wins: the defaults below, a YAML file
(``LABKIT_CLUSTER_CONFIG`` or an explicit path; its ``cluster:`` section, or the whole file),
then ``LABKIT_CLUSTER_*`` environment variables. Nested fields use ``__`` in variable names,
e.g. ``LABKIT_CLUSTER_STORAGE__NFS_SERVER=nfs.lab.example`` or
``LABKIT_CLUSTER_SCHEDULER__QUEUE=eeg``; list and mapping values are JSON
(``LABKIT_CLUSTER_NODE_SELECTOR='{"disk": "ssd"}'``). Each value is parsed by its field's
type (``LABKIT_CLUSTER_SCHEDULER__QUEUE=on`` is the queue ``on``, not ``True``) and every
error names its location (``scheduler.queue``).

Settings never hold credentials: registry secrets are referenced by name
(``image_pull_secrets``) and the API credentials come from the service account token
(in a hub pod) or the user's kubeconfig.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from labkit.runners.cluster.errors import SettingsError
from labkit.runners.cluster.names import fit_slug, is_dns_label, is_label_value, kubespawner_slug, user_dir
from labkit.settings.model import MappingEnvSource

ENV_PREFIX = "LABKIT_CLUSTER_"
CONFIG_ENV = "LABKIT_CLUSTER_CONFIG"
DEFAULT_IMAGE_REPO = "ghcr.io/labkit/labkit"
_CREDENTIAL_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY")


def _default_image() -> str:
    from labkit import __version__

    return f"{DEFAULT_IMAGE_REPO}:{__version__}"


class _Group(BaseModel):
    """A group of settings: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StorageSettings(_Group):
    """Where the user's directory comes from and where the container sees it.

    In paths, ``{username}`` is KubeSpawner's escaping of the hub user name (what
    zero-to-jupyterhub mounts: ``alice.b@lab.org`` is ``alice-b-lab-org---00e968cd``) and
    ``{user}`` the raw name (letters, digits, ``._@-`` only).
    """

    #: NFS server host name or address (used when ``pvc`` is empty)
    nfs_server: str = ""
    #: exported path on the NFS server
    nfs_path: str = "/userdata/{username}"
    #: name of an existing PersistentVolumeClaim to mount instead of NFS (``{user}`` becomes KubeSpawner's slug of the name)
    pvc: str = ""
    #: subdirectory of the PVC to mount; empty mounts the whole claim
    pvc_sub_path: str = ""
    #: where the directory is mounted in the container; becomes ``BASE_DIR``
    mount_path: str = "/userdata"
    #: mount read-only (the run writes its result folder, so normally False)
    read_only: bool = False
    #: where the same directory is visible here (e.g. the hub's ``/home/jovyan``), to read results and
    #: to find completed runs of a parameter set; empty means ``$BASE_DIR``, else the home directory
    local_base_dir: str = ""

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    def local_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        """The user's directory as mounted here: ``local_base_dir``, else ``$BASE_DIR``, else home."""
        environ = os.environ if environ is None else environ
        return Path(self.local_base_dir or environ.get("BASE_DIR") or Path.home()).expanduser()

    def owner_dir(self, user: str) -> str | None:
        """The user's directory name as the storage path uses it, when it can be a label value
        (``labkit.io/owner-dir``: what the admission policy holds every volume to), else None."""
        template = self.pvc_sub_path if self.pvc else self.nfs_path
        if "{username}" in template:
            return kubespawner_slug(user)
        if "{user}" in template and is_label_value(user):
            return user
        return None

    def user_path(self, template: str, user: str) -> str:
        """``template`` with ``{username}`` (KubeSpawner's escaping) and ``{user}`` (raw, checked) filled in."""
        out = template.replace("{username}", kubespawner_slug(user))
        return out.replace("{user}", user_dir(user)) if "{user}" in out else out


class StoreSettings(_Group):
    """The artifact store for runs without the share (edge nodes, clouds): S3-compatible object storage.

    Credentials are never settings: the Job gets them from the Secret ``secret_name`` by reference
    (``secretKeyRef``), and here boto3 reads them from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    or ``~/.aws``. ``prefix`` may hold ``{username}`` (KubeSpawner's escaping) or ``{user}``.
    """

    #: ``s3`` (MinIO, Ceph RGW, AWS) or empty for no store
    kind: Literal["", "s3"] = ""
    #: the S3 endpoint (e.g. ``http://minio.minio:9000``); empty means AWS
    endpoint: str = ""
    #: the bucket every user's objects are kept in
    bucket: str = ""
    #: each user's part of the bucket
    prefix: str = "labkit/{username}"
    #: the S3 region (empty: the client's default)
    region: str = ""
    #: check the endpoint's TLS certificate
    verify_tls: bool = True
    #: the Kubernetes Secret (in the runs namespace) holding the credentials, by name
    secret_name: str = ""
    #: the Secret's key holding the access key id
    access_key_key: str = "access-key"
    #: the Secret's key holding the secret access key
    secret_key_key: str = "secret-key"
    #: the pod's scratch directory (an emptyDir) where the recording and the result folder are made
    work_dir: str = "/work"

    @field_validator("endpoint", "secret_name", "work_dir")
    @classmethod
    def _checked(cls, value: str, info: Any) -> str:
        if info.field_name == "endpoint" and value and not re.match(r"^https?://[^/@\s]+(/.*)?$", value):
            raise ValueError("must be an http:// or https:// URL without credentials in it")
        if info.field_name == "secret_name" and value and not is_dns_label(value.replace(".", "-")):
            raise ValueError("must name a Kubernetes Secret (lowercase letters, digits, '-', '.')")
        if info.field_name == "work_dir" and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    def url(self, user: str | None = None) -> str:
        """``s3://bucket/prefix`` for ``user`` (None: the prefix as it is, already a user's)."""
        prefix = self.prefix
        if user is not None:
            from labkit.runners.cluster.names import store_prefix  # injective: no two hub names share a part
            prefix = store_prefix(prefix, user)
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def open(self, user: str | None = None) -> Any:
        """The user's :class:`~labkit.results.store.ArtifactStore` (boto3 is imported only now)."""
        if not self.kind or not self.bucket:
            raise SettingsError("No artifact store configured: set store.kind: s3, store.bucket and store.endpoint "
                                "in the cluster settings (LABKIT_CLUSTER_STORE__BUCKET=...)")
        from labkit.results.s3 import open_store

        return open_store(self.url(user), endpoint=self.endpoint, region=self.region, verify=self.verify_tls)


class ResourceSettings(_Group):
    """CPU and memory for the container (Kubernetes quantities, e.g. ``"2"``, ``"4Gi"``)."""

    #: guaranteed CPU cores
    cpu_request: str = "1"
    #: guaranteed memory
    memory_request: str = "2Gi"
    #: CPU cap (empty for none)
    cpu_limit: str = "2"
    #: memory cap; exceeding it kills the run (OOMKilled)
    memory_limit: str = "4Gi"

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if value and re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?", value) is None:
            raise ValueError("must be a Kubernetes quantity such as 2, 500m or 4Gi")
        return value


class SecuritySettings(_Group):
    """Pod security: run as the user's uid/gid so NFS permissions hold; never root."""

    #: uid the container runs as (the user's uid on the NFS server); None leaves the image's user
    run_as_user: Optional[int] = Field(1000, ge=0)
    #: gid the container runs as
    run_as_group: Optional[int] = Field(100, ge=0)
    #: supplementary group owning the mounted volume (ignored by NFS, honoured by most PVCs)
    fs_group: Optional[int] = Field(100, ge=0)
    #: refuse to start a container that would run as root
    run_as_non_root: bool = True
    #: seccomp profile type
    seccomp_profile: Literal["RuntimeDefault", "Unconfined", ""] = "RuntimeDefault"

    @model_validator(mode="after")
    def _not_root(self) -> "SecuritySettings":
        if self.run_as_non_root and self.run_as_user == 0:
            raise ValueError("run_as_user is 0 (root) while run_as_non_root is true")
        return self


class SchedulerSettings(_Group):
    """Which scheduler places the pods: Kubernetes' default or Volcano (with a queue)."""

    #: ``default`` or ``volcano``
    name: Literal["default", "volcano"] = "default"
    #: Volcano queue (``scheduling.volcano.sh/queue-name``); empty means Volcano's ``default``
    queue: str = ""
    #: Volcano PriorityClass name for the pods (empty for none)
    priority_class: str = ""
    #: a Volcano sweep's gang size (``minAvailable``): how many of its runs must start together
    min_available: int = Field(1, ge=1)

    @field_validator("queue", "priority_class")
    @classmethod
    def _dns(cls, value: str) -> str:
        if value and not is_dns_label(value):
            raise ValueError("must be a DNS label (lowercase letters, digits, '-'; at most 63)")
        return value


class HubSettings(_Group):
    """The hub service's fair-use limits (the defaults suit a lab hub of a few hundred users)."""

    #: log follows (``GET api/runs/<name>/log?follow=1``) one user may hold at once
    follows_per_user: int = Field(4, ge=1)
    #: long-polls (``?wait=``) one user may hold at once
    polls_per_user: int = Field(8, ge=1)
    #: threads streaming logs, for everyone (a follow beyond them is refused with 429)
    follow_threads: int = Field(64, ge=1)
    #: threads for short Kubernetes calls (submit, cancel, direct reads), never used by follows
    api_threads: int = Field(16, ge=1)
    #: the largest request body, in bytes
    max_body_bytes: int = Field(1 << 20, ge=1024)
    #: the deepest nesting of JSON arrays and objects in a body
    max_body_depth: int = Field(16, ge=4)
    #: what ``Retry-After`` says when a limit is reached, in seconds
    retry_after: int = Field(5, ge=1)
    #: how often a long answer (a log follow) asks the hub again whether the token is still good, seconds
    token_recheck_seconds: float = Field(30.0, gt=0)


class Profile(_Group):
    """An admin-defined choice users may pick by name (e.g. ``large-memory``, ``edge``)."""

    #: what users see when they choose
    description: str = ""
    #: resources instead of the defaults (None keeps the defaults)
    resources: Optional[ResourceSettings] = None
    #: node labels added to the pod's nodeSelector
    node_selector: dict[str, str] = Field(default_factory=dict)
    #: tolerations added to the pod's
    tolerations: tuple[dict[str, Any], ...] = ()
    #: the profile's Jobs use the artifact store instead of the share (nodes that cannot mount it)
    use_store: bool = False


class ClusterSettings(BaseSettings):
    """Everything labkit needs to turn a parameter set into a Job in a user's namespace."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      frozen=True)

    #: namespace the Jobs are created in; ``{user}`` allowed (e.g. ``jupyter-{user}``); empty means the
    #: hub pod's own namespace (its service account), else the kubeconfig context's, else ``default``
    namespace: str = ""
    #: container image holding labkit (its tag should be labkit's version)
    image: str = Field(default_factory=_default_image)
    #: ``IfNotPresent``, ``Always`` or ``Never``
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    #: names of registry Secrets for private images (referenced, never embedded)
    image_pull_secrets: tuple[str, ...] = ()
    #: service account the pod runs as (empty: the namespace's default)
    service_account: str = ""
    #: the user's storage
    storage: StorageSettings = Field(default_factory=StorageSettings)
    #: the artifact store (S3-compatible) for runs that cannot mount the share
    store: StoreSettings = Field(default_factory=StoreSettings)
    #: every Job uses the store instead of the share (a profile's ``use_store`` does it for its Jobs)
    use_store: bool = False
    #: CPU and memory
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    #: node labels the pod must land on
    node_selector: dict[str, str] = Field(default_factory=dict)
    #: tolerations, as Kubernetes dicts (``key``, ``operator``, ``value``, ``effect``)
    tolerations: tuple[dict[str, Any], ...] = ()
    #: admin-defined profiles users may choose by name
    profiles: dict[str, Profile] = Field(default_factory=dict)
    #: pod retries before the Job fails, for infrastructure failures (labkit's own failures are not retried)
    backoff_limit: int = Field(4, ge=0)
    #: wall-clock cap for the whole Job, seconds (None: no cap)
    active_deadline_seconds: Optional[int] = Field(6 * 3600, gt=0)
    #: finished Jobs are deleted this long after finishing, seconds (None: kept)
    ttl_seconds_after_finished: Optional[int] = Field(7 * 24 * 3600, ge=0)
    #: pod security
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    #: scheduler and queue
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    #: the hub service's per-user limits
    hub: HubSettings = Field(default_factory=HubSettings)
    #: a Job still pending after this many seconds is reported with the scheduler's reason
    pending_timeout: float = Field(600.0, gt=0)
    #: how long one watch request lasts before it is renewed, seconds
    watch_timeout: float = Field(60.0, gt=0)
    #: retries of one API call (connection errors, 5xx, 429) before giving up
    api_retries: int = Field(5, ge=0)
    #: cap on the wait between retries, seconds
    api_max_backoff: float = Field(30.0, ge=0)
    #: extra environment for the container (non-secret values only, e.g. ``LABKIT_BLAS_THREADS``)
    extra_env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _store_configured(self) -> "ClusterSettings":
        users = [n for n, p in self.profiles.items() if p.use_store] + (["use_store"] if self.use_store else [])
        if users and (self.store.kind != "s3" or not self.store.bucket):
            raise ValueError(f"{', '.join(users)} uses the artifact store, but store.kind is not s3 with a bucket")
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if value and not is_dns_label(value.replace("{user}", "u")):
            raise ValueError("must be a DNS label ({user} allowed)")
        return value

    @field_validator("image_pull_secrets", "service_account")
    @classmethod
    def _names(cls, value: Any) -> Any:
        for name in (value,) if isinstance(value, str) else value:
            if name and not is_dns_label(name):
                raise ValueError(f"must name Kubernetes objects (DNS labels): {name!r}")
        return value

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, value: dict[str, Profile]) -> dict[str, Profile]:
        for name in value:
            if not is_dns_label(name):
                raise ValueError(f"profile names must be DNS labels (e.g. large-memory): {name!r}")
        return value

    @field_validator("extra_env")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if any(word in key.upper() for word in _CREDENTIAL_WORDS):
                raise ValueError(f"must not carry credentials ({key}); use a Secret the admin mounts")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        path, environ = _SOURCES.get()
        return init_settings, MappingEnvSource(settings_cls, environ), _YamlFile(settings_cls, path)

    # -- construction -------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None,
             environ: Mapping[str, str] | None = None) -> "ClusterSettings":
        """Defaults, then the file (``path`` or ``$LABKIT_CLUSTER_CONFIG``), then ``LABKIT_CLUSTER_*``."""
        environ = dict(os.environ if environ is None else environ)
        path = path or environ.get(CONFIG_ENV) or None
        if path is not None:
            _read_file(path)  # a clear error for a missing or broken file
        _check_env_names(environ)
        token = _SOURCES.set((path, environ))
        try:
            return _explained(cls)
        finally:
            _SOURCES.reset(token)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClusterSettings":
        """Exactly these settings (nested plain data, as in the YAML file); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise SettingsError(f"Cluster settings must be a mapping, got {data!r}")
        token = _SOURCES.set((None, {}))  # no environment variables: exactly ``data``
        try:
            return _explained(lambda: cls.model_validate(dict(data)))
        finally:
            _SOURCES.reset(token)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ClusterSettings":
        return cls.from_dict(_read_file(path))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def replace(self, **changes: Any) -> "ClusterSettings":
        """A copy with some top-level settings changed (validated again)."""
        data = self.to_dict()
        data.update({k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in changes.items()})
        return self.from_dict(data)

    # -- per-user values ------------------------------------------------------
    def namespace_for(self, user: str) -> str:
        if "{user}" not in self.namespace:
            return self.namespace
        room = 63 - len(self.namespace.replace("{user}", ""))
        return self.namespace.replace("{user}", fit_slug(kubespawner_slug(user), user, max(room, 12)))

    def with_profile(self, name: str | None) -> "ClusterSettings":
        """These settings with the admin's profile ``name`` applied (None or empty: unchanged)."""
        if not name:
            return self
        profile = self.profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self.profiles)) or "none defined"
            raise SettingsError(f"Unknown profile {name!r}; the admin allows: {known}")
        changes: dict[str, Any] = {"node_selector": {**self.node_selector, **profile.node_selector},
                                   "tolerations": [*self.tolerations, *profile.tolerations]}
        if profile.resources is not None:
            changes["resources"] = profile.resources
        if profile.use_store:
            changes["use_store"] = True
        return self.replace(**changes)


# -- sources ---------------------------------------------------------------------------------
_SOURCES: contextvars.ContextVar[tuple[Any, Mapping[str, str] | None]] = contextvars.ContextVar(
    "labkit_cluster_settings_sources", default=(None, None))


class _YamlFile(PydanticBaseSettingsSource):
    """The settings file's ``cluster:`` section (or the whole file)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Any) -> None:
        super().__init__(settings_cls)
        self._data = _read_file(path) if path else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise SettingsError(f"Cannot read the cluster settings file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SettingsError(f"The cluster settings file {path} is not valid YAML/JSON: {err}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"The cluster settings file {path} must hold a mapping")
    section = data.get("cluster", data)
    if not isinstance(section, dict):
        raise SettingsError(f"The cluster settings file {path}: 'cluster' must be a mapping")
    return section


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    return dict(model.model_fields)


def _check_env_names(environ: Mapping[str, str]) -> None:
    """``LABKIT_CLUSTER_*`` variables must name settings (pydantic-settings would ignore a typo)."""
    for key in environ:
        if not key.upper().startswith(ENV_PREFIX) or key.upper() == CONFIG_ENV:
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        model: Any = ClusterSettings
        for i, part in enumerate(parts):
            fields = _field_names(model)
            if part not in fields:
                where = ".".join(parts[:i + 1])
                raise SettingsError(f"Unknown cluster setting {where!r} (from {key}); known here: "
                                    f"{', '.join(sorted(fields))}")
            annotation = fields[part].annotation
            inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)] or [annotation]
            model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if model is None:
                if i < len(parts) - 1:
                    raise SettingsError(f"{key}: {'.'.join(parts[:i + 1])} is not a group of settings")
                break


def _explained(build: Any) -> "ClusterSettings":
    """Run ``build``; a validation error becomes one SettingsError naming every location and value."""
    try:
        return build()
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "settings"
            message = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown cluster setting {where!r}")
            else:
                problems.append(f"{where}: {message} (got {e.get('input')!r})")
        raise SettingsError("Invalid cluster settings: " + "; ".join(problems)) from None
    except SettingsError:
        raise
    except ValueError as err:  # pydantic-settings' own parse errors (e.g. a JSON value that is not JSON)
        raise SettingsError(f"Invalid cluster settings: {err}") from None

