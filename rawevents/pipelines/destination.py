"""Where a pipeline writes: one object store behind pyarrow.fs (docs/pipelines.md says why).

- `file:///path`: the local (or mounted) file system; an object is written under a hidden
  temporary name in its folder and renamed into place, so a reader never sees half an object.
- `s3://bucket/prefix`: AWS S3 and every S3-compatible store (MinIO, R2, Ceph). Credentials and
  region come from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
  AWS_SESSION_TOKEN, ~/.aws/credentials and config, AWS_PROFILE, instance metadata). The endpoint
  comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (read here: pyarrow's S3 client ignores
  them, apache/arrow#49643), `http://` endpoints allowed; the URL's query may also set
  `endpoint_override`, `region` and `scheme`. An object is one (multipart) upload, which S3
  publishes whole when it completes: a crash mid-upload publishes nothing.
- `gs://bucket/prefix` (Google Cloud Storage, application-default credentials) and
  `az://container/prefix` (Azure Blob Storage: AZURE_STORAGE_ACCOUNT_NAME, with
  AZURE_STORAGE_ACCOUNT_KEY or the default Azure credential chain), also `abfs[s]://` URLs, through
  the same library, each publishing an object when its upload completes.

Objects are written from finished local files (the runner spools each object to disk first), so
an upload never starts before its content is complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from rawevents.errors import BadRequest

COPY_BYTES = 8 << 20
S3_OPTIONS = ("endpoint_override", "region", "scheme")
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0


class Destination:
    """The objects under one URL's prefix; keys are `/`-separated paths below it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root, self.local = open_filesystem(url)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def put_file(self, key: str, source: Path) -> int:
        """Upload a finished local file as the object `key` (replacing it); returns its size."""
        target = self.path(key)
        parent = target.rsplit("/", 1)[0]
        if self.local:
            self.fs.create_dir(parent, recursive=True)
            partial = f"{parent}/.{target.rsplit('/', 1)[1]}.{secrets.token_hex(4)}.tmp"
            self._copy(source, partial)
            self.fs.move(partial, target)  # rename: atomic on one file system
        else:
            self._copy(source, target)
        return source.stat().st_size

    def _copy(self, source: Path, target: str) -> None:
        with source.open("rb") as data, self.fs.open_output_stream(target, compression=None) as out:
            while block := data.read(COPY_BYTES):
                out.write(block)
            if self.local:
                out.flush()
        if self.local:
            with open(target, "rb") as handle:
                os.fsync(handle.fileno())

    def put_bytes(self, key: str, data: bytes, spool: Path) -> int:
        spool.mkdir(parents=True, exist_ok=True)
        tmp = spool / f"bytes-{secrets.token_hex(6)}"
        try:
            tmp.write_bytes(data)
            return self.put_file(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, target: Path) -> None:
        with self.fs.open_input_stream(self.path(key), compression=None) as data, target.open("wb") as out:
            while block := data.read(COPY_BYTES):
                out.write(block)

    def get_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key), compression=None) as data:
            return bytes(data.read())

    def delete(self, key: str) -> None:
        """Delete the object; nothing to do when it does not exist."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(key))

    def list(self, prefix: str) -> list[str]:
        """Keys of the objects under `prefix` (a folder, no trailing slash), sorted; hidden
        temporary files of the local file system left out."""
        base = self.path(prefix)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        start = len(self.root) + 1 if self.root else 0
        keys = [
            info.path[start:]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        ]
        return sorted(keys)


def open_filesystem(url: str) -> tuple[pafs.FileSystem, str, bool]:
    """(file system, root path inside it, whether it is the local file system)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadRequest(f"a file destination needs an absolute path (file:///path), got {url!r}")
        return pafs.LocalFileSystem(), parts.path.rstrip("/") or "/", True
    if scheme == "s3":
        return s3_filesystem(parts.netloc, dict(parse_qsl(parts.query))), _bucket_path(parts), False
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(), _bucket_path(parts), False
    if scheme == "az":
        account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
        if not account:
            raise BadRequest(
                "an az:// destination needs AZURE_STORAGE_ACCOUNT_NAME in the server's environment"
            )
        key = os.environ.get("AZURE_STORAGE_ACCOUNT_KEY") or None
        return pafs.AzureFileSystem(account_name=account, account_key=key), _bucket_path(parts), False
    if scheme in ("abfs", "abfss"):
        filesystem, path = pafs.FileSystem.from_uri(url)
        return filesystem, path.rstrip("/"), False
    raise BadRequest(f"unsupported destination {url!r}")


def _bucket_path(parts: object) -> str:
    netloc = getattr(parts, "netloc", "")
    path = getattr(parts, "path", "")
    if not netloc:
        raise BadRequest("the destination URL names no bucket")
    return f"{netloc}{path}".rstrip("/")


def s3_filesystem(bucket: str, query: dict[str, str]) -> pafs.S3FileSystem:
    unknown = set(query) - set(S3_OPTIONS)
    if unknown:
        raise BadRequest(f"unknown s3 URL parameter(s): {', '.join(sorted(unknown))}")
    endpoint = query.get("endpoint_override") or (
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    )
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    options: dict[str, object] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if endpoint:
        options["endpoint_override"] = endpoint
        if endpoint.startswith("http://"):
            options["scheme"] = "http"
    if query.get("scheme"):
        options["scheme"] = query["scheme"]
    if region:
        options["region"] = region
    if not bucket:
        raise BadRequest("the destination URL names no bucket")
    return pafs.S3FileSystem(**options)
