#!/bin/sh
# The image's install step: a virtual environment at PREFIX holding rawevents (from SRC) and its
# pinned dependencies. The Dockerfile runs it; the deployment test runs the very same file in a
# scratch directory, so what the image installs is tested without a Docker daemon.
set -eu
SRC=${1:?usage: install.sh SRC PREFIX}
PREFIX=${2:?usage: install.sh SRC PREFIX}
python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --disable-pip-version-check --quiet "$SRC"
# Keep the compiled bytecode (faster start), drop what only building needed.
"$PREFIX/bin/python" -m pip uninstall --quiet --yes pip setuptools 2>/dev/null || true
