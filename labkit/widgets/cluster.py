"""Cluster submission from the form, when this environment has one (the hub's labkit service, or cluster settings)."""

from __future__ import annotations

import os
from typing import Any

from labkit.params import IcaParams


def cluster_status() -> tuple[bool, str]:
    """Whether cluster submission is possible here (the hub's labkit service, or cluster settings),
    and a one-line reason when it is not."""
    if not os.environ.get("LABKIT_CLUSTER_CONFIG") and not os.environ.get("LABKIT_HUB_SERVICE_URL"):
        return False, ("No cluster configured (LABKIT_CLUSTER_CONFIG is not set, and no labkit hub service "
                       "in LABKIT_HUB_SERVICE_URL).")
    try:
        from labkit.runners.cluster.jobs import ClusterJobs  # noqa: F401
    except Exception as err:  # missing module or missing kubernetes client
        return False, f"Cluster support unavailable: {type(err).__name__}: {err}"
    return True, ""


def _cluster() -> Any:
    """The user's :class:`labkit.runners.cluster.jobs.ClusterJobs` (settings from ``LABKIT_CLUSTER_CONFIG``)."""
    from labkit.runners.hub import cluster_jobs

    return cluster_jobs()


def _describe_submission(sub: Any) -> str:
    """One line per run: a new Job, an identical Job attached to, or a finished result reused."""
    if sub.existing is not None:
        return f"{sub.run_id} (already done: {sub.existing.path.name})"
    return f"{sub.name} (attached to the identical job already submitted)" if sub.attached else sub.name


def _cluster_submit(params: IcaParams) -> str:
    return _describe_submission(_cluster().submit(params))


def _cluster_submit_sweep(sets: list[IcaParams]) -> list[str]:
    """The whole sweep at once: a Volcano Job when the scheduler is Volcano, else one Job per set."""
    return submit_sweep(_cluster(), sets)[1]


def submit_sweep(jobs: Any, sets: list[IcaParams]) -> tuple[Any, list[str]]:
    """Submit the sweep through ``jobs`` (a ClusterJobs or HubJobs): its SweepSubmission and one line per run."""
    sub = jobs.submit_sweep(sets)
    return sub, [_describe_submission(run) for run in sub.runs]


