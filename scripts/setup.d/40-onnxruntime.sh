#!/usr/bin/env bash
# onnxruntime, for the ONNX export's numerical self-check and its tests. Its wheels need numpy >= 1.24.2:
# where the venv's numpy is that recent (every set-up scripts/setup.sh makes) it goes into the venv and
# the check runs in-process; beside an older numpy it gets a second, small venv (.venv-ort), which the
# exporter finds at .venv-ort/bin/python or through $GLUON_RESNEST_ORT_PYTHON. Idempotent.
# costs: the ONNX export's onnxruntime check (export with --no-runtime-check; its tests skip)
set -euo pipefail
source "$(dirname "$0")/common.bash"
PYTHON=${PYTHON:-python3}
if "$PY" -c 'import onnxruntime' >/dev/null 2>&1; then
    "$PY" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, 'in $VENV')"
    exit 0
fi
if "$PY" -c 'import sys, numpy; v = tuple(int(p) for p in numpy.__version__.split(".")[:3]); sys.exit(v < (1, 24, 2))'
then
    "$PY" -m pip install -q "$NUMPY_PIN" onnxruntime
    "$PY" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, 'in $VENV')"
    exit 0
fi
ORT_VERSION=1.17.3
if ! [ -x .venv-ort/bin/python ] || ! .venv-ort/bin/python -c \
    "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')" 2>/dev/null; then
    [ -x .venv-ort/bin/python ] || "$PYTHON" -m venv .venv-ort
    .venv-ort/bin/python -m pip install -q "onnxruntime==$ORT_VERSION" "numpy>=1.26,<2"
fi
.venv-ort/bin/python -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, 'in .venv-ort')"
