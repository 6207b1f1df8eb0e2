"""A run's warnings and outcome: every warning caught once, and the ones labkit derives from the result.

A run with warnings is ``succeeded with warnings``, never plain ``succeeded``: :class:`WarningLog`
collects Python warnings and the ``mne`` logger's WARNING records, :func:`outcome_warnings` adds
labkit's own (no convergence, too few samples), :func:`bad_reasons` says why a component is excluded.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator

from labkit.params import IcaParams

logger = logging.getLogger("labkit.analysis.ica")  # the run's log (run.log) names the analysis, as it did

#: fewest samples per squared component for a trustworthy unmixing: half the 20 n^2 of Onton & Makeig's rule
#: of thumb for EEG (2006), so only clearly too short recordings are flagged
MIN_SAMPLES_PER_COMPONENT_SQUARED = 10


def _plain(message: Any) -> str:
    """A warning as one line of plain words (no category, no newlines)."""
    return " ".join(str(message).split())


class WarningLog:
    """Collects every warning of a run: Python warnings and the ``mne`` logger's WARNING records.

    Each is logged once (into ``run.log`` through the labkit logger) as it happens and kept in
    order, de-duplicated, for ``metrics.json`` and ``status.json``.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    #: not about the analysis: interpreter housekeeping (garbage-collected sockets, deprecations) goes to the log only
    IGNORED = (ResourceWarning, DeprecationWarning, PendingDeprecationWarning, ImportWarning)

    def add(self, message: Any) -> None:
        if isinstance(message, self.IGNORED):
            logger.debug("ignored %s: %s", type(message).__name__, message)
            return
        text = _plain(message)
        if text and text not in self.messages:
            self.messages.append(text)
            logger.warning("warning: %s", text)

    @contextlib.contextmanager
    def capturing(self) -> Iterator["WarningLog"]:
        log = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                log.add(record.getMessage())

        handler = _Handler(logging.WARNING)
        mne_logger = logging.getLogger("mne")
        mne_logger.addHandler(handler)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *args, **kwargs: self.add(message)
            try:
                yield self
            finally:
                mne_logger.removeHandler(handler)


def outcome_warnings(params: IcaParams, metrics: dict[str, Any]) -> list[str]:
    """Warnings labkit itself derives from the result: no convergence, too few samples for the components."""
    out = []
    if metrics.get("converged") is False:
        out.append(f"the {params.method} fit did not converge within max_iter={metrics.get('max_iter')} iterations: "
                   "components may be unreliable (raise max_iter or lower n_components)")
    needed = MIN_SAMPLES_PER_COMPONENT_SQUARED * metrics["n_components"] ** 2
    if metrics["n_samples"] < needed:
        out.append(f"the analysed span has {metrics['n_samples']} samples, fewer than the {needed} "
                   f"({MIN_SAMPLES_PER_COMPONENT_SQUARED} x {metrics['n_components']}^2) ICA needs for "
                   f"{metrics['n_components']} components: use a longer crop or fewer components")
    return out


def bad_reasons(metrics: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for kind in ("eog", "ecg"):
        for i in metrics.get(f"{kind}_suspects", []):
            out[int(i)] = (out[int(i)] + "+" if int(i) in out else "") + f"{kind.upper()} suspect"
    for i in metrics.get("excluded_by_labels", []):
        out.setdefault(int(i), "label at or above label_threshold")
    return out
