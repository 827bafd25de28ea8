"""Evaluate a ResNeSt model on ImageNet validation data with the paper's protocol: accuracy and speed.

The documented script form of ``gluon-resnest-eval``; both run :func:`gluon_resnest.classification.evaluation.main`.

Examples
--------
Published weights, ImageNet folder (``DIR/val/<class>/*.JPEG`` or ``DIR/<class>/*.JPEG``)::

    python eval.py --model resnest50 --pretrained --data-dir ~/.mxnet/datasets/imagenet

A checkpoint of train_imagenet.py on RecordIO, results as JSON::

    python eval.py --model resnest50 --params-file out/resnest50-0119.params \\
        --rec-val val.rec --rec-val-idx val.idx --json result.json

An exported (or INT8-quantized) model, and a speed-only run::

    python eval.py --deploy --model-prefix export/resnest50 --model resnest50 --data-dir DIR
    python eval.py --quantized --model-prefix export/resnest50-int8 --data-dir DIR
    python eval.py --model resnest50 --benchmark --batch-size 8

This command is a thin wrapper of :func:`gluon_resnest.evaluate` (``EvalConfig`` fields are the flags):
``--json`` writes its record, accuracies as fractions 0-1. Exit status: 0 done, 2 bad usage, 1 a failed run.
"""
import sys

# Before MXNet loads: importing the package sets this tool's compute threads (gluon_resnest.threads).
from gluon_resnest.classification.evaluation import main, parse_args  # noqa: F401  (parse_args: the flags as an EvalConfig)

__all__ = ['main', 'parse_args']

if __name__ == '__main__':
    sys.exit(main())
