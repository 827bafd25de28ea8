"""Evaluating a ResNeSt with the paper's protocol: what ``gluon-resnest-eval`` (``eval.py``) runs, as one call.

::

    import gluon_resnest
    record = gluon_resnest.evaluate(gluon_resnest.EvalConfig(
        model='resnest14', params_file='runs/demo/resnest14-0005.params', data_dir='demo_data',
        input_size=32))
    print(record.top1, record.images_per_sec)

The record (:class:`~gluon_resnest.results.EvalResult`) is what ``--json`` writes: accuracies as fractions
0-1, the crop, parameter count, images/s and the image count; the printed report shows percent. The
measuring itself is :mod:`gluon_resnest.metrics`; building networks and loading exported graphs is
:mod:`gluon_resnest.loading`.
"""
import os

from .. import cli
from ..config import EvalConfig
from ..data import EvalTransform, ImageFolder, ImageRecord, resolve_split_dir
from ..data.eval_loader import make_eval_loader
from ..devices import contexts
from ..fileio import write_json
from ..inference import optimize
from ..loading import load_deployed, load_network
from ..metrics import accuracy, benchmark, count_parameters
from ..progress import progress_bar
from ..resnest import check_input_shape
from ..results import EvalResult

__all__ = ['evaluate', 'report', 'parse_args', 'main']


def _build(config, ctx):
    """The network to evaluate and a description: (block, info dict with layout, classes, source ...)."""
    if config.deploy:
        net, info = load_deployed(config.model_prefix, config.input_size, config.epoch, ctx, optimize=False)
        if config.quantized and not info['quantized']:
            raise ValueError('%s-symbol.json has no INT8 operators: it is not a quantized model '
                             '(evaluate it with deploy/--deploy)' % config.model_prefix)
        info['source'] = config.model_prefix
    else:
        net = load_network(config.model, params_file=config.params_file, pretrained=config.pretrained,
                           classes=config.classes, root=config.model_root, ctx=ctx)
        check_input_shape((1, 3, config.input_size, config.input_size), net.output_stride)
        info = {'layout': 'NCHW', 'classes': net.num_classes, 'quantized': False,
                'source': config.params_file or ('published' if config.pretrained else 'random init')}
    if config.dtype != 'float32':
        if info['layout'] == 'NHWC':
            raise ValueError('dtype %s is not supported for graphs with folded preprocessing (NHWC input)'
                             % config.dtype)
        net.cast(config.dtype)
    # The fast path users get by default (oneDNN-fused on CPU), the same call as in the README.
    optimize(net, config.batch_size, config.input_size, ctx=ctx[0], layout=info['layout'])
    return net, info


def _dataset(config):
    """The validation dataset named by ``data_dir`` or ``rec_val``."""
    if config.rec_val:
        return ImageRecord(config.rec_val, config.rec_val_idx)
    dataset = ImageFolder(resolve_split_dir(config.data_dir, 'val'), verify=config.verify_images)
    if dataset.skipped:
        print('skipped %d undecodable image(s)' % len(dataset.skipped))
    return dataset


def _scored(net, config, info, num_classes):
    """``net``, or its first ``num_classes`` outputs with ``class_subset`` (see :class:`EvalConfig`)."""
    if num_classes is None or num_classes == info['classes']:
        return net
    if num_classes < info['classes'] and config.class_subset:
        return lambda x: net(x).slice_axis(axis=1, begin=0, end=num_classes)
    hint = (' If the data\'s labels are the classifier\'s first %d classes, evaluate those outputs only '
            'with class_subset=True (--class-subset).' % num_classes if num_classes < info['classes'] else '')
    raise ValueError('the data has %d classes but the network outputs %d.%s'
                     % (num_classes, info['classes'], hint))


