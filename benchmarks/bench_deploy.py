"""Deployed ResNeSt on the CPU: fp32 hybridized symbol vs INT8 (oneDNN), speed and top-1.

Both forms are produced by the exporters (``gluon_resnest.export``: each checks itself) and timed as a
user runs them, loaded back from their files with ``SymbolBlock.imports``. Speed: images/s, the median
of ``--runs`` timings of ``--iters`` batches after ``--warmup`` batches. Accuracy (with ``--val-data``,
an ImageNet-layout folder or .rec held out from the calibration images): fp32 and INT8 top-1, the
change in points and the fraction of images whose top-1 class agrees.

What deployment asks of resnest50: INT8 >= 2x fp32 images/s, top-1 change <= 0.5 points.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --model resnest50 --params-file resnest50.params \\
        --calib-data imagenet/train_subset --val-data imagenet/val --num-val-images 5000 --json deploy.json
    # speed only (random weights, calibrated on random images):
    OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --model resnest50
"""
import argparse
import os
import platform
import sys
import tempfile

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import mxnet as mx  # noqa: E402  (the thread count must be set before MXNet loads)
import numpy as np  # noqa: E402

from gluon_resnest import cli, get_model  # noqa: E402
from gluon_resnest.data import EvalTransform, make_loader, open_dataset  # noqa: E402
from gluon_resnest.export import build_network, calibration_images, export_int8, export_mxnet  # noqa: E402
from gluon_resnest.export.common import load_symbol_block  # noqa: E402
from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.metrics import median_rate  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('Usage', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model(parser, default='resnest50')
    cli.add_weights(parser)
    cli.add_input_size(parser, 224, 'image side')
    cli.add_batch_size(parser, 8)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--iters', type=int, default=5, help='batches per timed run')
    parser.add_argument('--calib-data', help='folder or .rec for INT8 calibration (default: random)')
    parser.add_argument('--num-calib-batches', type=int, default=10)
    parser.add_argument('--calib-mode', default='naive', choices=('naive', 'entropy'))
    parser.add_argument('--granularity', default='tensor-wise', choices=('tensor-wise', 'channel-wise'))
    parser.add_argument('--val-data', help='held-out folder or .rec with labels: top-1 of both forms')
    parser.add_argument('--num-val-images', type=int, default=0, help='0: all of --val-data')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    args.model = cli.model_flag(parser, args.model)
    if args.val_data and not (args.pretrained or args.params_file):
        parser.error('--val-data measures accuracy: give --pretrained or --params-file')
    return args


def _network(args):
    if args.pretrained or args.params_file:
        return build_network(args.model, pretrained=args.pretrained, params_file=args.params_file)
    net = get_model(args.model)
    net.initialize(mx.init.Xavier())
    return net


def _calibration(args):
    count = args.num_calib_batches * args.batch_size
    if args.calib_data:
        return calibration_images(args.calib_data, args.input_size, count)
    return mx.nd.random.normal(shape=(count, 3, args.input_size, args.input_size))


def export_both(args, folder):
    """Export fp32 and INT8 into ``folder``; return the loaded deployed blocks and INT8 agreement."""
    net = _network(args)
    export_mxnet(net, folder, 'fp32', input_size=args.input_size, batch_size=args.batch_size)
    result = export_int8(net, folder, 'int8', _calibration(args), batch_size=args.batch_size,
                         calib_mode=args.calib_mode, granularity=args.granularity)
    blocks = {}
    for form in ('fp32', 'int8'):
        block = load_symbol_block(os.path.join(folder, form))
        block.hybridize(static_alloc=True, static_shape=True)
        blocks[form] = block
    return blocks, result['agreement']


def images_per_second(block, batch, warmup, runs, iters):
    """Median images/s of ``block`` on ``batch`` over ``runs`` timings of ``iters`` calls."""
    return median_rate(lambda: block(batch), batch.shape[0], warmup, runs, iters)


class _Indices(mx.gluon.data.Sampler):
    """A fixed list of dataset indices (Dataset.sample wants a Sampler)."""

    def __init__(self, indices):
        self._indices = indices

    def __iter__(self):
        return iter(self._indices)

    def __len__(self):
        return len(self._indices)


def top1(blocks, args):
    """Top-1 (%) of each block on ``--val-data`` and the fraction of images where they agree."""
    dataset = open_dataset(args.val_data, '--val-data')
    if 0 < args.num_val_images < len(dataset):
        # Evenly spaced, so a class-by-class folder contributes every class, not the first few.
        picks = np.linspace(0, len(dataset) - 1, args.num_val_images).round().astype(int).tolist()
        dataset = dataset.sample(_Indices(picks))
    loader = make_loader(dataset, args.batch_size, EvalTransform(args.input_size))
    correct = {form: 0 for form in blocks}
    agree = total = 0
    for data, label in loader:
        preds = {form: block(data).argmax(axis=1).asnumpy() for form, block in blocks.items()}
        label = label.asnumpy()
        for form, pred in preds.items():
            correct[form] += int(np.sum(pred == label))
        agree += int(np.sum(preds['fp32'] == preds['int8']))
        total += len(label)
    result = {form + '_top1': 100.0 * count / total for form, count in correct.items()}
    result.update(val_images=total, val_agreement=agree / total,
                  top1_change=result['int8_top1'] - result['fp32_top1'])
    return result


def main(args=None):
    """Run the benchmark and print (and optionally save) the results."""
    args = parse_args() if args is None else args
    results = {'model': args.model, 'batch_size': args.batch_size, 'input_size': args.input_size,
               'omp_num_threads': os.environ.get('OMP_NUM_THREADS'), 'cpu': platform.processor(),
               'mxnet': mx.__version__, 'calib_mode': args.calib_mode,
               'granularity': args.granularity, 'weights': args.params_file or
               ('pretrained' if args.pretrained else 'random')}
    with tempfile.TemporaryDirectory(prefix='bench-deploy-') as folder:
        blocks, results['calib_agreement'] = export_both(args, folder)
        batch = mx.nd.random.normal(shape=(args.batch_size, 3, args.input_size, args.input_size))
        for form, block in blocks.items():
            results[form + '_img_per_s'] = images_per_second(block, batch, args.warmup, args.runs,
                                                             args.iters)
        results['int8_speedup'] = results['int8_img_per_s'] / results['fp32_img_per_s']
        if args.val_data:
            results.update(top1(blocks, args))
    for key, value in results.items():
        print('%-18s %s' % (key, '%.4g' % value if isinstance(value, float) else value))
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
