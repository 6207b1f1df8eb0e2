"""The artifact store: recordings and result folders kept by key, for runs that see no shared directory.

One small interface (:class:`ArtifactStore`) with two implementations: :class:`DirStore` (a
directory, e.g. the user's) and :class:`labkit.results.s3.S3Store` (S3-compatible object storage:
MinIO, Ceph RGW, AWS). Everything above it works on either. Layout under the store's prefix::

    recordings/<sha256>/files/<name>    a recording's files (sidecars too), addressed by content
    recordings/<sha256>/manifest.json   written last, exclusively: the recording is stored once
    runs/<run_id>/uploads/<token>/...    a result folder being uploaded (never read as a result)
    runs/<run_id>/upload-<token>.json    that upload's marker: uploading (with heartbeats) or failed
    runs/<run_id>/manifest.json          the commit: folder name, file list, sizes, SHA-256

A reader sees a result only once its manifest exists. Credentials never pass through here:
the S3 client takes them from the environment (a Kubernetes Secret referenced by the Job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from labkit.errors import ExitCode, LabkitError, RecordingError
from labkit.results import states
from labkit.results.layout import FOLDER_PREFIX, PARAMS_FILE, PARTIAL, now, read_json, run_id_of
from labkit.results.liveness import checkpoint, heartbeat_interval, parse_time, stale_after
from labkit.results.provenance import fingerprint, recording_files
from labkit.results.reading import RunResult, load_run

MANIFEST = "manifest.json"
#: the variable holding a run's recording fingerprint (a store Job's, an Argo step's): its content is checked by it
RECORDING_SHA_ENV = "LABKIT_RECORDING_SHA256"
_CHUNK = 1 << 20


class StoreError(LabkitError):
    """The store cannot be reached or refused a request; the message names the store and the key."""


class NotStored(StoreError):
    """Nothing is stored under the key asked for."""

    exit_code = ExitCode.NOT_FOUND


class NotCommitted(StoreError):
    """The run has no manifest yet: it is uploading, or its upload failed or was cut short (the reason says)."""


class AlreadyHere(LabkitError):
    """The run's folder is already in the user's directory: it is never overwritten."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class CorruptObject(RecordingError):
    """A stored object's bytes do not match the SHA-256 recorded for it: refused, never used."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Objects by key (``/``-separated, relative to the store's own prefix)."""

    #: where the store is, for messages (never holds credentials)
    url: str

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Store ``path``'s bytes under ``key`` (the store checks them against ``sha256`` where it can)."""

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Store ``data``; with ``exclusive`` only if ``key`` is free. False: it was taken (nothing written)."""

    def get_file(self, key: str, dest: Path) -> str:
        """Write the object's bytes to ``dest`` and return their SHA-256 (:class:`NotStored` when there is none)."""

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes (:class:`NotStored` when there is none)."""

    def iter_bytes(self, key: str, chunk: int = _CHUNK) -> Iterator[bytes]:
        """The object's bytes in pieces, as they arrive (for passing them on without keeping them)."""

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (sorted)."""

    def delete(self, keys: list[str]) -> None: ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DirStore:
    """A store in a directory: keys are relative paths; writes are atomic (a temporary file renamed)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"key {key!r} leaves the store {self.url}")
        return path

    def _temp(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        return Path(tmp)

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        target = self._path(key)
        tmp = self._temp(target)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        target = self._path(key)
        tmp = self._temp(target)
        try:
            tmp.write_bytes(data)
            if not exclusive:
                os.replace(tmp, target)
                return True
            try:
                os.link(tmp, target)  # atomic and exclusive: exactly one writer makes the name
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> str:
        digest = hashlib.sha256()
        try:
            with self._path(key).open("rb") as src, dest.open("wb") as fh:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
        except FileNotFoundError:
            dest.unlink(missing_ok=True)
            raise NotStored(f"nothing stored under {key} in {self.url}") from None
        return digest.hexdigest()

    def iter_bytes(self, key: str, chunk: int = _CHUNK) -> Iterator[bytes]:
        """The object's bytes in pieces (:class:`NotStored` at the first ``next`` when there is none)."""
        try:
            with self._path(key).open("rb") as src:
                while piece := src.read(chunk):
                    yield piece
        except FileNotFoundError:
            raise NotStored(f"nothing stored under {key} in {self.url}") from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotStored(f"nothing stored under {key} in {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.endswith(".tmp"))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _read_json(store: ArtifactStore, key: str) -> dict[str, Any]:
    try:
        doc = json.loads(store.get_bytes(key))
    except ValueError as err:
        raise CorruptObject(f"{store.url}/{key} is not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise CorruptObject(f"{store.url}/{key} holds no JSON object")
    return doc


def _fetch_verified(store: ArtifactStore, key: str, dest: Path, sha256: str) -> None:
    """Download ``key`` to ``dest`` and check its SHA-256; a mismatch is refused by name (``dest`` removed)."""
    got = store.get_file(key, dest)
    if got != sha256:
        dest.unlink(missing_ok=True)
        raise CorruptObject(f"{store.url}/{key} is corrupted: its SHA-256 is {got}, the manifest says {sha256}; "
                            "refused (push or rerun it again)")


# -- recordings, by content -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    """What :func:`push_recording` did."""

    sha256: str
    files: tuple[str, ...]
    #: bytes this call uploaded (0 when the recording was stored already)
    uploaded: int


def recording_key(sha256: str) -> str:
    return f"recordings/{sha256}"


def name_key(name: str) -> str:
    """Where the fingerprint of the recording last pushed as ``name`` (relative to the user's directory) is kept."""
    return f"names/{name.strip('/')}.json"


def push_recording(store: ArtifactStore, path: str | os.PathLike, memo_dir: Path | None = None,
                   name: str | None = None) -> Pushed:
    """Store a recording (and its sidecar files) once, under its content fingerprint.

    Pushing it again uploads nothing; two concurrent pushes both upload the same bytes to the same
    keys, and exactly one of them writes the manifest (an exclusive write), so it is stored once.
    ``name`` (its path in the user's directory) is remembered for Jobs built where the recording is not
    visible (the hub service): their pod looks the fingerprint up by name.
    """
    path = Path(path).resolve()
    sha = fingerprint(path, memo_dir)
    files = recording_files(path)
    names = [str(f.relative_to(path.parent)) for f in files]
    base = recording_key(sha)
    if name:
        store.put_bytes(name_key(name), _json({"sha256": sha, "pushed": now()}))
    if store.exists(f"{base}/{MANIFEST}"):
        return Pushed(sha, tuple(names), 0)
    listed, uploaded = [], 0
    for f, name in zip(files, names, strict=True):
        digest = sha256_file(f)
        store.put_file(f"{base}/files/{name}", f, digest)
        size = f.stat().st_size
        uploaded += size
        listed.append({"name": name, "size": size, "sha256": digest})
    manifest = {"sha256": sha, "recording": path.name, "files": listed, "pushed": now()}
    store.put_bytes(f"{base}/{MANIFEST}", _json(manifest), exclusive=True)
    return Pushed(sha, tuple(names), uploaded)


def pushed_as(store: ArtifactStore, name: str) -> str:
    """The fingerprint of the recording last pushed as ``name`` (:class:`NotStored` when none was)."""
    try:
        sha = _read_json(store, name_key(name)).get("sha256")
    except NotStored:
        raise NotStored(f"no recording pushed as {name} in {store.url}: push it first (labkit push {name})") from None
    if not isinstance(sha, str) or len(sha) != 64:
        raise CorruptObject(f"{store.url}/{name_key(name)} names no SHA-256")
    return sha


def fetch_recording(store: ArtifactStore, sha256: str, folder: Path) -> Path:
    """Bring a pushed recording into ``folder`` and return the path of its main file, verified:
    each file against its SHA-256, the whole against the fingerprint ``sha256``."""
    base = recording_key(sha256)
    try:
        manifest = _read_json(store, f"{base}/{MANIFEST}")
    except NotStored:
        raise NotStored(f"no recording {sha256} in {store.url}: push it first (labkit push <recording>)") from None
    for entry in manifest["files"]:
        dest = folder / entry["name"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        _fetch_verified(store, f"{base}/files/{entry['name']}", dest, entry["sha256"])
    main = folder / manifest["recording"]
    got = fingerprint(main)
    if got != sha256:
        raise CorruptObject(f"the recording {manifest['recording']} fetched from {store.url}/{base} has the "
                            f"fingerprint {got}, not {sha256}; refused")
    return main


# -- result folders ---------------------------------------------------------------------------------------------
def run_key(run_id: str) -> str:
    return f"runs/{run_id}"


def _folder_files(folder: Path) -> list[Path]:
    """The files a result folder is: hidden ones (heartbeats, the reserve, temporary files) stay behind."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def upload_folder(store: ArtifactStore, folder: Path) -> dict[str, Any]:
    """Upload a finished result folder under a temporary prefix, then commit it with its manifest.

    While it uploads, a marker beats; a failure writes the marker as failed with the reason; a
    process killed mid-upload leaves a marker whose heartbeat stops (read as failed). The commit
    removes every other upload of the run, so a resubmitted run starts clean.
    """
    result = load_run(folder)
    run_id = result.run_id
    base, token = run_key(run_id), f"{now().replace(':', '')}-{secrets.token_hex(4)}"
    marker = f"{base}/upload-{token}.json"
    files = _folder_files(folder)
    info = {"state": "uploading", "token": token, "folder": folder.name, "files": len(files), "started": now()}
    store.put_bytes(marker, _json({**info, "heartbeat": now()}))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_interval()):
            with contextlib.suppress(Exception):
                store.put_bytes(marker, _json({**info, "heartbeat": now()}))

    beating = threading.Thread(target=beat, name=f"labkit-upload-{run_id}", daemon=True)
    beating.start()
    listed = []
    try:
        for i, f in enumerate(files):
            rel = f.relative_to(folder).as_posix()
            digest = sha256_file(f)
            store.put_file(f"{base}/uploads/{token}/{rel}", f, digest)
            listed.append({"name": rel, "size": f.stat().st_size, "sha256": digest})
            if i == 0:
                checkpoint("store-upload")  # tests stop the process here, after the first file
        manifest = {"run_id": run_id, "folder": folder.name, "upload": token, "files": listed, "committed": now(),
                    "status": result.status, "params": read_json(folder / PARAMS_FILE) or {},
                    "metrics": result.metrics}
        stop.set()
        beating.join()
        store.put_bytes(f"{base}/{MANIFEST}", _json(manifest))
    except BaseException as err:
        stop.set()
        with contextlib.suppress(Exception):
            store.put_bytes(marker, _json({**info, "state": states.FAILED, "heartbeat": now(),
                                           "reason": f"the upload stopped after {len(listed)} of {len(files)} "
                                                     f"files: {err}"}))
        raise
    stale = [k for k in store.keys(base + "/") if k != f"{base}/{MANIFEST}"
             and not k.startswith(f"{base}/uploads/{token}/")]
    store.delete(stale)  # earlier attempts' uploads and every marker: the manifest says it all
    return manifest


def _upload_state(store: ArtifactStore, run_id: str) -> tuple[str, str] | None:
    """A run without a manifest: (state, reason) from its newest upload marker, or None when it has none."""
    base = run_key(run_id)
    markers = sorted(k for k in store.keys(base + "/") if k.rsplit("/", 1)[-1].startswith("upload-"))
    if not markers:
        return None
    try:
        doc = _read_json(store, markers[-1])
    except (NotStored, CorruptObject):
        return states.FAILED, "its upload marker cannot be read"
    if doc.get("state") == states.FAILED:
        return states.FAILED, str(doc.get("reason") or "the upload failed")
    beat = parse_time(doc.get("heartbeat"))
    if beat is None or (dt.datetime.now(dt.timezone.utc) - beat).total_seconds() > stale_after():
        done = len(store.keys(f"{base}/uploads/{doc.get('token')}/"))
        return states.FAILED, (f"its upload was cut short ({done} of {doc.get('files')} files, last heard of at "
                               f"{doc.get('heartbeat')}): the pod was killed mid-upload; resubmit to run it again")
    return states.RUNNING, "uploading its result"


def stored_manifest(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """The committed manifest of ``run_id``; a run still uploading or cut short says so (never a partial result)."""
    try:
        return _read_json(store, f"{run_key(run_id)}/{MANIFEST}")
    except NotStored:
        found = _upload_state(store, run_id)
        if found is None:
            raise NotStored(f"no run {run_id!r} in {store.url}") from None
        state, reason = found
        raise NotCommitted(f"run {run_id} in {store.url} is {state}: {reason}") from None


def stored_result(store: ArtifactStore, manifest: dict[str, Any]) -> RunResult:
    """A committed run told as a :class:`RunResult` (its path names the store; its files are not here)."""
    from labkit.params import IcaParams

    doc = manifest.get("params") or {}
    params = None
    with contextlib.suppress(Exception):
        params = IcaParams.from_dict(doc["params"]) if "params" in doc else None
    return RunResult(path=Path(store.url) / run_key(manifest["run_id"]) / manifest["folder"],
                     status=dict(manifest.get("status") or {}), params=params,
                     metrics=dict(manifest.get("metrics") or {}))


def stored_results(store: ArtifactStore, told: dict[str, tuple[str, str]] | None = None) -> list[RunResult]:
    """Every run in the store as a :class:`RunResult`: committed ones as recorded, cut-short uploads as failed.

    The one listing of stored runs (``labkit runs``; :func:`labkit.runners.backend.stored_runs` for Runs).
    ``told``: for a store that lists runs rather than keys (the hub service's), each run id and the state and
    reason the service tells for it, used when it has no manifest."""
    run_ids = sorted(told) if told is not None else sorted({k.split("/")[1] for k in store.keys("runs/")
                                                            if k.count("/") >= 2})
    out = []
    for run_id in run_ids:
        try:
            out.append(stored_result(store, _read_json(store, f"{run_key(run_id)}/{MANIFEST}")))
            continue
        except NotStored:
            found = told[run_id] if told is not None else _upload_state(store, run_id)
        except CorruptObject as err:
            found = (states.FAILED, str(err))
        if found is not None:
            status = {"state": found[0], "error": {"reason": found[1]}, "run_id": run_id}
            path = Path(store.url) / run_key(run_id) / (FOLDER_PREFIX + run_id + PARTIAL)
            out.append(RunResult(path=path, status=status, params=None, metrics={}))
    return out


def fetch_run(store: ArtifactStore, run_id: str, base_dir: str | os.PathLike) -> Path:
    """Bring a committed result folder into ``base_dir``, verified, atomically (a hidden folder renamed into
    place), in the layout of a local run. A folder of that run already here is never overwritten."""
    manifest = stored_manifest(store, run_id)
    base = Path(base_dir)
    files = manifest.get("files")
    if not (isinstance(manifest.get("folder"), str) and isinstance(files, list) and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("sha256"), str)
            for e in files) and isinstance(manifest.get("upload"), str)):
        raise CorruptObject(f"{store.url}/{run_key(run_id)}/{MANIFEST} is not a result manifest (it needs folder, "
                            "upload and files with name and sha256)")
    folder = manifest["folder"]
    if run_id_of(folder) != run_id or "/" in folder:
        raise CorruptObject(f"{store.url}/{run_key(run_id)}/{MANIFEST} names the folder {folder!r}, not run {run_id}")
    for suffix in ("", ".failed", ".partial"):
        here = base / (FOLDER_PREFIX + run_id + suffix)
        if here.exists():
            raise AlreadyHere(f"run {run_id} is already here ({here}); not overwriting it", here)
    hidden = Path(tempfile.mkdtemp(dir=base, prefix=f".{folder}.fetching-"))
    try:
        for entry in manifest["files"]:
            dest = (hidden / entry["name"]).resolve()
            if hidden.resolve() not in dest.parents:
                raise CorruptObject(f"{store.url}/{run_key(run_id)}/{MANIFEST} lists {entry['name']!r}, "
                                    "outside the folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fetch_verified(store, f"{run_key(run_id)}/uploads/{manifest['upload']}/{entry['name']}", dest,
                            entry["sha256"])
        os.chmod(hidden, 0o755)
        try:
            os.rename(hidden, base / folder)
        except OSError:  # another fetch of the same run got there first
            if (base / folder).is_dir():
                raise AlreadyHere(f"run {run_id} is already here ({base / folder}); not overwriting it",
                                  base / folder) from None
            raise
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise
    return base / folder


__all__ = ["AlreadyHere", "ArtifactStore", "CorruptObject", "DirStore", "MANIFEST", "NotCommitted", "NotStored", "Pushed", "StoreError",
           "fetch_recording", "fetch_run", "pushed_as", "push_recording", "sha256_file", "stored_manifest",
           "stored_result", "stored_results", "upload_folder"]