def _measure_accuracy(config, net, info, ctx):
    """Top-1/top-5 over the validation data (fractions), images/s and the image counts."""
    dataset = _dataset(config)
    net = _scored(net, config, info, getattr(dataset, 'num_classes', None))
    # A graph with folded preprocessing (NHWC input) takes the cropped 0..255 image as it is.
    transform = EvalTransform(config.input_size, config.crop_ratio, normalize=info['layout'] == 'NCHW')
    loader = make_eval_loader(dataset, config.batch_size * len(ctx), transform, num_workers=config.num_data_workers)
    # A graph with folded preprocessing normalises itself: it gets the 0..255 values as float32.
    dtype = 'float32' if info['layout'] == 'NHWC' else config.dtype
    with progress_bar(config.progress, total=len(dataset), unit='img') as bar:
        result = accuracy(net, loader, ctx=ctx, dtype=dtype, progress=bar.update)
    result['skipped_images'] = len(getattr(dataset, 'skipped', []))
    return result


def evaluate(config):
    """Evaluate as ``config`` says; returns the record (and writes it to ``config.json`` when set).

    Parameters
    ----------
    config : EvalConfig

    Returns
    -------
    EvalResult
        With data: ``top1``, ``top5`` (fractions 0-1; top-5 is top-min(5, classes)), ``num_images``,
        ``skipped_images``, ``images_per_sec`` (end to end); with ``benchmark``: ``images_per_sec`` (median
        over ``iters`` batches of synthetic input) and ``iters``.

    Raises
    ------
    ValueError, FileNotFoundError
        Bad weights, data or settings (one line).
    """
    if not isinstance(config, EvalConfig):
        raise TypeError('evaluate takes an EvalConfig, got %s' % type(config).__name__)
    ctx = contexts(config.gpus)
    net, info = _build(config, ctx)
    if config.benchmark:
        timed = benchmark(net, config.batch_size, config.input_size, ctx=ctx, dtype=config.dtype,
                          warmup=config.warmup, iters=config.iters, layout=info['layout'])
        measured = {k: timed[k] for k in ('images_per_sec', 'iters')}
    else:
        measured = _measure_accuracy(config, net, info, ctx)
    result = EvalResult(model=config.model or os.path.basename(config.model_prefix), source=info['source'],
                        params=count_parameters(net), crop=config.input_size, crop_ratio=config.crop_ratio,
                        dtype=config.dtype, quantized=info['quantized'], batch_size=config.batch_size,
                        **measured)
    if config.json:
        write_json(config.json, result.to_dict())
    return result


def report(result):
    """Human-readable lines of an :func:`evaluate` record (accuracies in percent)."""
    lines = ['model: %s (%s)  params: %.2fM  crop: %d%s  dtype: %s%s'
             % (result.model, result.source, result.params / 1e6, result.crop,
                '' if result.crop_ratio is None else ' ratio %g' % result.crop_ratio,
                result.dtype, '  INT8' if result.quantized else '')]
    if result.top1 is not None:
        lines.append('top-1: %.2f%% (error %.2f%%)  top-5: %.2f%% (error %.2f%%)  images: %d'
                     % (100 * result.top1, 100 * (1 - result.top1), 100 * result.top5,
                        100 * (1 - result.top5), result.num_images))
        lines.append('speed: %.1f images/s (end to end, batch %d per device)'
                     % (result.images_per_sec, result.batch_size))
    else:
        lines.append('speed: %.1f images/s (median of %d batches of %d, synthetic %dx%d input)'
                     % (result.images_per_sec, result.iters, result.batch_size, result.crop, result.crop))
    return lines


def _parser():
    parser = cli.ArgumentParser(description='Evaluate ResNeSt: top-1/top-5 accuracy and images/s, with the '
                                            'published evaluation protocol.', formatter_class=cli.HelpFormatter)
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
    """The :class:`~gluon_resnest.config.EvalConfig` of a command line; bad input raises ``UsageError`` or
    ``ConfigError`` (:func:`main` reports it in one line, status 2)."""
    parser = _parser()
    return cli.build_config(parser, EvalConfig, parser.parse_args(argv))


def _run(argv):
    for line in report(evaluate(parse_args(argv))):
        print(line)


def main(argv=None):
    """``gluon-resnest-eval`` (``eval.py``): evaluate as the command line ``argv`` says (None:
    ``sys.argv[1:]``), print the report; returns the exit status (:func:`gluon_resnest.cli.run_command`)."""
    return cli.run_command(_run, argv)
