"""The one vocabulary of run states, so every reader, writer and face uses the same words.

A run's ``status.json`` holds one of :data:`STATES`. ``succeeded with warnings`` is how a
succeeded run with warnings is shown (:func:`display_state`), never stored; ``damaged`` is
what a reader says of a folder whose files cannot be read, never stored either.
"""

from __future__ import annotations

from typing import Sequence

from labkit.errors import ParameterError

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
#: every state a run's status.json may hold, in the order a run passes through them
STATES: tuple[str, ...] = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: a run whose owner still works on it (while that owner lives)
ACTIVE: tuple[str, ...] = (QUEUED, RUNNING)
#: a run that ended without a complete result: a sweep reruns it, nothing reads it as a result
STOPPED: tuple[str, ...] = (FAILED, CANCELLED)
#: the states after which a folder never changes again
FINISHED: tuple[str, ...] = (SUCCEEDED, *STOPPED)
#: how a succeeded run with warnings is shown (never stored)
WITH_WARNINGS = "succeeded with warnings"
#: what a reader reports for a folder whose files cannot be read (never stored)
DAMAGED = "damaged"
#: every word a reader may show for a run
SHOWN_STATES: tuple[str, ...] = (QUEUED, RUNNING, SUCCEEDED, WITH_WARNINGS, FAILED, CANCELLED, DAMAGED)


def check_state(state: str) -> str:
    """``state`` if it may be stored in a status.json, else an error naming the allowed states."""
    if state not in STATES:
        raise ParameterError("state", state, STATES)
    return state


def display_state(state: str, warnings: Sequence[str] = ()) -> str:
    """The state as shown: ``succeeded with warnings`` for a succeeded run with warnings, else ``state``."""
    return WITH_WARNINGS if state == SUCCEEDED and warnings else state
