"""ResNeSt-50 speed on this machine: gluon_resnest side by side with GluonCV's and PyTorch's.

fp32, 224 px, same thread count for every network. Reports images/s (median of several timed runs after
warm-up) for inference at batch 1 and 8 and for a training step (forward, backward, Nesterov SGD update)
at batch 8, and ours as a ratio of each alternative. The implementations' runs are interleaved in rounds,
each round starting with the next implementation so that none always runs right after the same one, and
a ratio is the median over rounds of the two rates measured in the same round: load that comes and goes
on a shared machine then hits both sides of a ratio alike. The alternatives: GluonCV's own ``ResNeSt``
class, MXNet's ``resnet50_v1b`` as a yardstick (``--resnet``), and the official PyTorch ResNeSt
(``--torch-python PATH``: an interpreter that has torch and the official ``resnest`` package, run as a
persistent subprocess by ``torch_official.py``; eval mode under ``no_grad`` for inference, which is the
official model's fastest documented form).

The inference rows time what the README documents for users: ``gluon_resnest.optimize(net, batch_size,
input_size)`` (hybridized with static memory, oneDNN-fused on a CPU with MXNet's oneDNN build), applied
to each MXNet network alike. ``--plain`` adds rows of the networks only hybridized with static memory
(no fusion). Training steps run hybridized with static memory. ``--memory`` reports the peak resident
memory of a training step at batch 8, each implementation in a fresh process of its own. Every MXNet
network runs with ``MXNET_CPU_TEMP_COPY=1`` (one temporary workspace per CPU), as the training command
sets it; ``--memory`` also reports ours with MXNet's default of 4 (``ours-temp-copy-4``).

Training compares the same work: the official PyTorch ResNeSt has no DropBlock (its ``DropBlock2D``
raises ``NotImplementedError``; ``dropblock_prob`` defaults to 0 there), so the ``training`` row builds
both ResNeSt-50s of MXNet with ``dropblock_prob=0`` too. The ``training, DropBlock 0.1`` row times the
published configuration (DropBlock 0.1 in stages 3 and 4), which only the two MXNet ResNeSts implement.
Training hybridizes with ``static_alloc=True``, as ``train_imagenet.py`` does (``static_shape`` as
well measured 3% faster here but holds about 400 MiB more at batch 8).

``--every-pair`` adds to the training rows ours traced with every BatchNorm+ReLU pair as one fused
operator, also where the layers' channels per group are not multiples of 16 (the pairs
``gluon_resnest.layers.trace.channel_blocks_agree`` keeps as two operators, since oneDNN's AVX-512
kernels cannot run their backward pass fused): the cost of that rule on the networks it touches
(cardinality > 1; the others trace the same graph either way). ``--model`` also takes the fast
variants; GluonCV has none of them, so those rows leave it out.

Usage::

    python benchmarks/bench_resnest50.py                 # all cores (OMP_NUM_THREADS defaults to them)
    python benchmarks/bench_resnest50.py --resnet --plain --memory --torch-python /path/to/torch-venv/bin/python
"""
import argparse
import os
from unittest import mock
from functools import partial
import platform
import statistics
import subprocess
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
# One CPU temporary workspace, as train_imagenet.py sets (gluon_resnest.threads), for every MXNet network.
os.environ.setdefault('MXNET_CPU_TEMP_COPY', '1')

import gluon_resnest  # noqa: E402  (loads MXNet, after the thread count: gluon_resnest_compat.import_mxnet)
import mxnet as mx  # noqa: E402
from gluoncv.model_zoo import resnest as gluoncv_resnest  # noqa: E402
from gluoncv.model_zoo.resnetv1b import resnet50_v1b  # noqa: E402

from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.procs import preexec_die_with_this_process  # noqa: E402
from gluon_resnest.layers import set_drop_prob, trace  # noqa: E402
from gluon_resnest.metrics import batch_seconds  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# peak_rss_mib is called by training_peak_mib's subprocess, through this module.
from torch_official import TorchOfficial, peak_rss_mib  # noqa: E402,F401  pylint: disable=wrong-import-position


