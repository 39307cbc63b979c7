"""Managing pipelines through the CLI (while the server runs) and HTTP, and two pipelines of one
project (JSONL.gz to S3, Parquet to file://) with identity mappings."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from rawevents.pipelines.destination import Destination
from tests.admin.helpers import cli, cli_json
from tests.live_server import LiveServer
from tests.pipelines.conftest import S3Server
from tests.pipelines.helpers import bucket_lines, parquet_rows
from tests.pipelines.live import (
    create,
    export_lines,
    ingest,
    make_events,
    pipeline,
    serving,
    utc_s,
    wait_delivered,
)

pytestmark = pytest.mark.server
PATH = "/api/rawevents/pipelines"


def _http(server: LiveServer, method: str, path: str, secret: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.base_url + path, auth=(secret, ""), timeout=30, **kwargs)


def test_cli_and_http_manage_pipelines(tmp_path: Path, s3_env: S3Server) -> None:
    bucket = s3_env.bucket()
    with serving(tmp_path / "data", s3_env) as server:
        project = server.create_project("api")
        other = server.create_project("other")
        secret, other_secret = project.api_secret or "", other.api_secret or ""
        local = create(server, project, (tmp_path / "out").as_uri(), "--name", "local", "--format", "parquet")
        assert local["name"] == "local" and local["format"] == "parquet" and local["every_seconds"] == 1

        made = _http(
            server,
            "POST",
            PATH,
            secret,
            json={"to": f"s3://{bucket}/api", "every": "1h", "events": ["buy"], "name": "remote"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["every_seconds"] == 3600 and made.json()["events"] == ["buy"]
        names = [p["name"] for p in _http(server, "GET", PATH, secret).json()]
        assert names == ["local", "remote"]
        assert _http(server, "GET", PATH, other_secret).json() == []
        assert _http(server, "GET", PATH + "/remote", other_secret).status_code == 404
        assert requests.get(server.base_url + PATH, timeout=30).status_code == 401
        refused = _http(server, "POST", PATH, secret, json={"to": (tmp_path / "x").as_uri()})
        assert refused.status_code == 400 and "file://" in refused.json()["error"]
        bad = _http(server, "POST", PATH, secret, json={"to": f"s3://{bucket}/x", "where": "properties["})
        assert bad.status_code == 400
        taken = _http(server, "POST", PATH, secret, json={"to": f"s3://{bucket}/x", "name": "remote"})
        assert taken.status_code == 400 and "already exists" in taken.json()["error"]

        assert _http(server, "POST", PATH + "/local/pause", secret).json()["status"] == "paused"
        ingest(server, project, make_events(50, utc_s(2024, 1, 1), 60, "a"))
        time.sleep(2.5)
        assert pipeline(server, "local").state.run == 0  # paused: no run
        assert (
            cli_json("pipeline", "resume", "local", "--data-dir", str(server.data_dir))["status"] == "active"
        )
        wait_delivered(server, project, "local")
        status = _http(server, "GET", PATH + "/local", secret).json()
        assert status["runs"][0]["outcome"] == "committed" and status["runs"][0]["rows"] == 50
        assert status["pending_run"] is None and status["runs_committed"] == 1
        shown = cli_json("pipeline", "status", "local", "--data-dir", str(server.data_dir))
        assert shown["runs"] == status["runs"]

        assert _http(server, "DELETE", PATH + "/remote", secret).json()["deleted"] is True
        assert [p["name"] for p in cli_json("pipeline", "list", "--data-dir", str(server.data_dir))] == [
            "local"
        ]
        missing = cli("pipeline", "status", "remote", "--data-dir", str(server.data_dir), check=False)
        assert missing.returncode == 2 and "no pipeline named 'remote'" in missing.stderr


def test_two_pipelines_on_one_project_with_identity_mappings(tmp_path: Path, s3_env: S3Server) -> None:
    bucket = s3_env.bucket()
    s3_url, file_url = f"s3://{bucket}/two", (tmp_path / "lake").as_uri()
    with serving(tmp_path / "data", s3_env) as server:
        project = server.create_project("two", "Europe/Berlin")
        ingest(server, project, make_events(700, utc_s(2024, 10, 20), 1800, "ev"))  # over the DST end
        first = create(server, project, s3_url)["name"]
        second = create(server, project, file_url, "--format", "parquet")["name"]
        wait_delivered(server, project, first)
        wait_delivered(server, project, second)
        # An anonymous device's event, delivered; then its login, delivered by a later run.
        anon = {
            "event": "view",
            "properties": {"time": utc_s(2024, 10, 21), "$device_id": "D1", "$insert_id": "d1"},
        }
        login = {
            "event": "login",
            "properties": {
                "time": utc_s(2024, 10, 22),
                "$device_id": "D1",
                "$user_id": "U1",
                "$insert_id": "l1",
            },
        }
        ingest(server, project, [anon])
        wait_delivered(server, project, first)
        wait_delivered(server, project, second)
        ingest(server, project, [login])
        wait_delivered(server, project, first)
        wait_delivered(server, project, second)

        # The bucket holds each event once; the device's event as it read when delivered (its
        # id unresolved), which the identity mappings of the login's run resolve.
        exported = export_lines(server, project)
        delivered = bucket_lines(Destination(s3_url))
        [early] = [line for line in delivered if b'"$insert_id":"d1"' in line]
        [now] = [line for line in exported if b'"$insert_id":"d1"' in line]
        assert orjson.loads(early)["properties"]["distinct_id"] == "$device:D1"
        assert orjson.loads(now)["properties"]["distinct_id"] == "U1"
        assert delivered - Counter([early]) == exported - Counter([now])
        rows = parquet_rows(Destination(file_url))
        assert sorted(r["$insert_id"] for r in rows) == sorted(
            orjson.loads(line)["properties"]["$insert_id"] for line in exported
        )
        for url in (s3_url, file_url):
            assert Destination(url).list("identity_mappings") == [
                f"identity_mappings/run-00000003.{'jsonl.gz' if url == s3_url else 'parquet'}"
            ]
        mapping = gzip.decompress(Destination(s3_url).get_bytes("identity_mappings/run-00000003.jsonl.gz"))
        assert orjson.loads(mapping) == {"distinct_id": "$device:D1", "resolved_distinct_id": "U1"}
