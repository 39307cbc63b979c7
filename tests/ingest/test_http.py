"""The HTTP contract of /track, /import, /engage, /groups, in process (real app, real store)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawevents.auth import INVALID_SECRET, INVALID_SERVICE_ACCOUNT
from rawevents.errors import StorageError
from rawevents.ingest.responses import PIXEL_PNG
from rawevents.projects import Project
from tests.ingest.conftest import App, make_app

OK_VERBOSE = b'{"error":null,"status":1}'
NOW = int(time.time())


def ev(project: Project | None, name: str = "e", **props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"time": NOW - 60, "distinct_id": "u1"}
    if project is not None:
        base["token"] = project.token
    base.update(props)
    return {"event": name, "properties": base}


def js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def secret_auth(project: Project) -> tuple[str, str]:
    return (project.api_secret, "")


# -- endpoints and methods ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/track", "/track/", "/engage", "/engage/", "/groups", "/groups/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_route_and_method(app: App, project: Project, path: str, method: str) -> None:
    if path.startswith("/track"):
        payload: Any = [ev(project)]
    elif path.startswith("/engage"):
        payload = [{"$token": project.token, "$distinct_id": "u1", "$set": {"a": 1}}]
    else:
        payload = [{"$token": project.token, "$group_key": "co", "$group_id": "acme", "$set": {"a": 1}}]
    data = {"data": js(payload), "verbose": "1"}
    response = app.client.get(path, params=data) if method == "GET" else app.client.post(path, data=data)
    assert (response.status_code, response.content) == (200, OK_VERBOSE)


@pytest.mark.parametrize("path", ["/import", "/import/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_import_routes(app: App, project: Project, path: str, method: str) -> None:
    data = {"data": base64.b64encode(js([ev(None, **{"$insert_id": "x1"})]).encode()).decode(), "strict": "1"}
    if method == "GET":
        response = app.client.get(path, params=data, auth=secret_auth(project))
    else:
        response = app.client.post(path, data=data, auth=secret_auth(project))
    assert response.content == b'{"code":200,"num_records_imported":1,"status":"OK"}'


# -- input encodings ------------------------------------------------------------------------------------


def _b64(value: Any, urlsafe: bool = False) -> str:
    raw = js(value).encode()
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()


ENCODINGS: dict[str, Any] = {
    "form raw json": lambda p: {"data": {"data": js([ev(p)])}},
    "form single object": lambda p: {"data": {"data": js(ev(p))}},
    "form base64": lambda p: {"data": {"data": _b64([ev(p)])}},
    "form base64 urlsafe": lambda p: {"data": {"data": _b64([ev(p, k=">>>???")], urlsafe=True)}},
    "form base64 no padding": lambda p: {"data": {"data": _b64([ev(p, k="x")]).rstrip("=")}},
    # mixpanel-node does not URL-encode its base64: `+` arrives as a space.
    "form base64 plus as space": lambda p: {
        "content": ("data=" + _b64([ev(p, k=">>>???")])).encode(),
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    },
    "raw json array": lambda p: {
        "content": js([ev(p), ev(p)]).encode(),
        "headers": {"Content-Type": "application/json"},
    },
    "raw json object": lambda p: {
        "content": js(ev(p)).encode(),
        "headers": {"Content-Type": "application/json"},
    },
    "ndjson": lambda p: {
        "content": (js(ev(p)) + "\n" + js(ev(p)) + "\n").encode(),
        "headers": {"Content-Type": "application/x-ndjson"},
    },
    "gzip form": lambda p: {
        "content": gzip.compress(("data=" + _b64([ev(p)])).encode()),
        "headers": {"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded"},
    },
    "gzip json": lambda p: {
        "content": gzip.compress(js([ev(p)]).encode()),
        "headers": {"Content-Encoding": "gzip", "Content-Type": "application/json"},
    },
    "beacon text/plain": lambda p: {
        "content": ("data=" + _b64([ev(p)])).encode(),
        "headers": {"Content-Type": "text/plain;charset=UTF-8"},
    },
    "no content type": lambda p: {
        "content": ("data=" + _b64([ev(p)])).encode(),
        "headers": {"Content-Type": ""},
    },
    "json without content type": lambda p: {"content": js([ev(p)]).encode(), "headers": {"Content-Type": ""}},
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_track_encodings(app: App, project: Project, name: str) -> None:
    kwargs = ENCODINGS[name](project)
    response = app.client.post("/track?verbose=1", **kwargs)
    assert (response.status_code, response.content) == (200, OK_VERBOSE), name
    rows = app.rows(project)
    assert rows and all(r["event"] == "e" and r["distinct_id"] == "u1" for r in rows)
    if "k" in rows[0]["json"]["properties"]:
        assert rows[0]["json"]["properties"]["k"] in (">>>???", "x")


def test_get_with_base64_query(app: App, project: Project) -> None:
    response = app.client.get("/track/", params={"data": _b64(ev(project)), "ip": "1", "_": "123"})
    assert response.content == b"1"
    assert len(app.rows(project)) == 1


def test_query_params_win_over_form_params(app: App, project: Project) -> None:
    response = app.client.post("/track?verbose=0", data={"data": js([ev(project)]), "verbose": "1"})
    assert response.content == b"1"
    response = app.client.post("/track?verbose=1", data={"data": js([ev(project)]), "verbose": "0"})
    assert response.content == OK_VERBOSE


def test_python_sdk_style_form_params(app: App, project: Project) -> None:
    response = app.client.post(
        "/track", data={"data": js(ev(project)), "verbose": 1, "ip": 0, "api_key": "ignored", "test": 1}
    )
    assert response.content == OK_VERBOSE


# -- response bodies ------------------------------------------------------------------------------------


def test_track_plain_and_verbose_bodies(app: App, project: Project) -> None:
    assert app.client.post("/track", data={"data": js([ev(project)])}).content == b"1"
    bad = {"data": js([{"event": "e"}])}  # no token
    assert app.client.post("/track", data=bad).content == b"0"
    response = app.client.post("/track", data={**bad, "verbose": "1"})
    assert (response.status_code, response.content) == (
        200,
        b'{"error":"token, missing or empty","status":0}',
    )
    assert response.headers["content-type"] == "application/json"
    assert app.client.post("/track").content == b"0"
    assert app.client.post("/track?verbose=1").content == b'{"error":"data, missing or empty","status":0}'
    assert app.client.post("/track?verbose=1", data={"data": "[]"}).content == (
        b'{"error":"data, missing or empty","status":0}'
    )


def test_unknown_token_is_still_acknowledged_and_discarded(app: App, project: Project) -> None:
    payload = [{"event": "e", "properties": {"token": "no-such-token", "distinct_id": "u"}}]
    assert app.client.post("/track?verbose=1", data={"data": js(payload)}).content == OK_VERBOSE
    engage = [{"$token": "no-such-token", "$distinct_id": "u", "$set": {"a": 1}}]
    assert app.client.post("/engage", data={"data": js(engage)}).content == b"1"
    assert app.rows(project) == []


def test_img_pixel(app: App, project: Project) -> None:
    response = app.client.get("/track", params={"data": _b64(ev(project)), "img": "1"})
    assert response.content == PIXEL_PNG and response.headers["content-type"] == "image/png"
    assert len(app.rows(project)) == 1


def test_jsonp_callback(app: App, project: Project) -> None:
    response = app.client.get(
        "/track", params={"data": _b64(ev(project)), "callback": "mp._jsc.cb1", "verbose": "1"}
    )
    assert response.content == b'mp._jsc.cb1({"error":null,"status":1})'
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    evil = app.client.get(
        "/track", params={"data": _b64(ev(project)), "callback": "alert(document.cookie)//"}
    )
    assert evil.content == b"1" and evil.headers["content-type"].startswith("text/plain")


def test_head(app: App, project: Project) -> None:
    response = app.client.request("HEAD", "/track", params={"data": _b64(ev(project))})
    assert response.status_code == 200 and response.content == b""
    assert app.rows(project) == []  # HEAD never ingests


# -- /import ---------------------------------------------------------------------------------------------


def imp(project: Project, insert_id: str, **props: Any) -> dict[str, Any]:
    return ev(None, **{"$insert_id": insert_id, **props})


def test_import_strict_ok_and_stored(app: App, project: Project) -> None:
    batch = [imp(project, f"id{i}", n=i) for i in range(3)]
    response = app.client.post("/import?strict=1", json=batch, auth=secret_auth(project))
    assert (response.status_code, response.content) == (
        200,
        b'{"code":200,"num_records_imported":3,"status":"OK"}',
    )
    rows = app.rows(project)
    assert [r["insert_id"] for r in rows] == ["id0", "id1", "id2"]
    props = rows[0]["json"]["properties"]
    assert props["$import"] is True and props["$mp_api_endpoint"] == "api.example.com"
    assert props["mp_processing_time_ms"] >= props["$mp_api_timestamp_ms"]


def test_import_strict_partial_failure(app: App, project: Project) -> None:
    batch = [imp(project, "good1"), imp(project, "bad1", time="yesterday"), imp(project, "good2")]
    response = app.client.post("/import?strict=1", json=batch, auth=secret_auth(project))
    assert response.status_code == 400
    assert response.content == (
        b'{"code":400,"error":"some data points in the request failed validation",'
        b'"failed_records":[{"index":1,"$insert_id":"bad1","insert_id":"bad1","field":"properties.time",'
        b'"message":"\'properties.time\' is invalid: must be specified as seconds since epoch"}],'
        b'"num_records_imported":2,"status":"Bad Request"}'
    )
    assert [r["insert_id"] for r in app.rows(project)] == ["good1", "good2"]


def test_import_non_strict_bodies(app: App, project: Project) -> None:
    auth = secret_auth(project)
    assert app.client.post("/import", json=[imp(project, "a")], auth=auth).content == b"1"
    assert app.client.post("/import?strict=0", json=[{"event": "e"}], auth=auth).content == b"0"
    response = app.client.post("/import?verbose=1", json=[imp(project, "b"), {"event": 1}], auth=auth)
    assert response.content == b'{"code":200,"error":null,"num_records_imported":1,"status":1}'
    response = app.client.post("/import?verbose=1", json=[{"event": 1}], auth=auth)
    assert response.content == (
        b'{"code":200,"error":"some data points in the request failed validation",'
        b'"num_records_imported":0,"status":0}'
    )


def test_import_non_strict_fills_missing_fields(app: App, project: Project) -> None:
    payload = [{"event": "e", "properties": {"time": NOW - 5}}]
    response = app.client.post(
        "/import?verbose=1",
        json=payload,
        auth=secret_auth(project),
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert response.content == b'{"code":200,"error":null,"num_records_imported":1,"status":1}'
    [row] = app.rows(project)
    assert row["distinct_id"].startswith("$ip:") and len(row["insert_id"]) == 36


def test_import_ndjson_gzip(app: App, project: Project) -> None:
    body = "\n".join(js(imp(project, f"n{i}")) for i in range(5)).encode()
    response = app.client.post(
        "/import?strict=1",
        content=gzip.compress(body),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        auth=secret_auth(project),
    )
    assert response.content == b'{"code":200,"num_records_imported":5,"status":"OK"}'


def test_import_ndjson_bad_line_is_a_failed_record(app: App, project: Project) -> None:
    body = (js(imp(project, "l1")) + "\n{broken\n" + js(imp(project, "l3"))).encode()
    response = app.client.post("/import?strict=1", content=body, auth=secret_auth(project))
    result = response.json()
    assert response.status_code == 400 and result["num_records_imported"] == 2
    assert result["failed_records"][0]["index"] == 1 and result["failed_records"][0]["field"] == "event"


def test_import_retry_is_stored_once(app: App, project: Project) -> None:
    batch = [imp(project, f"r{i}") for i in range(10)]
    for _ in range(3):
        assert app.client.post("/import?strict=1", json=batch, auth=secret_auth(project)).status_code == 200
    assert len(app.rows(project)) == 10


def test_import_strict_invalid_utf8(app: App, project: Project) -> None:
    body = (
        b'[{"event":"e","properties":{"time":%d,"distinct_id":"u","$insert_id":"a","city":"M\xfcnchen"}}]'
        % NOW
    )
    response = app.client.post("/import?strict=1", content=body, auth=secret_auth(project))
    assert response.status_code == 400
    assert (
        response.json()["failed_records"][0]["message"]
        == "properties.city is invalid: string should be valid utf8"
    )


# -- authentication -------------------------------------------------------------------------------------


def _basic(text: str, *, urlsafe: bool = False, pad: bool = True) -> dict[str, str]:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return {"Authorization": "Basic " + (encoded if pad else encoded.rstrip("="))}


def test_import_auth_variants(app: App, project: Project) -> None:
    account = app.services.registry.create_service_account(project.project_id, "importer")
    body = [imp(project, "auth1")]
    ok = b'{"code":200,"num_records_imported":1,"status":"OK"}'
    variants: list[tuple[str, dict[str, str]]] = [
        ("", _basic(project.api_secret + ":")),
        ("", _basic(project.api_secret)),  # no colon
        ("", _basic(project.api_secret, urlsafe=True, pad=False)),
        ("", {"Authorization": f"Basic {project.api_secret}:"}),  # plain text
        (f"&project_id={project.project_id}", _basic(f"{account.username}:{account.secret}")),
        ("", _basic(project.token + ":")),  # token as username, no project_id
    ]
    for query, headers in variants:
        response = app.client.post(f"/import?strict=1{query}", json=body, headers=headers)
        assert response.content == ok, headers


def test_import_legacy_api_key(app: App, project: Project) -> None:
    data = {"data": js([imp(project, "k1")]), "api_key": project.token, "verbose": "1"}
    assert app.client.post("/import", data=data).content == (
        b'{"code":200,"error":null,"num_records_imported":1,"status":1}'
    )
    # python/ruby SDKs: Basic secret plus api_key in the form
    assert app.client.post("/import", data=data, auth=secret_auth(project)).status_code == 200


UNAUTHORIZED = b'{"code":401,"error":"Invalid credentials","status":"Unauthorized"}'


def test_import_auth_failures(app: App, project: Project) -> None:
    body = [imp(project, "x")]
    assert app.client.post("/import", json=body).content == UNAUTHORIZED
    assert app.client.post("/import", data={"data": js(body), "api_key": "wrong"}).content == UNAUTHORIZED
    response = app.client.post("/import", json=body, auth=("wrong-secret", ""))
    assert response.status_code == 401
    assert response.json() == {"code": 401, "error": INVALID_SECRET, "status": "Unauthorized"}
    account = app.services.registry.create_service_account(project.project_id, "x")
    # service account without project_id: treated as a secret (Mixpanel's observed message)
    response = app.client.post("/import", json=body, auth=(account.username, account.secret))
    assert response.json()["error"] == INVALID_SECRET
    response = app.client.post(
        f"/import?project_id={project.project_id}", json=body, auth=(account.username, "bad")
    )
    # a refused service account is told so, in /import's 401 shape
    assert response.json() == {"code": 401, "error": INVALID_SERVICE_ACCOUNT, "status": "Unauthorized"}
    other = app.project()
    response = app.client.post(
        f"/import?project_id={other.project_id}", json=body, auth=(account.username, account.secret)
    )
    assert response.status_code == 403 and response.json()["status"] == "Forbidden"
    assert app.rows(project) == []


# -- CORS ------------------------------------------------------------------------------------------------


def test_cors_echoes_origin_with_credentials(app: App, project: Project) -> None:
    response = app.client.post(
        "/track", data={"data": js([ev(project)])}, headers={"Origin": "https://shop.example"}
    )
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-expose-headers"] == "Retry-After"
    plain = app.client.post("/track", data={"data": js([ev(project)])})
    assert plain.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in plain.headers


@pytest.mark.parametrize("path", ["/track", "/track/", "/import", "/engage/", "/groups"])
def test_preflight(app: App, path: str) -> None:
    response = app.client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-custom",
        },
    )
    assert response.status_code == 204 and response.content == b""
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "content-type, x-custom"
    assert int(response.headers["access-control-max-age"]) > 0


def test_cors_on_errors_too(app: App) -> None:
    response = app.client.post("/import", json=[], headers={"Origin": "https://a.example"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "https://a.example"


# -- $mp_api_endpoint -----------------------------------------------------------------------------------


def test_api_endpoint_is_host_without_port(app: App, project: Project) -> None:
    app.client.post("/track", data={"data": js([ev(project)])}, headers={"Host": "api-eu.example.com:8443"})
    assert app.rows(project)[0]["json"]["properties"]["$mp_api_endpoint"] == "api-eu.example.com"


# -- profiles ---------------------------------------------------------------------------------------------


def test_engage_operations_end_to_end(app: App, project: Project) -> None:
    def send(update: dict[str, Any]) -> bytes:
        body = {"$token": project.token, "$distinct_id": "u1", "$ignore_time": True, **update}
        return app.client.post("/engage?verbose=1", data={"data": _b64([body])}).content

    for update in [
        {"$set": {"name": "Ann", "n": 1, "tags": ["a"]}},
        {"$set_once": {"name": "Bob", "first": "x"}},
        {"$add": {"n": 4}},
        {"$append": {"tags": "b"}},
        {"$union": {"tags": ["b", "c"]}},
        {"$remove": {"tags": "a"}},
        {"$unset": ["first"]},
    ]:
        assert send(update) == OK_VERBOSE
    assert app.profiles(project) == {"u1": {"name": "Ann", "n": 5, "tags": ["b", "c"]}}
    assert send({"$delete": ""}) == OK_VERBOSE
    assert app.profiles(project) == {}


def test_groups_and_last_seen(app: App, project: Project) -> None:
    body = [
        {
            "$token": project.token,
            "$group_key": "company",
            "$group_id": "acme",
            "$set": {"plan": "pro"},
            "$time": 1_700_000_000,
        }
    ]
    assert app.client.post("/groups", json=body).content == b"1"
    assert app.profiles(project, "group", "company") == {
        "acme": {"plan": "pro", "$last_seen": "2023-11-14T22:13:20"}
    }


@pytest.mark.parametrize(
    ("update", "error"),
    [
        (
            {"$time": 1.7e15, "$set": {"a": 1}},
            "update 0: $time is invalid: must be seconds or milliseconds since epoch",
        ),
        (
            {"$set": {"a": json.loads("[" * 300 + "]" * 300)}},
            "update 0: $set value cannot be stored: Recursion limit reached",
        ),
    ],
)
def test_engage_unstorable_update_is_rejected_not_retried(
    app: App, project: Project, update: dict[str, Any], error: str
) -> None:
    body = [{"$token": project.token, "$distinct_id": "u-unstorable", **update}]
    response = app.client.post("/engage?verbose=1", json=body)
    assert response.status_code == 200
    assert response.json() == {"error": error, "status": 0}


def test_engage_add_past_64_bits_keeps_the_old_value(app: App, project: Project) -> None:
    for amount in (2**63 - 1, 2**63 - 1, 10):
        body = [
            {"$token": project.token, "$distinct_id": "u-big", "$add": {"n": amount}, "$ignore_time": True}
        ]
        assert app.client.post("/engage", json=body).content == b"1"
    assert app.profiles(project, "user")["u-big"] == {"n": 2**64 - 2}


def test_engage_invalid_update(app: App, project: Project) -> None:
    body = [{"$token": project.token, "$distinct_id": "u1", "$add": {"n": "x"}}]
    assert app.client.post("/engage?verbose=1", json=body).content == (
        b'{"error":"update 0: $add value for \'n\' must be a number","status":0}'
    )


# -- bad input never 500 ------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("broken base64", {"data": {"data": "@@@not-base64@@@"}}),
    ("base64 of garbage", {"data": {"data": base64.b64encode(b"\x00\xff\xfe").decode()}}),
    ("invalid json", {"content": b"[{", "headers": {"Content-Type": "application/json"}}),
    ("invalid json in form", {"data": {"data": "{nope"}}),
    ("broken gzip", {"content": b"\x1f\x8b\x08garbage", "headers": {"Content-Encoding": "gzip"}}),
    ("not gzip", {"content": b"data=x", "headers": {"Content-Encoding": "gzip"}}),
    ("unknown encoding", {"content": b"data=x", "headers": {"Content-Encoding": "br"}}),
    ("numbers", {"content": b"[1,2,3]", "headers": {"Content-Type": "application/json"}}),
    ("scalar json", {"content": b'"text"', "headers": {"Content-Type": "application/json"}}),
    ("null", {"content": b"null", "headers": {"Content-Type": "application/json"}}),
    (
        "deep nesting",
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": "application/json"}},
    ),
    (
        # Deep enough for the lenient parser (invalid UTF-8 forces it) but past the recursion limit
        # of a naive walk over the values.
        "deep nesting with invalid utf8",
        {"content": b'[{"event":"e","properties":{"x":' + b"[" * 900 + b'"\xff"' + b"]" * 900 + b"}}]"},
    ),
    (
        "deep nesting parsed by orjson",
        {
            "content": b'[{"event":"e","properties":{"time":1700000000,"x":'
            + b"[" * 1000
            + b"]" * 1000
            + b"}}]"
        },
    ),
    ("binary", {"content": bytes(range(256)) * 10, "headers": {"Content-Type": "application/octet-stream"}}),
    (
        "wrong types",
        {"content": b'[{"event":["x"],"properties":"y"},{"event":"e","properties":{"time":{}}}]'},
    ),
    ("nan", {"content": b'[{"event":"e","properties":{"time":NaN}}]'}),
    ("huge int", {"content": b'[{"event":"e","properties":{"time":1e400}}]'}),
    ("empty", {"content": b""}),
    ("form without data", {"data": {"verbose": "1"}}),
    ("bad utf8 form", {"content": b"data=%FF%FE&x=%ZZ"}),
]


@pytest.mark.parametrize("path", ["/track", "/import", "/import?strict=1", "/engage", "/groups?verbose=1"])
@pytest.mark.parametrize(("name", "kwargs"), BAD_BODIES, ids=[n for n, _ in BAD_BODIES])
def test_bad_input_never_500(
    app: App, project: Project, path: str, name: str, kwargs: dict[str, Any]
) -> None:
    response = app.client.post(path, auth=secret_auth(project), **kwargs)
    assert response.status_code in (200, 400), (name, response.content)
    if path == "/import?strict=1":
        assert response.status_code == 400
        assert response.json()["code"] == 400
    elif response.content not in (b"0",):
        assert response.json()["status"] == 0
    assert app.rows(project) == []


def test_strict_import_body_error_shape(app: App, project: Project) -> None:
    response = app.client.post("/import?strict=1", content=b"[{", auth=secret_auth(project))
    body = response.json()
    assert response.status_code == 400 and set(body) == {"code", "error", "status"}
    assert body["status"] == "Bad Request" and body["error"].startswith("invalid JSON")


# -- limits -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from make_app(tmp_path_factory.mktemp("small"), max_request_bytes=2000, max_batch_events=5)


TOO_LARGE = (
    b'{"code":413,"error":"request exceeds max limit of 2000 bytes","status":"Request Entity Too Large"}'
)


@pytest.mark.parametrize("path", ["/track", "/import", "/engage"])
def test_413_on_body_size(small_app: App, path: str) -> None:
    project = small_app.project()
    response = small_app.client.post(path, content=b"data=" + b"x" * 2001, auth=secret_auth(project))
    assert (response.status_code, response.content) == (413, TOO_LARGE)


def test_413_after_gunzip(small_app: App) -> None:
    project = small_app.project()
    body = js([ev(None, **{"$insert_id": "a", "pad": "y" * 600})] * 4).encode()
    assert len(body) > 2000
    compressed = gzip.compress(body)
    assert len(compressed) < 2000
    response = small_app.client.post(
        "/import?strict=1",
        content=compressed,
        headers={"Content-Encoding": "gzip"},
        auth=secret_auth(project),
    )
    assert (response.status_code, response.content) == (413, TOO_LARGE)
    bomb = gzip.compress(b" " * 50_000_000)
    response = small_app.client.post("/track", content=bomb, headers={"Content-Encoding": "gzip"})
    assert (response.status_code, response.content) == (413, TOO_LARGE)


def test_413_on_event_count(small_app: App) -> None:
    project = small_app.project()
    batch = [{"event": "e", "properties": {"token": project.token}}] * 6
    response = small_app.client.post("/track", json=batch)
    assert (response.status_code, response.content) == (
        413,
        b'{"code":413,"error":"request exceeds max limit of 5 events","status":"Request Entity Too Large"}',
    )
    assert small_app.client.post("/track", json=batch[:5]).content == b"1"


# -- storage failure: 503, never a 200 for unwritten data -------------------------------------------------


class FailingStore:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def submit_events(self, events: Any) -> Future[None]:
        future: Future[None] = Future()
        future.set_exception(StorageError("the event store could not write this batch; retry"))
        return future

    def submit_profile_updates(self, *args: Any) -> Future[None]:
        future: Future[None] = Future()
        future.set_exception(RuntimeError("disk full"))
        return future


@pytest.fixture
def failing_app(tmp_path: Path) -> Iterator[App]:
    for instance in make_app(tmp_path):
        real = instance.services.store
        instance.services.store = FailingStore(real)  # type: ignore[assignment]
        try:
            yield instance
        finally:
            instance.services.store = real


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/track", lambda p: [ev(p)]),
        ("/import?strict=1", lambda p: [ev(None, **{"$insert_id": "a"})]),
        ("/engage", lambda p: [{"$token": p.token, "$distinct_id": "u", "$set": {"a": 1}}]),
    ],
)
def test_storage_failure_is_503(failing_app: App, path: str, payload: Any) -> None:
    project = failing_app.project()
    response = failing_app.client.post(path, json=payload(project), auth=secret_auth(project))
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 503 and body["status"] == "Service Unavailable"
    assert response.headers["retry-after"] == "1"


def test_response_is_json_for_httpx_parsing(app: App, project: Project) -> None:
    # guards the helper assumptions above: a verbose reply parses as JSON
    assert httpx.Response(200, content=OK_VERBOSE).json() == {"error": None, "status": 1}


# -- backpressure: 429 in Mixpanel's shape ---------------------------------------------------------------


class HeldStore:
    """Holds every write until released, so requests stay in flight."""

    def __init__(self) -> None:
        self.pending: list[Future[None]] = []

    def submit_events(self, events: Any) -> Future[None]:
        future: Future[None] = Future()
        self.pending.append(future)
        return future


@pytest.fixture
def limited_app(tmp_path: Path) -> Iterator[App]:
    yield from make_app(tmp_path, ingest_max_concurrent=1)


async def _two_requests(
    instance: App, project: Project, held: HeldStore
) -> tuple[httpx.Response, httpx.Response]:
    transport = httpx.ASGITransport(app=instance.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as client:
        first = asyncio.ensure_future(client.post("/track", data={"data": js([ev(project)])}))
        while not held.pending:
            await asyncio.sleep(0.001)
        second = await client.post(
            "/track", data={"data": js([ev(project)])}, headers={"Origin": "https://o"}
        )
        held.pending[0].set_result(None)
        return await first, second


def test_429_when_too_many_requests_in_flight(limited_app: App) -> None:
    project = limited_app.project()
    real, held = limited_app.services.store, HeldStore()
    limited_app.services.store = held  # type: ignore[assignment]
    try:
        first, second = asyncio.run(_two_requests(limited_app, project, held))
    finally:
        limited_app.services.store = real
    assert first.content == b"1"
    assert second.status_code == 429
    assert second.content == (
        b'{"code":429,"error":"Project exceeded rate limits. '
        b'Please retry the request with exponential backoff.","status":"Too Many Requests"}'
    )
    assert second.headers["retry-after"] == "1"
    assert second.headers["access-control-expose-headers"] == "Retry-After"
    assert second.headers["access-control-allow-origin"] == "https://o"


# -- fuzz: whatever arrives, the answer is a Mixpanel body, never a 500 ---------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_event_like = st.fixed_dictionaries(
    {},
    optional={
        "event": _json_values | st.text(max_size=10),
        "properties": st.dictionaries(
            st.sampled_from(["time", "distinct_id", "$insert_id", "token", "ip", "$ignore", "x", "$time"]),
            _json_values,
            max_size=6,
        )
        | _json_values,
    },
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.lists(_event_like | _json_values, max_size=5) | _json_values,
    path=st.sampled_from(["/track", "/import", "/import?strict=1", "/engage?verbose=1", "/groups"]),
    garble=st.sampled_from(["none", "base64", "truncate", "bytes"]),
)
def test_fuzzed_bodies_never_500(app: App, project: Project, payload: Any, path: str, garble: str) -> None:
    raw = json.dumps(payload).encode()
    if garble == "base64":
        kwargs: dict[str, Any] = {"data": {"data": base64.b64encode(raw).decode()}}
    elif garble == "truncate":
        kwargs = {"content": raw[: len(raw) // 2]}
    elif garble == "bytes":
        kwargs = {"content": raw.replace(b'"', b'"\xff', 1)}
    else:
        kwargs = {"content": raw}
    response = app.client.post(path, auth=secret_auth(project), **kwargs)
    assert response.status_code in (200, 400), response.content
    if response.content not in (b"0", b"1"):
        assert isinstance(response.json(), dict)


def test_nosniff_on_every_answer(app: App, project: Project) -> None:
    response = app.client.get("/track", params={"data": _b64(ev(project)), "callback": "<script>"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in response.content
