"""Incremental export: each run writes exactly the events stored since the previous run, even
when they belong to days already exported (late events), on every store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from rawevents.client import ClientError, Connection, Credentials, ExportOptions, export
from rawevents.client.progress import SilentProgress
from tests.client.helpers import connect, event, ingest, insert_ids, utc_s
from tests.export.helpers import basic
from tests.live_server import LiveServer

FIRST, LAST = dt.date(2024, 3, 1), dt.date(2024, 3, 4)


def _options(out: Path, state: Path, **kwargs: object) -> ExportOptions:
    return ExportOptions(FIRST, LAST, out, incremental=state, **kwargs)  # type: ignore[arg-type]


def test_late_events_are_picked_up_exactly_once(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("incremental", "Europe/Berlin")
    ingest(server, project, [event("e", utc_s(2024, 3, d, 12), f"a{d}") for d in (1, 2, 3)])
    out, state = tmp_path / "out", tmp_path / "state.json"
    with connect(server, project) as client:
        first = export(client, _options(out, state))
        assert first.mode == "cursor"
        assert [f.path.name for f in first.files if f.path] == [
            "2024-03-01.run0001.jsonl.gz",
            "2024-03-02.run0001.jsonl.gz",
            "2024-03-03.run0001.jsonl.gz",
        ]
        assert insert_ids([f.path for f in first.files if f.path]) == ["a1", "a2", "a3"]

        # Late events for days already exported, one new day, and a retry of a stored event.
        late = [event("e", utc_s(2024, 3, 1, 13), "late1"), event("e", utc_s(2024, 3, 2, 8), "late2")]
        ingest(
            server,
            project,
            [*late, event("e", utc_s(2024, 3, 4, 1), "new4"), event("e", utc_s(2024, 3, 1, 12), "a1")],
        )
        second = export(client, _options(out, state))
        written = [f.path for f in second.files if f.path]
        assert [p.name for p in written] == [
            "2024-03-01.run0002.jsonl.gz",
            "2024-03-02.run0002.jsonl.gz",
            "2024-03-04.run0002.jsonl.gz",
        ]
        assert insert_ids(written) == ["late1", "late2", "new4"]
        assert second.cursor != first.cursor

        third = export(client, _options(out, state))
        assert [f for f in third.files if f.path] == []
        assert third.cursor == second.cursor

    # Every run together is the full export, each event once.
    assert insert_ids(sorted(out.iterdir())) == ["a1", "a2", "a3", "late1", "late2", "new4"]


class _StopAfter(SilentProgress):
    def __init__(self, units: int) -> None:
        self.left = units

    def unit_done(self, label: str, events: int, *, skipped: bool = False) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_an_interrupted_run_is_finished_with_the_same_slice(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("incremental-resume", "UTC")
    ingest(server, project, [event("e", utc_s(2024, 3, d, 12), f"b{d}") for d in (1, 2, 3, 4)])
    out, state = tmp_path / "out", tmp_path / "state.json"
    with connect(server, project) as client:
        with pytest.raises(KeyboardInterrupt):
            export(client, _options(out, state), _StopAfter(2))
        # Stored after the cut: belongs to the next run, not to the one being finished.
        ingest(server, project, [event("e", utc_s(2024, 3, 1, 18), "after-cut")])
        finished = export(client, _options(out, state))
        assert [f.label for f in finished.files] == ["2024-03-03", "2024-03-04"]
        assert insert_ids([f.path for f in finished.files if f.path]) == ["b3", "b4"]
        following = export(client, _options(out, state))
        assert insert_ids([f.path for f in following.files if f.path]) == ["after-cut"]
    assert insert_ids(sorted(out.iterdir())) == ["after-cut", "b1", "b2", "b3", "b4"]


def test_cursor_extension_is_invisible_to_plain_requests(server: LiveServer) -> None:
    project = server.create_project("cursor-http", "UTC")
    ingest(server, project, [event("e", utc_s(2024, 3, 1, 12), "c1")])
    auth = basic(project.api_secret)
    plain = server.get("/api/2.0/export?from_date=2024-03-01&to_date=2024-03-01", headers=auth)
    assert plain.status_code == 200 and "x-rawevents-cursor" not in plain.headers
    probed = server.get("/api/2.0/export?cursor=1&from_date=2024-03-01&to_date=2024-03-01", headers=auth)
    cursor = probed.headers["x-rawevents-cursor"]
    assert probed.content == plain.content
    # Without dates, "everything after the cursor": nothing yet, then exactly the new event.
    assert server.get(f"/api/2.0/export?after_cursor={cursor}", headers=auth).content == b""
    ingest(server, project, [event("e", utc_s(2024, 2, 1, 12), "c2")])
    later = server.get(f"/api/2.0/export?after_cursor={cursor}", headers=auth)
    assert [row["properties"]["$insert_id"] for row in _rows(later.content)] == ["c2"]
    # Pinned slices are repeatable.
    pinned = f"after_cursor={cursor}&upto_cursor={later.headers['x-rawevents-cursor']}"
    ingest(server, project, [event("e", utc_s(2024, 2, 1, 13), "c3")])
    assert server.get(f"/api/2.0/export?{pinned}", headers=auth).content == later.content


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("garbage!", "after_cursor is not a cursor issued by this server, got 'garbage!'"),
        # {"v":1,"kind":"seq","p":999,"pos":1}
        ("eyJ2IjoxLCJraW5kIjoic2VxIiwicCI6OTk5LCJwb3MiOjF9", "after_cursor belongs to project 999"),
    ],
)
def test_bad_cursors_are_400s(server: LiveServer, cursor: str, message: str) -> None:
    project = server.create_project("cursor-bad", "UTC")
    response = server.get(f"/api/2.0/export?after_cursor={cursor}", headers=basic(project.api_secret))
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def _rows(body: bytes) -> list[dict[str, object]]:
    import orjson

    return [orjson.loads(line) for line in body.split(b"\n") if line]


class _Mixpanelish(httpx.BaseTransport):
    """The live server as a server without the cursor extension (Mixpanel): no cursor header."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        for name in ("cursor", "after_cursor", "upto_cursor"):
            url = url.copy_remove_param(name)
        return self.inner.handle_request(httpx.Request(request.method, url, headers=request.headers))

    def close(self) -> None:
        self.inner.close()


