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
"""
import argparse
import json
import os
import sys
import tempfile

# Before MXNet loads: importing the package sets this tool's compute threads (gluon_resnest.threads).
import gluon_resnest  # noqa: F401,E402  pylint: disable=unused-import,wrong-import-position
import mxnet as mx  # noqa: E402  pylint: disable=wrong-import-position

from gluon_resnest import list_models  # noqa: E402  pylint: disable=wrong-import-position
from gluon_resnest.data import (EvalTransform, ImageFolder, ImageRecord,  # noqa: E402
                                eval_crop, make_loader, resolve_split_dir)
from gluon_resnest.evaluation import (benchmark, count_parameters, evaluate,  # noqa: E402
                                      load_deployed, load_network)
from gluon_resnest.resnest import check_input_shape  # noqa: E402  pylint: disable=wrong-import-position

# ResNeSt downsamples 32x; a deployed graph of unknown stride is held to the same minimum.
MIN_DEPLOY_CROP = 32


def parse_args(argv=None):
    """Command-line arguments; inconsistent combinations exit with a one-line error."""
    parser = argparse.ArgumentParser(description='Evaluate ResNeSt: top-1/top-5 accuracy and images/s, '
                                                 'with the published evaluation protocol.')
    model = parser.add_argument_group('model')
    model.add_argument('--model', help='model name: ' + ', '.join(list_models()))
    weights = model.add_mutually_exclusive_group()
    weights.add_argument('--pretrained', action='store_true', help='published ImageNet weights')
    weights.add_argument('--params-file', help='checkpoint (.params) written by save_parameters')
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
    data.add_argument('--crop-size', type=int, help='eval crop (default: the model\'s published crop)')
    data.add_argument('--crop-ratio', type=float,
                      help='crop < 320: short side = ceil(crop/ratio) (default 0.875); crop >= 320: '
                           'centre square = short*ratio (default crop/(crop+32))')
    run = parser.add_argument_group('run')
    run.add_argument('--batch-size', type=int, default=32, help='images per batch (all devices)')
    run.add_argument('-j', '--num-data-workers', type=int, default=4, help='data loading processes')
    run.add_argument('--gpus', default='', help='GPU ids, e.g. "0,1"; empty: CPU')
    run.add_argument('--dtype', default='float32', choices=['float32', 'float16'])
    run.add_argument('--benchmark', action='store_true',
                     help='speed only: synthetic input, warm-up, median images/s')
    run.add_argument('--warmup', type=int, default=5, help='untimed batches before --benchmark timing')
    run.add_argument('--iters', type=int, default=20, help='timed batches of --benchmark')
    run.add_argument('--json', help='also write the results to this JSON file')
    run.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser, args):
    args.deploy = args.deploy or args.quantized
    if args.model is not None:
        args.model = args.model.lower()
        if args.model not in list_models():
            parser.error('unknown model %r; valid names: %s' % (args.model, ', '.join(list_models())))
    if args.deploy:
        if not args.model_prefix:
            parser.error('--deploy/--quantized need --model-prefix PREFIX')
        if args.pretrained or args.params_file or args.classes:
            parser.error('--deploy evaluates the exported files; drop --pretrained/--params-file/--classes')
    elif args.model is None:
        parser.error('--model is required (or --deploy --model-prefix PREFIX)')
    elif not (args.benchmark or args.pretrained or args.params_file):
        parser.error('pass --pretrained or --params-file F to evaluate accuracy (or --benchmark)')
    if not args.benchmark and bool(args.data_dir) == bool(args.rec_val):
        parser.error('pass exactly one of --data-dir DIR and --rec-val F')
    if args.rec_val_idx and not args.rec_val:
        parser.error('--rec-val-idx needs --rec-val')
    if args.quantized and args.dtype != 'float32':
        parser.error('an INT8 model takes float32 input: drop --dtype %s' % args.dtype)
    for name in ('batch_size', 'crop_size', 'classes'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error('--%s must be >= 1, got %d' % (name.replace('_', '-'), value))
    if args.num_data_workers < 0:
        parser.error('-j/--num-data-workers must be >= 0, got %d' % args.num_data_workers)


def contexts(gpus):
    """``--gpus`` string -> list of Contexts (CPU when empty)."""
    try:
        ids = [int(i) for i in gpus.split(',') if i.strip()] if gpus else []
    except ValueError:
        raise ValueError('--gpus takes comma-separated GPU ids such as "0,1", got %r' % gpus) from None
    if not ids:
        return [mx.cpu()]
    available = mx.context.num_gpus()
    missing = [i for i in ids if i >= available]
    if missing:
        raise ValueError('--gpus %s: MXNet sees %d GPU(s), so there is no GPU %s'
                         % (gpus, available, missing[0]))
    return [mx.gpu(i) for i in ids]


def build(args, ctx, crop):
    """The network to evaluate and a description: (block, info dict with layout, classes, source ...)."""
    if args.dtype == 'float16' and all(c.device_type == 'cpu' for c in ctx):
        raise ValueError('--dtype float16 needs --gpus: MXNet has no float16 matrix multiply on CPU')
    if args.deploy:
        if crop < MIN_DEPLOY_CROP:
            raise ValueError('crop size %d is too small for this network: it must be >= %d'
                             % (crop, MIN_DEPLOY_CROP))
        net, info = load_deployed(args.model_prefix, crop, args.epoch, ctx)
        if args.quantized and not info['quantized']:
            raise ValueError('%s-symbol.json has no INT8 operators: it is not a quantized model '
                             '(evaluate it with --deploy)' % args.model_prefix)
        info['source'] = args.model_prefix
    else:
        net = load_network(args.model, params_file=args.params_file, pretrained=args.pretrained,
                           classes=args.classes, root=args.model_root, ctx=ctx)
        check_input_shape((1, 3, crop, crop), net.output_stride)
        info = {'layout': 'NCHW', 'classes': net.num_classes, 'quantized': False,
                'source': args.params_file or ('published' if args.pretrained else 'random init')}
        net.hybridize(static_alloc=True)
    if args.dtype != 'float32':
        if info['layout'] == 'NHWC':
            raise ValueError('--dtype %s is not supported for graphs with folded preprocessing '
                             '(NHWC input)' % args.dtype)
        net.cast(args.dtype)
    return net, info


def load_data(args):
    """The validation dataset named by --data-dir or --rec-val."""
    if args.rec_val:
        return ImageRecord(args.rec_val, args.rec_val_idx)
    dataset = ImageFolder(resolve_split_dir(args.data_dir, 'val'), verify=args.verify_images)
    if dataset.skipped:
        print('skipped %d undecodable image(s)' % len(dataset.skipped))
    return dataset


def measure_accuracy(args, net, info, ctx, transform):
    """Run ``net`` over the validation data; the result dict of :func:`evaluate`."""
    dataset = load_data(args)
    num_classes = getattr(dataset, 'num_classes', None)
    if num_classes is not None and num_classes != info['classes']:
        raise ValueError('the data has %d classes but the network outputs %d'
                         % (num_classes, info['classes']))
    loader = make_loader(dataset, args.batch_size, transform, num_workers=args.num_data_workers)
    # A graph with folded preprocessing normalises itself: it gets the 0..255 values as float32.
    dtype = 'float32' if info['layout'] == 'NHWC' else args.dtype
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    with tqdm(total=len(dataset), unit='img', disable=args.no_progress, file=sys.stderr) as bar:
        result = evaluate(net, loader, ctx=ctx, dtype=dtype, progress=bar.update)
    result['skipped_images'] = len(getattr(dataset, 'skipped', []))
    return result


def write_json(path, result):
    """Write ``result`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix='.eval-', suffix='.json', dir=folder)
    try:
        with os.fdopen(handle, 'w') as f:
            json.dump(result, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def report(result):
    """Human-readable lines of a result dict."""
    lines = ['model: %s (%s)  params: %.2fM  crop: %d%s  dtype: %s%s'
             % (result['model'], result['source'], result['params'] / 1e6, result['crop'],
                '' if result['crop_ratio'] is None else ' ratio %g' % result['crop_ratio'],
                result['dtype'], '  INT8' if result['quantized'] else '')]
    if 'top1' in result:
        lines.append('top-1: %.2f%% (error %.2f%%)  top-5: %.2f%% (error %.2f%%)  images: %d'
                     % (result['top1'], result['top1_err'], result['top5'], result['top5_err'],
                        result['num_images']))
        lines.append('speed: %.1f images/s (end to end, batch %d)'
                     % (result['images_per_sec'], result['batch_size']))
    else:
        lines.append('speed: %.1f images/s (median of %d batches of %d, synthetic %dx%d input)'
                     % (result['images_per_sec'], result['iters'], result['batch_size'],
                        result['crop'], result['crop']))
    return lines


def main(args):
    """Evaluate as ``args`` says; print the report, write --json, and return the result dict.

    Accuracies in the result (and the JSON) are percentages, as printed and as published.
    """
    ctx = contexts(args.gpus)
    crop = args.crop_size or eval_crop(args.model or '')
    net, info = build(args, ctx, crop)
    # A graph with folded preprocessing (NHWC input) takes the cropped 0..255 image as it is.
    transform = EvalTransform(crop, args.crop_ratio, normalize=info['layout'] == 'NCHW')
    result = {'model': args.model or os.path.basename(args.model_prefix), 'source': info['source'],
              'params': count_parameters(net), 'crop': crop, 'crop_ratio': args.crop_ratio,
              'dtype': args.dtype, 'quantized': info['quantized'], 'batch_size': args.batch_size}
    if args.benchmark:
        layout = info['layout']
        result.update(benchmark(net, args.batch_size, crop, ctx=ctx, dtype=args.dtype,
                                warmup=args.warmup, iters=args.iters, layout=layout))
    else:
        measured = measure_accuracy(args, net, info, ctx, transform)
        for key in ('top1', 'top5'):
            result[key] = 100.0 * measured[key]
            result[key + '_err'] = 100.0 - result[key]
        result.update({k: measured[k] for k in ('num_images', 'images_per_sec', 'skipped_images')})
    for line in report(result):
        print(line)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == '__main__':
    try:
        main(parse_args())
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        sys.exit('error: %s' % err)
