"""A real S3 API on loopback for the pipeline tests: moto's standalone server (`moto[server]`,
what the s3fs project tests against), in a thread of the test process, on 127.0.0.1."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import pytest

from tests.live_server import free_port

REGION = "us-east-1"


@dataclass
class S3Server:
    """moto on a fixed port, so a test can stop it (the destination fails) and start it again
    (it recovers, its buckets kept: moto's state lives in this process)."""

    port: int
    server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a rawevents server needs to reach it (the standard AWS variables)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",
            region=REGION,
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )

    def bucket(self) -> str:
        name = f"bucket-{secrets.token_hex(4)}"
        self.filesystem().create_dir(name)
        return name


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The AWS variables in this process too, so Destination(url) reads the bucket here."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3
