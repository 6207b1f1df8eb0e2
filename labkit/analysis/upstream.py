"""The two private internals of other packages labkit relies on, each checked against the release it was written for.

Why each is here, and what happens when upstream changes:

* MNE's reader table, ``mne.io._read_raw._get_supported()`` (extension -> {format: reader}):
  :func:`mne.io.read_raw` dispatches on it and MNE has no public table, so labkit lists and opens
  exactly what MNE reads. Written for MNE 1.7-1.13. If it is missing or has another shape, a
  table of the common formats is used instead (:func:`reader_table`) and the log says so.
* mne-icalabel's ``_gdatav4`` (MATLAB's biharmonic ``griddata``, ICLabel's topographic feature),
  a Python loop over 1,024 grid points per component: most of a labelling's time. labkit's
  :func:`gdatav4` computes the same in one matrix product. It is put in
  place only around labkit's own ``label_components`` call (:func:`fast_topoplot`), and only when
  the installed mne-icalabel is a release it was written for (0.9-0.10) and still has the shape
  relied on (its features module calls ``_utils._gdatav4(x, y, v, xq, yq)``, ``_mergepoints2D``
  exists); otherwise mne-icalabel's own loop runs (slower, same labels) and the log says why.

``tests/test_labels.py`` and ``tests/test_recording*`` assert these shapes: an upstream change
fails a test rather than silently slowing or breaking a run.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from typing import Any, Callable, Iterator

import mne
import numpy as np

logger = logging.getLogger(__name__)

#: mne-icalabel releases whose ``iclabel.features`` / ``iclabel._utils`` this module was written against
ICALABEL_TESTED = ("0.9", "0.10")
#: MNE releases whose ``mne.io._read_raw._get_supported`` this module was written against
MNE_TESTED = tuple(f"1.{minor}" for minor in range(7, 14))
#: the parameters of ``_gdatav4`` the replacement takes
GDATAV4_PARAMETERS = ("x", "y", "v", "xq", "yq")

_swap = threading.Lock()


def _release(version: str) -> str:
    return ".".join(version.split(".")[:2])


def mne_reader_table() -> dict[str, dict[str, Callable[..., mne.io.BaseRaw]]] | None:
    """MNE's own table, lower-cased extensions, or None when this MNE has no such table (then: the fallback)."""
    if _release(mne.__version__) not in MNE_TESTED:
        logger.info("MNE %s is newer than the reader table labkit was checked against (%s); using it if it has "
                    "the same shape", mne.__version__, ", ".join(MNE_TESTED))
    try:
        from mne.io._read_raw import _get_supported

        table = _get_supported()
        out = {ext.lower(): dict(readers) for ext, readers in table.items()}
        if not out or not all(callable(r) for readers in out.values() for r in readers.values()):
            raise TypeError("not {extension: {format: reader}}")
        return out
    except Exception as err:
        logger.warning("MNE %s: no reader table at mne.io._read_raw._get_supported (%s: %s); listing the common "
                       "formats only", mne.__version__, type(err).__name__, err)
        return None


def _icalabel_loop() -> tuple[Any, Any] | None:
    """mne-icalabel's ``features`` module and its ``_gdatav4``, when the replacement fits this release; else None."""
    import mne_icalabel
    from mne_icalabel.iclabel import _utils, features

    version = getattr(mne_icalabel, "__version__", "?")
    loop = getattr(_utils, "_gdatav4", None)
    why = None
    if _release(version) not in ICALABEL_TESTED:
        why = f"mne-icalabel {version} is not a release labkit's interpolation was checked against ({', '.join(ICALABEL_TESTED)})"
    elif loop is None or getattr(features, "_gdatav4", None) is not loop or not hasattr(_utils, "_mergepoints2D"):
        why = f"mne-icalabel {version}'s ICLabel features no longer call _utils._gdatav4"
    elif tuple(inspect.signature(loop).parameters) != GDATAV4_PARAMETERS:
        why = f"mne-icalabel {version}'s _gdatav4 takes {tuple(inspect.signature(loop).parameters)}"
    if why:
        logger.info("%s: its own interpolation runs (slower, the same labels)", why)
        return None
    return features, loop


def gdatav4(x: np.ndarray, y: np.ndarray, v: np.ndarray, xq: np.ndarray, yq: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mne-icalabel's ``_gdatav4`` (MATLAB's biharmonic ``griddata``, ICLabel's topographic feature), with the
    grid evaluated in one matrix product instead of a Python loop over its 1,024 points.

    Same inputs, same outputs (equal to rounding; ``tests/test_labels.py`` compares the two): the loop took
    0.7 s of a 20-component labelling and 1.1 s of a 30-component one, most of the labelling's time.
    """
    from mne_icalabel.iclabel._utils import _mergepoints2D  # private too: checked by _icalabel_loop

    x, y, v = _mergepoints2D(x, y, v)
    xy = np.squeeze(x + 1j * y)

    def green(d: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.square(d) * (np.log(d) - 1)
        g[d <= 1e-8] = 0  # its value at zero distance (the loop's np.isclose(d, 0))
        return g

    weights = np.linalg.lstsq(green(np.abs(np.subtract.outer(xy, xy))), v, rcond=-1)[0]
    vq = green(np.abs((xq + 1j * yq)[..., np.newaxis] - xy)) @ np.ravel(weights)
    return xq, yq, vq


@contextlib.contextmanager
def fast_topoplot() -> Iterator[bool]:
    """Inside the block, ICLabel's features use :func:`gdatav4`; restored after it.

    Yields whether the replacement is in place. The swap is held under a lock, so two labellings
    in threads of one process never restore each other's.
    """
    with _swap:
        found = _icalabel_loop()
        if found is None:
            yield False
            return
        features, loop = found
        features._gdatav4 = gdatav4
        try:
            yield True
        finally:
            features._gdatav4 = loop
