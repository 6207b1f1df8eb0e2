"""One exception family, so every face (CLI, widgets, server) converts errors in one place,
and one table of exit codes, so a script can tell what went wrong whichever command or backend ran."""

from __future__ import annotations

import enum
import reprlib
from typing import Any, Iterable


class ExitCode(enum.IntEnum):
    """Every ``labkit`` command's exit code, for every backend (this machine, the cluster, the hub).

    2, 3 and 4 are also what a run's pod exits with: the Job's pod failure policy stops retrying on them.
    """

    #: the command did what it was asked
    OK = 0
    #: a labkit error of no kind below
    ERROR = 1
    #: a parameter, flag, file, setting or environment variable is not allowed
    BAD_INPUT = 2
    #: the recording cannot be read or does not fit the analysis
    BAD_RECORDING = 3
    #: a run (or a run of a sweep) ended without a complete result
    RUN_FAILED = 4
    #: the cluster or the labkit hub service cannot be reached or keeps failing
    UNREACHABLE = 5
    #: the cluster or the hub refused: credentials, permissions, someone else's run
    NOT_ALLOWED = 6
    #: the run, Job or sweep does not exist (any more)
    NOT_FOUND = 7
    #: the run was cancelled or the command interrupted (Ctrl-C, SIGTERM): 128 + SIGINT, as shells do
    CANCELLED = 130


class LabkitError(Exception):
    """Base class: the message tells a researcher what to change."""

    #: process exit code the CLI uses for this kind of error
    exit_code: int = ExitCode.ERROR


class ParameterError(LabkitError, ValueError):
    """A parameter value is not allowed; names the field, the value and what is allowed."""

    exit_code = ExitCode.BAD_INPUT

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


class SettingError(LabkitError, ValueError):
    """A ``LABKIT_*`` environment variable has a value that is not allowed (:mod:`labkit.settings`)."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, variable: str, value: Any, allowed: str) -> None:
        self.variable = variable
        self.value = value
        self.allowed = allowed
        super().__init__(f"Invalid value for the environment variable {variable}: got {_shown(value)}; "
                         f"allowed: {allowed}.")


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

    exit_code = ExitCode.BAD_RECORDING


class RunFailed(LabkitError):
    """A run ended without a complete result; carries the folder where its log survives."""

    exit_code = ExitCode.RUN_FAILED

    def __init__(self, message: str, folder: Any = None) -> None:
        self.folder = folder
        super().__init__(message if folder is None else f"{message} (log and status in {folder})")


class RunCancelled(RunFailed):
    """The run was stopped (a cancel, SIGTERM, a deleted Job): recorded as ``cancelled``, not as a failure."""

    exit_code = ExitCode.CANCELLED
