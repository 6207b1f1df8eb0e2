"""labkit's own environment variables (``LABKIT_*``, except the cluster's): one typed, checked object.

Read with :func:`env`, fresh from the environment each time (tests and the hub change it at run
time). Every value is parsed by its field's type; an empty variable means the default; a value
that is not allowed (``LABKIT_CACHE=of``, ``LABKIT_HEARTBEAT_S=soon``) is a
:class:`labkit.errors.SettingError` naming the variable, the value and what is allowed, never a
silent default. The fields are :class:`LabkitSettings` (``labkit.settings.model``, pydantic-settings,
imported on the first call). The cluster's ``LABKIT_CLUSTER_*`` variables are
:class:`labkit.runners.cluster.settings.ClusterSettings`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from labkit.settings.model import LabkitSettings

ENV_PREFIX = "LABKIT_"
#: prefixes of ``LABKIT_*`` variables that belong to someone else (the cluster settings)
OTHER_PREFIXES = ("LABKIT_CLUSTER_",)
#: the preprocessing cache's size limit when ``LABKIT_CACHE_MAX_BYTES`` is not set: 2 GiB
DEFAULT_CACHE_MAX_BYTES = 2 << 30
#: the words ``LABKIT_CACHE`` understands (any case); anything else is refused, not read as on
CACHE_WORDS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}

_last: tuple[tuple[tuple[str, str], ...], LabkitSettings] | None = None


def env(environ: Mapping[str, str] | None = None) -> LabkitSettings:
    """The settings from ``environ`` (default: ``os.environ``, read now); a bad value is a ``SettingError``.

    The last answer is reused while the ``LABKIT_*`` variables are the same (a heartbeat asks often).
    """
    global _last
    environ = os.environ if environ is None else environ
    mine = tuple(sorted((k.upper(), v) for k, v in environ.items()
                        if k.upper().startswith(ENV_PREFIX) and not k.upper().startswith(OTHER_PREFIXES)))
    last = _last
    if last is not None and last[0] == mine:
        return last[1]
    from labkit.settings.model import load

    settings = load(dict(mine))
    _last = (mine, settings)
    return settings


def __getattr__(name: str) -> Any:
    """``LabkitSettings`` and ``MappingEnvSource`` from ``labkit.settings.model``, imported when asked for."""
    if name in ("LabkitSettings", "MappingEnvSource"):
        from labkit.settings import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
