"""Cluster errors: one :class:`ClusterError` family whose messages say what to do."""

from __future__ import annotations

from labkit.errors import LabkitError


class ClusterError(LabkitError):
    """Something went wrong talking to, or running on, the Kubernetes cluster."""

    exit_code = 5


class ClusterUnavailable(ClusterError):
    """The API server could not be reached or kept failing after the retries."""


class ClusterForbidden(ClusterError):
    """HTTP 403: the service account is not allowed to do this (see k8s/labkit-service-rbac.yaml)."""


class ClusterInvalid(ClusterError):
    """HTTP 422: the API server (or an admission policy) found the object invalid; ``field`` names what."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ClusterNotFound(ClusterError):
    """HTTP 404: the Job (or pod) does not exist (any more)."""


class ClusterConflict(ClusterError):
    """HTTP 409: an object with this name already exists."""


class NotYourJob(ClusterError):
    """The Job belongs to another user (its ``labkit.io/owner`` label differs)."""


class SettingsError(ClusterError):
    """The cluster settings file or environment is invalid."""


class ClusterGone(ClusterError):
    """HTTP 410: a watch's resource version expired; list again and resume."""
