"""Reading recordings: any MNE-readable raw file, its header summary, and electrode positions.

Forms and validation need only the header (:func:`describe`); the analysis needs
the data (:func:`read_raw`). Both go through :func:`mne.io.read_raw` (FIF files straight
to :func:`mne.io.read_raw_fif`), so every format MNE reads (FIF, EDF/BDF, EEGLAB ``.set``,
BrainVision ``.vhdr``, ...) works.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import mne

from .errors import RecordingError

logger = logging.getLogger(__name__)

#: file endings MNE's ``read_raw`` understands, for file pickers
RAW_EXTENSIONS = (
    ".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".set", ".vhdr", ".cnt", ".mff", ".nxe", ".data", ".lay", ".eeg",
)
#: the recording file a picker should offer (``.eeg`` is BrainVision's data file, not its header)
PICKABLE_EXTENSIONS = tuple(e for e in RAW_EXTENSIONS if e != ".eeg")
#: MNE 1.13 renamed standard_1005 (deprecated) to colin27_1005; use whichever this MNE has
STANDARD_MONTAGE = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"


def is_recording(path: str | os.PathLike) -> bool:
    """Whether a file name looks like something a researcher can pick as a recording."""
    name = os.fspath(path).lower()
    return name.endswith(PICKABLE_EXTENSIONS) and not os.path.basename(name).startswith(".")


@dataclass(frozen=True)
class RecordingInfo:
    """What the header says: enough to bound a form and validate a parameter set."""

    path: str
    sfreq: float
    duration: float
    channel_counts: dict[str, int] = field(default_factory=dict)

    @property
    def nyquist(self) -> float:
        return self.sfreq / 2.0

    def count(self, channel_type: str) -> int:
        if channel_type == "meg":
            return self.channel_counts.get("mag", 0) + self.channel_counts.get("grad", 0)
        return self.channel_counts.get(channel_type, 0)


def read_raw(path: str | os.PathLike, *, preload: bool = False, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Open a recording with MNE; unreadable files become a :class:`RecordingError`."""
    path = Path(path)
    # FIF (MNE's own format) straight to its reader: the generic read_raw first imports every reader (0.1 s)
    reader = mne.io.read_raw_fif if path.name.lower().endswith((".fif", ".fif.gz")) else mne.io.read_raw
    try:
        return reader(path, preload=preload, verbose=verbose)
    except Exception as err:  # MNE raises many types for corrupt files
        raise RecordingError(f"Cannot read recording {path.name!r}: {type(err).__name__}: {err}") from err


def describe(path: str | os.PathLike, *, verbose: bool | str | None = "error") -> RecordingInfo:
    """Read only the header: sampling rate, duration and channel types with counts."""
    raw = read_raw(path, preload=False, verbose=verbose)
    return info_of(raw, path)


def info_of(raw: mne.io.BaseRaw, path: str | os.PathLike = "") -> RecordingInfo:
    counts = Counter(raw.get_channel_types())
    return RecordingInfo(
        path=os.fspath(path),
        sfreq=float(raw.info["sfreq"]),
        duration=float(raw.n_times / raw.info["sfreq"]),
        channel_counts=dict(sorted(counts.items())),
    )


def ensure_positions(raw: mne.io.BaseRaw, channel_type: str = "eeg") -> str | None:
    """Give EEG channels standard positions when their names allow; return why topomaps are impossible, or None.

    Positions already in the file win. Otherwise the standard 10-05 montage is
    applied when *every* picked channel's name matches it (case-insensitive); a
    partial match would put some channels nowhere, so it is reported instead.
    """
    if channel_type not in ("eeg", "meg", "mag", "grad"):
        return f"topomaps need EEG or MEG channels with positions; channel type {channel_type!r} has none"
    picks = mne.pick_types(raw.info, eeg=channel_type == "eeg",
                           meg=False if channel_type == "eeg" else _meg_arg(channel_type), exclude=[])
    if len(picks) == 0:
        return f"topomaps need EEG or MEG channels with positions; channel type {channel_type!r} has none"
    names = [raw.ch_names[i] for i in picks]
    if _has_positions(raw, picks):
        return None
    if channel_type != "eeg":
        return "the MEG channels in this file have no sensor positions"
    montage = mne.channels.make_standard_montage(STANDARD_MONTAGE)
    known = {n.lower() for n in montage.ch_names}
    unmatched = [n for n in names if n.lower() not in known]
    if unmatched:
        shown = ", ".join(unmatched[:8]) + (" ..." if len(unmatched) > 8 else "")
        return (
            f"the file has no electrode positions and {len(unmatched)} of {len(names)} EEG channel names "
            f"({shown}) are not in the {STANDARD_MONTAGE} montage, so positions cannot be inferred"
        )
    raw.set_montage(montage, match_case=False, on_missing="ignore", verbose="error")
    logger.info("No electrode positions in the file: applied the %s montage by channel name", STANDARD_MONTAGE)
    return None


def _meg_arg(channel_type: str) -> bool | str:
    return True if channel_type == "meg" else channel_type


def _has_positions(raw: mne.io.BaseRaw, picks) -> bool:
    import numpy as np

    locs = np.array([raw.info["chs"][i]["loc"][:3] for i in picks])
    return bool(np.all(np.isfinite(locs)) and np.all(np.abs(locs).sum(axis=1) > 0))
