"""Cluster runs: a parameter set as a Kubernetes Job on the user's NFS directory.

Modules, by concern:

* :mod:`~labkit.runners.cluster.settings` - :class:`ClusterSettings`, configured once by an admin
  (YAML file, ``LABKIT_CLUSTER_*`` environment variables);
* :mod:`~labkit.runners.cluster.names` - Kubernetes names, labels and user directories (full-string checks);
* :mod:`~labkit.runners.cluster.manifests` - pure functions from (params, settings, user) to
  manifests: :func:`build_job` (``batch/v1`` Job), :func:`build_volcano_job` (a sweep);
* :mod:`~labkit.runners.cluster.api` - the one function every Kubernetes call goes through
  (retries, ``Retry-After``, typed errors);
* :mod:`~labkit.runners.cluster.status` - what a Job is doing, in words (pure: :func:`describe`);
* :mod:`~labkit.runners.cluster.follow` - watches and log streams that survive cuts, 410 and 5xx;
* :mod:`~labkit.runners.cluster.jobs` - :class:`ClusterJobs`: submit, read, list, cancel, results; sweeps
  (one Volcano Job, or one Job per set);
* :mod:`~labkit.cli.cluster` - ``labkit submit [--sweep] / jobs [--sweep] / logs / cancel / render``.
"""

from __future__ import annotations

from labkit.runners.cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterNotFound,
    ClusterUnavailable,
    NotYourJob,
)
from labkit.runners.cluster.manifests import build_job, build_volcano_job, job_name, sanitize_name
from labkit.runners.cluster.settings import ClusterSettings

_LAZY = {"ClusterJobs", "JobStatus", "Submission", "JobPendingTooLong", "describe", "SweepStatus", "SweepSubmission",
         "describe_volcano"}


def __getattr__(name: str):  # the API client is imported only when jobs are used
    if name in _LAZY:
        from labkit.runners.cluster import jobs

        return getattr(jobs, name)
    raise AttributeError(name)


__all__ = [
    "ClusterJobs", "JobStatus", "Submission", "JobPendingTooLong", "describe", "SweepStatus", "SweepSubmission",
    "describe_volcano",
    "ClusterError", "ClusterForbidden", "ClusterNotFound", "ClusterConflict", "ClusterUnavailable", "NotYourJob",
    "ClusterSettings", "build_job", "build_volcano_job", "job_name", "sanitize_name",
]
