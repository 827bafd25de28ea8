"""Where an INT8 graph's time goes on this CPU: MXNet's profiler per operator, oneDNN's log per primitive.

The graph is a ``--format int8`` export (``--prefix``) or, without one, the ``--model`` quantized here as
``bench_deploy.py`` does (random weights unless ``--pretrained``/``--params-file``; calibrated on
``--calib-data`` or random images). It is loaded with ``gluon_resnest.loading.load_deployed``, as
``eval.py --quantized`` runs it, and profiled at ``--batch-size``:

- MXNet's profiler (``aggregate_stats``) over ``--runs`` passes, with ``MXNET_EXEC_BULK_EXEC_INFERENCE=0``
  so that each operator is timed alone; each operator's time is its fastest pass, and the pass's wall
  time (median) is given beside the operators' sum: the difference is the time between operators. Operators are grouped:
  convolutions (``_sg_mkldnn_conv``), fully connected layers, other INT8 operators
  (``_contrib_quantized_*``: poolings, flatten), the fp32/INT8 conversions (``quantize_v2``,
  ``dequantize``, ``requantize``) and the operators left in fp32 (MXNet's own kernels: the split
  attention's ``split``, ``broadcast_mul``, ``add_n``, ``softmax``, ``Reshape``);
- oneDNN's log (``MKLDNN_VERBOSE=1``) of one pass, in a child process: the primitives run, with the kernel
  each uses (``jit_uni_int8:avx2``, ``avx512_core_vnni``, ...), and the reorders by source and destination
  data type and layout (the dequantize and quantize_v2 operators are oneDNN reorders);
- the convolutions' multiply-accumulates per second and their fraction of this CPU's INT8 peak at the
  thread count (``bench_deploy.cpu_peaks``), and how much faster the convolutions alone would be than all
  operators and than the pass.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/profile_int8.py --model resnest50 --batch-size 8
    OMP_NUM_THREADS=2 python benchmarks/profile_int8.py --model resnest50 --prefix deploy/resnest50-int8
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import gluon_resnest  # noqa: E402,F401  (loads MXNet, after the thread count: gluon_resnest_compat.import_mxnet)
import mxnet as mx  # noqa: E402

from gluon_resnest import cli  # noqa: E402
from gluon_resnest.config import CALIB_MODES, GRANULARITIES, ConfigError, check_weights  # noqa: E402
from gluon_resnest.export import export_int8  # noqa: E402
from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.loading import load_deployed, load_network  # noqa: E402
from gluon_resnest.metrics import time_calls  # noqa: E402
from gluon_resnest.procs import preexec_die_with_this_process  # noqa: E402
from gluon_resnest.summary import count_macs  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_deploy import calibration, cpu_name, cpu_peaks, network_parser  # noqa: E402  pylint: disable=wrong-import-position

GROUPS = ('convolutions', 'fully connected', 'other INT8 operators', 'fp32/INT8 conversions',
          'fp32 operators')
_LOG_START = '--- profile_int8: the logged pass ---'


def operator_group(op):
    """The group of ``GROUPS`` an operator of a oneDNN INT8 graph belongs to."""
    if op == '_sg_mkldnn_conv':
        return 'convolutions'
    if op == '_sg_mkldnn_fully_connected':
        return 'fully connected'
    if op in ('_contrib_quantize_v2', '_contrib_quantize', '_contrib_dequantize', '_contrib_requantize'):
        return 'fp32/INT8 conversions'
    if op.startswith('_contrib_quantized_'):
        return 'other INT8 operators'
    return 'fp32 operators'


def parse_args(argv=None):
    """Command-line arguments of the profile."""
    parser = network_parser(__doc__)
    cli.add_batch_size(parser, 1, 'profiled batch (and calibration batch)')
    parser.add_argument('--prefix', help='an exported INT8 graph (PREFIX-symbol.json); default: quantize '
                                         '--model here')
    parser.add_argument('--calib-data', help='folder or .rec for the calibration (default: random images)')
    parser.add_argument('--num-calib-batches', type=int, default=4)
    parser.add_argument('--calib-mode', default='naive', choices=CALIB_MODES)
    parser.add_argument('--granularity', default='tensor-wise', choices=GRANULARITIES)
    parser.add_argument('--warmup', type=int, default=3, help='passes before profiling (3)')
    parser.add_argument('--runs', type=int, default=3, help='profiled passes; each operator keeps its fastest')
    parser.add_argument('--top', type=int, default=15, help='operators listed (15)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--log-pass', action='store_true', help=argparse.SUPPRESS)  # the oneDNN-log child
    args = parser.parse_args(argv)
    args.model = cli.model_flag(parser, args.model)
    if min(args.batch_size, args.num_calib_batches, args.warmup, args.runs, args.top) < 1:
        parser.error('--batch-size, --num-calib-batches, --warmup, --runs and --top must be positive')
    if args.prefix and not os.path.isfile(args.prefix + '-symbol.json'):
        parser.error('--prefix %s: %s-symbol.json does not exist' % (args.prefix, args.prefix))
    try:
        check_weights(args.pretrained, args.params_file, required=False)
    except ConfigError as err:
        parser.error(err.render(cli.flag_name))
    return args


def quantized_here(args, net, folder):
    """Quantize ``net`` as ``--format int8`` does into ``folder``; the prefix written."""
    export_int8(net, folder, 'int8', calibration(args), batch_size=args.batch_size, calib_mode=args.calib_mode,
                granularity=args.granularity)
    return os.path.join(folder, 'int8')


@contextmanager
def _operators_alone():
    """MXNet runs each operator of a graph traced within as its own engine operation
    (``MXNET_EXEC_BULK_EXEC_INFERENCE=0``, read when a graph runs): the profiler times each alone."""
    saved = os.environ.get('MXNET_EXEC_BULK_EXEC_INFERENCE')
    os.environ['MXNET_EXEC_BULK_EXEC_INFERENCE'] = '0'
    try:
        yield
    finally:
        if saved is None:
            del os.environ['MXNET_EXEC_BULK_EXEC_INFERENCE']
        else:
            os.environ['MXNET_EXEC_BULK_EXEC_INFERENCE'] = saved


def loaded(prefix, args):
    """The graph as ``eval.py --quantized`` runs it, warmed up, and an input batch."""
    block, info = load_deployed(prefix, args.input_size, batch_size=args.batch_size)
    if not info['quantized']:
        raise SystemExit('error: %s holds no INT8 operators (export it with --format int8)' % prefix)
    shape = ((args.batch_size, args.input_size, args.input_size, 3) if info['layout'] == 'NHWC'
             else (args.batch_size, 3, args.input_size, args.input_size))
    x = mx.nd.random.uniform(0, 255 if info['layout'] == 'NHWC' else 1, shape=shape)
    if info['layout'] == 'NHWC':
        x = x.astype('uint8')
    for _ in range(args.warmup):
        block(x).wait_to_read()
    return block, x


def operator_times(block, x, runs):
    """{operator: (calls per pass, fastest pass's total ms)} from MXNet's profiler over ``runs`` passes."""
    mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                           filename=os.path.join(tempfile.gettempdir(), 'profile_int8.json'))
    passes = collections.defaultdict(list)
    for _ in range(runs):
        mx.profiler.set_state('run')
        block(x).wait_to_read()
        mx.profiler.set_state('stop')
        stats = json.loads(mx.profiler.dumps(reset=True, format='json'))
        for op, stat in stats['Time'].get('operator', {}).items():
            if op not in ('WaitForVar', 'DeleteVariable'):  # the engine's bookkeeping, not the graph's
                passes[op].append((stat['Count'], stat['Total']))
    return {op: (values[0][0], min(total for _, total in values)) for op, values in passes.items()}


def pass_ms(block, x, runs):
    """Median wall milliseconds of a pass (each operator alone, as profiled)."""
    return 1e3 * statistics.median(time_calls(lambda: block(x).wait_to_read(), 0, max(runs, 5)))


def onednn_log(argv, prefix):
    """oneDNN's log of one pass, from a child process of this script: the ``dnnl_verbose,exec`` fields."""
    env = dict(os.environ, MKLDNN_VERBOSE='1', DNNL_VERBOSE='1')
    command = [sys.executable, os.path.abspath(__file__)] + list(argv) + ['--prefix', prefix, '--log-pass']
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, universal_newlines=True,
                         preexec_fn=preexec_die_with_this_process()).stdout
    if _LOG_START not in out:
        raise RuntimeError('the oneDNN-log pass printed no marker:\n' + out[-2000:])
    lines = out.split(_LOG_START, 1)[1].splitlines()
    return [line.split(',') for line in lines if line.startswith(('dnnl_verbose,exec', 'mkldnn_verbose,exec'))]


def primitive_summary(records):
    """Per primitive and kernel, and per reorder's source -> destination: calls and ms.

    A record: ``dnnl_verbose,exec,cpu,PRIMITIVE,KERNEL,PROP,MEMORY DESCRIPTORS,ATTRS,AUX,SHAPES,MS``.
    """
    kernels, reorders = collections.Counter(), collections.Counter()
    kernel_ms, reorder_ms = collections.Counter(), collections.Counter()
    for fields in records:
        primitive, kernel, ms = fields[3], fields[4], float(fields[-1])
        kernels[(primitive, kernel)] += 1
        kernel_ms[(primitive, kernel)] += ms
        if primitive == 'reorder':
            memory = fields[6].split()
            key = ' -> '.join(m.split(':')[0] + ' ' + m.split(':')[3] for m in memory[:2])
            reorders[key] += 1
            reorder_ms[key] += ms
    return ([(p, k, kernels[(p, k)], kernel_ms[(p, k)]) for p, k in sorted(kernels, key=kernel_ms.get, reverse=True)],
            [(k, reorders[k], reorder_ms[k]) for k in sorted(reorders, key=reorder_ms.get, reverse=True)])


def report(args, ops, wall_ms, kernels, reorders, macs):
    """The printed tables and the results dict."""
    total = sum(ms for _, ms in ops.values())
    groups = collections.OrderedDict((g, [0, 0.0]) for g in GROUPS)
    for op, (calls, ms) in ops.items():
        groups[operator_group(op)][0] += calls
        groups[operator_group(op)][1] += ms
    threads = int(os.environ['OMP_NUM_THREADS'])
    peaks = cpu_peaks(cores=threads)
    conv_ms = groups['convolutions'][1]
    conv_gmacs = macs * args.batch_size / conv_ms / 1e6 if conv_ms else 0.0
    print('%s INT8 at %d px, batch %d, %d thread(s); %s (%s%s, %.0f MHz)'
          % (args.model, args.input_size, args.batch_size, threads, cpu_name(), peaks['isa'],
             ', VNNI' if peaks['vnni'] else ', no VNNI', peaks['mhz']))
    print('pass: %.1f ms wall, operators %.1f ms (fastest of %d)\n' % (wall_ms, total, args.runs))
    print('| group | operators per pass | ms | share |\n|---|---|---|---|')
    for group, (calls, ms) in groups.items():
        print('| %s | %d | %.2f | %.1f%% |' % (group, calls, ms, 100 * ms / total))
    print('\n| operator | calls | ms | share |\n|---|---|---|---|')
    for op, (calls, ms) in sorted(ops.items(), key=lambda item: -item[1][1])[:args.top]:
        print('| `%s` | %d | %.2f | %.1f%% |' % (op, calls, ms, 100 * ms / total))
    print('\n| oneDNN primitive | kernel | calls | ms |\n|---|---|---|---|')
    for primitive, kernel, calls, ms in kernels:
        print('| %s | `%s` | %d | %.2f |' % (primitive, kernel, calls, ms))
    print('\n| reorder | calls | ms |\n|---|---|---|')
    for key, calls, ms in reorders:
        print('| %s | %d | %.2f |' % (key, calls, ms))
    only_convs = (total / conv_ms, wall_ms / conv_ms) if conv_ms else (0.0, 0.0)
    peak = peaks['int8_gmacs']
    print('\nconvolutions: %.2f GMAC per pass in %.1f ms, %.1f GMAC/s, %s of the INT8 peak of %d thread(s) '
          '(%.0f GMAC/s); the convolutions alone: %.2fx faster than all operators, %.2fx than the pass'
          % ((macs * args.batch_size / 1e9, conv_ms, conv_gmacs,
              '%.0f%%' % (100 * conv_gmacs / peak) if peak else 'n/a', threads, peak) + only_convs))
    return {'model': args.model, 'input_size': args.input_size, 'batch_size': args.batch_size,
            'threads': threads, 'cpu': cpu_name(), 'peaks': peaks, 'wall_ms': wall_ms, 'operators_ms': total,
            'groups': {g: {'calls': c, 'ms': ms} for g, (c, ms) in groups.items()},
            'operators': {op: {'calls': c, 'ms': ms} for op, (c, ms) in ops.items()},
            'onednn': [{'primitive': p, 'kernel': k, 'calls': c, 'ms': ms} for p, k, c, ms in kernels],
            'reorders': [{'reorder': k, 'calls': c, 'ms': ms} for k, c, ms in reorders],
            'conv_gmacs_per_s': conv_gmacs, 'conv_peak_fraction': conv_gmacs / peak if peak else None,
            'convolutions_alone_vs_operators': only_convs[0], 'convolutions_alone_vs_wall': only_convs[1]}


def main(argv=None):
    """Profile the INT8 graph; returns the results dict (also printed as Markdown tables)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.log_pass:
        block, x = loaded(args.prefix, args)
        print(_LOG_START, flush=True)
        block(x).wait_to_read()
        return None
    net = load_network(args.model, pretrained=args.pretrained, params_file=args.params_file)
    macs = count_macs(net, args.input_size)
    with tempfile.TemporaryDirectory() as folder, _operators_alone():
        prefix = args.prefix or quantized_here(args, net, folder)
        block, x = loaded(prefix, args)
        ops = operator_times(block, x, args.runs)
        wall_ms = pass_ms(block, x, args.runs)
        kernels, reorders = primitive_summary(onednn_log(argv, prefix))
    results = report(args, ops, wall_ms, kernels, reorders, macs)
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == '__main__':
    main()
