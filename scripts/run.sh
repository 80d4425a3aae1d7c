#!/usr/bin/env bash
# Install telemed into .venv, load the demo data and serve on the embedded default
# (SQLite in ./data, no Redis, SMS codes printed to the log). Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh ""  # no extras (an explicit empty $1, not ours)
.venv/bin/telemed demo
exec .venv/bin/telemed serve "$@"
