#!/usr/bin/env bash
# pycocotools, which GluonCV needs for Mask-RCNN training targets (polygons to masks) and COCO
# evaluation; GluonCV does not install it. Installed together with the numpy pin so pip never upgrades
# numpy past what mxnet 1.9.1 imports. Idempotent: does nothing when it already imports.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
if "$PY" -c 'import pycocotools.mask' >/dev/null 2>&1; then
    exit 0
fi
"$PY" -m pip install -q "numpy<1.24" "pycocotools>=2.0.6"
"$PY" -c 'import pycocotools.mask, numpy; print("setup: pycocotools ok, numpy", numpy.__version__)'
