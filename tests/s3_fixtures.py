"""A real S3-compatible server on loopback for the store tests: moto's standalone server, one per session.

moto's ``ThreadedMotoServer`` speaks S3 over HTTP (conditional writes, SHA-256 checksums, multipart)
and starts in well under a second without the network. Every test gets its own bucket and
credentials in the environment (where boto3 reads them, as a pod gets them from its Secret).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Iterator

import pytest

#: the credentials every test's environment holds: the tests search outputs for the secret one
ACCESS_KEY = "labkit-test-access"
SECRET_KEY = "s3cr3t-" + secrets.token_hex(8)


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def url(self, prefix: str = "labkit/anna") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would bury a failure's log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket on the session's server, and the credentials in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    found = S3(s3_endpoint, "labkit-" + secrets.token_hex(6))
    found.client().create_bucket(Bucket=found.bucket)
    return found
