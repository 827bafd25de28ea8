"""Every deployed form of a ResNeSt on the CPU, timed side by side, with INT8's accuracy change.

The forms a user can pick, each produced by the exporters (``gluon_resnest.export``: each checks
itself) and run as a user runs it:

- ``mxnet``: the fp32 symbol loaded with ``SymbolBlock.imports`` (hybridized, static memory);
- ``mxnet-fused``: the same loaded with ``gluon_resnest.loading.load_deployed`` (oneDNN graph fusion by
  ``gluon_resnest.optimize``), as ``eval.py --deploy`` runs it;
- ``int8``: the oneDNN INT8 symbol (``--format int8``), calibrated on ``--calib-data`` or random images,
  loaded with ``load_deployed`` as ``eval.py --quantized`` runs it;
- ``onnx``: the ONNX file (``--format onnx --dynamic-batch``) in onnxruntime with all graph
  optimisations, run by ``gluon_resnest/export/ort_run.py`` where onnxruntime is (this process or the
  onnxruntime interpreter);
- ``onnx-int8``: onnxruntime's own static INT8 of that file (``--format onnx-int8 --granularity
  channel-wise``: ``quantize_static``, QDQ, per-channel QInt8 weights, QUInt8 activations, after
  ``quant_pre_process``) on the same calibration images, in onnxruntime;
- ``torch`` (with ``--torch-python PATH``): the official PyTorch model in eager mode, ``eval()`` and
  ``no_grad()``, in a persistent subprocess of PATH (an interpreter with torch and ``resnest``).

Timings interleave: for each batch size, every run times each form in turn, so load on the machine
hits them alike. Figures are images/s, the median of ``--runs`` timings of ``--images`` images after
``--warmup`` batches, every form at the same thread count (``OMP_NUM_THREADS``, default all cores).
With ``--val-data`` (an ImageNet-layout folder or .rec held out from the calibration images) it also
reports fp32 and INT8 top-1, the change in points and the fraction of images whose top-1 agrees, for the
four calibrations (naive and entropy, tensor- and channel-wise) of the MXNet INT8 and for the onnxruntime
INT8. ``--train-demo DIR`` first trains the checkpoint it measures: resnest14 on the digits demo
(written to DIR by ``python -m gluon_resnest.data.demo``) at ``--input-size``, for ``--train-epochs``.

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
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import gluon_resnest  # noqa: E402,F401  (loads MXNet, after the thread count: gluon_resnest_compat.import_mxnet)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_resnest import cli, get_model  # noqa: E402
from gluon_resnest.config import CALIB_MODES, GRANULARITIES  # noqa: E402
from gluon_resnest.data import EvalTransform, make_loader, open_dataset  # noqa: E402
from gluon_resnest.data.demo import write_demo  # noqa: E402
from gluon_resnest.export import calibration_images, export_int8, export_mxnet, export_onnx  # noqa: E402
from gluon_resnest.export import export_onnx_int8, ort_run  # noqa: E402
from gluon_resnest.export.common import load_symbol_block  # noqa: E402
from gluon_resnest.loading import load_deployed, load_network  # noqa: E402
from gluon_resnest.export.onnx_export import ort_runner, run_onnxruntime  # noqa: E402
from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.metrics import batch_seconds  # noqa: E402
from gluon_resnest.procs import preexec_die_with_this_process  # noqa: E402
from gluon_resnest.summary import count_macs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_official import JsonLinesProcess, TorchOfficial  # noqa: E402  pylint: disable=wrong-import-position

FP32_FORMS = ('mxnet', 'mxnet-fused', 'onnx')
CALIBRATIONS = [(mode, granularity) for mode in CALIB_MODES for granularity in GRANULARITIES]


def network_parser(doc):
    """A parser described by ``doc`` (up to its Usage) with the network flags of the deployment benchmarks:
    ``--model`` (resnest50), ``--pretrained``/``--params-file`` (random weights without), ``--input-size``."""
    parser = argparse.ArgumentParser(description=doc.split('Usage', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model(parser, default='resnest50')
    cli.add_weights(parser)
    cli.add_input_size(parser, 224, 'image side')
    return parser


def parse_args(argv=None):
    """Command-line arguments of the benchmark."""
    parser = network_parser(__doc__)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8],
                        help='batch sizes timed (default: 1 8)')
    cli.add_batch_size(parser, 8, 'calibration and validation batch')
    parser.add_argument('--warmup', type=int, default=3, help='batches before timing, per form (3)')
    parser.add_argument('--runs', type=int, default=7, help='timings per form and batch size (7)')
    parser.add_argument('--images', type=int, default=16, help='images per timing (16)')
    parser.add_argument('--torch-python', help='interpreter with torch and the official resnest package')
    parser.add_argument('--calib-data', help='folder or .rec for INT8 calibration (default: random)')
    parser.add_argument('--num-calib-batches', type=int, default=10)
    parser.add_argument('--calib-mode', default='naive', choices=CALIB_MODES, help='of the timed INT8 forms')
    parser.add_argument('--granularity', default='tensor-wise', choices=GRANULARITIES,
                        help='of the timed MXNet INT8 (onnxruntime INT8: channel-wise)')
    parser.add_argument('--val-data', help='held-out folder or .rec with labels: top-1 of fp32 and INT8')
    parser.add_argument('--num-val-images', type=int, default=0, help='0: all of --val-data')
    parser.add_argument('--train-demo', metavar='DIR',
                        help='write the digits demo to DIR and train the measured resnest14 on it first '
                             '(sets --params-file, --calib-data DIR/train and --val-data DIR/val)')
    parser.add_argument('--train-epochs', type=int, default=4, help='with --train-demo (4)')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    args.model = cli.model_flag(parser, args.model)
    if args.train_demo and (args.model != 'resnest14' or args.pretrained or args.params_file):
        parser.error('--train-demo trains resnest14 itself: drop --pretrained/--params-file, --model resnest14')
    if args.val_data and not (args.pretrained or args.params_file):
        parser.error('--val-data measures accuracy: give --pretrained or --params-file')
    if min(args.batch_sizes + [args.batch_size, args.warmup, args.runs, args.images, args.train_epochs]) < 1:
        parser.error('--batch-sizes, --batch-size, --warmup, --runs, --images and --train-epochs must be positive')
    try:
        ort_runner()
    except RuntimeError as err:
        parser.error(str(err))
    return args


def train_demo(args):
    """Write the digits demo into ``--train-demo`` and train resnest14 on it with the README's recipe at
    ``--input-size``; point ``--params-file``, ``--calib-data`` and ``--val-data`` at the result."""
    folder = os.path.abspath(args.train_demo)
    if not os.path.isdir(os.path.join(folder, 'val')):
        write_demo(folder)
    save_dir = os.path.join(folder, 'runs', 'resnest14-%dpx' % args.input_size)
    command = [sys.executable, os.path.join(REPO, 'train_imagenet.py'), '--model', 'resnest14', '--data-dir',
               folder, '--input-size', str(args.input_size), '--batch-size', '16', '--lr', '0.01',
               '--num-epochs', str(args.train_epochs), '--warmup-epochs', '1', '--last-gamma', '--no-wd',
               '--label-smoothing', '0.1', '--min-random-area', '0.5', '--random-mirror', '0',
               '--jitter-param', '0', '--lighting-param', '0', '-j', '1', '--save-dir', save_dir,
               '--no-progress', '--resume']
    subprocess.run(command, check=True, preexec_fn=preexec_die_with_this_process())
    args.params_file = os.path.join(save_dir, 'resnest14-%04d.params' % args.train_epochs)
    args.calib_data, args.val_data = os.path.join(folder, 'train'), os.path.join(folder, 'val')


def _network(args):
    # Without weights: randomly initialised (the speed does not depend on the weights).
    return load_network(args.model, pretrained=args.pretrained, params_file=args.params_file)


def calibration(args):
    """``--num-calib-batches`` x ``--batch-size`` calibration images of ``--calib-data``, or random ones."""
    count = args.num_calib_batches * args.batch_size
    if args.calib_data:
        return calibration_images(args.calib_data, args.input_size, count)
    return mx.nd.random.normal(shape=(count, 3, args.input_size, args.input_size))


def export_all(args, folder, net, calib):
    """Export fp32 symbol, INT8 symbol, ONNX and onnxruntime's INT8 into ``folder``; return the INT8
    exports' agreement with fp32 on the calibration images."""
    export_mxnet(net, folder, 'fp32', input_size=args.input_size, batch_size=args.batch_size)
    result = export_int8(net, folder, 'int8', calib, batch_size=args.batch_size,
                         calib_mode=args.calib_mode, granularity=args.granularity)
    export_onnx(net, folder, 'fp32.onnx', input_size=args.input_size, dynamic=True)
    ort_int8 = export_onnx_int8(net, folder, 'int8.onnx', calib, batch_size=args.batch_size,
                                calib_mode=args.calib_mode, granularity='channel-wise')
    return {'calib_agreement': result.agreement, 'onnx_int8_calib_agreement': ort_int8.agreement}


