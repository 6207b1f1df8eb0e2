"""Cluster errors: one :class:`ClusterError` family whose messages say what to do."""

from __future__ import annotations

from labkit.errors import ExitCode, LabkitError


class ClusterError(LabkitError):
    """Something went wrong talking to, or running on, the Kubernetes cluster."""

    exit_code = ExitCode.UNREACHABLE


class ClusterUnavailable(ClusterError):
    """The API server could not be reached or kept failing after the retries."""


class ClusterForbidden(ClusterError):
    """HTTP 401/403: the credentials or the service account's rights (k8s/labkit-service-rbac.yaml) do not allow it."""

    exit_code = ExitCode.NOT_ALLOWED


class ClusterInvalid(ClusterError):
    """HTTP 422: the API server (or an admission policy) found the object invalid; ``field`` names what."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ClusterNotFound(ClusterError):
    """HTTP 404: the Job (or pod) does not exist (any more)."""

    exit_code = ExitCode.NOT_FOUND


class ClusterConflict(ClusterError):
    """HTTP 409: an object with this name already exists."""


class NotYourJob(ClusterError):
    """The Job belongs to another user (its ``labkit.io/owner`` label differs)."""

    exit_code = ExitCode.NOT_ALLOWED


class SettingsError(ClusterError):
    """The cluster settings file or environment is invalid."""

    exit_code = ExitCode.BAD_INPUT


class ClusterGone(ClusterError):
    """HTTP 410: a watch's resource version expired; list again and resume."""
