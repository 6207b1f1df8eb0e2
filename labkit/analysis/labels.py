"""Automatic component labels: ICLabel for EEG, MEGnet for MEG (both from mne-icalabel, on CPU with onnxruntime).

Labels are advice: they never exclude a component unless the run asks for it with
``label_threshold`` (exclude artifact classes at or above that probability). Each
network wants its own preprocessing, which is applied to a copy of the recording
used for labelling only (the fit and every figure keep the run's own band):

* ICLabel: average reference, 1-100 Hz (the upper edge lowered below Nyquist when needed);
* MEGnet: 1-100 Hz, resampled to 250 Hz, and at least 60 s of data.
"""

from __future__ import annotations

import warnings
from typing import Any

import mne
import numpy as np

ICLABEL_CLASSES = ("brain", "muscle artifact", "eye blink", "heart beat", "line noise", "channel noise", "other")
MEGNET_CLASSES = ("brain/other", "eye blink", "heart beat", "eye movement")
#: classes that are never excluded by a threshold
KEEP_CLASSES = ("brain", "brain/other", "other")
BAND = (1.0, 100.0)
MEGNET_SFREQ = 250.0
MEGNET_MIN_SAMPLES = 15_000  # MEGnet's own check: 60 s at 250 Hz


def network_for(channel_type: str) -> str | None:
    """``iclabel`` for EEG, ``megnet`` for MEG, None where neither network applies."""
    if channel_type == "eeg":
        return "iclabel"
    if channel_type in ("meg", "mag", "grad"):
        return "megnet"
    return None


def labelling_copy(raw: mne.io.BaseRaw, network: str, *, verbose: bool | str | None = None) -> tuple[mne.io.BaseRaw, str]:
    """The network's preprocessing applied to ``raw`` (unfiltered, analysed channels only), and what was done."""
    nyquist = raw.info["sfreq"] / 2
    high = BAND[1] if BAND[1] < nyquist * 0.9 else round(nyquist * 0.9, 1)
    done = [f"band-pass {BAND[0]:g}-{high:g} Hz" + ("" if high == BAND[1] else
                                                    f" (not {BAND[1]:g} Hz: the recording's Nyquist is {nyquist:g} Hz)")]
    raw.filter(BAND[0], high, picks="all", n_jobs=1, verbose=verbose)
    if network == "iclabel":
        raw.set_eeg_reference("average", verbose=verbose)
        done.append("average reference")
    else:
        if raw.info["sfreq"] != MEGNET_SFREQ:
            raw.resample(MEGNET_SFREQ, verbose=verbose)
            done.append(f"resampled to {MEGNET_SFREQ:g} Hz")
    return raw, ", ".join(done)


def label(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, network: str, *,
          verbose: bool | str | None = None) -> dict[str, Any]:
    """Label every component: ``{"network", "preprocessing", "labels": [{"component", "label", "probability"}]}``.

    ``raw`` is consumed (filtered, re-referenced or resampled in place): pass a copy made for labelling.
    """
    from mne_icalabel import label_components

    _vectorize_topoplot()
    raw, done = labelling_copy(raw, network, verbose=verbose)
    if network == "megnet" and raw.n_times < MEGNET_MIN_SAMPLES:
        raise LabelsUnavailable(f"MEGnet needs at least {MEGNET_MIN_SAMPLES / MEGNET_SFREQ:g} s of data; "
                                f"the analysed span is {raw.times[-1]:.1f} s")
    with warnings.catch_warnings():
        # its advice to fit extended infomax is known and documented; every other warning is kept
        warnings.filterwarnings("ignore", message=".*was designed with extended infomax.*")
        warnings.filterwarnings("ignore", message=".*designed with.*infomax.*")
        found = label_components(raw, ica, method=network)
    proba = np.asarray(found["y_pred_proba"], dtype=float)
    return {
        "network": network,
        "preprocessing": done,
        "labels": [{"component": i, "label": str(lab), "probability": round(float(p), 4)}
                   for i, (lab, p) in enumerate(zip(found["labels"], proba, strict=True))],
    }


def gdatav4(x: np.ndarray, y: np.ndarray, v: np.ndarray, xq: np.ndarray, yq: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mne-icalabel's ``_gdatav4`` (MATLAB's biharmonic ``griddata``, ICLabel's topographic feature), with the
    grid evaluated in one matrix product instead of a Python loop over its 1,024 points.

    Same inputs, same outputs (equal to rounding; ``tests/test_labels.py`` compares the two): the loop took
    0.7 s of a 20-component labelling and 1.1 s of a 30-component one, most of the labelling's time.
    """
    from mne_icalabel.iclabel._utils import _mergepoints2D

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


def _vectorize_topoplot() -> None:
    """Point ICLabel's features at :func:`gdatav4`. Nothing is replaced unless mne-icalabel's features still use
    its own ``_gdatav4`` (a release that changes this leaves it alone, and the tests that compare the two fail)."""
    from mne_icalabel.iclabel import _utils, features

    loop = getattr(_utils, "_gdatav4", None)
    if loop is not None and getattr(features, "_gdatav4", None) is loop:
        features._gdatav4 = gdatav4


def excluded_by(labels: dict[str, Any] | None, threshold: float | None) -> list[int]:
    """Components whose artifact label reaches ``threshold`` (none without a threshold)."""
    if not labels or threshold is None:
        return []
    return [row["component"] for row in labels["labels"]
            if row["label"] not in KEEP_CLASSES and row["probability"] >= threshold]


class LabelsUnavailable(Exception):
    """The network cannot label this recording (too short, missing package); the run goes on with a warning."""
