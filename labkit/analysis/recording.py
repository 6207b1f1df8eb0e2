"""Reading recordings: which files and folders are recordings, their header summary, and electrode positions.

One table decides what a recording is: MNE's own reader table (the formats
:func:`mne.io.read_raw` dispatches on), so the CLI, the form's chooser and the
server list and open exactly what MNE reads, files or folders (EGI ``.mff``, CTF
``.ds``), with case-insensitive extensions. Files that belong to another file
(BrainVision's ``.eeg`` data beside its ``.vhdr``, Curry's ``.dap``/``.rs3`` beside its
``.dat``) are not recordings of their own. Forms and validation need only the
header (:func:`describe`, :func:`preflight`); the analysis needs the data (:func:`read_raw`).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import mne
from mne.utils import verbose as mne_verbose

from labkit.analysis import upstream
from labkit.analysis.mnelog import quiet
from labkit.errors import ParameterError, RecordingError

if TYPE_CHECKING:  # pragma: no cover
    from labkit.params import IcaParams

logger = logging.getLogger(__name__)

#: formats MNE stores as a folder (``read_raw_egi`` and ``read_raw_ctf`` take the directory)
FOLDER_FORMATS = (".mff", ".ds")
#: extensions too generic to list (any text or MATLAB file would show up): read when named, never offered
GENERIC_EXTENSIONS = (".txt", ".mat")
#: extensions many programs write (text, MATLAB, raw binary, generic headers): a file MNE's reader for one of them
#: cannot open is most likely no recording at all, not a damaged one of that reader's format
SHARED_EXTENSIONS = GENERIC_EXTENSIONS + (".bin", ".dat", ".data", ".hdr", ".asc", ".lay", ".con", ".cnt")
#: BrainVision headers: a ``.eeg`` beside one of these is its data file, not Nihon Kohden's ``.EEG``
_BRAINVISION_HEADERS = (".vhdr", ".ahdr")
#: channel types MNE's ICA fits (``mne.preprocessing.ICA``: data channels and EOG; reference MEG is extra)
ICA_CHANNEL_TYPES = ("eeg", "mag", "grad", "seeg", "ecog", "dbs", "csd", "eog", "hbo", "hbr")
#: the fewest good channels worth an ICA (one channel has nothing to unmix)
MIN_CHANNELS = 2


@lru_cache(maxsize=1)
def standard_montage() -> str:
    """MNE 1.13 renamed standard_1005 (deprecated) to colin27_1005: whichever this MNE has. Asked when a montage
    is applied, not at import (``mne.channels`` imports scipy.linalg and FreeSurfer helpers: 0.13 s)."""
    return "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"


@lru_cache(maxsize=1)
def reader_table() -> dict[str, dict[str, Callable[..., mne.io.BaseRaw]]]:
    """Extension (lower case, with its dot) -> {format name: reader}, from MNE's own table.

    ``mne.io.read_raw`` has no public table; its private one (:func:`labkit.analysis.upstream.mne_reader_table`)
    is the source of truth when this MNE has it, so a new MNE format appears here without a labkit change.
    """
    table = upstream.mne_reader_table()
    if table is not None:
        return table
    io = mne.io  # MNE moved its table: the common formats
    return {".fif": {"FIF": io.read_raw_fif}, ".fif.gz": {"FIF": io.read_raw_fif},
            ".edf": {"EDF": io.read_raw_edf}, ".bdf": {"BDF": io.read_raw_bdf},
            ".gdf": {"GDF": io.read_raw_gdf}, ".vhdr": {"brainvision": io.read_raw_brainvision},
            ".set": {"EEGLAB": io.read_raw_eeglab}, ".mff": {"EGI": io.read_raw_egi},
            ".ds": {"CTF": io.read_raw_ctf}, ".eeg": {"NihonKoden": io.read_raw_nihon}}


def _extension(name: str) -> str | None:
    """The table's extension ``name`` ends with (longest first, any case), or None."""
    lower = name.lower()
    for ext in sorted(reader_table(), key=len, reverse=True):
        if lower.endswith(ext) and len(lower) > len(ext):
            return ext
    return None


def _siblings(path: Path) -> dict[str, str]:
    """Lower-cased names of the files beside ``path`` -> their real names."""
    try:
        return {p.name.lower(): p.name for p in path.parent.iterdir()}
    except OSError:
        return {}