def mxnet_block(folder, form, batch, input_size, prefix=None):
    """The exported ``form`` loaded as a user loads it, for batches of ``batch``: 'mxnet' with
    ``SymbolBlock.imports`` and static memory (the portable form); 'mxnet-fused' and 'int8' with
    ``load_deployed``, as ``eval.py --deploy`` and ``--quantized`` run them."""
    prefix = os.path.join(folder, prefix or ('int8' if form == 'int8' else 'fp32'))
    if form == 'mxnet':
        block = load_symbol_block(prefix)
        block.hybridize(static_alloc=True, static_shape=True)
        return block
    return load_deployed(prefix, input_size, batch_size=batch)[0]


def mxnet_timer(block, x):
    """A function of ``iters`` returning the wall seconds of ``iters`` calls of ``block`` on ``x``."""
    return lambda iters: batch_seconds(lambda: block(x), iters)


class OnnxRuntime(JsonLinesProcess):
    """Client of a persistent ``ort_run.py --serve`` process under an interpreter with onnxruntime (this
    one when it has it: a process of its own keeps onnxruntime's threads apart from MXNet's)."""

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
    forms = {form: mxnet_timer(mxnet_block(folder, form, batch, args.input_size), x)
             for form in ('mxnet', 'mxnet-fused', 'int8')}
    for form, name in (('onnx', 'fp32.onnx'), ('onnx-int8', 'int8.onnx')):
        forms[form] = lambda iters, name=name: ort.seconds(os.path.join(folder, name), batch, iters)
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


