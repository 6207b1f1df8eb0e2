"""Shared preprocessing: a recording read, cropped and filtered once, then reused by every run that needs it.

Runs of a sweep that share the recording, crop, channel type and band-pass differ only
after filtering (method, components, seed), so the filtered recording is kept under the
user's directory, ``<base_dir>/.labkit-cache/<key>_raw.fif``, in double precision (a
cached run computes exactly what a fresh one does). The key holds the recording's
content fingerprint (:mod:`labkit.provenance`), the preprocessing parameters and the
labkit and MNE versions: a re-exported recording or an upgrade never reads stale data.

Safe with concurrent writers, also on NFS: an entry is written under a temporary name,
fsync'ed and renamed into place, so readers see a whole file or none; a lock file
(``O_EXCL``) lets the other runs wait for the first writer instead of filtering too.
Size-bounded: least recently used entries go when ``LABKIT_CACHE_MAX_BYTES`` (default
2 GiB) is exceeded. ``LABKIT_CACHE=off`` disables it; ``labkit cache info|clear``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from . import provenance
from .params import IcaParams

logger = logging.getLogger(__name__)

CACHE_DIRNAME = ".labkit-cache"
#: the parameters preprocessing depends on (with the recording's content)
PREPROCESS_FIELDS = ("crop_tmin", "crop_tmax", "channel_type", "filter_fmin", "filter_fmax")
DEFAULT_MAX_BYTES = 2 << 30
#: a lock older than this belongs to a writer that died; a waiter gives up waiting after it too
LOCK_STALE_S = 600.0
_SUFFIX = "_raw.fif"


def cache_dir(base_dir: str | os.PathLike) -> Path:
    return Path(base_dir) / CACHE_DIRNAME


def enabled() -> bool:
    return os.environ.get("LABKIT_CACHE", "on").strip().lower() not in ("0", "off", "false", "no")


def max_bytes() -> int:
    value = os.environ.get("LABKIT_CACHE_MAX_BYTES", "")
    try:
        return int(value) if value else DEFAULT_MAX_BYTES
    except ValueError:
        raise ValueError(f"Invalid value for LABKIT_CACHE_MAX_BYTES: got {value!r}; allowed: a number of bytes") \
            from None


def key(params: IcaParams) -> str:
    """What the preprocessed recording depends on, hashed: content, parameters, versions."""
    versions = provenance.versions()
    payload = {"recording": provenance.fingerprint(params.raw_path(), cache_dir(params.base_dir)),
               **{name: getattr(params, name) for name in PREPROCESS_FIELDS},
               "labkit": versions["labkit"], "mne": versions["mne"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class Cache:
    """The entries of one cache directory."""

    def __init__(self, directory: Path, limit: int | None = None) -> None:
        self.dir = Path(directory)
        self.limit = max_bytes() if limit is None else limit

    def path(self, entry: str) -> Path:
        return self.dir / f"{entry}{_SUFFIX}"

    def get(self, entry: str) -> Any:
        """The cached recording (preloaded), or None; a hit counts as a use for eviction."""
        import mne

        path = self.path(entry)
        try:
            raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
        except (FileNotFoundError, ValueError, OSError):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return raw

    def put(self, entry: str, raw: Any) -> None:
        """Store ``raw`` atomically (temporary name, fsync, rename), then keep the size bound."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}{_SUFFIX}"
        try:
            raw.save(tmp, fmt="double", overwrite=True, verbose="error")
            _fsync(tmp)
            os.replace(tmp, self.path(entry))
            _fsync(self.dir)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.evict()

    @contextlib.contextmanager
    def turn(self, entry: str, poll: float = 0.1) -> Iterator[bool]:
        """Wait while another process writes ``entry``; yield True when this one holds the lock."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = self.dir / f"{entry}.lock"
        deadline = time.monotonic() + LOCK_STALE_S
        while True:
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                break
            except FileExistsError:
                if self.path(entry).exists() or time.monotonic() > deadline or _age(lock) > LOCK_STALE_S:
                    yield False
                    return
                time.sleep(poll)
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def entries(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"*{_SUFFIX}") if not p.name.startswith(".")) \
            if self.dir.is_dir() else []

    def size(self) -> int:
        return sum(_size(p) for p in self.entries())

    def evict(self) -> list[Path]:
        """Remove least recently used entries until the cache fits its limit (and old leftovers)."""
        removed = []
        for tmp in self.dir.glob(f".tmp-*{_SUFFIX}"):
            if _age(tmp) > LOCK_STALE_S:  # a writer killed mid-write
                tmp.unlink(missing_ok=True)
        entries = sorted(self.entries(), key=lambda p: _mtime(p))
        total = sum(_size(p) for p in entries)
        while entries and total > self.limit:
            oldest = entries.pop(0)
            total -= _size(oldest)
            oldest.unlink(missing_ok=True)
            removed.append(oldest)
        return removed

    def info(self) -> dict[str, Any]:
        return {"directory": str(self.dir), "entries": len(self.entries()), "bytes": self.size(),
                "limit_bytes": self.limit, "enabled": enabled()}

    def clear(self) -> int:
        """Remove every entry (and remembered fingerprints); return how many entries there were."""
        count = len(self.entries())
        if self.dir.is_dir():
            shutil.rmtree(self.dir)
        return count


def preprocessed(raw: Any, params: IcaParams, preprocess: Callable[..., Any], *,
                 verbose: bool | str | None = None) -> Any:
    """``preprocess(raw, params)``'s result, from the cache when another run already computed it."""
    if not enabled():
        return preprocess(raw, params, verbose=verbose)
    try:
        store, entry = Cache(cache_dir(params.base_dir)), key(params)
        hit = store.get(entry)
        if hit is None:
            with store.turn(entry):
                hit = store.get(entry)  # the writer before us may have just finished
                if hit is None:
                    return _compute_and_store(store, entry, raw, params, preprocess, verbose)
        logger.info("filter: read from the cache (%s)", store.path(entry).name)
        return hit
    except OSError as err:  # a read-only or full directory: the run goes on uncached
        logger.warning("preprocessing cache unavailable (%s); filtering without it", err)
        return preprocess(raw, params, verbose=verbose)


def _compute_and_store(store: Cache, entry: str, raw: Any, params: IcaParams, preprocess: Callable[..., Any],
                       verbose: bool | str | None) -> Any:
    out = preprocess(raw, params, verbose=verbose)
    try:
        store.put(entry, out)
        logger.info("filter: stored in the cache as %s", store.path(entry).name)
    except OSError as err:
        logger.warning("preprocessing cache: could not store the filtered recording (%s)", err)
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
