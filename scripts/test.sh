#!/usr/bin/env bash
# Install telemed with its test tools into .venv, then run ruff, mypy and the whole test
# suite. Needs PostgreSQL on 127.0.0.1:5432 (TELEMED_TEST_PG_DSN to point elsewhere);
# .ci/run starts it on a fresh machine. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh test
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
