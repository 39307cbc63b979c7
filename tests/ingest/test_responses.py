from __future__ import annotations

import struct
import zlib

import pytest

from rawevents.ingest import responses
from rawevents.ingest.responses import FailedRecord, Reply, valid_callback, wrap


def test_received_bodies() -> None:
    assert responses.received(True, verbose=False).body == b"1"
    assert responses.received(False, verbose=False).body == b"0"
    assert responses.received(True, verbose=True).body == b'{"error":null,"status":1}'
    assert responses.received(False, verbose=True, error="data, missing or empty").body == (
        b'{"error":"data, missing or empty","status":0}'
    )


def test_import_bodies() -> None:
    assert responses.import_strict(3, []).body == b'{"code":200,"num_records_imported":3,"status":"OK"}'
    failed = responses.import_strict(1, [FailedRecord(0, "id1", "properties.time", "msg")])
    assert failed.status == 400
    assert failed.body == (
        b'{"code":400,"error":"some data points in the request failed validation","failed_records":'
        b'[{"index":0,"$insert_id":"id1","insert_id":"id1","field":"properties.time","message":"msg"}],'
        b'"num_records_imported":1,"status":"Bad Request"}'
    )
    assert responses.import_legacy(2, True, verbose=True).body == (
        b'{"code":200,"error":null,"num_records_imported":2,"status":1}'
    )
    assert responses.import_legacy(0, False, verbose=True).body == (
        b'{"code":200,"error":"some data points in the request failed validation",'
        b'"num_records_imported":0,"status":0}'
    )
    assert responses.import_legacy(2, True, verbose=False).body == b"1"


def test_error_bodies() -> None:
    assert (
        responses.unauthorized().body == b'{"code":401,"error":"Invalid credentials","status":"Unauthorized"}'
    )
    too_large = responses.import_error(413, "request exceeds max limit of 10 bytes")
    assert too_large.body == (
        b'{"code":413,"error":"request exceeds max limit of 10 bytes","status":"Request Entity Too Large"}'
    )
    limited = responses.rate_limited(7)
    assert limited.status == 429 and limited.headers == {"Retry-After": "7"}
    assert limited.body == (
        b'{"code":429,"error":"Project exceeded rate limits. '
        b'Please retry the request with exponential backoff.","status":"Too Many Requests"}'
    )


def test_pixel_is_a_valid_transparent_1x1_png() -> None:
    png = responses.PIXEL_PNG
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        chunks[kind] = data
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, color) == (1, 1, 8, 6)  # RGBA
    assert zlib.decompress(chunks[b"IDAT"]) == b"\x00\x00\x00\x00\x00"  # alpha 0
    assert b"IEND" in chunks


@pytest.mark.parametrize(
    "name", ["cb", "mixpanel._jsc.abc123", "$jsonp_1", "a[0]", 'ns["key"].fn', "(function(){})", "_"]
)
def test_valid_callbacks(name: str) -> None:
    assert valid_callback(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "alert(1)",
        "cb;alert(1)",
        "<script>",
        "a b",
        "1abc",
        "cb//",
        "a.b.",
        "x" * 300,
        "(function(){alert(1)})",
        "a['x']",
        "cb\u2028",
    ],
)
def test_invalid_callbacks(name: str) -> None:
    assert not valid_callback(name)


def test_wrap() -> None:
    ok = responses.received(True, verbose=True)
    assert wrap(ok, img=False, callback="cb").body == b'cb({"error":null,"status":1})'
    assert wrap(ok, img=False, callback="cb").content_type.startswith("text/javascript")
    assert wrap(ok, img=False, callback="alert(1)") == ok
    assert wrap(ok, img=True, callback="cb").body == responses.PIXEL_PNG
    error = Reply(413, b"{}", responses.JSON)
    assert wrap(error, img=True, callback="cb") == error
