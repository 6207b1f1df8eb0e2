"""The hub service's view of a user's artifact store: their stored runs, listed and brought home.

* ``GET api/stored`` - my runs in the store (committed ones as they ended, cut-short uploads as failed);
* ``GET api/stored/<run_id>/manifest.json`` - the run's committed manifest (404 when there is none,
  409 while it uploads or once its upload was cut short);
* ``GET api/stored/<run_id>/uploads/<upload>/<file>`` - one file the manifest lists, streamed.

A user's server may hold no store credentials: the service holds them and reads only under the
prefix of the hub name behind the request's token (:func:`~labkit.runners.cluster.names.store_prefix`,
injective), so another user's run id finds nothing (404, whatever is stored under it elsewhere). Nothing here
checks the bytes: the client verifies each file against the manifest's SHA-256 as it writes it
(:func:`labkit.results.store.fetch_run`), exactly as a direct ``labkit fetch`` does.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from labkit.errors import ParameterError
from labkit.hub.bodies import BodyError
from labkit.params import check_run_id
from labkit.results.store import MANIFEST, NotCommitted, NotStored, StoreError, run_key, stored_manifest
from labkit.runners.cluster.errors import ClusterConflict, ClusterError, ClusterNotFound

#: how long a user's listing of stored runs is answered from memory
LIST_SECONDS = 5.0


def _run_id(run_id: str) -> str:
    try:
        return check_run_id(run_id, "run_id")
    except ParameterError as err:
        raise BodyError("run_id", str(err)) from None


def _path(rest: str) -> str:
    """A key below ``runs/<run_id>/``: plain segments only (no empty, ``.``, ``..``, backslash or control)."""
    parts = rest.split("/")
    if any(p in ("", ".", "..") or "\\" in p or not p.isprintable() for p in parts) or len(rest) > 1024:
        raise BodyError("file", f"not a file of a result folder: {rest[:200]!r}")
    return rest


def _told(err: StoreError, run_id: str) -> Exception:
    """A store's answer as the service's: nothing stored 404, not committed yet 409, the store failing 502."""
    if isinstance(err, NotStored):
        return ClusterNotFound(f"You have no stored run {run_id} (see: labkit runs)")
    if isinstance(err, NotCommitted):
        return ClusterConflict(str(err))
    return ClusterError(f"the artifact store cannot be read: {err}")


def _manifest_bytes(store: Any, run_id: str) -> bytes:
    """The committed manifest as stored (the client parses and checks it, as a direct fetch does)."""
    try:
        return store.get_bytes(f"{run_key(run_id)}/{MANIFEST}")
    except NotStored:
        stored_manifest(store, run_id)  # says whether it is uploading or was cut short (NotCommitted)
        raise


def _listed(data: bytes, rest: str, run_id: str) -> None:
    """Only the files the committed manifest lists, under its upload, are handed out."""
    try:
        manifest = json.loads(data)
        files = {f.get("name") for f in manifest.get("files") or [] if isinstance(f, dict)}
        upload = manifest.get("upload")
    except (ValueError, AttributeError):
        raise ClusterConflict(f"the manifest of run {run_id} is not a result manifest") from None
    if not (isinstance(upload, str) and rest.startswith(f"uploads/{upload}/") and
            rest[len(f"uploads/{upload}/"):] in files):
        raise ClusterNotFound(f"run {run_id} has no file {rest[:200]!r} (its manifest lists its files: "
                              f"GET api/stored/{run_id}/{MANIFEST})")


async def stored_list(service: Any, user: str) -> dict[str, Any]:
    """``GET api/stored``: the user's runs in the store (listed at most every :data:`LIST_SECONDS` per user)."""
    from labkit.runners.cluster.submission import stored_runs

    when, answer = service.stored_lists.get(user, (0.0, {}))
    if time.monotonic() - when < LIST_SECONDS:
        return answer
    if not service.keeps_store():
        return {"store": "", "runs": []}  # a hub without a store: nothing stored, nothing to say
    store = await service.run(service.user_store, user)
    try:
        runs = await service.run(stored_runs, store)
    except StoreError as err:
        raise _told(err, "") from None
    answer = {"store": store.url, "runs": [r.to_dict() for r in runs]}
    if len(service.stored_lists) >= 1000:
        service.stored_lists.pop(next(iter(service.stored_lists)))
    service.stored_lists[user] = (time.monotonic(), answer)
    return answer


async def stored_object(service: Any, user: str, run_id: str, rest: str) -> bytes | tuple[bytes, Iterator[bytes]]:
    """``GET api/stored/<run_id>/<rest>``: the manifest's bytes, or a file's first piece and the rest of its
    pieces (read on the caller's thread pool as it sends them: nothing is kept on the service's disk)."""
    run_id, rest = _run_id(run_id), _path(rest)
    store = await service.run(service.user_store, user)
    try:
        data = await service.run(_manifest_bytes, store, run_id)
    except StoreError as err:
        raise _told(err, run_id) from None
    if rest == MANIFEST:
        return data
    _listed(data, rest, run_id)
    pieces = store.iter_bytes(f"{run_key(run_id)}/{rest}")
    try:
        first = await service.run(next, pieces, b"")
    except StoreError as err:
        raise _told(err, run_id) from None
    return first, pieces
