"""The ``LABKIT_*`` settings as a pydantic-settings model: imported on the first :func:`labkit.settings.env` call.

pydantic takes a quarter of a second to import; ``labkit --help`` or ``labkit runs`` should not pay it.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from labkit.errors import ParameterError, SettingError
from labkit.params import RUN_ID_ALLOWED, check_run_id
from labkit.settings import CACHE_WORDS, DEFAULT_CACHE_MAX_BYTES, ENV_PREFIX

_SECONDS = "a number of seconds greater than 0 and less than 1000000"


def _allowed(text: str) -> dict[str, Any]:
    return {"allowed": text}


class LabkitSettings(BaseSettings):
    """Every ``LABKIT_*`` variable that is not a cluster setting, typed; field ``x`` is ``LABKIT_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    #: the preprocessing cache under base-dir (``off`` disables it)
    cache: bool = Field(True, json_schema_extra=_allowed("on or off (also true/false, yes/no, 1/0)"))
    #: the cache's size limit; least recently used entries go beyond it
    cache_max_bytes: int = Field(DEFAULT_CACHE_MAX_BYTES, ge=0, le=2**62,
                                 json_schema_extra=_allowed("a whole number of bytes, 0 or more"))
    #: seconds between a working run's heartbeats
    heartbeat_s: float = Field(5.0, gt=0, lt=1e6, allow_inf_nan=False, json_schema_extra=_allowed(_SECONDS))
    #: seconds without a heartbeat after which a run on another host reads as dead
    stale_s: float = Field(60.0, gt=0, lt=1e6, allow_inf_nan=False, json_schema_extra=_allowed(_SECONDS))
    #: fault injection for tests: stop the process (SIGSTOP) at this named checkpoint
    pause_at: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$",
                          json_schema_extra=_allowed("a checkpoint name (letters, digits, '_', '.', '-')"))
    #: BLAS threads of a run started by ``labkit entrypoint`` (the container's command)
    blas_threads: int = Field(1, ge=1, le=1024, json_schema_extra=_allowed("a whole number from 1 to 1024"))
    #: the container image this process runs in (recorded in each result's provenance)
    image: str = Field("", json_schema_extra=_allowed("an image reference"))
    #: the run id a cluster Job gives its pods (a retried pod restarts its own folder)
    run_id: str = Field("", json_schema_extra=_allowed(RUN_ID_ALLOWED))
    #: who submits, when neither the hub (``JUPYTERHUB_USER``) nor the login says so
    user: str = Field("", json_schema_extra=_allowed("a user name"))
    #: the labkit hub service's URL (else the hub is asked where it is)
    hub_service_url: str = Field("", json_schema_extra=_allowed("an http:// or https:// URL"))
    #: the port the hub service listens on (else the port of ``JUPYTERHUB_SERVICE_URL``, else 8765)
    hub_service_port: int | None = Field(None, ge=1, le=65535, json_schema_extra=_allowed("a port number, 1 to 65535"))

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("cache", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in CACHE_WORDS:
                raise ValueError("on or off")
            return CACHE_WORDS[value]
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        if value:
            try:
                check_run_id(value)
            except ParameterError as err:
                raise ValueError(err.allowed) from None
        return value

    @field_validator("hub_service_url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = urlparse(value)
        if value and (url.scheme not in ("http", "https") or not url.netloc):
            raise ValueError("an http:// or https:// URL")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the variables come in through env(): a given mapping, else os.environ

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field (``cache_max_bytes`` -> ``LABKIT_CACHE_MAX_BYTES``)."""
        return ENV_PREFIX + field.upper()

    @classmethod
    def allowed(cls, field: str) -> str:
        """What a field's variable may hold, in words."""
        extra = cls.model_fields[field].json_schema_extra
        return str(extra["allowed"]) if isinstance(extra, dict) else "a valid value"

    def to_env(self) -> dict[str, str]:
        """The variables that give exactly these settings (defaults left out)."""
        out = {}
        for name, value in self.model_dump(exclude_defaults=True).items():
            out[self.variable(name)] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        return out


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``load(environ=...)``), else ``os.environ``.

    The source reads ``os.environ`` into its public ``env_vars`` when made; a given mapping takes its place,
    with the same case folding, empty-value and ``None`` rules.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        if environ is not None:
            values: dict[str, str | None] = {}
            for key, value in environ.items():
                if self.env_ignore_empty and value == "":
                    continue
                values[key if self.case_sensitive else key.lower()] = (
                    None if self.env_parse_none_str is not None and value == self.env_parse_none_str else value)
            self.env_vars = values


def load(mine: Mapping[str, str]) -> LabkitSettings:
    """The settings from these ``LABKIT_*`` variables; a bad value is a :class:`SettingError`."""
    source = MappingEnvSource(LabkitSettings, mine)
    try:
        return LabkitSettings(**source())
    except ValidationError as err:
        raise _refusal(err, mine) from None


def _refusal(err: ValidationError, given: Mapping[str, str]) -> SettingError:
    """The first bad variable, named with its value and what it may hold."""
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    variable = LabkitSettings.variable(field)
    return SettingError(variable, given.get(variable, first.get("input")), LabkitSettings.allowed(field))