def val_batches(args):
    """``--val-data`` (or ``--num-val-images`` of it, evenly spaced) as evaluation batches: (list of
    NDArray, numpy labels)."""
    dataset = open_dataset(args.val_data, '--val-data')
    if 0 < args.num_val_images < len(dataset):
        # Evenly spaced, so a class-by-class folder contributes every class, not the first few.
        picks = np.linspace(0, len(dataset) - 1, args.num_val_images).round().astype(int).tolist()
        dataset = dataset.sample(_Indices(picks))
    batches, labels = [], []
    for data, label in make_loader(dataset, args.batch_size, EvalTransform(args.input_size)):
        batches.append(data)
        labels.append(label.asnumpy())
    return batches, np.concatenate(labels)


def mxnet_top1(block):
    """Top-1 classes of ``block`` on a list of batches."""
    return lambda batches: np.concatenate([block(x).argmax(axis=1).asnumpy() for x in batches])


def onnx_top1(onnx_file):
    """Top-1 classes of an ONNX file in onnxruntime on a list of batches."""
    return lambda batches: np.concatenate(run_onnxruntime(onnx_file, [x.asnumpy() for x in batches])).argmax(axis=1)


def top1(predictors, args):
    """Top-1 of each predictor (``{form: function(batches) -> classes}``, with 'fp32' and 'int8') on
    ``--val-data`` (fractions, as every record), each INT8 form's agreement with fp32's top-1, and the
    timed INT8's change against fp32."""
    batches, labels = val_batches(args)
    preds = {form: predict(batches) for form, predict in predictors.items()}
    result = {'val_images': len(labels)}
    for form, pred in preds.items():
        key = form.replace('-', '_')
        result[key + '_top1'] = float(np.mean(pred == labels))
        if form != 'fp32':
            result[key + '_agreement'] = float(np.mean(pred == preds['fp32']))
    result.update(val_agreement=result['int8_agreement'], top1_change=result['int8_top1'] - result['fp32_top1'])
    return result


