"""Every deployed form of a ResNeSt on the CPU, timed side by side, with INT8's accuracy change.

The forms a user can pick, each produced by the exporters (``gluon_resnest.export``: each checks
itself) and run as a user runs it:

- ``mxnet``: the fp32 symbol loaded with ``SymbolBlock.imports`` (hybridized, static memory);
- ``mxnet-fused``: the same after ``gluon_resnest.optimize`` (MXNet's oneDNN graph fusion), as
  ``gluon_resnest.loading.load_deployed`` and ``eval.py --deploy`` run it;
- ``int8``: the oneDNN INT8 symbol (``--format int8``), calibrated on ``--calib-data`` or random images;
- ``onnx``: the ONNX file (``--format onnx --dynamic-batch``) in onnxruntime with all graph
  optimisations, run by ``gluon_resnest/export/ort_run.py`` under the onnxruntime interpreter;
- ``torch`` (with ``--torch-python PATH``): the official PyTorch model in eager mode, ``eval()`` and
  ``no_grad()``, in a persistent subprocess of PATH (an interpreter with torch and ``resnest``).

Timings interleave: for each batch size, every run times each form in turn, so load on the machine
hits them alike. Figures are images/s, the median of ``--runs`` timings of ``--images`` images after
``--warmup`` batches, every form at the same thread count (``OMP_NUM_THREADS``, default all cores).
With ``--val-data`` (an ImageNet-layout folder or .rec held out from the calibration images) it also
reports fp32 and INT8 top-1, the change in points and the fraction of images whose top-1 agrees.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --model resnest50 \\
        --torch-python /path/to/torch-venv/bin/python --json deploy.json
    OMP_NUM_THREADS=2 python benchmarks/bench_deploy.py --model resnest14 --params-file F.params \\
        --input-size 32 --calib-data demo_data/train --val-data demo_data/val
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import mxnet as mx  # noqa: E402  (the thread count must be set before MXNet loads)
import numpy as np  # noqa: E402

from gluon_resnest import cli, optimize  # noqa: E402
from gluon_resnest.data import EvalTransform, make_loader, open_dataset  # noqa: E402
from gluon_resnest.export import calibration_images, export_int8, export_mxnet, export_onnx  # noqa: E402
from gluon_resnest.export import ort_run  # noqa: E402
from gluon_resnest.export.common import load_symbol_block  # noqa: E402
from gluon_resnest.loading import load_network  # noqa: E402
from gluon_resnest.export.onnx_export import ORT_PYTHON_ENV, ort_python  # noqa: E402
from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.metrics import batch_seconds  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_official import JsonLinesProcess, TorchOfficial  # noqa: E402  pylint: disable=wrong-import-position

FP32_FORMS = ('mxnet', 'mxnet-fused', 'onnx')


def parse_args(argv=None):
    """Command-line arguments of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('Usage', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model(parser, default='resnest50')
    cli.add_weights(parser)
    cli.add_input_size(parser, 224, 'image side')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8],
                        help='batch sizes timed (default: 1 8)')
    cli.add_batch_size(parser, 8, 'calibration and validation batch')
    parser.add_argument('--warmup', type=int, default=3, help='batches before timing, per form (3)')
    parser.add_argument('--runs', type=int, default=7, help='timings per form and batch size (7)')
    parser.add_argument('--images', type=int, default=16, help='images per timing (16)')
    parser.add_argument('--torch-python', help='interpreter with torch and the official resnest package')
    parser.add_argument('--calib-data', help='folder or .rec for INT8 calibration (default: random)')
    parser.add_argument('--num-calib-batches', type=int, default=10)
    parser.add_argument('--calib-mode', default='naive', choices=('naive', 'entropy'))
    parser.add_argument('--granularity', default='tensor-wise', choices=('tensor-wise', 'channel-wise'))
    parser.add_argument('--val-data', help='held-out folder or .rec with labels: top-1 of fp32 and INT8')
    parser.add_argument('--num-val-images', type=int, default=0, help='0: all of --val-data')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    args.model = cli.model_flag(parser, args.model)
    if args.val_data and not (args.pretrained or args.params_file):
        parser.error('--val-data measures accuracy: give --pretrained or --params-file')
    if min(args.batch_sizes + [args.batch_size, args.warmup, args.runs, args.images]) < 1:
        parser.error('--batch-sizes, --batch-size, --warmup, --runs and --images must be positive')
    if ort_python() is None:
        parser.error('no onnxruntime: run scripts/setup.d/40-onnxruntime.sh or set %s' % ORT_PYTHON_ENV)
    return args


