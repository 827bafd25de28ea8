#!/usr/bin/env bash
# onnxruntime, for the ONNX export's numerical self-check, --format onnx-int8 (onnxruntime's quantizer,
# which imports onnx) and their tests. Its wheels need numpy >= 1.24.2: where the venv's numpy is that
# recent (every set-up scripts/setup.sh makes) it goes into the venv as setup.py's "onnxruntime" extra
# says (1.17.3 beside onnx 1.14.1, whose quantizer works with that onnx) and runs in-process; beside an
# older numpy it gets a second, small venv (.venv-ort) with onnx for the quantizer, which the exporter
# finds at .venv-ort/bin/python or through $GLUON_RESNEST_ORT_PYTHON. Idempotent.
# costs: the ONNX export's onnxruntime check (export with --no-runtime-check; its tests skip) and --format onnx-int8
set -euo pipefail
source "$(dirname "$0")/common.bash"
PYTHON=${PYTHON:-python3}
report() { "$1" -c "import onnx, onnxruntime; print('onnxruntime', onnxruntime.__version__, 'onnx', onnx.__version__, 'in $2')"; }
if "$PY" -c 'import sys, numpy; v = tuple(int(p) for p in numpy.__version__.split(".")[:3]); sys.exit(v < (1, 24, 2))'
then
    # pip leaves a satisfied requirement alone, so a re-run installs nothing.
    "$PY" -m pip install -q "$NUMPY_PIN" -e ".[onnxruntime]"
    report "$PY" "$VENV"
    exit 0
fi
ORT_VERSION=1.17.3
ONNX_VERSION=1.16.2
if ! [ -x .venv-ort/bin/python ] || ! .venv-ort/bin/python -c \
    "import onnx, onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION' or onnx.__version__ != '$ONNX_VERSION')" \
    2>/dev/null; then
    [ -x .venv-ort/bin/python ] || "$PYTHON" -m venv .venv-ort
    .venv-ort/bin/python -m pip install -q "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" "numpy>=1.26,<2"
fi
report .venv-ort/bin/python .venv-ort