def build(impl, name, fast=False, batch=1, size=224, training=False, dropblock=None):
    """An initialised network; ``impl`` is 'ours', 'gluoncv' or 'resnet' (resnet50_v1b).

    ``fast``: :func:`gluon_resnest.optimize` for (batch, 3, size, size) input, the documented inference
    path; ``training``: hybridized as the training command does; otherwise hybridized with static memory.
    ``dropblock`` overrides the ResNeSts' DropBlock probability (None: the published one).
    """
    if impl in ('ours', 'ours-every-pair'):
        net = gluon_resnest.get_model(name)
    elif impl == 'gluoncv':
        # GluonCV's own class (its model zoo name now resolves to ours once gluon_resnest is imported)
        net = getattr(gluoncv_resnest, name)()
    else:
        net = resnet50_v1b()
    if dropblock is not None:
        net.apply(partial(set_drop_prob, dropblock))  # drives GluonCV's DropBlock layers too
    net.initialize(mx.init.Xavier())
    if fast:
        return gluon_resnest.optimize(net, batch_size=batch, input_size=size)
    if training:
        net.hybridize(static_alloc=True)
    else:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def timed(step, batch, iters):
    """Images/s of ``iters`` consecutive calls of ``step`` (one timing)."""
    return batch * iters / batch_seconds(step, iters)


def inference_step(net, batch, size):
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    return lambda: net(x).wait_to_read()


def training_step(net, batch, size):
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    y = mx.nd.array([i % 1000 for i in range(batch)])
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = mx.gluon.Trainer(net.collect_params(), 'nag', {'learning_rate': 1e-3, 'momentum': 0.9})

    def step():
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch)
    return step


# Training rows: DropBlock probability of the ResNeSts (0: the official PyTorch model's only setting).
TRAINING_DROPBLOCK = {'training': 0.0, 'training-dropblock': None}


def case_rates(mode, batch, impls, args, official):
    """Images/s of each implementation for one case, one timed run per round (``args.runs`` rounds)."""
    timers = {}
    training = mode in TRAINING_DROPBLOCK
    for impl in impls:
        net = build(impl, args.model, fast=mode == 'inference', batch=batch, size=args.size,
                    training=training, dropblock=TRAINING_DROPBLOCK.get(mode))
        make = training_step if training else inference_step
        step = make(net, batch, args.size)
        if impl == 'ours-every-pair':
            with mock.patch.object(trace, 'channel_blocks_agree', lambda convs: True):
                step()  # the first call traces the graph
        timers[impl] = lambda step=step: timed(step, batch, args.iters)
    if official is not None and mode != 'training-dropblock':
        op = 'training' if training else 'inference'
        timers['torch'] = lambda: official.rate(op, args.model, batch, args.size, args.iters)
    return interleaved(timers, args.runs, args.warmup)


def interleaved(timers, runs, warmup):
    """``{name: [rate per round]}`` of ``timers`` (``{name: callable returning a rate}``): ``warmup``
    untimed calls of each, then ``runs`` rounds of one call each, round ``r`` starting with the
    ``r``-th name (in turn) so that none always runs right after the same one."""
    for timer in timers.values():
        for _ in range(warmup):
            timer()
    names = list(timers)
    rates = {name: [] for name in names}
    for run in range(runs):
        first = run % len(names)
        for name in names[first:] + names[:first]:
            rates[name].append(timers[name]())
    return rates


def summarize(mode, batch, rates):
    """One row: each implementation's median images/s, and ours over each alternative as the median of
    the per-round ratios."""
    row = dict({impl: statistics.median(values) for impl, values in rates.items()}, mode=mode, batch=batch,
               runs=rates)
    row['ratios'] = {impl: statistics.median(o / v for o, v in zip(rates['ours'], values))
                     for impl, values in rates.items() if impl != 'ours'}
    return row


def format_row(row):
    names = [('gluoncv', 'GluonCV'), ('resnet', 'resnet50_v1b'), ('torch', 'PyTorch official'),
             ('ours-every-pair', 'ours, every pair fused')]
    text = '%-18s batch %d  ours %6.1f img/s' % (row['mode'], row['batch'], row['ours'])
    for key, name in names:
        if key in row:
            text += '  | %s %6.1f, ours %.2fx' % (name, row[key], row['ratios'][key])
    return text


