"""The HTTP connection to a ClickHouse server, checked on the requests it sends (a mock
transport stands in for the server): SQL in the body, values as typed `param_` fields, the
password only in a header, Arrow both ways, server errors surfaced."""

from __future__ import annotations

import io
from urllib.parse import parse_qs

import httpx
import pyarrow as pa
import pytest

from rawevents.errors import StorageError
from rawevents.settings import SettingError, load_config
from rawevents.storage.clickhouse.conn import HttpEngine, ServerAddress, param_text

URL = "clickhouse://ana:s3cr%40t@ch.internal:8123/analytics?cluster=main"


def arrow_stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class Recorder:
    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer


def engine(answer: httpx.Response) -> tuple[HttpEngine, Recorder]:
    recorder = Recorder(answer)
    return HttpEngine(ServerAddress.parse(URL), transport=httpx.MockTransport(recorder)), recorder


def test_address_parsing_keeps_the_password_out_of_repr_and_config() -> None:
    address = ServerAddress.parse(URL)
    assert (address.base_url, address.user, address.password) == ("http://ch.internal:8123/", "ana", "s3cr@t")
    assert (address.database, address.cluster) == ("analytics", "main")
    assert "s3cr" not in repr(address)
    assert "s3cr" not in repr(load_config({"RAWEVENTS_STORE": URL}))
    with pytest.raises(SettingError) as refused:
        load_config({"RAWEVENTS_STORE": "clickhose://ana:s3cr3t@ch.internal/db"})
    assert "s3cr3t" not in refused.value.message
    assert "clickhose://ana:***@ch.internal/db" in refused.value.message


def test_a_query_sends_sql_in_the_body_and_typed_parameters_apart() -> None:
    table = pa.table({"line": ["a\n", "b\n"]})
    http, recorder = engine(httpx.Response(200, content=arrow_stream(table)))
    con = http.connect()
    batches = list(
        con.stream("SELECT line FROM events WHERE project_id = {p:Int32}", {"p": 7, "s": "x'\\\t"})
    )
    assert pa.Table.from_batches(batches).column("line").to_pylist() == ["a\n", "b\n"]
    [request] = recorder.requests
    fields = parse_qs(request.url.query.decode(), keep_blank_values=True)
    assert request.method == "POST" and request.url.host == "ch.internal" and request.url.port == 8123
    assert request.content == b"SELECT line FROM events WHERE project_id = {p:Int32}\nFORMAT ArrowStream"
    assert fields["param_p"] == ["7"] and fields["param_s"] == ["x'\\\\\\t"]
    assert fields["database"] == ["analytics"] and fields["optimize_read_in_order"] == ["1"]
    assert request.headers["X-ClickHouse-User"] == "ana" and request.headers["X-ClickHouse-Key"] == "s3cr@t"
    assert "s3cr" not in str(request.url)


def test_an_insert_posts_arrow_rows() -> None:
    http, recorder = engine(httpx.Response(200))
    table = pa.table({"project_id": pa.array([1], pa.int32()), "line": ["x\n"]})
    http.connect().insert("events", table)
    [request] = recorder.requests
    fields = parse_qs(request.url.query.decode())
    assert fields["query"] == ["INSERT INTO events (`project_id`, `line`) FORMAT ArrowStream"]
    assert pa.ipc.open_stream(request.content).read_all().equals(table)


def test_server_errors_become_storage_errors() -> None:
    http, _ = engine(
        httpx.Response(500, text="Code: 60. DB::Exception: Table analytics.events does not exist")
    )
    with pytest.raises(StorageError, match="Code: 60"):
        http.connect().command("SELECT 1")


def test_parameter_text_forms() -> None:
    assert param_text("a\tb\nc\\") == "a\\tb\\nc\\\\"
    assert param_text(["it's", "x\\y"]) == "['it\\'s','x\\\\y']"
    assert param_text([1.5, 2.0]) == "[1.5,2.0]"
    assert param_text(True) == "true" and param_text(-3) == "-3"
    assert param_text(None) == "\\N"  # NULL, for a Nullable parameter


def test_export_lines_stream_as_raw_bytes() -> None:
    http, recorder = engine(httpx.Response(200, content=b'{"a":1}\n{"a":2}\n'))
    body = b"".join(http.connect().raw("SELECT line FROM events WHERE p = {p:Int32}", {"p": 1}))
    assert body == b'{"a":1}\n{"a":2}\n'
    assert recorder.requests[0].content.endswith(b"\nFORMAT RawBLOB")
