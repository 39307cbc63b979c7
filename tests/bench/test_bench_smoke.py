"""The benchmark entry still runs end to end (tiny size, one repetition; no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ingest_stages, steady_ingest
from bench.run import main
from rawevents.storage.duckdb import compaction


@pytest.mark.server  # bench.live starts `rawevents serve`
def test_bench_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = main(
        ["--events", "2000", "--reps", "1", "--ingest-reps", "1", "--clients", "2", "--out", str(tmp_path)]
    )
    titles = [section.title for section in report.sections]
    assert any(title.startswith("export full range") for title in titles)
    assert any(title.startswith("ingest") for title in titles)
    full = next(s for s in report.sections if s.title.startswith("export full range"))
    http = full.rows[0]
    assert http.system.startswith("rawevents HTTP")
    assert http.rows == 2000
    assert http.seconds > 0
    assert "MISMATCH" not in http.note
    layout = next(s for s in report.sections if s.title.startswith("export full range by arrival"))
    assert [row.rows for row in layout.rows] == [2000, 2000, 2000, 2000, 20, 20]
    assert not any("MISMATCH" in row.note for row in layout.rows)
    ingest = next(s for s in report.sections if s.title.startswith("ingest"))
    assert [row.rows for row in ingest.rows[:2]] == [2000, 2000]  # every event acknowledged, both orders
    assert all("server CPU" in row.note for row in ingest.rows[:2])  # what bounds the figure
    assert "identity case" not in report.facts  # it did not fail
    identity = next(s for s in report.sections if s.title.startswith("identity: full export"))
    assert [row.rows for row in identity.rows] == [2000] * 4  # HTTP and in process, both projects
    assert not any("MISMATCH" in row.note for row in identity.rows)
    assert "identity: resolution" not in report.facts  # every anonymous event of a linked device resolved
    identity_ingest = next(s for s in report.sections if s.title.startswith("identity: ingest"))
    assert [row.rows for row in identity_ingest.rows] == [2000, 2000]
    assert (tmp_path / "results-2000.md").exists()
    assert "| system |" in capsys.readouterr().out


def test_ingest_stages_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_event = ingest_stages.main(["--events", "2000", "--batch", "500", "--out", str(tmp_path)])
    assert list(per_event) == list(ingest_stages.STAGES)
    assert all(micros >= 0 for micros in per_event.values())
    out = capsys.readouterr().out
    assert "rawevents: 2,000 events stored" in out  # every event went through every stage
    assert "floor: 2,000 events stored" in out  # and through the floor's, on the same bodies
    assert "÷ floor" in out


def test_steady_ingest_runs(capsys: pytest.CaptureFixture[str]) -> None:
    results = steady_ingest.main(["--rate", "200", "--seconds", "1", "--history", "300"])
    assert list(results) == ["2% late", "none late (baseline)"]
    assert all(cpu > 0 and rewritten >= 0 for cpu, rewritten in results.values())
    assert "late events ÷ baseline" in capsys.readouterr().out
    assert compaction._merge_runs.__name__ == "_merge_runs"  # the counting wrapper is gone again
