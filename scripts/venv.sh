# Sourced by run.sh and test.sh: check Python, make .venv, install telemed with the
# extras given as arguments (e.g. `test`).
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "telemed needs Python 3.11 or newer (found $("$PY" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${1:+[$1]}"
# Serving needs nothing more: the pages' Socket.IO client ships inside the package
# (telemed/web/static/vendor, refreshed by scripts/vendor.py). The tests also read the feed
# with ical.js, validate FHIR with the R4 JSON schema and compare the vendored client with
# package-lock.json: npm devDependencies, installed for the `test` extra only.
if [ "${1:-}" = test ]; then
  command -v npm >/dev/null || { echo "telemed's tests need Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
