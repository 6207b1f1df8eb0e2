"""What a submit did (:class:`Submission`, :class:`SweepSubmission`) and who submits (:func:`default_user`).

Shared by both cluster clients (Kubernetes directly and the hub service), so neither imports the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

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
