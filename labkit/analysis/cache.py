"""Shared preprocessing: a recording read, cropped and filtered once, then reused by every run that needs it.

Runs of a sweep that share the recording, crop, channel type and band-pass differ only
after filtering (method, components, seed), so the loaded and filtered recording is kept
under the user's directory, ``<base_dir>/.labkit-cache/<key>_raw.fif``, in double
precision (a cached run computes exactly what a fresh one does), beside ``<key>.json``,
the notes of the run that computed it: the warnings reading and filtering gave (a clamped
crop, MNE's filter warnings) and the recording's header, so a run served from the cache
checks its parameters and reports its warnings as that run did. A hit skips
reading the recording as well as filtering it. The key holds the recording's content
fingerprint (:mod:`labkit.results.provenance`), the preprocessing parameters and the labkit, MNE,
SciPy and NumPy versions: a re-exported recording or an upgrade never reads stale data.

Safe with concurrent writers, also on NFS: an entry is written under a temporary name,
fsync'ed and renamed into place, so readers see a whole file or none; a lock file
(``O_EXCL``) lets the other runs wait for the first writer instead of filtering too.
Size-bounded: least recently used entries go when ``LABKIT_CACHE_MAX_BYTES`` (default
2 GiB) is exceeded. ``LABKIT_CACHE=off`` disables it; ``labkit cache info|clear``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labkit.params import IcaParams
from labkit.results import provenance
from labkit.results.layout import cache_dir, write_json
from labkit.settings import DEFAULT_CACHE_MAX_BYTES, env

logger = logging.getLogger(__name__)

#: the parameters preprocessing depends on (with the recording's content)
PREPROCESS_FIELDS = ("crop_tmin", "crop_tmax", "channel_type", "filter_fmin", "filter_fmax")
DEFAULT_MAX_BYTES = DEFAULT_CACHE_MAX_BYTES
#: a lock older than this belongs to a writer that died; a waiter gives up waiting after it too
LOCK_STALE_S = 600.0
_SUFFIX = "_raw.fif"
#: the last entry a process used stays in memory when it is at most this big: a sweep's warm kernel runs set
#: after set on the same data, and reading it back from disk (5-10 ms) costs more than its warm filter did
MEMORY_MAX_BYTES = 64 << 20
_recent: dict[Path, tuple[Any, dict[str, Any]]] = {}
_recent_lock = threading.Lock()
#: bumped when what an entry holds changes (2: the warnings beside the data; the recording read as well)
FORMAT = 2


def enabled() -> bool:
    """``LABKIT_CACHE`` (on unless ``off``; a typo is a :class:`labkit.errors.SettingError`)."""
    return env().cache


def max_bytes() -> int:
    """``LABKIT_CACHE_MAX_BYTES`` (default :data:`DEFAULT_MAX_BYTES`)."""
    return env().cache_max_bytes


def key(params: IcaParams) -> str:
    """What the preprocessed recording depends on, hashed: content, parameters, versions."""
    versions = provenance.versions()
    payload = {"recording": provenance.fingerprint(params.raw_path(), cache_dir(params.base_dir)),
               **{name: getattr(params, name) for name in PREPROCESS_FIELDS},
               "labkit": versions["labkit"], "mne": versions["mne"], "scipy": provenance.package_version("scipy"),
               "numpy": provenance.package_version("numpy"), "format": FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _remember(entry: Path, raw: Any, notes: dict[str, Any]) -> None:
    if raw._data.nbytes <= MEMORY_MAX_BYTES:  # a long recording is never held twice
        with _recent_lock:
            _recent.clear()
            _recent[entry] = (raw.copy(), copy.deepcopy(notes))


def _recall(entry: Path) -> tuple[Any, dict[str, Any]] | None:
    with _recent_lock:
        found = _recent.get(entry)
        return None if found is None else (found[0].copy(), copy.deepcopy(found[1]))


class Cache:
    """The entries of one cache directory."""

    def __init__(self, directory: Path, limit: int | None = None) -> None:
        self.dir = Path(directory)
        self.limit = max_bytes() if limit is None else limit

    def path(self, entry: str) -> Path:
        return self.dir / f"{entry}{_SUFFIX}"

    def notes_path(self, entry: str) -> Path:
        return self.dir / f"{entry}.json"

    def get(self, entry: str) -> tuple[Any, dict[str, Any]] | None:
        """The cached recording (preloaded) and its notes, or None; a hit counts as a use for eviction."""
        import mne

        path = self.path(entry)
        try:
            notes = json.loads(self.notes_path(entry).read_text())
            if not isinstance(notes, dict):
                return None
            raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
        except (FileNotFoundError, ValueError, OSError):  # missing, cut or damaged: a miss
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return raw, notes

    def put(self, entry: str, raw: Any, notes: dict[str, Any] | None = None) -> None:
        """Store ``raw`` and its notes atomically (temporary name, fsync, rename), then keep the size bound.

        The notes go first: whoever sees the data finds them beside it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.notes_path(entry), notes or {})
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

    def acquire(self, entry: str, poll: float = 0.1) -> bool:
        """Wait while another process writes ``entry``; True when this one now holds its lock (then :meth:`release`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = self._lock(entry)
        deadline = time.monotonic() + LOCK_STALE_S
        while True:
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                return True
            except FileExistsError:
                if self.path(entry).exists() or time.monotonic() > deadline or _age(lock) > LOCK_STALE_S:
                    return False
                time.sleep(poll)

    def release(self, entry: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._lock(entry).unlink()

    def _lock(self, entry: str) -> Path:
        return self.dir / f"{entry}.lock"

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
            oldest.with_name(oldest.name[:-len(_SUFFIX)] + ".json").unlink(missing_ok=True)
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


@dataclass
class Slot:
    """One run's place in the cache: what it found (``raw`` and its ``notes``) or the duty to :meth:`store`.

    ``source`` says where the run's preprocessed data came from: ``hit``, ``stored`` (computed
    and kept for the next runs), ``computed`` (not kept: the cache is off or unavailable).
    """

    source: str
    raw: Any = None
    notes: dict[str, Any] = field(default_factory=dict)
    store_in: "Cache | None" = None
    entry: str = ""
    writer: threading.Thread | None = field(default=None, repr=False)
    _mne_level: int = field(default=logging.NOTSET, repr=False)

    @property
    def hit(self) -> bool:
        return self.source == "hit"

    def store(self, raw: Any, notes: dict[str, Any]) -> None:
        """Write the entry in a thread, beside the run's next step (the fit reads ``raw`` and never changes it);
        the slot's exit waits for the write, so the entry's lock is held until the entry is whole."""
        if self.store_in is not None:
            self._mne_level = logging.getLogger("mne").level
            self.writer = threading.Thread(target=self._write, args=(self.store_in, _own_info(raw), notes),
                                           name="labkit-cache-store", daemon=True)
            self.writer.start()

    def wait(self) -> None:
        """Join the write; then MNE's log level is what it was before it (MNE sets and restores its one global
        level around calls, so a call in the writer interleaved with one here could leave another level behind,
        and hide warnings the run must tell)."""
        if self.writer is not None:
            self.writer.join()
            self.writer = None
            logging.getLogger("mne").setLevel(self._mne_level)

    def _write(self, store: Cache, raw: Any, notes: dict[str, Any]) -> None:
        try:
            store.put(self.entry, raw, notes)
            _remember(store.path(self.entry), raw, notes)
            self.source = "stored"
            logger.info("load and filter: stored in the cache as %s", store.path(self.entry).name)
        except OSError as err:
            logger.warning("preprocessing cache: could not store the filtered recording (%s)", err)


def _own_info(raw: Any) -> Any:
    """The same samples under an Info of their own (no copy of the data): MNE unlocks and relocks an Info
    around its own changes, so a save in the writer and the fit's channel picks must not share one."""
    view = copy.copy(raw)
    view.info = raw.info.copy()
    return view


