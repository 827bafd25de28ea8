"""Evaluate a ResNeSt model on ImageNet validation data with the paper's protocol: accuracy and speed.

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

This command is a thin wrapper of :func:`gluon_resnest.evaluate` (``EvalConfig`` fields are the flags).
"""
import argparse
import sys

# Before MXNet loads: importing the package sets this tool's compute threads (gluon_resnest.threads).
from gluon_resnest import cli  # noqa: E402  pylint: disable=wrong-import-position
from gluon_resnest.config import EvalConfig  # noqa: E402  pylint: disable=wrong-import-position
from gluon_resnest.evaluation import evaluate, report  # noqa: E402  pylint: disable=wrong-import-position


def _parser():
    parser = argparse.ArgumentParser(description='Evaluate ResNeSt: top-1/top-5 accuracy and images/s, '
                                                 'with the published evaluation protocol.',
                                     formatter_class=cli.HelpFormatter)
    model = parser.add_argument_group('model')
    cli.add_model(model)
    cli.add_weights(model)
    model.add_argument('--classes', type=int, help='classifier size (default: read from --params-file)')
    model.add_argument('--model-root', help='folder of published weights (default ~/.mxnet/models)')
    model.add_argument('--deploy', action='store_true',
                       help='evaluate an exported PREFIX-symbol.json + PREFIX-0000.params')
    model.add_argument('--quantized', action='store_true',
                       help='the exported model is INT8 (implies --deploy)')
    model.add_argument('--model-prefix', help='prefix of the exported files (with --deploy/--quantized)')
    model.add_argument('--epoch', type=int, default=0, help='epoch number in PREFIX-%%04d.params')
    data = parser.add_argument_group('data')
    data.add_argument('--data-dir', help='ImageNet folder: DIR/val/<class>/* or DIR/<class>/*')
    data.add_argument('--rec-val', help='validation .rec file')
    data.add_argument('--rec-val-idx', help='its .idx (default: next to --rec-val)')
    data.add_argument('--verify-images', action='store_true',
                      help='decode every image first and skip (and count) undecodable ones')
    cli.add_input_size(data, help_text="eval crop (default: the model's published crop)")
    data.add_argument('--crop-ratio', type=float,
                      help='crop < 320: short side = ceil(crop/ratio) (default 0.875); crop >= 320: '
                           'centre square = short*ratio (default crop/(crop+32))')
    data.add_argument('--class-subset', action='store_true',
                      help='the data has N < classifier classes whose labels are its first N: score '
                           'those outputs only')
    run = parser.add_argument_group('run')
    cli.add_batch_size(run, 32, 'images per batch')
    cli.add_workers(run)
    cli.add_devices(run)
    run.add_argument('--dtype', default='float32', choices=['float32', 'float16'])
    run.add_argument('--benchmark', action='store_true',
                     help='speed only: synthetic input, warm-up, median images/s')
    run.add_argument('--warmup', type=int, default=5, help='untimed batches before --benchmark timing')
    run.add_argument('--iters', type=int, default=20, help='timed batches of --benchmark')
    run.add_argument('--json', help='also write the results to this JSON file')
    cli.add_progress(run)
    return parser


def parse_args(argv=None):
    """The :class:`~gluon_resnest.config.EvalConfig` of a command line; bad input exits with a one-line error."""
    parser = _parser()
    return cli.build_config(parser, EvalConfig, parser.parse_args(argv))


def main(argv=None):
    """Evaluate as the command line says; print the report and return the record (see ``evaluate``)."""
    config = argv if isinstance(argv, EvalConfig) else parse_args(argv)
    try:
        result = evaluate(config)
    except (ValueError, OSError, RuntimeError) as err:
        sys.exit('error: %s' % str(err).strip().splitlines()[0])
    for line in report(result):
        print(line)
    return result


if __name__ == '__main__':
    main()
