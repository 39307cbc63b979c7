"""Numbers at every limit, in every place ingestion reads one, never fail more than their own
record: no 500, and the valid neighbours in the same batch are stored.

The numbers are written into the body as JSON text, so literals that orjson refuses (1e400,
integers of hundreds of digits) reach the lenient parser, which reads them as Python's unbounded
integers or as infinity: exactly the values that used to raise OverflowError in the server.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawevents.ingest import workers
from rawevents.projects import Project
from tests.ingest.conftest import App, make_app

EDGE_INTEGERS = [
    0,
    1,
    -1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    10**20,
    -(10**20),
    10**308,
    10**309,
    -(10**400),
    10**400,
    10**4000,
]
EDGE_FLOATS = ["1e308", "-1e308", "1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "-0.0"]
OVERFLOWING = ["1e400", "-1e400", "1e309"]  # infinity once parsed
NUMBER_TEXT = st.one_of(
    st.sampled_from([str(n) for n in EDGE_INTEGERS] + EDGE_FLOATS + OVERFLOWING),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
# The same numbers as JSON strings, which non-strict time parsing reads with float().
NAN_STRINGS = ['"nan"', '"NaN"', '"inf"', '"-inf"', '"Infinity"', '" 1e3 "']
STRING_TEXT = st.one_of(NUMBER_TEXT.map(lambda text: f'"{text}"'), st.sampled_from(NAN_STRINGS))
VALUE_TEXT = st.one_of(NUMBER_TEXT, STRING_TEXT)
EVENT_FIELDS = ["time", "distinct_id", "$insert_id", "n", "nested"]
PROFILE_FIELDS = ["$add", "$time", "$distinct_id", "$set", "$group_id"]
NEIGHBOURS = 3
ENDPOINTS = ["engage", "groups"]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Project]]:
    for app in make_app(Path(tmp_path_factory.mktemp("limits")), ingest_processes=1):
        yield app, app.project()


def _event_text(field: str, value: str, insert_id: str) -> str:
    props = {"time": "1700000000", "distinct_id": '"u"', "$insert_id": f'"{insert_id}"'}
    if field == "nested":
        props["nested"] = '{"a": [' + value + "]}"
    else:
        props[field] = value
    inner = ", ".join(f'"{key}": {text}' for key, text in props.items())
    return '{"event": "e", "properties": {' + inner + "}}"


def _batch(field: str, values: list[str], tag: str) -> tuple[bytes, list[str], set[int]]:
    """Events alternating good, bad (one per value), good...: the body, the good events' ids and
    the indices of the bad ones."""
    good = [f"{tag}-{i}" for i in range(len(values) + 1)]
    texts = [_event_text("n", "1", good[0])]
    for i, value in enumerate(values):
        texts += [_event_text(field, value, f"{tag}-bad{i}"), _event_text("n", "2", good[i + 1])]
    body = "[" + ", ".join(texts) + "]"
    return body.encode(), good, set(range(1, len(texts), 2))


def _stored_ids(app: App, project: Project, tag: str) -> set[str]:
    rows = app.services.store.query(
        "SELECT insert_id FROM events WHERE project_id = ? AND starts_with(insert_id, ?)",
        [project.project_id, tag + "-"],
    )
    return {row[0] for row in rows}


def _check_import(app: App, project: Project, field: str, values: list[str], path: str) -> None:
    tag = f"imp-{uuid.uuid4().hex[:12]}"
    body, good, bad = _batch(field, values, tag)
    url = "/import?strict=1" if path == "strict" else "/import?strict=0&verbose=1"
    response = app.client.post(url, content=body, auth=(project.api_secret, ""))
    assert response.status_code in (200, 400), (field, values, response.text)
    if path == "strict":
        answer = response.json()
        assert answer["num_records_imported"] >= len(good)
        assert {r["index"] for r in answer.get("failed_records", [])} <= bad
    assert set(good) <= _stored_ids(app, project, tag), (field, values)


def _check_track(app: App, project: Project, field: str, values: list[str]) -> None:
    tag = f"trk-{uuid.uuid4().hex[:12]}"
    body, good, _ = _batch(field, values, tag)
    events = body.decode().replace('"properties": {', f'"properties": {{"token": "{project.token}", ')
    response = app.client.post("/track?verbose=1", content=events, headers=JSON)
    assert (response.status_code, response.json()) == (200, {"error": None, "status": 1}), (field, values)
    assert set(good) <= _stored_ids(app, project, tag), (field, values)


def _update_text(token: str, field: str, value: str, profile: str) -> str:
    parts = {"$token": f'"{token}"', "$distinct_id": f'"{profile}"', "$add": '{"n": 1}'}
    if field in ("$add", "$set"):
        parts[field] = '{"n": ' + value + "}"
    elif field in ("$time", "$distinct_id"):
        parts[field] = value
    return "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}"


def _check_profile(app: App, project: Project, field: str, values: list[str], endpoint: str) -> None:
    tag = f"p-{uuid.uuid4().hex[:12]}"
    texts = []
    for i, value in enumerate(values):
        texts.append(_update_text(project.token, field, value, f"{tag}-bad{i}"))
        texts.append(_update_text(project.token, "", "", f"{tag}-good{i}"))
    if endpoint == "groups":
        texts = [text.replace('"$distinct_id"', '"$group_key": "company", "$group_id"') for text in texts]
    response = app.client.post(f"/{endpoint}?verbose=1", content="[" + ", ".join(texts) + "]", headers=JSON)
    assert (response.status_code, response.json()["status"]) == (200, 1), (field, values, response.text)
    kind, key = ("user", "") if endpoint == "engage" else ("group", "company")
    profiles = app.profiles(project, kind, key)
    assert [profiles[f"{tag}-good{i}"]["n"] for i in range(len(values))] == [1] * len(values)


EDGE_TEXTS = [str(n) for n in EDGE_INTEGERS] + EDGE_FLOATS + OVERFLOWING
EDGE_VALUES = EDGE_TEXTS + [f'"{text}"' for text in EDGE_TEXTS] + NAN_STRINGS


def test_every_edge_number_in_every_place(limits: tuple[App, Project]) -> None:
    """Every listed limit in every field of every endpoint, all in one batch per field (good
    records between them); hypothesis below adds random ones, one per batch."""
    app, project = limits
    for field in EVENT_FIELDS:
        _check_import(app, project, field, EDGE_VALUES, "strict")
        _check_import(app, project, field, EDGE_VALUES, "lenient")
        _check_track(app, project, field, EDGE_VALUES)
    for field in PROFILE_FIELDS:
        for endpoint in ENDPOINTS:
            _check_profile(app, project, field, EDGE_VALUES, endpoint)


@given(field=st.sampled_from(EVENT_FIELDS), value=VALUE_TEXT, path=st.sampled_from(["strict", "lenient"]))
def test_any_number_in_an_import_batch_fails_at_most_its_record(
    limits: tuple[App, Project], field: str, value: str, path: str
) -> None:
    _check_import(*limits, field, [value], path)


@given(field=st.sampled_from(EVENT_FIELDS), value=VALUE_TEXT)
def test_any_number_in_a_track_batch_rejects_at_most_that_event(
    limits: tuple[App, Project], field: str, value: str
) -> None:
    _check_track(*limits, field, [value])


@given(field=st.sampled_from(PROFILE_FIELDS), value=VALUE_TEXT, endpoint=st.sampled_from(ENDPOINTS))
def test_any_number_in_a_profile_batch_fails_at_most_that_update(
    limits: tuple[App, Project], field: str, value: str, endpoint: str
) -> None:
    _check_profile(*limits, field, [value], endpoint)


@pytest.mark.parametrize("value", ["-1e308", '"-1e308"', "1e400", "-" + "9" * 400, "9" * 400, '"nan"'])
def test_a_bad_time_in_a_2000_event_gzip_import_fails_one_record(
    limits: tuple[App, Project], value: str
) -> None:
    """The reported case, through the worker process path: 1,999 stored, one failed record."""
    app, project = limits
    tag = f"gz-{uuid.uuid4().hex[:12]}"
    texts = [_event_text("n", str(i), f"{tag}-{i}") for i in range(1999)]
    texts.insert(7, _event_text("time", value, f"{tag}-bad"))
    body = gzip.compress(("[" + ",".join(texts) + "]").encode(), compresslevel=0)
    assert len(body) >= workers.MIN_GZIP_BYTES
    response = app.client.post(
        "/import?strict=1",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(project.api_secret, ""),
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["num_records_imported"] == 1999
    assert [(r["index"], r["field"]) for r in answer["failed_records"]] == [(7, "properties.time")]
    assert len(_stored_ids(app, project, tag)) == 1999


@pytest.mark.parametrize("endpoint", ["engage", "groups"])
def test_a_400_digit_add_is_a_clear_per_update_error(limits: tuple[App, Project], endpoint: str) -> None:
    app, project = limits
    target = '"$group_key": "company", "$group_id": "g"' if endpoint == "groups" else '"$distinct_id": "u"'
    body = '[{"$token": "' + project.token + '", ' + target + ', "$add": {"n": ' + "9" * 400 + "}}]"
    response = app.client.post(
        f"/{endpoint}?verbose=1", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200  # Mixpanel answers profile validation problems with 200
    assert response.json() == {
        "error": "update 0: $add value for 'n' is out of range: integers must fit 64 bits",
        "status": 0,
    }


def test_orjson_refuses_what_the_lenient_parser_reads() -> None:
    """Guards the premise of this module: these literals take the lenient (unbounded) path."""
    for text in ("1e400", "9" * 400):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(text)
