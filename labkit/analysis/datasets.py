"""A demo EEG recording with known ground truth, made locally and deterministically.

Why: labkit must run out of the box where MNE's sample data cannot be downloaded,
and its ICA results must be checkable. :func:`make_demo_raw` builds a 60-channel
10-10 EEG recording (plus ``EOG1``, ``EOG2`` and ``ECG``) as a known linear mixture
of sources, so a test can ask whether ICA recovered the blink or the heartbeat.

The model (all values in volts, MNE's convention)::

    eeg  = truth["mixing"] @ truth["sources"] + independent sensor noise
    EOG1 = vertical EOG (blink, some saccade), EOG2 = horizontal EOG (saccade),
    ECG  = heartbeat, each plus a little line noise and its own sensor noise

Every row of ``truth["sources"]`` has unit standard deviation, so a column of
``truth["mixing"]`` is the source's topography in volts (one standard deviation).

Sources:

* brain: occipital alpha (~10 Hz), a left mu rhythm, sensorimotor beta bursts,
  frontal-midline theta and 24 slowly modulated 1/f background dipoles, each
  projected through an EEG forward model MNE computes on the spot (a spherical
  head fitted to the electrodes: no MRI, no download). There are more brain
  sources than a typical ``n_components``, as in real EEG; without them the
  surplus components are Gaussian sensor noise, on which FastICA often fails to converge;
* ``blink``: 0.2-0.4 s bumps every few seconds, ~100 uV at Fp1/Fp2, frontal;
* ``saccade``: step-like horizontal gaze shifts, antisymmetric (F7 vs F8);
* ``heartbeat``: PQRST complexes at ~1.1 Hz, R peak <= 25 uV on EEG, ~1 mV on ECG;
* ``line``: 50 Hz mains (with a 100 Hz harmonic), impedance-dependent per channel;
* ``drift``: a slow random walk on one EEG channel (:data:`DRIFT_CHANNEL`).

Eye and heart topographies come from current dipoles in an infinite homogeneous
medium (the eyes and heart lie outside the spherical head, so the sphere model
does not apply to them); that gives the right shapes (frontal fall-off, left-right
antisymmetry, a broad diagonal cardiac gradient) without claiming more precision than a demo needs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import mne
import numpy as np
from mne.utils import verbose as mne_verbose

from labkit.analysis.demo_model import (  # noqa: F401  (the model's names, where callers know them)
    ARTIFACT_NAMES,
    DRIFT_CHANNEL,
    ECG_CH_NAME,
    EEG_CH_NAMES,
    EOG_CH_NAMES,
    LINE_FREQ,
    make_demo_raw,
)
from labkit.analysis.mnelog import quiet
from labkit.params import SAMPLE_DATA_PATH

__all__ = [
    "DEMO_FILENAME",
    "TRUTH_SUFFIX",
    "EEG_CH_NAMES",
    "DRIFT_CHANNEL",
    "make_demo_raw",
    "write_demo",
    "load_truth",
    "sample_data_path",
    "demo_path",
    "LONG_FILENAME",
    "write_long",
]

#: where :func:`write_demo` puts the recording, relative to a base directory
DEMO_FILENAME = "labkit-demo/demo_raw.fif"
#: where :func:`write_long` puts the long recording, relative to a base directory
LONG_FILENAME = "labkit-long/long_raw.fif"
#: the ground truth sits beside the FIF: ``demo_raw.fif`` -> ``demo_raw_truth.npz``
TRUTH_SUFFIX = "_truth.npz"

def demo_path(base_dir: str | os.PathLike) -> Path:
    """Where the demo recording lives under ``base_dir`` (whether or not it exists yet)."""
    return Path(base_dir) / DEMO_FILENAME


def sample_data_path(base_dir: str | os.PathLike) -> Path | None:
    """MNE's sample recording at the prototype's default place under ``base_dir``, or None.

    Why: the template prefers real data when someone has put it there, and falls
    back to the demo otherwise; nothing is downloaded.
    """
    path = Path(base_dir) / SAMPLE_DATA_PATH
    return path if path.is_file() else None


def _truth_path(fif_path: str | os.PathLike) -> Path:
    fif_path = Path(fif_path)
    stem = fif_path.name
    for ext in (".fif.gz", ".fif"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    return fif_path.with_name(stem + TRUTH_SUFFIX)


def load_truth(fif_path: str | os.PathLike) -> dict[str, Any]:
    """Read the ground truth saved beside a demo FIF (same dict as :func:`make_demo_raw` returns)."""
    path = _truth_path(fif_path)
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth beside {fif_path}: expected {path}")
    with np.load(path, allow_pickle=False) as npz:
        truth = {key: npz[key] for key in npz.files}
    truth["sfreq"] = float(truth["sfreq"])
    if "drift_channel" in truth:
        truth["drift_channel"] = str(truth["drift_channel"])
    return truth


@mne_verbose
def write_demo(base_dir: str | os.PathLike, *, duration: float = 120.0, overwrite: bool = False,
               random_state: int = 42, verbose: bool | str | int | None = "WARNING") -> Path:
    """Write ``base_dir/labkit-demo/demo_raw.fif`` and its truth npz; return the FIF path.

    If both files exist and ``overwrite`` is False, return at once without checking
    that they match ``duration``/``random_state`` (the fast path the template takes on
    every run). Both files are written to temporary names in the same directory and
    renamed into place, truth first, so a FIF under the final name is always complete
    and has its truth beside it, even if several processes race.
    """
    path = demo_path(base_dir)
    truth_path = _truth_path(path)
    if not overwrite and path.is_file() and truth_path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw, truth = make_demo_raw(duration=duration, random_state=random_state, verbose=None)  # write_demo's level
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    tmp_fif = path.with_name(f".demo_tmp_{tag}_raw.fif")  # MNE wants raw FIF names to end in _raw.fif
    tmp_npz = path.with_name(f".demo_tmp_{tag}{TRUTH_SUFFIX}")
    try:
        with open(tmp_npz, "wb") as fh:  # a file object: np.savez must not rename it
            np.savez(fh, **truth)
        raw.save(tmp_fif, overwrite=True)
        os.replace(tmp_npz, truth_path)
        os.replace(tmp_fif, path)
    finally:
        for tmp in (tmp_fif, tmp_npz):
            tmp.unlink(missing_ok=True)
    return path


def write_long(base_dir: str | os.PathLike, *, minutes: float = 30.0, overwrite: bool = False,
               random_state: int = 42) -> Path:
    """Write ``base_dir/labkit-long/long_raw.fif``: the demo model for ``minutes``, 64 channels.

    Why: benchmarks need a recording of realistic length. It is the demo's 60 EEG, 2 EOG
    and ECG channels plus a stimulus channel marking the R peaks (``STI 014``), which the
    analysis must drop before loading. Written to a temporary name and renamed into place.
    """
    path = Path(base_dir) / LONG_FILENAME
    if path.is_file() and not overwrite:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw, truth = make_demo_raw(duration=minutes * 60.0, random_state=random_state)
    stim = np.zeros((1, raw.n_times))
    stim[0, np.clip(np.round(truth["r_peaks"] * raw.info["sfreq"]).astype(int), 0, raw.n_times - 1)] = 1
    tmp = path.with_name(f".long_tmp_{os.getpid()}_{uuid.uuid4().hex[:8]}_raw.fif")
    try:
        with quiet():
            raw.add_channels([mne.io.RawArray(stim, mne.create_info(["STI 014"], raw.info["sfreq"], "stim"))],
                             force_update_info=True)
            raw.save(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
