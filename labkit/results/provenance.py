"""Run identity beyond the parameters: what the recording contains and what code analysed it.

A finished result is reused for a parameter set only when its provenance matches the
current one: the recording's content fingerprint (a re-exported file with the same
name is a different recording), the labkit, MNE and picard versions, and the container
image on the cluster (``LABKIT_IMAGE``). It is recorded in ``params.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from labkit.params import IcaParams
from labkit.results.folder import RunFolder
from labkit.results.layout import PARAMS_FILE, cache_dir, write_json
from labkit.settings import env

logger = logging.getLogger(__name__)

#: the distributions whose version is part of a result's identity
PACKAGES = ("labkit", "mne", "python-picard")
#: where fingerprints are remembered by (path, size, mtime), under the cache directory
FINGERPRINTS_FILE = "fingerprints.json"
_CHUNK = 1 << 20


def versions() -> dict[str, str]:
    return {dist: package_version(dist) for dist in PACKAGES}


@functools.lru_cache(maxsize=None)
def package_version(dist: str) -> str:
    """A distribution's version, looked up once per process: what it imported (a lookup parses metadata, ~1 ms)."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def recording_files(path: Path) -> list[Path]:
    """The files a recording consists of: a folder's files (.mff, .ds), or the file and its same-stem
    siblings (BrainVision's .vhdr/.vmrk/.eeg, EEGLAB's .set/.fdt)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        raise FileNotFoundError(f"recording not found: {path}")
    stem = path.name.split(".")[0]
    return sorted({path, *(p for p in path.parent.glob(stem + ".*") if p.is_file())})


def fingerprint(path: str | os.PathLike, memo_dir: Path | None = None) -> str:
    """SHA-256 of the recording's bytes (all its files), remembered by (path, size, mtime) in ``memo_dir``."""
    path = Path(path).resolve()
    files = recording_files(path)
    stat_key = [[str(f.relative_to(path.parent)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    memo_file = memo_dir / FINGERPRINTS_FILE if memo_dir else None
    memo = _read_memo(memo_file)
    known = memo.get(str(path))
    if known and known.get("stat") == stat_key:
        return known["sha256"]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    sha = digest.hexdigest()
    if memo_file is not None:
        memo[str(path)] = {"stat": stat_key, "sha256": sha}
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(memo_file, memo)  # unique temporary name, fsync, rename: safe with other writers
        except OSError:
            pass  # a read-only directory only costs the next caller a re-hash
    return sha


def _read_memo(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def current(params: IcaParams) -> dict[str, Any]:
    """The provenance a run of ``params`` would have now (the recording is read, not imported)."""
    return {"recording_sha256": fingerprint(params.raw_path(), cache_dir(params.base_dir)),
            "versions": versions(), "image": env().image or None}


def recorded(result_path: Path) -> dict[str, Any] | None:
    """The provenance stored in a result folder's ``params.json`` (None for runs made before it was)."""
    try:
        doc = json.loads((result_path / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc.get("provenance")


def record(folder: RunFolder, provenance: dict[str, Any]) -> None:
    """Add ``provenance`` to the folder's ``params.json`` (atomically)."""
    path = folder.file(PARAMS_FILE)
    doc = json.loads(path.read_text())
    doc["provenance"] = provenance
    write_json(path, doc)


def record_current(params: IcaParams, folder: RunFolder) -> None:
    """Record what a run of ``params`` starts from now; a recording that cannot be read leaves the run to say why."""
    from labkit.errors import LabkitError

    try:
        record(folder, current(params))
    except (OSError, LabkitError) as err:
        logger.info("no provenance for run %s: %s", folder.run_id, err)


def mismatch(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why a result with provenance ``old`` is not a result for ``new`` (None: it is)."""
    if not old:
        return "no provenance recorded (made before labkit recorded it)"
    reasons = []
    if old.get("recording_sha256") != new.get("recording_sha256"):
        reasons.append("the recording's content changed")
    old_v, new_v = old.get("versions") or {}, new.get("versions") or {}
    reasons += [f"{name} {old_v.get(name)} -> {new_v.get(name)}" for name in PACKAGES
                if old_v.get(name) != new_v.get(name)]
    if old.get("image") != new.get("image"):
        reasons.append(f"image {old.get('image')} -> {new.get('image')}")
    return "; ".join(reasons) or None
