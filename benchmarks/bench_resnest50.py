"""ResNeSt-50 speed on this machine: gluon_resnest side by side with GluonCV's implementation.

fp32, hybridized, 224 px, same process and thread count for every network. Reports images/s (median
of several timed runs after warm-up) for inference at batch 1 and 8 and for a training step (forward,
backward, SGD update) at batch 8, and the ratio ours / GluonCV. ``--fuse`` adds a second inference
row with MXNet's oneDNN graph fusion (``optimize_for(backend='MKLDNN')``, conv+BN+ReLU folded) applied
to both networks.

Usage::

    python benchmarks/bench_resnest50.py                 # all cores (OMP_NUM_THREADS defaults to them)
    python benchmarks/bench_resnest50.py --runs 5 --fuse --json bench.json
"""
import argparse
import os
import platform
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import mxnet as mx  # noqa: E402  (the thread count must be set before MXNet loads)
from gluoncv.model_zoo import resnest as gluoncv_resnest  # noqa: E402
from gluoncv.model_zoo.resnetv1b import resnet50_v1b  # noqa: E402

import gluon_resnest  # noqa: E402
from gluon_resnest.fileio import write_json  # noqa: E402
from gluon_resnest.metrics import median_rate  # noqa: E402


def build(impl, name, fuse=False, batch=1, size=224):
    """An initialised, hybridized network; ``impl`` is 'ours', 'gluoncv' or 'resnet' (resnet50_v1b)."""
    if impl == 'ours':
        net = gluon_resnest.get_model(name)
    elif impl == 'gluoncv':
        # GluonCV's own class (its model zoo name now resolves to ours once gluon_resnest is imported)
        net = getattr(gluoncv_resnest, name)()
    else:
        net = resnet50_v1b()
    net.initialize(mx.init.Xavier())
    if fuse:
        net.hybridize(static_alloc=True, static_shape=True)
        net.optimize_for(mx.nd.zeros((batch, 3, size, size)), backend='MKLDNN',
                         static_alloc=True, static_shape=True)
    else:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def inference_rate(net, batch, size, args):
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    return median_rate(lambda: net(x).wait_to_read(), batch, args.warmup, args.runs, args.iters)


def training_rate(net, batch, size, args):
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    y = mx.nd.array([i % 1000 for i in range(batch)])
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = mx.gluon.Trainer(net.collect_params(), 'nag', {'learning_rate': 1e-3, 'momentum': 0.9})

    def step():
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch)
    return median_rate(step, batch, args.warmup, args.runs, args.iters)


def measure(args):
    impls = ['ours', 'gluoncv'] + (['resnet'] if args.resnet else [])
    rows = []
    cases = [('inference', 1), ('inference', 8), ('training', 8)]
    if args.fuse:
        cases[2:2] = [('inference-fused', 1), ('inference-fused', 8)]
    for mode, batch in cases:
        row = {'mode': mode, 'batch': batch}
        for impl in impls:
            net = build(impl, args.model, fuse=mode == 'inference-fused', batch=batch, size=args.size)
            rate = training_rate if mode == 'training' else inference_rate
            row[impl] = rate(net, batch, args.size, args)
        row['ratio'] = row['ours'] / row['gluoncv']
        rows.append(row)
        print('%-16s batch %d  ours %6.1f img/s  gluoncv %6.1f img/s%s  ratio %.2fx'
              % (mode, batch, row['ours'], row['gluoncv'],
                 '  resnet50_v1b %6.1f' % row['resnet'] if 'resnet' in row else '', row['ratio']),
              flush=True)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='resnest50', help='a name both zoos know (resnest14..269)')
    parser.add_argument('--input-size', '--size', dest='size', type=int, default=224, help='image side')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--iters', type=int, default=3, help='calls per timed run')
    parser.add_argument('--fuse', action='store_true', help='also time oneDNN-fused inference')
    parser.add_argument('--resnet', action='store_true', help='also time resnet50_v1b as a yardstick')
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def main(args):
    print('machine: %s, %d logical cores, OMP_NUM_THREADS=%s, mxnet %s, python %s'
          % (platform.processor() or platform.machine(), os.cpu_count(),
             os.environ['OMP_NUM_THREADS'], mx.__version__, sys.version.split()[0]))
    rows = measure(args)
    if args.json:
        write_json(args.json, {'omp_num_threads': os.environ['OMP_NUM_THREADS'], 'rows': rows})


if __name__ == '__main__':
    main(parse_args())