def measure(args, official=None):
    impls = ['ours'] + (['gluoncv'] if hasattr(gluoncv_resnest, args.model) else [])
    impls += ['resnet'] if args.resnet else []
    rows = []
    cases = []
    if args.cases != 'training':
        cases = [('inference', 1), ('inference', 8)]
        if args.plain:
            cases += [('inference-plain', 1), ('inference-plain', 8)]
    if args.cases != 'inference':
        cases += [('training', 8), ('training-dropblock', 8)]
    for mode, batch in cases:
        # resnet50_v1b has no DropBlock; GluonCV's DropBlock sizes its training mask for 224 px only.
        case_impls = [i for i in impls if mode != 'training-dropblock'
                      or (i == 'ours' or (i == 'gluoncv' and args.size == 224))]
        if args.every_pair and mode in TRAINING_DROPBLOCK:
            case_impls.append('ours-every-pair')
        row = summarize(mode, batch, case_rates(mode, batch, case_impls, args, official))
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def training_peak_mib(impl, model, dropblock, batch=8, size=224, steps=3, env=None):
    """Peak resident memory (MiB) of a fresh process that runs ``steps`` training steps of ``impl``.

    A process of its own, so that nothing else this benchmark built counts; ``env``: variables to set
    there.
    """
    code = ('import sys; sys.path.insert(0, %r); import bench_resnest50 as b\n'
            'step = b.training_step(b.build(%r, %r, training=True, dropblock=%r), %d, %d)\n'
            'for _ in range(%d): step()\n'
            'b.mx.nd.waitall(); print(b.peak_rss_mib())'
            % (HERE, impl, model, dropblock, batch, size, steps))
    out = subprocess.run([sys.executable, '-c', code], check=True, stdout=subprocess.PIPE, universal_newlines=True,
                         env=dict(os.environ, **(env or {})), preexec_fn=preexec_die_with_this_process()).stdout
    return float(out.split()[-1])


def official_training_peak_mib(torch_python, threads, model, batch=8, size=224, steps=3):
    """The same for the official PyTorch model, in a fresh --torch-python process."""
    with TorchOfficial(torch_python, threads) as official:
        official.seconds('training', model, batch, size, steps)
        return official.peak_rss_mib()


def memory(args):
    """Peak resident memory of a training step at batch 8, per implementation (MiB).

    Keys 'ours', 'gluoncv', 'torch' without DropBlock (the same work), 'ours-dropblock' and
    'gluoncv-dropblock' with the published DropBlock 0.1, 'ours-temp-copy-4' without DropBlock and
    with MXNet's default of 4 CPU temporary workspaces.
    """
    impls = ['ours'] + (['gluoncv'] if hasattr(gluoncv_resnest, args.model) else [])
    peaks = {impl: training_peak_mib(impl, args.model, 0.0) for impl in impls}
    if args.torch_python:
        peaks['torch'] = official_training_peak_mib(args.torch_python,
                                                    int(os.environ['OMP_NUM_THREADS']), args.model)
    for impl in impls:
        peaks[impl + '-dropblock'] = training_peak_mib(impl, args.model, None)
    peaks['ours-temp-copy-4'] = training_peak_mib('ours', args.model, 0.0,
                                                  env={'MXNET_CPU_TEMP_COPY': '4'})
    print('training step, batch 8, peak resident memory (no DropBlock unless named): '
          + ', '.join('%s %.0f MiB' % (impl, mib) for impl, mib in peaks.items()), flush=True)
    return peaks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='resnest50',
                        help="a published network (GluonCV's rows: resnest14..269 only)")
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--iters', type=int, default=3, help='calls per timed run')
    parser.add_argument('--cases', default='all', choices=['all', 'inference', 'training'],
                        help="'inference' or 'training': time only those rows")
    parser.add_argument('--plain', action='store_true',
                        help='also time inference of the networks only hybridized (no oneDNN fusion)')
    parser.add_argument('--resnet', action='store_true', help='also time resnet50_v1b as a yardstick')
    parser.add_argument('--every-pair', action='store_true',
                        help='also time training with every BatchNorm+ReLU pair fused (see the docstring)')
    parser.add_argument('--torch-python', metavar='PATH',
                        help='an interpreter with torch and the official resnest package: also time '
                             'the official PyTorch model, interleaved, at the same thread count')
    parser.add_argument('--memory', action='store_true',
                        help='also report the peak resident memory of a training step at batch 8')
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def main(args):
    print('machine: %s, %d logical cores, OMP_NUM_THREADS=%s, mxnet %s, python %s'
          % (platform.processor() or platform.machine(), os.cpu_count(),
             os.environ['OMP_NUM_THREADS'], mx.__version__, sys.version.split()[0]))
    if args.torch_python:
        with TorchOfficial(args.torch_python, int(os.environ['OMP_NUM_THREADS'])) as official:
            print('PyTorch official: torch %(torch)s, resnest %(resnest)s, %(threads)d threads'
                  % official.versions, flush=True)
            rows = measure(args, official)
    else:
        rows = measure(args)
    peaks = memory(args) if args.memory else None
    if args.json:
        write_json(args.json, {'omp_num_threads': os.environ['OMP_NUM_THREADS'], 'rows': rows,
                               'training_peak_mib': peaks})


if __name__ == '__main__':
    main(parse_args())
