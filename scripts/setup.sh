#!/usr/bin/env bash
# Sets up gluon_resnest and its tests from the package registries. The core: a venv with the package in
# editable mode, MXNet 1.9.1 and the test tools; it must succeed. Then each optional step of
# scripts/setup.d/ (idempotent); one that fails prints one line (what it costs, how to retry) and the
# set-up still succeeds. Safe to re-run. Settings (environment variables):
#   PYTHON      interpreter the venv is made from (default python3); CPython 3.10 to 3.13
#   VENV        the venv's folder (default .venv for python3's version, .venv-X.Y for another one)
#   MXNET       the MXNet distribution when none is installed yet (default mxnet, the CPU build; or a
#               GPU build such as mxnet-cu112); an installed one is always kept
#   SETUP_D     folder of the optional steps (default scripts/setup.d)
#   SETUP_SKIP  optional steps not to run, by name (e.g. "50-horovod")
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MXNET=${MXNET:-mxnet}
SETUP_D=${SETUP_D:-scripts/setup.d}
SETUP_SKIP=${SETUP_SKIP:-}
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
PY_VERSION=$(version "$PYTHON")
if [ -z "${VENV:-}" ]; then
    VENV=.venv
    [ "$PY_VERSION" = "$(version python3)" ] || VENV=.venv-$PY_VERSION
fi
if [ -x "$VENV/bin/python" ] && [ "$(version "$VENV/bin/python")" != "$PY_VERSION" ]; then
    echo "setup: $VENV is Python $(version "$VENV/bin/python"), not $PY_VERSION: set VENV to another folder" >&2
    exit 2
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
export VENV

# The core. MXNet first, unless one (CPU or GPU build) is there: pip must never put a second one over it.
if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("mxnet") is None)'; then
    "$PY" -m pip install -q -e ".[test]"
elif [ "$MXNET" = mxnet ] && "$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then
    "$PY" -m pip install -q -e ".[cpu,test]"
elif "$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then
    "$PY" -m pip install -q -e ".[test]" "$MXNET==1.9.1"
else
    # 3.13+: mxnet's metadata asks numpy<2, which has no wheel here; it runs on numpy 2 with the names
    # gluon_resnest_compat restores. Its real dependencies are requests and graphviz.
    "$PY" -m pip install -q -e ".[test]" requests "graphviz>=0.8.1,<0.9"
    "$PY" -m pip install -q --no-deps "$MXNET==1.9.1"
fi
"$PY" -c 'import gluon_resnest, mxnet, numpy, sys
print("setup: core ok in '"$VENV"': Python %d.%d, mxnet %s, numpy %s" % (sys.version_info[:2] + (mxnet.__version__, numpy.__version__)))'

# The optional steps: each one's "# costs:" line says what is missing without it.
mkdir -p "$VENV/setup-logs"
for step in "$SETUP_D"/*.sh; do
    [ -e "$step" ] || continue
    name=$(basename "$step" .sh)
    case " $SETUP_SKIP " in *" $name "*) echo "setup: $name skipped (SETUP_SKIP)"; continue ;; esac
    log=$VENV/setup-logs/$name.log
    if PYTHON="$PYTHON" bash "$step" >"$log" 2>&1; then
        echo "setup: $name: $(tail -n 1 "$log")"
    else
        cost=$(sed -n 's/^# costs: //p' "$step" | head -n 1)
        echo "setup: optional step $name failed (log: $log); without it: ${cost:-see $step}; retry: VENV=$VENV bash $step"
    fi
done