def accuracy(args, folder, net, calib):
    """:func:`top1` of fp32, the timed INT8, the MXNet INT8 of every calibration and onnxruntime's INT8."""
    predictors = {form: mxnet_top1(mxnet_block(folder, form, args.batch_size, args.input_size))
                  for form in ('mxnet', 'int8')}
    predictors['fp32'] = predictors.pop('mxnet')
    for mode, granularity in CALIBRATIONS:
        name = 'int8-%s-%s' % (mode, granularity)
        export_int8(net, folder, name, calib, batch_size=args.batch_size, calib_mode=mode,
                    granularity=granularity)
        predictors[name] = mxnet_top1(mxnet_block(folder, 'int8', args.batch_size, args.input_size, name))
    predictors['onnx-int8'] = onnx_top1(os.path.join(folder, 'int8.onnx'))
    return top1(predictors, args)


def speed(args, folder, results):
    """Time every form at each batch size into ``results`` (``FORM_bN_img_per_s``, ratios to torch)."""
    threads = int(os.environ['OMP_NUM_THREADS'])
    torch = TorchOfficial(args.torch_python, threads) if args.torch_python else None
    try:
        with OnnxRuntime(ort_runner() or sys.executable, threads) as ort:
            results['onnxruntime'] = ort.versions['onnxruntime']
            if torch is not None:
                results['torch'] = torch.versions['torch']
            for batch in args.batch_sizes:
                rates = interleaved_rates(timers(args, folder, batch, ort, torch), batch, args)
                for form, rate in rates.items():
                    results['%s_b%d_img_per_s' % (form, batch)] = rate
                results['int8_b%d_speedup' % batch] = rates['int8'] / rates['mxnet']
                results['int8_b%d_vs_onnx_int8' % batch] = rates['int8'] / rates['onnx-int8']
                for form, rate in rates.items():
                    peak = results['peaks']['int8_gmacs' if 'int8' in form else 'fp32_gmacs']
                    if peak:
                        results['%s_b%d_peak_fraction' % (form, batch)] = rate * results['gmacs'] / peak
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
              'onnx-int8': 'ONNX INT8 in onnxruntime (QDQ, per-channel)', 'torch': 'PyTorch official, eager (fp32)'}


def markdown_table(results):
    """The docs' table of ``results``: images/s per batch size, the fraction of the CPU's peak (fp32 forms:
    the fp32 FMA peak; INT8 forms: the INT8 peak, see :func:`cpu_peaks`), ratio to PyTorch, top-1 change."""
    batches = results['batch_sizes']
    has_torch = 'torch_b%d_img_per_s' % batches[0] in results
    has_peak = 'mxnet_b%d_peak_fraction' % batches[0] in results
    head = ['form'] + ['batch %d, images/s' % b for b in batches]
    head += ['of peak, batch %d' % b for b in batches] if has_peak else []
    head += ['vs PyTorch, batch %d' % b for b in batches] if has_torch else []
    lines = ['| %s | top-1 change |' % ' | '.join(head), '|%s' % ('---|' * (len(head) + 1))]
    for form, name in FORM_NAMES.items():
        if '%s_b%d_img_per_s' % (form, batches[0]) not in results:
            continue
        cells = [name] + ['%.1f' % results['%s_b%d_img_per_s' % (form, b)] for b in batches]
        if has_peak:
            cells += ['%.0f%%' % (100 * results['%s_b%d_peak_fraction' % (form, b)]) for b in batches]
        cells += ['%.2fx' % results['%s_b%d_vs_torch' % (form, b)] for b in batches] if has_torch else []
        change = ''
        if form in ('int8', 'onnx-int8'):
            key = form.replace('-', '_') + '_top1'
            change = ('%+.2f points' % (100 * (results[key] - results['fp32_top1']))
                      if key in results else 'see --val-data')
        lines.append('| %s | %s |' % (' | '.join(cells), change))
    return '\n'.join(lines)


def accuracy_table(results):
    """The docs' table of INT8 accuracy: top-1 and agreement with fp32 per calibration (needs --val-data)."""
    lines = ['| form | calibration | top-1 | agrees with fp32 |', '|---|---|---|---|',
             '| MXNet fp32 | | %.2f%% | |' % (100 * results['fp32_top1'])]
    rows = [('MXNet INT8', '%s, %s' % calib, 'int8_%s_%s' % calib) for calib in CALIBRATIONS]
    rows.append(('onnxruntime INT8', '%s, channel-wise' % results['calib_mode'], 'onnx_int8'))
    for form, calib, key in rows:
        key = key.replace('-', '_')
        lines.append('| %s | %s | %.2f%% | %.1f%% |' % (form, calib, 100 * results[key + '_top1'],
                                                       100 * results[key + '_agreement']))
    return '\n'.join(lines)