@contextlib.contextmanager
def slot(params: IcaParams) -> Iterator[Slot]:
    """Look ``params``' preprocessing up; on a miss hold the entry while the body computes and stores it
    (the store's write is waited for on exit).

    Concurrent runs of the same entry wait for the first one instead of filtering too.
    A read-only or full directory, or ``LABKIT_CACHE=off``, gives a slot that stores nothing.
    """
    if not enabled():
        yield Slot("computed")
        return
    try:
        store, entry = Cache(cache_dir(params.base_dir)), key(params)
        # this process used the entry last (a sweep's warm kernel): no read, while the entry is on disk
        found = _recall(store.path(entry)) if store.path(entry).exists() else None
        memory, held = found is not None, False
        if found is None:
            found = store.get(entry)
            held = found is None and store.acquire(entry)
            if found is None:
                found = store.get(entry)  # the writer before us may have just finished
            if found is not None:
                _remember(store.path(entry), *found)
    except OSError as err:
        logger.warning("preprocessing cache unavailable (%s); reading and filtering without it", err)
        yield Slot("computed")
        return
    if found is not None:
        logger.info("load and filter: read from the cache (%s%s)", store.path(entry).name,
                    ", kept in memory" if memory else "")
    made = Slot("hit", raw=found[0], notes=found[1]) if found is not None else \
        Slot("computed", store_in=store, entry=entry)
    try:
        yield made
    finally:
        made.wait()
        if held:
            store.release(entry)


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