def _network(args):
    # Without weights: randomly initialised (the speed does not depend on the weights).
    return load_network(args.model, pretrained=args.pretrained, params_file=args.params_file)


def _calibration(args):
    count = args.num_calib_batches * args.batch_size
    if args.calib_data:
        return calibration_images(args.calib_data, args.input_size, count)
    return mx.nd.random.normal(shape=(count, 3, args.input_size, args.input_size))


def export_all(args, folder):
    """Export fp32 symbol, INT8 symbol and ONNX into ``folder``; return the INT8 agreement."""
    net = _network(args)
    export_mxnet(net, folder, 'fp32', input_size=args.input_size, batch_size=args.batch_size)
    result = export_int8(net, folder, 'int8', _calibration(args), batch_size=args.batch_size,
                         calib_mode=args.calib_mode, granularity=args.granularity)
    export_onnx(net, folder, 'fp32.onnx', input_size=args.input_size, dynamic=True)
    return result.agreement


def mxnet_block(folder, form, x):
    """The exported ``form`` ('mxnet', 'mxnet-fused' or 'int8') loaded as a user loads it, for ``x``."""
    block = load_symbol_block(os.path.join(folder, 'int8' if form == 'int8' else 'fp32'))
    if form == 'mxnet-fused':
        return optimize(block, batch_size=x.shape[0], input_size=x.shape[2])
    block.hybridize(static_alloc=True, static_shape=True)
    return block


def mxnet_timer(block, x):
    """A function of ``iters`` returning the wall seconds of ``iters`` calls of ``block`` on ``x``."""
    return lambda iters: batch_seconds(lambda: block(x), iters)