def _is_nihon_kohden(path: Path) -> bool:
    """Whether a ``.eeg`` file carries a Nihon Kohden header (else it is BrainVision's data)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16).decode("ascii", "replace")
    except OSError:
        return False
    return re.fullmatch(r"(EEG|QI|DAE)-\w+\s*V\d\d\.\d\d", head) is not None


def recording_format(path: str | os.PathLike, *, generic: bool = False) -> str | None:
    """The MNE format name when ``path`` is a recording a researcher can pick, else None.

    The one rule every face uses: an extension in MNE's reader table (any case); folders
    only for the folder formats; hidden files and sidecars (a BrainVision ``.eeg`` data
    file, a later extension of the same reader with the same stem) are not recordings.
    ``.txt`` (BOXY) and ``.mat`` (FieldTrip) count only with ``generic=True`` (a path
    someone typed), so choosers do not offer every text file.
    """
    path = Path(path)
    name = path.name
    ext = _extension(name)
    if ext is None or name.startswith(".") or (ext in GENERIC_EXTENSIONS and not generic):
        return None
    is_dir = path.is_dir()
    if is_dir != (ext in FOLDER_FORMATS) or (not is_dir and path.exists() and not path.is_file()):
        return None
    kinds = reader_table()[ext]
    if ext == ".eeg" and not _is_nihon_kohden(path):
        return None  # BrainVision's binary data: its .vhdr is the recording
    stem = name[: -len(ext)].lower()
    siblings = _siblings(path)
    for other, readers in reader_table().items():
        if other == ext:
            break  # only extensions listed before this one can own it
        if set(readers.values()) & set(kinds.values()) and stem + other in siblings:
            return None
    return next(iter(kinds))


def is_recording(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a file or folder) is something to pick as a recording."""
    return recording_format(path) is not None


