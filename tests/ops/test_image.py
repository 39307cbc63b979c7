"""The container image's steps, run without a Docker daemon: the Dockerfile is read, its build
stage's COPY and RUN lines are replayed in a scratch directory standing in for the image's root
(so `/src` is `<scratch>/src`), then its ENV, USER, WORKDIR and CMD start the server and its
HEALTHCHECK and `/readyz` are probed.

Two things are emulated rather than run: the runtime stage's `useradd` line (it would add a user
to this machine) becomes the existing unprivileged user `nobody`, and the image's port is
replaced by a free one. When the tests run as root the server runs as `nobody`, as in the image;
otherwise as the (already unprivileged) current user. Slow (a real pip install into a fresh
virtual environment, about a minute): marked `image`, and part of the default suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.live_server import free_port

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
_ABSOLUTE = re.compile(r"(?<![\w$./-])/(?=[A-Za-z])[\w./-]*")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        return self.all(keyword)[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile as (INSTRUCTION, arguments), continuations joined, comments dropped."""
    stages: list[Stage] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(parts[-1] if len(parts) == 3 else str(len(stages))))
        stages[-1].instructions.append((keyword, args.strip()))
    return stages


def in_root(root: Path, text: str) -> str:
    """Absolute paths of the image rewritten into the scratch root."""
    return _ABSOLUTE.sub(lambda m: str(root) + m.group(0), text)


def copy_into(root: Path, args: str) -> None:
    *sources, destination = shlex.split(args)
    target = Path(in_root(root, destination))
    for source in sources:
        path = REPO / source
        where = target / path.name if destination.endswith("/") else target
        where.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, where, ignore=_IGNORED)
        else:
            shutil.copy2(path, where)


def env_pairs(args: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(args))


def usable_by(uid: int | None, python: str) -> bool:
    """Whether `python` (>= 3.11, with venv) runs as `uid`: a venv links back to its interpreter."""
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    try:
        return (
            subprocess.run([python, "-c", check], user=uid, capture_output=True, timeout=30).returncode == 0
        )
    except OSError:
        return False


def server_user() -> int | None:
    return NOBODY if os.geteuid() == 0 else None


def base_python(uid: int | None) -> str:
    candidates = [
        sys._base_executable,
        "/usr/local/bin/python3",
        shutil.which("python3.11"),
        "/usr/bin/python3",
    ]
    for candidate in candidates:
        if candidate and usable_by(uid, candidate):
            return candidate
    pytest.fail(f"no Python 3.11+ with venv that uid {uid} may run: {candidates}")


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private to the current user, and `nobody` must reach in.
    scratch = Path(tempfile.mkdtemp(prefix="rawevents-image-"))
    scratch.chmod(0o755)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.server
@pytest.mark.image
def test_image_installs_starts_and_is_ready(root: Path) -> None:
    build, runtime = parse_dockerfile((REPO / "Dockerfile").read_text())
    assert runtime.last("FROM") == build.last("FROM").split()[0] == "python:3.11-slim"
    user = server_user()

    # Build stage, as docker build runs it (as root there; here as whoever runs the tests), with the
    # scratch root's `python3` an interpreter the server's user can run.
    bin_dir = root / "build-bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(base_python(user))
    build_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for keyword, args in build.instructions:
        if keyword == "COPY":
            copy_into(root, args)
        elif keyword == "RUN":
            subprocess.run(["sh", "-c", in_root(root, args)], env=build_env, check=True, timeout=600)

    # Runtime stage: what `useradd` + `mkdir /data` + `chown` set up, for an existing user.
    [setup] = runtime.all("RUN")
    assert "useradd" in setup and "chown rawevents:rawevents /data" in setup and "chmod 0700 /data" in setup
    assert [args.split()[-1] for args in runtime.all("COPY")] == ["/opt/rawevents"]
    data = Path(in_root(root, "/data"))
    data.mkdir(mode=0o700)
    if user is not None:
        os.chown(data, user, user)
    assert runtime.last("USER") == "rawevents" and runtime.last("VOLUME") == "/data"

    env = {"PATH": os.environ["PATH"], "HOME": str(data), "LANG": "C.UTF-8"}
    for args in runtime.all("ENV"):
        for name, value in env_pairs(args).items():
            env[name] = in_root(root, value).replace("$PATH", os.environ["PATH"])
    port = free_port()
    env["RAWEVENTS_PORT"] = str(port)  # the image's 8000 may be taken on this machine
    assert env["RAWEVENTS_DATA_DIR"] == str(data)
    workdir = in_root(root, runtime.last("WORKDIR"))
    command = json.loads(runtime.last("CMD"))
    assert command == ["rawevents", "serve", "--host", "0.0.0.0"]
    healthcheck = json.loads(runtime.last("HEALTHCHECK").partition("CMD ")[2])

    log = root / "server.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            command, cwd=workdir, env=env, user=user, group=user, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", server, log)
        assert ready.json() == {"status": "ready"}
        health = subprocess.run(healthcheck, cwd=workdir, env=env, user=user, capture_output=True, timeout=30)
        assert health.returncode == 0, health.stderr
        stat = (data / "events.duckdb").stat()
        assert user is None or stat.st_uid == user  # the store belongs to the unprivileged user
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # With the server gone, the healthcheck reports it.
    assert subprocess.run(healthcheck, env=env, user=user, capture_output=True, timeout=30).returncode == 1


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> requests.Response:
    deadline = time.monotonic() + 120  # a ceiling for a loaded machine; it is ready in seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"not ready in 120 s: {log.read_text()}")
