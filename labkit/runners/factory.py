"""Which backend runs here: :func:`choose_backend` looks at the environment and says why it chose."""

from __future__ import annotations

import os

from labkit.errors import LabkitError, ParameterError
from labkit.runners.backend import Backend


def choose_backend(base_dir: str | os.PathLike | None = None, *, environ: dict[str, str] | None = None,
                   prefer: str | None = None) -> tuple[Backend, str]:
    """The backend for this environment and why it was picked.

    A hub with the labkit service -> ``hub``; cluster settings (``$LABKIT_CLUSTER_CONFIG``
    or ``LABKIT_CLUSTER_*`` variables) -> ``cluster``; otherwise ``machine``. ``prefer``
    (``machine``, ``cluster``, ``hub``) overrides the choice.
    """
    env = dict(os.environ if environ is None else environ)
    if prefer not in (None, "machine", "cluster", "hub"):
        raise ParameterError("backend", prefer, "machine, cluster or hub")
    if prefer in (None, "hub"):
        from labkit.runners.hub import HubBackend, hub_service_url

        url = hub_service_url(env)
        if url:
            return HubBackend(url=url), f"hub: the lab hub's labkit service at {url}"
        if prefer == "hub":
            raise LabkitError("No labkit hub service found: set LABKIT_HUB_SERVICE_URL, or run inside a hub server")
    cluster_env = [k for k in env if k == "LABKIT_CLUSTER_CONFIG" or k.startswith("LABKIT_CLUSTER_")]
    if prefer == "cluster" or (prefer is None and cluster_env):
        from labkit.runners.cluster.backend import ClusterBackend

        why = f"cluster settings in {', '.join(sorted(cluster_env))}" if cluster_env else "asked for"
        return ClusterBackend(), f"cluster: Kubernetes directly ({why})"
    from labkit.runners.machine import MachineBackend

    base = os.path.abspath(base_dir or env.get("BASE_DIR") or ".")
    return MachineBackend(base), f"machine: runs on this machine under {base}"
