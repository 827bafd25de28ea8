#!/usr/bin/env bash
# A second, small venv (.venv-ort) with onnxruntime, used by the ONNX export self-check and its test.
# onnxruntime wheels for Python 3.11 newer than 1.15 need numpy >= 1.24.2, which mxnet 1.9.1 cannot
# import, so they cannot share .venv. The exporter finds this interpreter at .venv-ort/bin/python or
# through $GLUON_RESNEST_ORT_PYTHON. onnx is there for onnxruntime's quantizer (quantize_static and
# quant_pre_process import it), which writes --format onnx-int8 files. Idempotent: does nothing when the venv
# already imports both.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
ORT_VERSION=1.17.3
ONNX_VERSION=1.16.2
if [ -x .venv-ort/bin/python ] && .venv-ort/bin/python -c \
    "import onnx, onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION' or \
              onnx.__version__ != '$ONNX_VERSION')" \
    2>/dev/null; then
    exit 0
fi
if [ ! -x .venv-ort/bin/python ]; then
    "$PYTHON" -m venv .venv-ort
fi
.venv-ort/bin/python -m pip install -q "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" "numpy>=1.26,<2"
.venv-ort/bin/python -c "import onnxruntime; print('setup: onnxruntime', onnxruntime.__version__, 'in .venv-ort')"
