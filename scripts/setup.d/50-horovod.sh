#!/usr/bin/env bash
# Horovod, the official ResNeSt recipe's distributed engine, for train_imagenet.py --kv-store horovod.
# It has no wheel: it is built from source against the installed mxnet (a few minutes of CPU), with Gloo
# (no MPI needed) and without the other frameworks. Idempotent: skipped when horovod.mxnet imports.
# costs: --kv-store horovod (distributed training through Horovod; its tests skip)
set -euo pipefail
source "$(dirname "$0")/common.bash"
if "$PY" -c 'import horovod.mxnet' >/dev/null 2>&1; then
    echo "horovod: already installed"
    exit 0
fi
# Horovod 0.28's build needs cmake < 4; use the system one when it fits, else a pinned one in the venv.
cmake_major=$(cmake --version 2>/dev/null | sed -n 's/^cmake version \([0-9]*\).*/\1/p')
if [ -z "$cmake_major" ] || [ "$cmake_major" -ge 4 ]; then
    "$PY" -m pip install -q "$NUMPY_PIN" "cmake>=3.13,<4"
    PATH="$(cd "$VENV/bin" && pwd):$PATH"; export PATH
fi
# Keep numpy pinned in the same resolve: a bare install may upgrade it and break mxnet.
"$PY" -m pip install -q "$NUMPY_PIN" setuptools wheel
# --no-build-isolation: horovod's cmake must see the installed mxnet to build its mxnet ops.
HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_ONNX=1 \
    "$PY" -m pip install -q --no-cache-dir --no-build-isolation "$NUMPY_PIN" horovod==0.28.1
"$PY" -c 'import horovod, horovod.mxnet; print("horovod", horovod.__version__, "ok")'
