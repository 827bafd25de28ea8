"""Where a training step of the detection command goes on this machine.

``python benchmarks/profile_detection.py --steps 6 -- TRAIN FLAGS...`` builds the network and loaders
exactly as ``python -m gluon_resnest.detection.train TRAIN FLAGS`` would, runs ``--steps`` training
steps after ``--warmup`` and prints the median seconds of each phase (data loading with target
generation, forward with losses, backward, trainer update) and MXNet's per-operator aggregate of the
timed steps (the ``--top`` operators by total time).
"""
import argparse
import dataclasses
import statistics
import sys
import tempfile
import time

import gluon_resnest  # noqa: F401  (loads MXNet: gluon_resnest_compat.import_mxnet)
import mxnet as mx
from mxnet import autograd

from gluon_resnest.detection import train


def _phases(net, trainer, loader, loss_fn, ctx, batch_size, steps):
    """Seconds of each phase for ``steps`` steps: {phase: [s, ...]}."""
    times = {'data': [], 'forward': [], 'backward': [], 'update': []}
    batches = iter(loader)
    for _ in range(steps):
        tic = time.time()
        shards = train.device_shards(next(batches), ctx)
        mx.nd.waitall()
        times['data'].append(time.time() - tic)
        tic = time.time()
        with autograd.record():
            results = [loss_fn(net, *shard) for shard in shards]
        mx.nd.waitall()
        times['forward'].append(time.time() - tic)
        tic = time.time()
        autograd.backward([r['total'] for r in results])
        mx.nd.waitall()
        times['backward'].append(time.time() - tic)
        tic = time.time()
        trainer.step(batch_size)
        mx.nd.waitall()
        times['update'].append(time.time() - tic)
    return times


def main(argv=None):
    """Parse ``[--steps N --warmup N --top N] -- TRAIN FLAGS`` and print the breakdown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index('--') if '--' in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--top', type=int, default=25)
    opts = p.parse_args(argv[:split])
    args = train.parse_args(argv[split + 1:])
    with tempfile.TemporaryDirectory() as folder:  # the run's log; no checkpoint is written
        run = train.build_run(dataclasses.replace(args, save_prefix=folder + '/profile', resume=False))
    args, net, trainer, loader, ctx, loss_fn = run.config, run.net, run.trainer, run.loader, run.ctx, run.task.loss_fn
    run.task.start_epoch(run)
    _phases(net, trainer, loader, loss_fn, ctx, args.batch_size, opts.warmup)
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename='/tmp/profile.json')
    mx.profiler.set_state('run')
    times = _phases(net, trainer, loader, loss_fn, ctx, args.batch_size, opts.steps)
    mx.profiler.set_state('stop')
    total = sum(statistics.median(v) for v in times.values())
    print('%s step, batch %d: %.3f s (median of %d)' % (args.detector, args.batch_size, total,
                                                         opts.steps))
    for phase, values in times.items():
        med = statistics.median(values)
        print('  %-9s %7.3f s  %5.1f%%' % (phase, med, 100 * med / total))
    table = mx.profiler.dumps(reset=True, format='table', sort_by='total', ascending=False)
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == 'operator')
    print('\n'.join(lines[start:start + opts.top + 3]))


if __name__ == '__main__':
    main()
