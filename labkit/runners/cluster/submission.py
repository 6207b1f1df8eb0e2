"""What a submit did (:class:`Submission`, :class:`SweepSubmission`) and who submits (:func:`default_user`).

Shared by both cluster clients (Kubernetes directly and the hub service), so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence

from labkit.results.reading import RunResult
from labkit.runners.cluster.errors import ClusterError


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
    """Who submits: the hub's user (``JUPYTERHUB_USER``, set by JupyterHub), else ``LABKIT_USER``, else the login."""
    from labkit.settings import env

    user = os.environ.get("JUPYTERHUB_USER") or env().user or os.environ.get("USER") or ""
    if not user:
        raise ClusterError("Cannot tell who you are: set JUPYTERHUB_USER (or LABKIT_USER) to your hub user name; "
                           "labkit jobs, logs, cancel, submit and render also take --user NAME")
    return user


def stored_runs(store: Any = None, *, exclude: Sequence[str] = ()) -> list[Any]:
    """The runs kept in the artifact store (``store``, default the cluster settings') as
    :class:`~labkit.runners.backend.Run` s, to show beside this machine's and the cluster's: committed ones as
    they ended, an upload cut short as failed with why. ``exclude``: run ids already shown (fetched home).
    Empty when no store is configured."""
    from labkit.results.store import stored_results
    from labkit.runners.backend import run_of
    store = configured_store() if store is None else store
    if store is None:
        return []
    skip = set(exclude)
    return [dataclasses.replace(run_of(r, backend="store"), where=str(r.path))
            for r in stored_results(store) if r.run_id not in skip]


def configured_store(user: str | None = None) -> Any:
    """The cluster settings' artifact store for ``user`` (default: who submits), or None when none is configured.

    The settings are read only when a settings file (``LABKIT_CLUSTER_CONFIG``) or a
    ``LABKIT_CLUSTER_STORE__KIND`` variable exists, so a machine without a cluster pays nothing."""
    from labkit.runners.cluster.settings import CONFIG_ENV, ENV_PREFIX, ClusterSettings

    if not (os.environ.get(CONFIG_ENV) or os.environ.get(ENV_PREFIX + "STORE__KIND")):
        return None
    store = ClusterSettings.load().store
    return store.open(user or default_user()) if store.kind and store.bucket else None
