"""One exception family, so every face (CLI, widgets, server) converts errors in one place."""

from __future__ import annotations

import reprlib
from typing import Any, Iterable


class LabkitError(Exception):
    """Base class: the message tells a researcher what to change."""

    #: process exit code the CLI uses for this kind of error
    exit_code: int = 1


class ParameterError(LabkitError, ValueError):
    """A parameter value is not allowed; names the field, the value and what is allowed."""

    exit_code = 2

    def __init__(self, field: str, value: Any, allowed: str | Iterable[Any]) -> None:
        if not isinstance(allowed, str):
            allowed = "one of " + ", ".join(repr(a) for a in allowed)
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"Invalid value for the {field!r} parameter: got {_shown(value)}; allowed: {allowed}."
        )


    def tell_source(self, source: str) -> "ParameterError":
        """Say where the value came from (``environment variable ICA_METHOD``, ``--method``): the face's own name."""
        self.source = source
        self.args = (f"{self.args[0]} Given by {source}.",)
        return self


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 3, 80, 60, 80


def _shown(value: Any, limit: int = 100) -> str:
    """The value's repr, bounded (a 400-digit number, a 300-character id, a huge nested YAML document)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that raises (an int too long to print) must not hide the message
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-(limit // 2 - 10):]} ({len(text)} characters)"


class RecordingError(LabkitError):
    """The recording cannot be read or does not fit the analysis."""

    exit_code = 3


class RunFailed(LabkitError):
    """A run ended without a complete result; carries the folder where its log survives."""

    exit_code = 4

    def __init__(self, message: str, folder: Any = None) -> None:
        self.folder = folder
        super().__init__(message if folder is None else f"{message} (log and status in {folder})")


class RunCancelled(RunFailed):
    """The run was stopped (a cancel, SIGTERM, a deleted Job): recorded as ``cancelled``, not as a failure."""
