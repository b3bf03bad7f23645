#!/usr/bin/env bash
# Installs the real OpenTelemetry collector the end-to-end tests run against:
# rotel (a collector written in Rust, shipped as a Python wheel), pinned, into a
# virtualenv under .tools/ in this repository. Idempotent; needs python3 and the
# package registry (PyPI), nothing else. Prints the rotel binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_VERSION="0.0.1a15"
VENV=".tools/venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('rotel') == '$ROTEL_VERSION'" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "rotel==$ROTEL_VERSION"
fi
BIN=$("$VENV/bin/python" -c "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))")
if [ ! -x "$BIN" ]; then
  echo "rotel-agent not found at $BIN" >&2
  exit 1
fi
echo "$BIN"
