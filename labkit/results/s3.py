"""The artifact store on S3-compatible object storage (MinIO, Ceph RGW, AWS S3), through boto3.

boto3 is AWS's own client, kept current with S3's API and spoken by MinIO and Ceph alike; its
transfer manager splits large files into parallel parts. It is imported only when a store is
opened, so labkit works without one. Credentials come from boto3's usual sources only (the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` variables a Job gets from a Secret by reference,
or ``~/.aws``); nothing here takes, logs or stores them.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, Iterator

from labkit.results.store import ArtifactStore, DirStore, NotStored, StoreError


def _b64(sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256)).decode()


class S3Store:
    """Objects under ``s3://bucket/prefix``; an upload is checked by the server against its SHA-256."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str = "", region: str = "",
                 verify: bool = True) -> None:
        try:
            import boto3
        except ImportError:
            raise StoreError("store: S3 storage needs boto3, which is not installed: pip install 'labkit[store]'") from None
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not bucket:
            raise StoreError("store: an s3:// URL needs a bucket (s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"},
                        connect_timeout=5, read_timeout=60,
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint or None,
                                                     region_name=region or None, verify=verify, config=config)
        self.transfer = TransferConfig(multipart_threshold=64 << 20, max_concurrency=8)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, err: Exception, what: str, key: str) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return NotStored(f"nothing stored under {key} in {self.url}")
            return StoreError(f"the store {self.url} refused to {what} {key}: {code or err}")
        return StoreError(f"cannot {what} {key} in {self.url}: {err}")

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if path.stat().st_size < self.transfer.multipart_threshold:
                with path.open("rb") as body:  # one request, its bytes checked by the server
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body,
                                           ChecksumSHA256=_b64(sha256))
            else:
                self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)
        except (BotoCoreError, ClientError) as err:
            raise self._fail(err, "store", key) from None

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        extra: dict[str, Any] = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as err:
            if exclusive and str(err.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412",
                                                                                 "ConditionalRequestConflict"):
                return False
            raise self._fail(err, "store", key) from None
        except BotoCoreError as err:
            raise self._fail(err, "store", key) from None
        return True

    def get_file(self, key: str, dest: Path) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = hashlib.sha256()
        try:  # one pass: the bytes are hashed as they are written
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with dest.open("wb") as fh:
                for chunk in body.iter_chunks(1 << 20):
                    digest.update(chunk)
                    fh.write(chunk)
        except (BotoCoreError, ClientError) as err:
            dest.unlink(missing_ok=True)
            raise self._fail(err, "read", key) from None
        return digest.hexdigest()

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes in pieces, as they arrive (the request is made at the first ``next``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()
        except (BotoCoreError, ClientError) as err:
            raise self._fail(err, "read", key) from None

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as err:
            raise self._fail(err, "read", key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if isinstance(self._fail(err, "read", key), NotStored):
                return False
            raise self._fail(err, "read", key) from None
        except BotoCoreError as err:
            raise self._fail(err, "read", key) from None
        return True

    def keys(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full, cut = self._key(prefix), len(self.prefix) + 1 if self.prefix else 0
        out: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                out += [obj["Key"][cut:] for obj in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as err:
            raise self._fail(err, "list", prefix) from None
        return sorted(out)

    def delete(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (BotoCoreError, ClientError) as err:
                raise self._fail(err, "delete", keys[start]) from None


def open_store(url: str, *, endpoint: str = "", region: str = "", verify: bool = True) -> ArtifactStore:
    """The store at ``url``: ``s3://bucket/prefix`` (boto3, imported only then) or a directory path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        return S3Store(bucket, prefix, endpoint=endpoint, region=region, verify=verify)
    if "://" in url:
        raise StoreError(f"store {url!r}: allowed are s3://bucket/prefix or a directory path")
    return DirStore(url)
