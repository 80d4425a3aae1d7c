#!/usr/bin/env bash
# Install telemed into .venv, load the demo data and serve on the embedded default
# (SQLite in ./data, no Redis, SMS codes printed to the log). Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "telemed needs Python 3.11 or newer (found $("$PY" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/telemed demo
exec .venv/bin/telemed serve "$@"
