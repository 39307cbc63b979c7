#!/bin/sh
# The image's install step: a virtual environment at PREFIX holding rawevents (from SRC) and its
# pinned dependencies. The Dockerfile runs it; the deployment test runs the very same file in a
# scratch directory, so what the image installs is tested without a Docker daemon.
set -eu
SRC=${1:?usage: install.sh SRC PREFIX}
PREFIX=${2:?usage: install.sh SRC PREFIX}
python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --disable-pip-version-check --quiet "$SRC"
# A smaller image: drop what only installing needed (pip, setuptools) and pyarrow's test suite and
# C++ headers (never imported at run time); keep the compiled bytecode (faster start).
"$PREFIX/bin/python" -m pip uninstall --disable-pip-version-check --quiet --yes pip setuptools
rm -rf "$PREFIX"/lib/python3*/site-packages/pyarrow/tests "$PREFIX"/lib/python3*/site-packages/pyarrow/include
