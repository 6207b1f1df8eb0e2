"""How the analysis sets MNE's log level: one rule, stated here rather than at 30 call sites.

MNE keeps one global log level, which a function's ``verbose`` sets for the call and everything
MNE does inside it. labkit's public analysis functions take ``verbose`` the way MNE's own do
(:func:`mne.utils.verbose`), and :func:`labkit.analysis.ica.run` sets it once, at its top, for
every step. The steps whose messages are about the data (reading, filtering, fitting, scoring,
the labelling copy's preprocessing) talk at that level: their warnings become the run's warnings.
Bookkeeping around them (saving and reading the ICA file, picks, the rank check, the figures,
the report) is :func:`quiet`: its messages are about files and drawings, never the outcome.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ContextManager, TypeVar

import mne

#: MNE's level for bookkeeping: errors only
QUIET = "error"

F = TypeVar("F", bound=Callable[..., Any])


def quiet() -> ContextManager[None]:
    """MNE at :data:`QUIET` inside the ``with`` block (restored afterwards)."""
    return mne.use_log_level(QUIET)


def quietly(fn: F) -> F:
    """``fn`` with MNE at :data:`QUIET` for the whole call (a bookkeeping step: files, figures, the report)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
