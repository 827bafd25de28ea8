"""``gluon-resnest-export`` (``python -m gluon_resnest.export``): export a ResNeSt network for deployment
and check the artifact.

Examples
--------
MXNet symbol + params that take raw uint8 (N, H, W, 3) images::

    python -m gluon_resnest.export --model resnest50 --params-file resnest50.params --out deploy \\
        --preprocess

ONNX (opset 13) with a free batch axis, INT8 calibrated on 10 batches of a validation folder::

    python -m gluon_resnest.export --model resnest50 --pretrained --out deploy --format onnx --dynamic-batch
    python -m gluon_resnest.export --model resnest50 --pretrained --out deploy --format int8 \\
        --calib-data ~/.mxnet/datasets/imagenet/val --num-calib-batches 10 --batch-size 8

The same calibration as onnxruntime's own static INT8 (QDQ) ONNX file, checked in onnxruntime::

    python -m gluon_resnest.export --model resnest50 --pretrained --out deploy --format onnx-int8 \\
        --calib-data ~/.mxnet/datasets/imagenet/val --num-calib-batches 10 --batch-size 8 \\
        --granularity channel-wise
"""
import argparse
import sys

from .. import cli
from ..config import ExportConfig
from .api import export, report


def parse_args(argv=None):
    """The :class:`~gluon_resnest.config.ExportConfig` of a command line; bad input raises ``UsageError`` or
    ``ConfigError`` (:func:`main` reports it in one line, status 2)."""
    parser = cli.ArgumentParser(
        prog='gluon-resnest-export', description=__doc__.split('Examples', 1)[0],
        epilog='Examples' + __doc__.split('Examples', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_settings(parser, ExportConfig)
    return cli.build_config(parser, ExportConfig, parser.parse_args(argv))


def _run(argv):
    config = parse_args(argv)
    for line in report(config, export(config)):
        print(line)


def main(argv=None):
    """Export as the command line ``argv`` says (None: ``sys.argv[1:]``); returns the exit status (0; 2 bad
    usage; 1 a failed export, e.g. its self-check, which leaves no files)."""
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
