#!/usr/bin/env bash
# Installs Arize Phoenix (a tracing backend with a UI that groups spans by
# session.id), pinned, into its own virtualenv under .tools/. Idempotent; needs
# python3 and PyPI. Prints the `phoenix` executable's path.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOENIX_VERSION="20.26.1"
VENV=".tools/phoenix"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('arize-phoenix') == '$PHOENIX_VERSION'" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "arize-phoenix==$PHOENIX_VERSION"
fi
echo "$PWD/$VENV/bin/phoenix"
