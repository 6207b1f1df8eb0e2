"""The run's first steps: read and check the recording, keep the channels the analysis uses, band-pass.

Public functions take MNE's ``verbose`` (:func:`mne.utils.verbose`): a level for the call and
every MNE call inside it (see :mod:`labkit.analysis.mnelog`).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter

import mne
import numpy as np
from mne.utils import verbose as mne_verbose

from labkit.analysis import recording
from labkit.analysis.mnelog import quiet
from labkit.errors import RecordingError
from labkit.params import IcaParams

logger = logging.getLogger("labkit.analysis.ica")  # the run's log names the analysis, as it did


@mne_verbose
def load(params: IcaParams, *, verbose: bool | str | None = None, scoring: bool = True) -> mne.io.BaseRaw:
    """Read the recording, check the set against its header, crop (clamping the end), keep what the analysis uses, load.

    Only the analysed channels (and EOG/ECG, for ``scoring``) are loaded: a 64-channel
    recording with stimulus or auxiliary channels never holds those in memory.
    """
    return load_checked(params, scoring=scoring)[0]


@mne_verbose
def load_checked(params: IcaParams, *, verbose: bool | str | None = None, scoring: bool = True
                 ) -> tuple[mne.io.BaseRaw, recording.RecordingInfo]:
    """:func:`load`, and the header the set was checked against."""
    raw = recording.read_raw(params.raw_path(), preload=False)
    info = recording.info_of(raw, params.raw_path())
    check_against(params, info)
    tmax = params.crop_tmax
    last = raw.times[-1]
    if tmax is None or tmax > last:
        if tmax is not None:
            warnings.warn(f"crop_tmax {tmax:g} s is past the recording's end; clamped to {last:.3f} s", stacklevel=2)
        tmax = last
    raw.crop(tmin=params.crop_tmin, tmax=tmax)
    with quiet():
        raw.pick(kept_channels(raw.info, params.channel_type, scoring=scoring))
    raw.load_data()
    logger.info("loaded %s: %d channels (%s), %.1f s at %g Hz", params.raw_path().name, len(raw.ch_names),
                ", ".join(f"{t} {n}" for t, n in sorted(Counter(raw.get_channel_types()).items())),
                raw.times[-1], raw.info["sfreq"])
    return raw, info


def check_against(params: IcaParams, header: recording.RecordingInfo) -> None:
    """Raise the first reason the recording cannot take ``params`` (crop, Nyquist, channel type, rank)."""
    problems = recording.header_problems(params, header)
    if problems:
        raise problems[0]


def analysed_types(channel_type: str) -> tuple[str, ...]:
    """The channel types one ICA fits: ``meg`` is magnetometers and gradiometers, whitened together."""
    return ("mag", "grad") if channel_type == "meg" else (channel_type,)


def kept_channels(info: mne.Info, channel_type: str, *, scoring: bool = True) -> list[str]:
    """The good channels of the analysed types, EOG and ECG (if ``scoring``), and MEG reference channels if the
    recording's compensation needs them; everything else is dropped before loading."""
    types = set(analysed_types(channel_type)) | ({"eog", "ecg"} if scoring else set())
    if info["comps"]:
        types.add("ref_meg")
    bads = set(info["bads"])
    return [name for name, kind in zip(info["ch_names"], info.get_channel_types(), strict=True) if kind in types and name not in bads]


@mne_verbose
def preprocess(raw: mne.io.BaseRaw, params: IcaParams, *, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Band-pass every kept channel in place, so the header (and the saved ICA) records the filter the ICA saw."""
    raw.filter(params.filter_fmin, params.filter_fmax, picks="all", n_jobs=1)
    return raw


def check_finite(raw: mne.io.BaseRaw) -> None:
    """Refuse NaN or infinite samples before the fit, naming the channel and the time (MNE names neither)."""
    data = raw._data  # the loaded array itself: no copy of a long recording
    for i, row in enumerate(data):
        bad = ~np.isfinite(row)
        if bad.any():
            first = int(np.argmax(bad))
            raise RecordingError(
                f"channel {raw.ch_names[i]!r} holds {int(bad.sum())} NaN/infinite sample(s), the first at "
                f"{raw.times[first] + raw.first_time:.3f} s (value {row[first]}): mark the channel bad or crop around it")
