"""``python -m gluon_resnest.export``: export a ResNeSt network for deployment and check the artifact.

Examples
--------
MXNet symbol + params that take raw uint8 (N, H, W, 3) images::

    python -m gluon_resnest.export --model resnest50 --params-file resnest50.params --out deploy \\
        --preprocess

ONNX (opset 13) with a free batch axis, INT8 calibrated on 10 batches of a validation folder::

    python -m gluon_resnest.export --model resnest50 --pretrained --out deploy --format onnx --dynamic-batch
    python -m gluon_resnest.export --model resnest50 --pretrained --out deploy --format int8 \\
        --calib-data ~/.mxnet/datasets/imagenet/val --num-calib-batches 10 --batch-size 8
"""
import argparse
import sys

from ..model_zoo import list_models
from .common import build_network, default_input_size
from .int8_export import CALIB_MODES, GRANULARITIES, calibration_images, export_int8
from .mxnet_export import MXNET_ATOL, export_mxnet
from .onnx_export import ONNX_OPSET, export_onnx

FORMATS = ('mxnet', 'onnx', 'int8')


def parse_args(argv=None):
    """Command-line arguments; bad combinations are reported through ``parser.error``."""
    parser = argparse.ArgumentParser(
        prog='python -m gluon_resnest.export', description=__doc__.split('Examples', 1)[0],
        epilog='Examples' + __doc__.split('Examples', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, choices=list_models(), metavar='NAME',
                        help='architecture: %s' % ', '.join(list_models()))
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument('--pretrained', action='store_true', help='published ImageNet weights')
    weights.add_argument('--params-file', help='local .params file (classes read from its classifier)')
    parser.add_argument('--out', required=True, help='output folder (created if needed)')
    parser.add_argument('--prefix', help='file name prefix (default: the model name, +"-int8" for int8)')
    parser.add_argument('--format', default='mxnet', choices=FORMATS, help='default: mxnet')
    parser.add_argument('--input-size', type=int, help='image side (default: the published eval crop)')
    parser.add_argument('--batch-size', type=int, default=1, help='export / calibration batch (1)')
    parser.add_argument('--preprocess', action='store_true',
                        help='fold mean/std and HWC->CHW into the graph: input raw (N, H, W, 3) images')
    parser.add_argument('--dynamic-batch', action='store_true', help='onnx: free batch dimension')
    parser.add_argument('--no-runtime-check', action='store_true',
                        help='onnx: only run onnx.checker, skip the onnxruntime comparison')
    parser.add_argument('--calib-data', help='int8: ImageNet-layout image folder or .rec file')
    parser.add_argument('--num-calib-batches', type=int, default=10, help='int8: batches (10)')
    parser.add_argument('--calib-mode', default='naive', choices=CALIB_MODES, help='int8 (naive)')
    parser.add_argument('--granularity', default='tensor-wise', choices=GRANULARITIES,
                        help='int8: weight scales per tensor or per output channel (tensor-wise)')
    parser.add_argument('--min-agreement', type=float, default=0.8,
                        help='int8: fail if INT8 and fp32 top-1 agree on fewer calibration images')
    args = parser.parse_args(argv)
    if args.format == 'int8' and not args.calib_data:
        parser.error('--format int8 needs --calib-data (an image folder or .rec file)')
    if args.format != 'onnx' and (args.dynamic_batch or args.no_runtime_check):
        parser.error('--dynamic-batch and --no-runtime-check apply to --format onnx only')
    if args.batch_size < 1 or args.num_calib_batches < 1 or (args.input_size or 1) < 1:
        parser.error('--batch-size, --num-calib-batches and --input-size must be positive')
    args.input_size = args.input_size or default_input_size(args.model)
    args.prefix = args.prefix or (args.model + ('-int8' if args.format == 'int8' else ''))
    return args


def export(args):
    """Build the network and export it as ``args`` say; returns the result dict of the exporter."""
    net = build_network(args.model, pretrained=args.pretrained, params_file=args.params_file)
    common = dict(input_size=args.input_size, batch_size=args.batch_size, preprocess=args.preprocess)
    if args.format == 'mxnet':
        return export_mxnet(net, args.out, args.prefix, **common)
    if args.format == 'onnx':
        return export_onnx(net, args.out, args.prefix, dynamic=args.dynamic_batch,
                           runtime_check=not args.no_runtime_check, **common)
    images = calibration_images(args.calib_data, args.input_size,
                                args.num_calib_batches * args.batch_size, args.preprocess)
    return export_int8(net, args.out, args.prefix, images, batch_size=args.batch_size,
                       preprocess=args.preprocess, calib_mode=args.calib_mode,
                       granularity=args.granularity, min_agreement=args.min_agreement)


def report(args, result):
    """Print where the files are and what the self-check found."""
    for key in ('symbol', 'params', 'onnx'):
        if key in result:
            print('wrote %s' % result[key])
    shape = ('(N, %d, %d, 3) uint8/float 0..255' if args.preprocess else '(N, 3, %d, %d) normalised')
    print('input "data": %s' % (shape % (args.input_size, args.input_size)))
    if args.format == 'int8':
        print('self-check: INT8 agrees with fp32 top-1 on %.1f%% of the calibration images; reloaded '
              'files reproduce it (max |diff| %.3g)' % (100 * result['agreement'],
                                                         result['max_abs_diff']))
    elif result['max_abs_diff'] is None:
        print('self-check: onnx.checker passed at opset %d (onnxruntime comparison skipped)' % ONNX_OPSET)
    else:
        tol = result['tolerance'] if args.format == 'onnx' else MXNET_ATOL
        print('self-check: reloaded %s output equals the network\'s (max |diff| %.3g < %g)'
              % (args.format, result['max_abs_diff'], tol))


def main(args=None):
    """Run the export (``args`` from :func:`parse_args`; None parses ``sys.argv``)."""
    args = parse_args() if args is None else args
    try:
        result = export(args)
    except (ValueError, OSError, RuntimeError) as err:
        # MXNet errors carry a C++ stack trace after the first line.
        sys.exit('error: %s' % str(err).strip().splitlines()[0])
    report(args, result)


if __name__ == '__main__':
    main()
