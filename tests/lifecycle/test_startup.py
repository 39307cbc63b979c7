"""Starting the server: an operator's mistake is one clear line on stderr and a non-zero exit,
never a traceback and never "listening"; files in the data directory are private."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from tests.import_load import GZIP_JSON, import_body
from tests.live_server import LiveServer, free_port, serve_command

pytestmark = pytest.mark.server  # every test here starts `rawevents serve`


def _serve(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    result = subprocess.run(
        [*prefix, *serve_command(*args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return result.returncode, result.stderr


def _one_line_error(code: int, stderr: str) -> str:
    assert code != 0
    assert "Traceback" not in stderr and "listening" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("rawevents: ")
    return lines[0]


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_error(*_serve("--data-dir", str(tmp_path), "--port", str(port)))
    assert line == (
        f"rawevents: port {port} on 127.0.0.1 is already in use (another server?);"
        " choose another with --port or RAWEVENTS_PORT"
    )


def test_a_data_dir_in_use_by_another_server_is_one_line(tmp_path: Path) -> None:
    first = LiveServer(tmp_path / "data").start()
    assert first.process is not None
    pid = first.process.pid
    try:
        line = _one_line_error(*_serve("--data-dir", str(first.data_dir), "--port", str(free_port())))
    finally:
        first.stop()
    assert line == (
        f"rawevents: data directory {first.data_dir} is in use by another process (PID {pid}),"
        " probably another rawevents server: stop it, or give this one its own --data-dir"
    )


def _as_unprivileged() -> tuple[str, ...]:
    """Root writes anywhere: drop the capabilities that let it (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be simulated")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner")


def test_a_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    try:
        code, stderr = _serve("--data-dir", str(data), "--port", str(free_port()), prefix=_as_unprivileged())
        line = _one_line_error(code, stderr)
    finally:
        data.chmod(0o700)
    assert line == f"rawevents: data directory {data} is not writable: Permission denied"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAWEVENTS_DEMO": "yse"}, "setting demo (RAWEVENTS_DEMO): expected true/false, got 'yse'"),
        (
            {"RAWEVENTS_PORT": "http"},
            "setting port (RAWEVENTS_PORT): expected an integer from 1 to 65535, got 'http'",
        ),
        (
            {"RAWEVENTS_PORT": "70000"},
            "setting port (RAWEVENTS_PORT): expected an integer from 1 to 65535, got '70000'",
        ),
        (
            {"RAWEVENTS_MAX_BATCH_EVENTS": "-5"},
            "setting max_batch_events (RAWEVENTS_MAX_BATCH_EVENTS): expected an integer >= 1, got '-5'",
        ),
        (
            {"RAWEVENTS_LOG_LEVEL": "loud"},
            "setting log_level (RAWEVENTS_LOG_LEVEL): expected one of debug, info, warning, error, critical,"
            " got 'loud'",
        ),
        (
            {"RAWEVENTS_ENGINE_MEMORY_LIMIT": "lots"},
            "setting engine_memory_limit (RAWEVENTS_ENGINE_MEMORY_LIMIT):"
            " expected a size such as 192MB or 1GB, got 'lots'",
        ),
    ],
)
def test_a_bad_setting_in_the_environment_fails_naming_it(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    assert _one_line_error(*_serve("--data-dir", str(tmp_path), env=env)) == f"rawevents: {message}"


def test_a_bad_flag_fails_naming_the_setting(tmp_path: Path) -> None:
    line = _one_line_error(*_serve("--data-dir", str(tmp_path), "--commit-interval-ms", "soon"))
    setting = "setting commit_interval_ms (--commit-interval-ms)"
    assert line == f"rawevents: {setting}: expected an integer >= 0, got 'soon'"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('demo = "yse"\n', "setting demo (demo in {path}): expected true/false, got 'yse'"),
        (
            "port = 8000.5\n",
            "setting port (port in {path}): expected an integer from 1 to 65535, got '8000.5'",
        ),
        ("prot = 8000\n", "config file {path}: unknown setting 'prot' (see README, Settings)"),
        ("port = \n", "config file {path}: not valid TOML: Invalid value (at line 1, column 8)"),
    ],
)
def test_a_bad_config_file_fails_naming_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "rawevents.toml"
    path.write_text(toml)
    for args, env in ((("--config", str(path)), {}), ((), {"RAWEVENTS_CONFIG": str(path)})):
        line = _one_line_error(*_serve("--data-dir", str(tmp_path / "data"), *args, env=env))
        assert line == "rawevents: " + message.format(path=path)


def test_a_missing_config_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    line = _one_line_error(*_serve("--config", str(path)))
    assert line == f"rawevents: config file {path}: No such file or directory"


def test_the_config_file_sets_the_server_and_the_environment_and_flags_override_it(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "rawevents.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-file"}"\nport = 1\ndemo = true\nmax_batch_events = 3\n')
    process = subprocess.Popen(
        serve_command("--config", str(config), "--port", str(port)),
        env={**os.environ, "RAWEVENTS_MAX_BATCH_EVENTS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(6)]  # the demo data written, then listening
        assert f"rawevents listening on http://127.0.0.1:{port}\n" in lines, lines
        demo = next(line for line in lines if line.startswith("rawevents demo project: "))
        assert '"name": "demo"' in demo  # demo = true from the file
        assert (tmp_path / "from-file" / "registry.sqlite3").exists()
        events = [
            {"event": "e", "properties": {"time": 1_700_000_000, "$insert_id": str(i)}} for i in range(3)
        ]
        response = requests.post(
            f"http://127.0.0.1:{port}/track", json=events, params={"verbose": 1}, timeout=10
        )
        assert response.json()["error"] == "request exceeds max limit of 2 events"  # env beats the file
    finally:
        process.terminate()
        process.communicate(timeout=20)  # reaps it and closes its pipe
        assert process.returncode == 0


def test_every_file_in_the_data_dir_is_private(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", env={"RAWEVENTS_INGEST_PROCESSES": "1"}).start()
    try:
        project = server.create_project()
        body, _ = import_body("modes", 2000)
        response = server.post(
            "/import?strict=1", data=body, headers=GZIP_JSON, auth=(project.api_secret, "")
        )
        assert response.status_code == 200
        _assert_private(server.data_dir, expect_wal=True)
    finally:
        server.stop()
    _assert_private(server.data_dir, expect_wal=False)


def _assert_private(data_dir: Path, expect_wal: bool) -> None:
    seen = {data_dir: stat.S_IMODE(data_dir.stat().st_mode)}
    for path in data_dir.rglob("*"):
        seen[path] = stat.S_IMODE(path.stat().st_mode)
    loose = {str(p): oct(m) for p, m in seen.items() if m != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}
    assert (data_dir / "events.duckdb.wal").exists() == expect_wal
    assert (data_dir / "tmp").is_dir() and (data_dir / "registry.sqlite3").exists()