def main(args=None):
    """Run the benchmark and print (and optionally save) the results."""
    args = parse_args() if args is None else args
    results = {'model': args.model, 'input_size': args.input_size, 'batch_sizes': args.batch_sizes,
               'omp_num_threads': os.environ.get('OMP_NUM_THREADS'), 'cpu': cpu_name(),
               'peaks': cpu_peaks(cores=min(int(os.environ['OMP_NUM_THREADS']), len(os.sched_getaffinity(0)))),
               'gmacs': count_macs(get_model(args.model), args.input_size) / 1e9,
               'date': time.strftime('%Y-%m-%d'), 'mxnet': mx.__version__,
               'calib_mode': args.calib_mode, 'granularity': args.granularity,
               'weights': args.params_file or ('pretrained' if args.pretrained else 'random')}
    if args.train_demo:
        train_demo(args)
        results['weights'] = args.params_file
    with tempfile.TemporaryDirectory(prefix='bench-deploy-') as folder:
        net, calib = _network(args), calibration(args)
        results.update(export_all(args, folder, net, calib))
        speed(args, folder, results)
        if args.val_data:
            results.update(accuracy(args, folder, net, calib))
    for key, value in results.items():
        print('%-24s %s' % (key, '%.4g' % value if isinstance(value, float) else value))
    print('\n%s\n\n%s, %s threads, %s' % (markdown_table(results), results['cpu'],
                                            results['omp_num_threads'], results['date']))
    if 'fp32_top1' in results:
        print('\n%s\n\non %d held-out images' % (accuracy_table(results), results['val_images']))
    if args.json:
        write_json(args.json, results)
    return results


def cpu_peaks(cpuinfo='/proc/cpuinfo', cores=None):
    """This machine's peak multiply-accumulates per second, fp32 and INT8, from the CPU's flags and clock.

    Per core and cycle: fp32 FMA, 2 units x 16 lanes with AVX-512 (``avx512f``), 2 x 8 with AVX2 (``fma``
    + ``avx2``). INT8 (u8 x s8, oneDNN's and onnxruntime's kernels): with VNNI (``avx512_vnni``), one
    ``vpdpbusd`` does 4 MACs per 32-bit lane, on 2 units: 4x fp32; without it, ``vpmaddubsw`` (u8 x s8
    pairs to s16) then ``vpmaddwd`` (s16 pairs to s32) do 4 MACs per 32-bit lane in two multiply
    instructions: 2x fp32 (AVX2 ``avx_vnni`` is counted as VNNI). Clock: ``cpu MHz`` of ``/proc/cpuinfo``
    (the base clock under a hypervisor; boost makes the real peak higher). Cores: this process's.

    Returns
    -------
    dict
        ``mhz``, ``cores``, ``isa`` ('avx512', 'avx2' or 'other'), ``vnni`` (bool), ``fp32_gmacs`` and
        ``int8_gmacs`` (GMAC/s for all ``cores``; 0 for 'other').
    """
    flags, mhz = set(), 0.0
    with open(cpuinfo) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key.strip() == 'flags' and not flags:
                flags = set(value.split())
            elif key.strip() == 'cpu MHz' and not mhz:
                mhz = float(value)
    cores = cores or len(os.sched_getaffinity(0))
    isa = 'avx512' if 'avx512f' in flags else 'avx2' if {'avx2', 'fma'} <= flags else 'other'
    vnni = bool({'avx512_vnni', 'avx_vnni'} & flags)
    fp32_per_cycle = {'avx512': 32, 'avx2': 16}.get(isa, 0)
    int8_per_cycle = fp32_per_cycle * (4 if vnni else 2)
    return {'mhz': mhz, 'cores': cores, 'isa': isa, 'vnni': vnni,
            'fp32_gmacs': fp32_per_cycle * cores * mhz / 1e3, 'int8_gmacs': int8_per_cycle * cores * mhz / 1e3}


def cpu_name():
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
