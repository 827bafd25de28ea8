#!/usr/bin/env bash
# pycocotools, which GluonCV needs for Mask-RCNN training targets (polygons to masks) and COCO
# evaluation; GluonCV does not install it. Idempotent: does nothing when it already imports.
# costs: Mask R-CNN training and COCO evaluation (their tests skip)
set -euo pipefail
source "$(dirname "$0")/common.bash"
if ! "$PY" -c 'import pycocotools.mask' >/dev/null 2>&1; then
    "$PY" -m pip install -q "$NUMPY_PIN" "pycocotools>=2.0.6"
fi
"$PY" -c 'import pycocotools, numpy; print("pycocotools ok, numpy", numpy.__version__)'
