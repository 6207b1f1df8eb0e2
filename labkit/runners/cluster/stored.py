"""The user's stored runs through the hub's labkit service, for a server that holds no store credentials.

:class:`ServiceStore` is the read side of an :class:`~labkit.results.store.ArtifactStore` over the
service's ``api/stored`` (:mod:`labkit.hub.stored`): the service reads the user's part of the
store with its own credentials and streams each object; :func:`labkit.results.store.fetch_run`
then verifies every file's SHA-256 and moves the folder into place here, exactly as a direct
``labkit fetch`` does. Only the user's JupyterHub token travels, in the Authorization header.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from labkit.results.store import NotStored, StoreError
from labkit.runners.backend import Run
from labkit.runners.cluster.errors import ClusterConflict, ClusterNotFound

_FIELDS = {f.name for f in dataclasses.fields(Run)}


class ServiceStore:
    """One user's stored runs, read through the service (``jobs``: a :class:`~labkit.runners.hub.HubJobs`)."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        #: where the objects come from, for messages (the service's address: no credentials in it)
        self.url = jobs.url + "api/stored"

    def _path(self, key: str) -> str:
        top, run_id, rest = (key.split("/", 2) + ["", ""])[:3]
        if top != "runs" or not run_id or not rest:
            raise StoreError(f"the labkit service hands out stored runs only, not {key!r}")
        return f"api/stored/{quote(run_id, safe='')}/{quote(rest, safe='/')}"

    def _get(self, key: str) -> Any:
        try:
            return self.jobs.request("GET", self._path(key), stream=True, timeout=300.0)
        except ClusterNotFound as err:
            raise NotStored(f"nothing stored under {key} ({err})") from None
        except ClusterConflict as err:
            raise StoreError(str(err).removeprefix("labkit service: ")) from None

    def get_bytes(self, key: str) -> bytes:
        resp = self._get(key)
        try:
            return resp.read()
        finally:
            resp.release_conn()

    def get_file(self, key: str, dest: Path) -> str:
        resp = self._get(key)
        digest = hashlib.sha256()
        try:  # one pass: the bytes are hashed as they are written
            with dest.open("wb") as fh:
                for chunk in resp.stream(1 << 20):
                    digest.update(chunk)
                    fh.write(chunk)
        except Exception as err:
            dest.unlink(missing_ok=True)
            raise StoreError(f"cannot read {key} from {self.url}: {err}") from None
        finally:
            resp.release_conn()
        return digest.hexdigest()

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        resp = self._get(key)
        try:
            yield from resp.stream(chunk)
        finally:
            resp.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self.get_bytes(key)
        except NotStored:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        """The service lists runs, not keys: a run without a manifest is told by the manifest's answer."""
        return []

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        raise StoreError(f"{self.url} is read-only: runs upload their results from their pods")

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        raise StoreError(f"{self.url} is read-only: runs upload their results from their pods")

    def delete(self, keys: list[str]) -> None:
        raise StoreError(f"{self.url} is read-only")

    def runs(self) -> list[Run]:
        """My stored runs as the service tells them (``backend`` ``store``)."""
        out = self.jobs.request("GET", "api/stored")
        runs = []
        for doc in out.get("runs") or []:
            fields = {k: v for k, v in doc.items() if k in _FIELDS}
            fields["warnings"] = tuple(fields.get("warnings") or ())
            runs.append(Run(**fields))
        return runs


