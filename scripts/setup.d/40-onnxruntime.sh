#!/usr/bin/env bash
# A second, small venv (.venv-ort) with onnxruntime, used by the ONNX export self-check and its test.
# onnxruntime wheels for Python 3.11 newer than 1.15 need numpy >= 1.24.2, which mxnet 1.9.1 cannot
# import, so they cannot share .venv. The exporter finds this interpreter at .venv-ort/bin/python or
# through $GLUON_RESNEST_ORT_PYTHON. Idempotent: does nothing when the venv already imports onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
ORT_VERSION=1.17.3
if [ -x .venv-ort/bin/python ] && .venv-ort/bin/python -c \
    "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')" 2>/dev/null; then
    exit 0
fi
if [ ! -x .venv-ort/bin/python ]; then
    "$PYTHON" -m venv .venv-ort
fi
.venv-ort/bin/python -m pip install -q "onnxruntime==$ORT_VERSION" "numpy>=1.26,<2"
.venv-ort/bin/python -c "import onnxruntime; print('setup: onnxruntime', onnxruntime.__version__, 'in .venv-ort')"
