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
from mne.utils import verbose as mne_verbose

from labkit.analysis import upstream
from labkit.analysis.upstream import gdatav4  # noqa: F401  (where it was; the shim lives in upstream)

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


@mne_verbose
def labelling_copy(raw: mne.io.BaseRaw, network: str, *, verbose: bool | str | None = None) -> tuple[mne.io.BaseRaw, str]:
    """The network's preprocessing applied to ``raw`` (unfiltered, analysed channels only), and what was done."""
    nyquist = raw.info["sfreq"] / 2
    high = BAND[1] if BAND[1] < nyquist * 0.9 else round(nyquist * 0.9, 1)
    done = [f"band-pass {BAND[0]:g}-{high:g} Hz" + ("" if high == BAND[1] else
                                                    f" (not {BAND[1]:g} Hz: the recording's Nyquist is {nyquist:g} Hz)")]
    raw.filter(BAND[0], high, picks="all", n_jobs=1)
    if network == "iclabel":
        raw.set_eeg_reference("average")
        done.append("average reference")
    else:
        if raw.info["sfreq"] != MEGNET_SFREQ:
            raw.resample(MEGNET_SFREQ)
            done.append(f"resampled to {MEGNET_SFREQ:g} Hz")
    return raw, ", ".join(done)


@mne_verbose
def label(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, network: str, *,
          verbose: bool | str | None = None) -> dict[str, Any]:
    """Label every component: ``{"network", "labeller", "preprocessing", "labels": [{"component", "label",
    "probability"}]}`` (``labeller``: :func:`labeller`).

    ``raw`` is consumed (filtered, re-referenced or resampled in place): pass a copy made for labelling.
    """
    from mne_icalabel import label_components

    raw, done = labelling_copy(raw, network)
    if network == "megnet" and raw.n_times < MEGNET_MIN_SAMPLES:
        raise LabelsUnavailable(f"MEGnet needs at least {MEGNET_MIN_SAMPLES / MEGNET_SFREQ:g} s of data; "
                                f"the analysed span is {raw.times[-1]:.1f} s")
    with warnings.catch_warnings():
        # its advice to fit extended infomax is known and documented; every other warning is kept
        warnings.filterwarnings("ignore", message=".*was designed with extended infomax.*")
        warnings.filterwarnings("ignore", message=".*designed with.*infomax.*")
        with upstream.fast_topoplot():
            found = label_components(raw, ica, method=network)
    proba = np.asarray(found["y_pred_proba"], dtype=float)
    return {
        "network": network,
        "labeller": labeller(network),
        "preprocessing": done,
        "labels": [{"component": i, "label": str(lab), "probability": round(float(p), 4)}
                   for i, (lab, p) in enumerate(zip(found["labels"], proba, strict=True))],
    }


def labeller(network: str) -> dict[str, str]:
    """Which labeller made a run's labels: the network and the mne-icalabel release that ran it.

    Releases before 0.9.0 swap MEGnet's "eye blink" and "eye movement" (mne-icalabel#304): a
    run's labels say which release made them, so an old result can be told apart.
    """
    import mne_icalabel

    return {"network": network, "package": "mne-icalabel", "version": str(mne_icalabel.__version__)}


def excluded_by(labels: dict[str, Any] | None, threshold: float | None) -> list[int]:
    """Components whose artifact label reaches ``threshold`` (none without a threshold)."""
    if not labels or threshold is None:
        return []
    return [row["component"] for row in labels["labels"]
            if row["label"] not in KEEP_CLASSES and row["probability"] >= threshold]


class LabelsUnavailable(Exception):
    """The network cannot label this recording (too short, missing package); the run goes on with a warning."""