def find_recordings(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The recordings in ``folder`` (sorted, case-insensitive); folder recordings are not entered."""
    out: list[Path] = []
    try:
        children = sorted(Path(folder).iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return out
    for child in children:
        if is_recording(child):
            out.append(child)
        elif recursive and child.is_dir() and not child.name.startswith("."):
            out += find_recordings(child, recursive=True)
    return out


@dataclass(frozen=True)
class RecordingInfo:
    """What the header says: enough to bound a form and validate a parameter set."""

    path: str
    sfreq: float
    duration: float
    channel_counts: dict[str, int] = field(default_factory=dict)
    #: good (not marked bad) channels per type; None: every channel counts
    good_counts: dict[str, int] | None = None
    #: rank per type from the header (bad channels, projectors, Maxwell filtering); None: the good counts
    ranks: dict[str, int] | None = None
    #: time of the last sample (the latest crop end); None: ``duration``
    last_time: float | None = None

    @property
    def nyquist(self) -> float:
        return self.sfreq / 2.0

    @property
    def end(self) -> float:
        """The last sample's time: no crop can start at or after it."""
        return self.duration if self.last_time is None else self.last_time

    def count(self, channel_type: str) -> int:
        """Good channels of ``channel_type`` (``meg``: magnetometers plus gradiometers)."""
        counts = self.channel_counts if self.good_counts is None else self.good_counts
        if channel_type == "meg":
            return counts.get("mag", 0) + counts.get("grad", 0)
        return counts.get(channel_type, 0)

    def rank(self, channel_type: str) -> int:
        """The most components ICA can find in ``channel_type``: the rank of its good channels."""
        if self.ranks is None:
            return self.count(channel_type)
        if channel_type == "meg":
            return self.ranks.get("meg", self.ranks.get("mag", 0) + self.ranks.get("grad", 0))
        if channel_type in ("mag", "grad") and "meg" in self.ranks:  # Maxwell-filtered: one joint rank
            return min(self.count(channel_type), self.ranks["meg"])
        return self.ranks.get(channel_type, self.count(channel_type))

    @property
    def ica_types(self) -> dict[str, int]:
        """Channel types MNE's ICA can fit here, with at least two good channels (and rank): type -> count."""
        out = {t: self.count(t) for t in ICA_CHANNEL_TYPES
               if self.count(t) >= MIN_CHANNELS and self.rank(t) >= MIN_CHANNELS}
        if "mag" in out and "grad" in out:
            out = {"meg": out["mag"] + out["grad"], **out}
        return out


@mne_verbose
def read_raw(path: str | os.PathLike, *, preload: bool = False, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Open a recording with MNE's reader for its format; unreadable files become a :class:`RecordingError`."""
    path = Path(path)
    ext = _extension(path.name)
    if ext is None:
        raise RecordingError(f"Cannot read recording {path.name!r}: MNE reads no such format "
                             f"(known: {known_extensions()})")
    if ext == ".eeg" and not _is_nihon_kohden(path):
        raise RecordingError(f"{path.name!r} is the data file of a BrainVision recording: choose its .vhdr header")
    errors = []
    for kind, reader in reader_table()[ext].items():
        try:
            raw = reader(path, preload=preload)
        except Exception as err:  # MNE raises many types for corrupt files
            missing = _missing_package(err)
            if missing:
                raise RecordingError(f"Cannot read recording {path.name!r}: reading {kind} files needs the optional "
                                     f"package {missing!r}, which is not installed (pip install {missing})") from err
            errors.append((kind, err))
            continue
        truncated = truncation(raw, path)
        if truncated:
            raise RecordingError(f"Cannot read recording {path.name!r}: {truncated}; copy it again from where it "
                                 "was recorded")
        return raw
    kind, err = errors[0] if len(errors) == 1 else errors[-1]
    said = f"{type(err).__name__}: {err}" if str(err).strip() else type(err).__name__
    if ext in SHARED_EXTENSIONS:
        kinds = " or ".join(k for k, _ in errors)
        raise RecordingError(f"{path.name!r} is not a recording MNE reads: MNE opens {ext} files only as {kinds} "
                             f"recordings, and this file is not one ({said}). Recordings MNE reads end in "
                             f"{known_extensions()}") from err
    tried = "" if len(errors) == 1 else f" (tried {', '.join(k for k, _ in errors)})"
    raise RecordingError(f"Cannot read recording {path.name!r} as {kind}{tried}: {said}") from err


def known_extensions() -> str:
    """The extensions MNE reads, in one line, for messages."""
    return ", ".join(sorted(reader_table()))


#: bytes of a FIF tag's header (kind, type, size, next), before its data
_FIF_TAG_HEADER = 16
#: bytes per sample of an EEGLAB ``.fdt`` data file (float32)
_FDT_SAMPLE = 4


def truncation(raw: mne.io.BaseRaw, path: str | os.PathLike = "") -> str | None:
    """Why the recording's data files are shorter than its header says (``the file is truncated: ...``), or None.

    MNE reads a cut FIF or EEGLAB header happily and fails only when the data are loaded, with a reshape
    error that names no file; the header's own data size, compared with the file's, says it up front.
    Reads MNE's per-file reader state (``_raw_extras``): FIF data tag positions, EEGLAB channel and sample counts.
    """
    for extra, filename in zip(getattr(raw, "_raw_extras", ()), getattr(raw, "filenames", ()), strict=False):
        if not isinstance(extra, dict) or filename is None or str(filename).lower().endswith(".gz"):
            continue  # a gzipped FIF's tag positions count uncompressed bytes
        expected = None
        tags = [t for t in extra.get("ent") or () if t is not None]  # None: a skip (no data stored)
        if tags:
            expected = max(t.pos + _FIF_TAG_HEADER + t.size for t in tags)
        elif type(raw).__name__ == "RawEEGLAB" and extra.get("is_embedded") is False:
            expected = int(extra.get("orig_nchan", len(raw.ch_names))) * raw.n_times * _FDT_SAMPLE
        if expected is None:
            continue
        try:
            actual = os.path.getsize(filename)
        except OSError:
            continue
        if actual < expected:
            name = "" if Path(filename).name == Path(path).name else f" {Path(filename).name!r}"
            return f"the file{name} is truncated: the header expects {expected} bytes, the file has {actual}"
    return None


def _missing_package(err: BaseException) -> str | None:
    """The optional package a reader said it needs (MNE: "the module mffpy is needed"), if any."""
    if isinstance(err, ImportError) and err.name:
        return err.name.split(".")[0]
    found = re.search(r"module (\w+) is needed|requires? (?:the )?(?:package |module )?'?(\w+)'? to be installed",
                      str(err))
    return next((g for g in found.groups() if g), None) if found else None


@mne_verbose
def describe(path: str | os.PathLike, *, verbose: bool | str | None = "error") -> RecordingInfo:
    """Read only the header: sampling rate, duration, channel types, good counts and ranks."""
    raw = read_raw(path, preload=False)
    return info_of(raw, path)


def info_of(raw: mne.io.BaseRaw, path: str | os.PathLike = "") -> RecordingInfo:
    info = raw.info
    counts = Counter(raw.get_channel_types())
    bads = set(info["bads"])
    good = Counter(t for t, name in zip(raw.get_channel_types(), raw.ch_names, strict=True) if name not in bads)
    try:
        with quiet():
            ranks = {k: int(v) for k, v in mne.compute_rank(raw, rank="info").items()}
    except Exception:  # no rank from this header (exotic types): the good counts bound instead
        ranks = None
    return RecordingInfo(
        path=os.fspath(path),
        sfreq=float(info["sfreq"]),
        duration=float(raw.n_times / info["sfreq"]),
        channel_counts=dict(sorted(counts.items())),
        good_counts=dict(sorted(good.items())),
        ranks=ranks,
        last_time=float(raw.times[-1]) if raw.n_times else 0.0,
    )


def header_problems(params: "IcaParams", rec: RecordingInfo) -> list[ParameterError]:
    """Rules that need the recording's header: crop start, Nyquist, channel type, components."""
    problems: list[ParameterError] = []
    if params.crop_tmin >= rec.end:
        problems.append(ParameterError("crop_tmin", params.crop_tmin,
                                       f"a start before the recording ends ({rec.end:.3f} s)"))
    if params.filter_fmax >= rec.nyquist:
        problems.append(ParameterError("filter_fmax", params.filter_fmax,
                                       f"below the Nyquist frequency ({rec.nyquist:g} Hz)"))
    offered = rec.ica_types
    if params.channel_type not in offered:
        present = ", ".join(f"{t} ({n})" for t, n in offered.items()) or "none"
        problems.append(ParameterError(
            "channel_type", params.channel_type,
            f"a type present in the recording that ICA can fit with at least {MIN_CHANNELS} good channels: {present}"))
    else:
        rank = rec.rank(params.channel_type)
        if params.n_components > rank:
            count = rec.count(params.channel_type)
            why = f"the {count} picked {params.channel_type} channels" if rank == count else \
                f"the rank of the {count} good {params.channel_type} channels ({rank})"
            problems.append(ParameterError("n_components", params.n_components, f"at most {why}"))
    return problems


def preflight(params: "IcaParams") -> RecordingInfo:
    """Check everything knowable before any work (no folder, no kernel); return the header.

    Raises :class:`ParameterError` (exit 2) for a missing base directory, a missing file,
    a path leaving ``base_dir``, or values the recording cannot take; :class:`RecordingError`
    when MNE cannot read the recording.
    """
    path = params.raw_path()  # base_dir exists (never created), the recording exists inside it
    if recording_format(path, generic=True) is None:
        raise ParameterError("raw_file_path", params.raw_file_path,
                             f"a recording MNE reads ({known_extensions()})")
    info = describe(path)
    problems = header_problems(params, info)
    if problems:
        raise problems[0]
    return info


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
    montage = mne.channels.make_standard_montage(standard_montage())
    known = {n.lower() for n in montage.ch_names}
    unmatched = [n for n in names if n.lower() not in known]
    if unmatched:
        shown = ", ".join(unmatched[:8]) + (" ..." if len(unmatched) > 8 else "")
        return (
            f"the file has no electrode positions and {len(unmatched)} of {len(names)} EEG channel names "
            f"({shown}) are not in the {standard_montage()} montage, so positions cannot be inferred"
        )
    with quiet():
        raw.set_montage(montage, match_case=False, on_missing="ignore")
    logger.info("No electrode positions in the file: applied the %s montage by channel name", standard_montage())
    return None


def _meg_arg(channel_type: str) -> bool | str:
    return True if channel_type == "meg" else channel_type


def _has_positions(raw: mne.io.BaseRaw, picks) -> bool:
    import numpy as np

    locs = np.array([raw.info["chs"][i]["loc"][:3] for i in picks])
    return bool(np.all(np.isfinite(locs)) and np.all(np.abs(locs).sum(axis=1) > 0))