class OnnxRuntime(JsonLinesProcess):
    """Client of a persistent ``ort_run.py --serve`` process under the onnxruntime interpreter."""

    def __init__(self, python, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop('PYTHONPATH', None)  # the onnxruntime venv resolves its own packages only
        super(OnnxRuntime, self).__init__([python, ort_run.__file__, '--serve', str(threads)], env,
                                          'onnxruntime (%s)' % python)
        self.versions = self._request({'op': 'hello'})

    def seconds(self, model, batch, iters):
        """Wall seconds of ``iters`` runs of ``model`` on one random batch of ``batch`` images."""
        return self._request({'op': 'inference', 'model': model, 'batch': batch,
                              'iters': iters})['seconds']


def timers(args, folder, batch, ort, torch):
    """``{form: seconds(iters)}`` for every deployed form at ``batch``."""
    x = mx.nd.random.normal(shape=(batch, 3, args.input_size, args.input_size))
    forms = {form: mxnet_timer(mxnet_block(folder, form, x), x)
             for form in ('mxnet', 'mxnet-fused', 'int8')}
    forms['onnx'] = lambda iters: ort.seconds(os.path.join(folder, 'fp32.onnx'), batch, iters)
    if torch is not None:
        forms['torch'] = lambda iters: torch.seconds('inference', args.model, batch,
                                                     args.input_size, iters)
    return forms


def interleaved_rates(forms, batch, args):
    """Median images/s of each form; every run times each form in turn after a warm-up of each."""
    iters = max(1, args.images // batch)
    for seconds in forms.values():
        seconds(args.warmup)
    rates = {form: [] for form in forms}
    for _ in range(args.runs):
        for form, seconds in forms.items():
            rates[form].append(batch * iters / seconds(iters))
    return {form: statistics.median(values) for form, values in rates.items()}


class _Indices(mx.gluon.data.Sampler):
    """A fixed list of dataset indices (Dataset.sample wants a Sampler)."""

    def __init__(self, indices):
        self._indices = indices

    def __iter__(self):
        return iter(self._indices)

    def __len__(self):
        return len(self._indices)


def top1(blocks, args):
    """Top-1 of each block on ``--val-data`` (a fraction, as every record) and the fraction of images where
    they agree."""
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
    result = {form + '_top1': count / total for form, count in correct.items()}
    result.update(val_images=total, val_agreement=agree / total,
                  top1_change=result['int8_top1'] - result['fp32_top1'])
    return result


def speed(args, folder, results):
    """Time every form at each batch size into ``results`` (``FORM_bN_img_per_s``, ratios to torch)."""
    threads = int(os.environ['OMP_NUM_THREADS'])
    torch = TorchOfficial(args.torch_python, threads) if args.torch_python else None
    try:
        with OnnxRuntime(ort_python(), threads) as ort:
            results['onnxruntime'] = ort.versions['onnxruntime']
            if torch is not None:
                results['torch'] = torch.versions['torch']
            for batch in args.batch_sizes:
                rates = interleaved_rates(timers(args, folder, batch, ort, torch), batch, args)
                for form, rate in rates.items():
                    results['%s_b%d_img_per_s' % (form, batch)] = rate
                results['int8_b%d_speedup' % batch] = rates['int8'] / rates['mxnet']
                best = max(FP32_FORMS, key=rates.get)
                results['best_fp32_b%d' % batch] = best
                if torch is not None:
                    for form in rates:
                        results['%s_b%d_vs_torch' % (form, batch)] = rates[form] / rates['torch']
    finally:
        if torch is not None:
            torch.close()


FORM_NAMES = {'mxnet': 'MXNet symbol (fp32)', 'mxnet-fused': 'MXNet symbol, oneDNN-fused (fp32)',
              'int8': 'MXNet INT8 (oneDNN)', 'onnx': 'ONNX in onnxruntime (fp32)',
              'torch': 'PyTorch official, eager (fp32)'}


def markdown_table(results):
    """The README's table of ``results``: images/s per batch size, ratio to PyTorch, accuracy change."""
    batches = results['batch_sizes']
    has_torch = 'torch_b%d_img_per_s' % batches[0] in results
    head = ['form'] + ['batch %d, images/s' % b for b in batches]
    head += ['vs PyTorch, batch %d' % b for b in batches] if has_torch else []
    lines = ['| %s | top-1 change |' % ' | '.join(head), '|%s' % ('---|' * (len(head) + 1))]
    for form, name in FORM_NAMES.items():
        if '%s_b%d_img_per_s' % (form, batches[0]) not in results:
            continue
        cells = [name] + ['%.1f' % results['%s_b%d_img_per_s' % (form, b)] for b in batches]
        cells += ['%.2fx' % results['%s_b%d_vs_torch' % (form, b)] for b in batches] if has_torch else []
        change = '' if form != 'int8' else ('%+.2f points' % (100 * results['top1_change'])
                                            if 'top1_change' in results else 'see --val-data')
        lines.append('| %s | %s |' % (' | '.join(cells), change))
    return '\n'.join(lines)


def main(args=None):
    """Run the benchmark and print (and optionally save) the results."""
    args = parse_args() if args is None else args
    results = {'model': args.model, 'input_size': args.input_size, 'batch_sizes': args.batch_sizes,
               'omp_num_threads': os.environ.get('OMP_NUM_THREADS'), 'cpu': _cpu_name(),
               'date': time.strftime('%Y-%m-%d'), 'mxnet': mx.__version__,
               'calib_mode': args.calib_mode, 'granularity': args.granularity,
               'weights': args.params_file or ('pretrained' if args.pretrained else 'random')}
    with tempfile.TemporaryDirectory(prefix='bench-deploy-') as folder:
        results['calib_agreement'] = export_all(args, folder)
        speed(args, folder, results)
        if args.val_data:
            blocks = {'fp32': mxnet_block(folder, 'mxnet', None),
                      'int8': mxnet_block(folder, 'int8', None)}
            results.update(top1(blocks, args))
    for key, value in results.items():
        print('%-24s %s' % (key, '%.4g' % value if isinstance(value, float) else value))
    print('\n%s\n\n%s, %s threads, %s' % (markdown_table(results), results['cpu'],
                                            results['omp_num_threads'], results['date']))
    if args.json:
        write_json(args.json, results)
    return results


def _cpu_name():
    """The CPU's model name as ``lscpu`` shows it (``platform.processor()`` is empty on Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
