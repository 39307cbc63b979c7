from __future__ import annotations

import base64
import gzip
import zlib

import pytest

from rawevents.errors import BadRequest, PayloadTooLarge
from rawevents.ingest.decode import (
    BadItem,
    decode_data_param,
    gunzip_capped,
    looks_like_json,
    merge_params,
    parse_form,
    parse_payload,
)

PAYLOAD = b'[{"event":"e","properties":{"k":"a+b/c?=="}}]'


def test_gunzip_roundtrip_and_multi_member() -> None:
    assert gunzip_capped(gzip.compress(b"abc"), 100) == b"abc"
    assert gunzip_capped(gzip.compress(b"ab") + gzip.compress(b"cd"), 100) == b"abcd"


def test_deflate_body() -> None:
    assert gunzip_capped(zlib.compress(b"hello"), 100, deflate=True) == b"hello"


def test_gzip_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB compressed, 50 MB decompressed
    with pytest.raises(PayloadTooLarge, match="request exceeds max limit of 1000000 bytes"):
        gunzip_capped(bomb, 1_000_000)


def test_exactly_the_cap_is_accepted() -> None:
    assert len(gunzip_capped(gzip.compress(b"x" * 1000), 1000)) == 1000
    with pytest.raises(PayloadTooLarge):
        gunzip_capped(gzip.compress(b"x" * 1001), 1000)


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(b"abcdef" * 100)[:-12], b"\x1f\x8b\x08\x00garbage", b"\x1f\x8b"],
)
def test_broken_gzip_is_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest, match="invalid gzip body"):
        gunzip_capped(body, 1000)


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(PAYLOAD).decode(),  # standard
        base64.urlsafe_b64encode(PAYLOAD).decode(),  # URL-safe alphabet
        base64.b64encode(PAYLOAD).decode().rstrip("="),  # missing padding
        base64.b64encode(PAYLOAD).decode().replace("+", " "),  # `+` turned into space by a form decoder
        base64.encodebytes(PAYLOAD).decode(),  # with line breaks
        PAYLOAD.decode(),  # raw JSON
        "  " + PAYLOAD.decode() + "\n",
    ],
)
def test_data_param_variants(encoded: str) -> None:
    assert decode_data_param(encoded) == PAYLOAD


def test_base64_with_plus_really_contains_plus() -> None:
    raw = b'{"k":">>>???"}'  # base64 `eyJrIjoiPj4+Pz8/In0=` has both + and /
    encoded = base64.b64encode(raw).decode()
    assert "+" in encoded or "/" in encoded
    assert decode_data_param(encoded.replace("+", " ")) == raw


@pytest.mark.parametrize("bad", ["", "   ", "!!!!", "abc$def", "%%%"])
def test_broken_data_param(bad: str) -> None:
    with pytest.raises(BadRequest):
        decode_data_param(bad)


def test_form_parsing_and_merge() -> None:
    form = parse_form(b"data=%7B%7D&verbose=1&ip=0&x=a+b")
    assert form == {"data": "{}", "verbose": "1", "ip": "0", "x": "a b"}
    assert merge_params({"verbose": "0", "strict": "1"}, form) == {
        "data": "{}",
        "verbose": "0",
        "ip": "0",
        "x": "a b",
        "strict": "1",
    }


def test_form_keeps_invalid_utf8_as_surrogates() -> None:
    assert parse_form(b"data=%FF")["data"] == "\udcff"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'  [{"a":1}]', True),
        (b'\n{"a":1}', True),
        (b"\xef\xbb\xbf[1]", True),
        (b"data=x", False),
        (b"", False),
    ],
)
def test_looks_like_json(body: bytes, expected: bool) -> None:
    assert looks_like_json(body) is expected


def test_parse_object_array_ndjson() -> None:
    assert parse_payload(b'{"a":1}').items == [{"a": 1}]
    assert parse_payload(b'[{"a":1},{"a":2}]').items == [{"a": 1}, {"a": 2}]
    assert parse_payload(b'{"a":1}\n{"a":2}\n').items == [{"a": 1}, {"a": 2}]
    assert parse_payload(b'{"a":1}\r\n\r\n{"a":2}', ndjson=True).items == [{"a": 1}, {"a": 2}]
    assert parse_payload(b'[{"a":1}]', ndjson=True).items == [{"a": 1}]


def test_ndjson_bad_line_is_a_bad_item_not_a_failure() -> None:
    items = parse_payload(b'{"a":1}\n{oops\n{"a":3}').items
    assert items[0] == {"a": 1} and items[2] == {"a": 3}
    assert isinstance(items[1], BadItem)


def test_pretty_printed_array_with_invalid_utf8_is_read_leniently() -> None:
    payload = parse_payload(b'[\n {"a": "\xff"},\n {"a": "ok"}\n]')
    assert payload.lenient
    assert payload.items == [{"a": "\udcff"}, {"a": "ok"}]


def test_lone_surrogate_escape_is_read_leniently() -> None:
    payload = parse_payload(b'[{"a":"\\ud800"}]')
    assert payload.lenient and payload.items == [{"a": "\ud800"}]


@pytest.mark.parametrize("bad", [b"[1,2", b"{", b"[NaN]", b"nope", b"   "])
def test_invalid_json_is_bad_request(bad: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_payload(bad)
