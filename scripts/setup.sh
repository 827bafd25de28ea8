#!/usr/bin/env bash
# Sets up everything gluon_resnest and its tests need, from the package registries, on a fresh
# Python 3.11 machine: the project venv (.venv) with the package installed in editable mode, then the
# optional pieces in scripts/setup.d/ (each one idempotent). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[test]"
for extra in scripts/setup.d/*.sh; do
    [ -e "$extra" ] || continue
    echo "setup: $extra"
    bash "$extra"
done
