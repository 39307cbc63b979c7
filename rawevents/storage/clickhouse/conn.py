"""Connections to a ClickHouse engine: the embedded one (chdb) or a server over HTTP.

The ClickHouse store speaks one SQL text to both; only this module knows how a statement
travels. Both take named, typed server-side parameters (`{name:Type}` in the text, values sent
apart in ClickHouse's text form), so no value is ever pasted into SQL. Export lines stream back
as raw bytes (`RawBLOB`: the stored lines back to back, no per-row work on either side; in chdb
2-3x faster than Arrow output for this one String column), other reads as Arrow; writes go in
as Arrow.

chdb runs one engine per process; each `ChdbEngine.connect()` is a new connection on the same
path. Queries on one connection are serialised, and a second query on a connection that is
streaming ends that stream, so the store gives every concurrent reader its own connection.
The HTTP connection is stateless (every statement is one request), so readers share it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyarrow as pa

from rawevents.errors import StorageError

Params = Mapping[str, Any]

# Strings go to the server in its "escaped" text form (the form TSV uses).
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
# Settings every read carries: Arrow strings as `string` (not binary), reads in sort-key order.
READ_SETTINGS = {"output_format_arrow_string_as_string": "1", "optimize_read_in_order": "1"}


def param_text(value: Any) -> str:
    """A parameter value in ClickHouse's text form (what `{name:Type}` parses); None is NULL
    (for a `Nullable` parameter)."""
    if value is None:
        return "\\N"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(item) for item in value) + "]"
    return _scalar(value).translate(_ESCAPES) if isinstance(value, str) else _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _quoted(value: Any) -> str:
    # Inside an array parameter, strings use the quoted form ('…' with backslash escapes).
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return _scalar(value)


class Connection(Protocol):
    def command(self, sql: str, params: Params | None = None) -> None: ...

    def table(self, sql: str, params: Params | None = None) -> pa.Table:
        """A small result, whole."""

    def stream(self, sql: str, params: Params | None = None) -> Iterator[pa.RecordBatch]:
        """A result as record batches, read as they arrive; closing the iterator stops the query."""

    def raw(self, sql: str, params: Params | None = None) -> Iterator[bytes]:
        """The values of a one-String-column result back to back (ClickHouse's RawBLOB format),
        in blocks as the engine produces them; closing the iterator stops the query."""

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert Arrow rows into `table` (columns by name); returns once the insert is done."""

    def close(self) -> None: ...


class Engine(Protocol):
    cluster: str | None  # ON CLUSTER name for DDL, when the server is a cluster
    shared: bool  # other processes (other rawevents hosts) may write to the same tables

    def connect(self) -> Connection:
        """A connection of its own, for one concurrent user (a reader or the writer)."""

    def close(self) -> None: ...


# -- chdb ---------------------------------------------------------------------------------------


class ChdbConnection:
    def __init__(self, con: Any) -> None:
        self._con = con

    def command(self, sql: str, params: Params | None = None) -> None:
        self._con.query(sql, "Null", params=_texts(params))

    def table(self, sql: str, params: Params | None = None) -> pa.Table:
        result: pa.Table = self._con.query(_with_settings(sql), "ArrowTable", params=_texts(params))
        return result

    def stream(self, sql: str, params: Params | None = None) -> Iterator[pa.RecordBatch]:
        result = self._con.send_query(_with_settings(sql), "Arrow", params=_texts(params))
        try:
            yield from result.record_batch(rows_per_batch=ROWS_PER_BATCH)
        finally:
            result.close()

    def raw(self, sql: str, params: Params | None = None) -> Iterator[bytes]:
        result = self._con.send_query(_with_settings(sql), "RawBLOB", params=_texts(params))
        try:
            while (chunk := result.fetch()) is not None:
                yield chunk.bytes()
        finally:
            result.close()

    def insert(self, table: str, data: pa.Table) -> None:
        incoming = data  # noqa: F841  (read by name by the Python() table function below)
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        self._con.query(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM Python(incoming)", "Null")

    def close(self) -> None:
        self._con.close()


class ChdbEngine:
    """The ClickHouse engine inside this process, its files under `path`."""

    cluster: str | None = None
    shared = False  # chdb's files belong to this process

    def __init__(self, path: Path) -> None:
        import chdb

        path.mkdir(parents=True, exist_ok=True)
        self._connect: Callable[[str], Any] = chdb.connect
        self._path = str(path)

    def connect(self) -> Connection:
        return ChdbConnection(self._connect(self._path))

    def close(self) -> None:
        pass


# -- HTTP ---------------------------------------------------------------------------------------

ROWS_PER_BATCH = 16384


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A parsed `clickhouse://user:password@host:port/database[?cluster=NAME][&secure=1]`."""

    base_url: str
    user: str
    password: str
    database: str
    cluster: str | None

    @classmethod
    def parse(cls, url: str) -> ServerAddress:
        parts = urlsplit(url)
        if parts.scheme != "clickhouse" or not parts.hostname:
            raise ValueError("expected clickhouse://user:password@host:8123/database")
        query = parse_qs(parts.query)
        scheme = "https" if query.get("secure", ["0"])[0] in ("1", "true") else "http"
        return cls(
            base_url=f"{scheme}://{parts.hostname}:{parts.port or 8123}/",
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=parts.path.strip("/") or "default",
            cluster=query.get("cluster", [None])[0],
        )

    def __repr__(self) -> str:  # never show the password
        return f"ServerAddress({self.base_url!r}, user={self.user!r}, database={self.database!r})"


class HttpConnection:
    """ClickHouse's HTTP interface, one request per statement: the SQL in the body, parameters
    as `param_<name>` and settings as query-string fields, credentials in headers (never in
    URLs, so proxies and access logs do not see them). Results come back as ArrowStream."""

    def __init__(self, address: ServerAddress, client: httpx.Client) -> None:
        self._address = address
        self._client = client

    def _fields(self, params: Params | None, settings: Mapping[str, str]) -> dict[str, str]:
        fields = {"database": self._address.database, **settings}
        for name, value in (params or {}).items():
            fields[f"param_{name}"] = param_text(value)
        return fields

    def _post(self, sql: str, params: Params | None, settings: Mapping[str, str]) -> httpx.Response:
        request = self._client.build_request(
            "POST", "", params=self._fields(params, settings), content=sql.encode()
        )
        response = self._client.send(request, stream=True)
        if response.status_code != 200:
            body = response.read().decode(errors="replace")
            response.close()
            raise StorageError(f"ClickHouse answered {response.status_code}: {body[:500]}")
        return response

    def command(self, sql: str, params: Params | None = None) -> None:
        self._post(sql, params, {"wait_end_of_query": "1"}).close()

    def table(self, sql: str, params: Params | None = None) -> pa.Table:
        response = self._post(sql + "\nFORMAT ArrowStream", params, READ_SETTINGS)
        try:
            return pa.ipc.open_stream(response.read()).read_all()
        finally:
            response.close()

    def stream(self, sql: str, params: Params | None = None) -> Iterator[pa.RecordBatch]:
        response = self._post(sql + "\nFORMAT ArrowStream", params, READ_SETTINGS)
        try:
            yield from pa.ipc.open_stream(_ResponseFile(response.iter_bytes()))
        finally:
            response.close()

    def raw(self, sql: str, params: Params | None = None) -> Iterator[bytes]:
        response = self._post(sql + "\nFORMAT RawBLOB", params, READ_SETTINGS)
        try:
            yield from response.iter_bytes()
        finally:
            response.close()

    def insert(self, table: str, data: pa.Table) -> None:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        request = self._client.build_request(
            "POST",
            "",
            params={
                "database": self._address.database,
                "query": f"INSERT INTO {table} ({columns}) FORMAT ArrowStream",
                "wait_end_of_query": "1",
            },
            content=sink.getvalue(),
        )
        response = self._client.send(request)
        if response.status_code != 200:
            raise StorageError(f"ClickHouse answered {response.status_code}: {response.text[:500]}")

    def close(self) -> None:
        pass


class HttpEngine:
    """A ClickHouse server (or a cluster node) over HTTP; `transport` replaces the network in
    tests."""

    shared = True

    def __init__(self, address: ServerAddress, transport: httpx.BaseTransport | None = None) -> None:
        self.cluster = address.cluster
        self._address = address
        self._client = httpx.Client(
            base_url=address.base_url,
            headers={"X-ClickHouse-User": address.user, "X-ClickHouse-Key": address.password},
            timeout=httpx.Timeout(30.0, read=None),
            transport=transport,
        )

    def connect(self) -> Connection:
        return HttpConnection(self._address, self._client)

    def close(self) -> None:
        self._client.close()


class _ResponseFile(io.RawIOBase):
    """A read-only file over a streamed HTTP body (what Arrow's stream reader wants)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _texts(params: Params | None) -> dict[str, str] | None:
    return None if not params else {name: param_text(value) for name, value in params.items()}


def _with_settings(sql: str) -> str:
    return sql + "\nSETTINGS " + ", ".join(f"{k} = {v}" for k, v in READ_SETTINGS.items())
