"""The identity mappings as the client writes them (docs/identity.md, "The identity mappings
table"), and the export's identity extensions, on every store: `rawevents export
--identity-mappings` in each format; `rawevents export --incremental` writing the mappings changed
in each run, with which a downstream copy re-resolves what it already holds; `as_ingested=1` and
`where` over the stored and the resolved ids."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from rawevents.cli import main
from rawevents.identity import BEFORE_IDENTITY
from rawevents.projects import Project
from tests.client.helpers import ingest, jsonl, utc_s
from tests.export.helpers import basic, rows
from tests.live_server import LiveServer

USER = "user-42"


def device(
    insert_id: str, time_s: int, d: str, user: str | None = None, name: str = "page"
) -> dict[str, Any]:
    props: dict[str, Any] = {"time": time_s, "$insert_id": insert_id, "$device_id": d}
    if user is not None:
        props["$user_id"] = user
    return {"event": name, "properties": props}


def cli(*args: str) -> None:
    """`rawevents ARGS` in this process (it sets a private umask: put the test's back after)."""
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        assert main(list(args)) == 0
    finally:
        os.umask(mask)


def client_args(server: LiveServer, project: Project) -> list[str]:
    return ["export", "--url", server.base_url, "--secret", project.api_secret or ""]


def mappings_endpoint(server: LiveServer, project: Project) -> list[dict[str, str]]:
    response = server.get("/api/rawevents/identity/mappings", headers=basic(project.api_secret or ""))
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def read_mappings(path: Path) -> list[dict[str, str]]:
    if path.name.endswith(".parquet"):
        table = pq.read_table(path)
        assert table.column_names == ["distinct_id", "resolved_distinct_id"]
        return list(table.to_pylist())
    if path.name.endswith(".csv"):
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    return jsonl(path)  # jsonl, or gzipped


def export_lines(
    server: LiveServer, project: Project, first: str, last: str, **params: str
) -> list[dict[str, Any]]:
    response = server.get(
        "/api/2.0/export",
        params={"from_date": first, "to_date": last, **params},
        headers=basic(project.api_secret or ""),
    )
    assert response.status_code == 200, response.text
    return rows(response.content)


def ids(lines: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """`$insert_id` → (`distinct_id`, `$distinct_id_before_identity`)."""
    return {
        line["properties"]["$insert_id"]: (
            line["properties"]["distinct_id"],
            line["properties"].get(BEFORE_IDENTITY),
        )
        for line in lines
    }


def test_identity_mappings_in_every_format(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("identity-mappings-files")
    t = utc_s(2024, 3, 1, 12)
    ingest(
        server,
        project,
        [
            device("d1", t, "D1"),
            device("d1-login", t + 1, "D1", USER),
            device("d2-login", t + 2, "D2", USER),
            device("d9-login", t + 3, "D9", 'user "7",\nquoted'),  # CSV and JSON quoting
            device("d3", t + 4, "D3"),  # never linked: not listed
        ],
    )
    expected = [
        {"distinct_id": "$device:D1", "resolved_distinct_id": USER},
        {"distinct_id": "$device:D2", "resolved_distinct_id": USER},
        {"distinct_id": "$device:D9", "resolved_distinct_id": 'user "7",\nquoted'},
    ]
    assert mappings_endpoint(server, project) == expected
    for fmt in ("jsonl", "jsonl.gz", "csv", "parquet"):
        out = tmp_path / "nested" / f"m.{fmt}"
        cli(*client_args(server, project), "--identity-mappings", "--out", str(out), "--format", fmt)
        assert read_mappings(out) == expected, fmt
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == [
        "m.csv",
        "m.jsonl",
        "m.jsonl.gz",
        "m.parquet",
    ]
    assert (tmp_path / "nested" / "m.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"

    # A project without links: an empty table (a header only, for CSV).
    empty = server.create_project("identity-mappings-none")
    ingest(server, empty, [device("solo", t, "D1")])
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"none.{fmt}"
        cli(*client_args(server, empty), "--identity-mappings", "--out", str(out), "--format", fmt)
        assert read_mappings(out) == []
    assert (tmp_path / "none.csv").read_text() == "distinct_id,resolved_distinct_id\n"


def _run(server: LiveServer, project: Project, out: Path, state: Path) -> list[str]:
    """One incremental run; the names of the files it added."""
    before = set(os.listdir(out)) if out.exists() else set()
    cli(
        *client_args(server, project),
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--out",
        str(out),
        "--incremental",
        str(state),
    )
    return sorted(set(os.listdir(out)) - before)


def test_incremental_runs_write_the_mappings_they_changed(server: LiveServer, tmp_path: Path) -> None:
    project = server.create_project("identity-incremental", "UTC")
    out, state = tmp_path / "out", tmp_path / "state.json"
    day1, day2, day3 = utc_s(2024, 3, 1, 10), utc_s(2024, 3, 2, 10), utc_s(2024, 3, 3, 10)
    ingest(
        server,
        project,
        [
            device("d1-a", day1, "D1"),
            device("d1-login", day1 + 60, "D1", USER, "login"),
            device("d3-login", day1 + 120, "D3", "user-7", "login"),
            device("d2-a", day2, "D2"),  # not linked yet
        ],
    )
    # Run 1: every mapping so far.
    assert _run(server, project, out, state) == [
        "2024-03-01.run0001.jsonl.gz",
        "2024-03-02.run0001.jsonl.gz",
        "identity_mappings.run0001.jsonl.gz",
    ]
    assert jsonl(out / "identity_mappings.run0001.jsonl.gz") == [
        {"distinct_id": "$device:D1", "resolved_distinct_id": USER},
        {"distinct_id": "$device:D3", "resolved_distinct_id": "user-7"},
    ]
    assert ids(jsonl(out / "2024-03-02.run0001.jsonl.gz")) == {"d2-a": ("$device:D2", None)}

    # Run 2: D2 is identified, days late; D1's link sent again changes nothing.
    ingest(
        server,
        project,
        [device("d2-login", day3, "D2", USER, "login"), device("d1-again", day3 + 60, "D1", USER, "login")],
    )
    assert _run(server, project, out, state) == [
        "2024-03-03.run0002.jsonl.gz",
        "identity_mappings.run0002.jsonl.gz",
    ]
    assert jsonl(out / "identity_mappings.run0002.jsonl.gz") == [
        {"distinct_id": "$device:D2", "resolved_distinct_id": USER}
    ]

    # Run 3: events, no new link (a repeated one, an unlinked device): no mappings file.
    ingest(
        server,
        project,
        [
            device("d3-again", utc_s(2024, 3, 4, 9), "D3", "user-7"),
            device("d5-a", utc_s(2024, 3, 4, 10), "D5"),
        ],
    )
    assert _run(server, project, out, state) == ["2024-03-04.run0003.jsonl.gz"]
    # Run 4: nothing new at all.
    assert _run(server, project, out, state) == []

    # Downstream: the events of every run, re-resolved with the latest mapping of each id, read as
    # a full export reads now (d2-a, exported in run 1 as `$device:D2`, is USER's).
    latest: dict[str, str] = {}
    for path in sorted(out.glob("identity_mappings.run*.jsonl.gz")):
        latest.update((m["distinct_id"], m["resolved_distinct_id"]) for m in jsonl(path))
    held = [line for path in sorted(out.glob("2024-*.jsonl.gz")) for line in jsonl(path)]
    people = {
        iid: latest.get(before or stored, stored)  # the id the event was stored with, mapped
        for iid, (stored, before) in ids(held).items()
    }
    now = {
        iid: resolved
        for iid, (resolved, _) in ids(export_lines(server, project, "2024-03-01", "2024-03-04")).items()
    }
    assert people == now
    assert people["d2-a"] == USER and ids(held)["d2-a"] == ("$device:D2", None)

    # docs/identity.md's DuckDB query over the same folder (event files and mapping files).
    query = (
        'SELECT e.properties."$insert_id" AS insert_id,'
        " coalesce(m.resolved_distinct_id, e.properties.distinct_id) AS person"
        f" FROM read_json('{out}/2024-*.jsonl.gz') e"
        f" LEFT JOIN (SELECT * FROM read_json('{out}/identity_mappings.*.jsonl.gz', filename = true)"
        "   QUALIFY row_number() OVER (PARTITION BY distinct_id ORDER BY filename DESC) = 1) m"
        ' ON m.distinct_id = coalesce(e.properties."$distinct_id_before_identity", e.properties.distinct_id)'
    )
    with duckdb.connect() as con:
        assert dict(con.execute(query).fetchall()) == now


@pytest.mark.parametrize("resolve", [True, False], ids=["resolved", "as_ingested"])
def test_where_reads_the_ids_the_export_shows(server: LiveServer, resolve: bool) -> None:
    project = server.create_project("identity-where")
    t = utc_s(2024, 3, 1, 12)
    ingest(
        server,
        project,
        [
            device("d1-a", t, "D1"),
            device("d1-login", t + 1, "D1", USER, "login"),
            {"event": "buy", "properties": {"time": t + 2, "$insert_id": "buy", "$user_id": USER}},
            device("d2-a", t + 3, "D2"),
        ],
    )
    extra = {} if resolve else {"as_ingested": "1"}

    def selected(where: str) -> dict[str, tuple[str, str | None]]:
        return ids(export_lines(server, project, "2024-03-01", "2024-03-01", where=where, **extra))

    user = selected(f'properties["distinct_id"] == "{USER}"')
    device_1 = selected('properties["distinct_id"] == "$device:D1"')
    before = selected('properties["$distinct_id_before_identity"] == "$device:D1"')
    by_device = selected('properties["$device_id"] == "D1"')
    if resolve:  # the canonical ids; `$distinct_id_before_identity` the stored one
        assert user == {"d1-a": (USER, "$device:D1"), "d1-login": (USER, None), "buy": (USER, None)}
        assert device_1 == {}
        assert before == {"d1-a": (USER, "$device:D1")}
        assert by_device == {"d1-a": (USER, "$device:D1"), "d1-login": (USER, None)}
    else:  # every line as stored, and `where` reads it as stored
        assert user == {"d1-login": (USER, None), "buy": (USER, None)}
        assert device_1 == {"d1-a": ("$device:D1", None)}
        assert before == {}
        assert by_device == {"d1-a": ("$device:D1", None), "d1-login": (USER, None)}
    # An unlinked device reads the same either way.
    assert selected('properties["distinct_id"] == "$device:D2"') == {"d2-a": ("$device:D2", None)}