def test_without_cursors_each_run_refetches_the_lookback_window(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("lookback", "UTC")
    ingest(server, project, [event("e", utc_s(2024, 3, d, 12), f"l{d}") for d in (1, 2, 3)])
    out, state = tmp_path / "out", tmp_path / "state.json"
    with connect(server, project, transport=_Mixpanelish()) as client:
        first = export(client, _options(out, state, lookback_days=2))
        assert first.mode == "lookback" and first.cursor is None
        assert insert_ids([f.path for f in first.files if f.path]) == ["l1", "l2", "l3"]
        ingest(
            server,
            project,
            [event("e", utc_s(2024, 3, 3, 13), "late3"), event("e", utc_s(2024, 3, 4, 1), "new4")],
        )
        second = export(client, _options(out, state, lookback_days=2))
    # Days 3 and 4 again (the window before the last run's last day, 2024-03-04): late3 and new4
    # are caught, l3 comes again (a duplicate to drop on $insert_id).
    assert [f.label for f in second.files] == ["2024-03-03", "2024-03-04"]
    assert insert_ids([f.path for f in second.files if f.path]) == ["l3", "late3", "new4"]


def test_a_state_file_belongs_to_one_server_and_one_filter(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("state-file", "UTC")
    out, state = tmp_path / "out", tmp_path / "state.json"
    with connect(server, project) as client:
        export(client, _options(out, state, events=("a",)))
        with pytest.raises(ClientError, match="other --event/--where filters"):
            export(client, _options(out, state, events=("b",)))
    with (
        Connection("http://127.0.0.1:1", Credentials("s")) as elsewhere,
        pytest.raises(ClientError, match="belongs to"),
    ):
        export(elsewhere, _options(out, state, events=("a",)))
