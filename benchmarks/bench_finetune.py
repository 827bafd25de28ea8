"""Transfer on real images that ship offline: fine-tuning against training from scratch and a linear probe.

scikit-learn's handwritten digits (``python -m gluon_resnest.data.demo``: 64 px JPEGs, a fixed stratified
80/20 split) are cut in two tasks:

1. pretraining: resnest14 trained from scratch on digits 0-6 (their whole training split) with the
   README main job's flags at 32 px;
2. the target task: digits 7-9 with ``--shots`` training images per class (drawn per seed from their
   training split), scored on their whole held-out split (about 36 images a class).

On the target task, with the same flags and budget (``--epochs`` epochs, the same lr, batch, augmentation
and seed) three runs per seed:

- ``finetune``: ``--pretrained`` the pretraining checkpoint (a new 3-class classifier at the default 10x
  rate, every other parameter from the file);
- ``scratch``: the same command without ``--pretrained`` (random initialisation);
- ``linear_probe``: ``--pretrained`` and ``--linear-probe`` (only the classifier trains);
- variants (``--methods``): ``finetune_freeze_bn`` (``--freeze-bn``), ``finetune_classifier_x1``
  (``--classifier-lr-mult 1``).

Reported: held-out top-1 after the last epoch, mean and standard deviation over ``--seeds`` seeds, and
each run's figure. Usage::

    python benchmarks/bench_finetune.py                  # 5 seeds; about 10 min on 2 loaded vCPUs
    python benchmarks/bench_finetune.py --seeds 3 --json # last line is JSON
    python benchmarks/bench_finetune.py --weights runs/pretrain/resnest14-0005.params \
        --methods finetune_freeze_bn,finetune_classifier_x1   # variants, from an earlier pretraining
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from gluon_resnest.data.demo import write_demo
from gluon_resnest.train import TrainConfig, fit

PRETRAIN_CLASSES = [str(d) for d in range(7)]
TARGET_CLASSES = ['7', '8', '9']
# The README main job's flags (32 px, mild augmentation, no mirror: digits are not symmetric).
COMMON = dict(model='resnest14', input_size=32, last_gamma=True, no_wd=True, label_smoothing=0.1,
              min_random_area=0.5, random_mirror=False, jitter_param=0.0, lighting_param=0.0,
              num_data_workers=0, log_interval=0, progress=False, eval_frequency=1000)


def parse_args(argv=None):
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, default=5, help='runs of each method (seeds 0..N-1)')
    parser.add_argument('--shots', type=int, default=10, help='training images per target class')
    parser.add_argument('--epochs', type=int, default=30, help='epochs on the target task')
    parser.add_argument('--lr', type=float, default=0.01, help='learning rate on the target task')
    parser.add_argument('--batch-size', type=int, default=10, help='batch on the target task')
    parser.add_argument('--pretrain-epochs', type=int, default=5, help='epochs of pretraining on 0-6')
    parser.add_argument('--pretrain-per-class', type=int, default=None,
                        help='pretraining images per class (default: all, about 144)')
    parser.add_argument('--methods', default=DEFAULT_METHODS,
                        help='comma-separated, of: %s' % ', '.join(METHODS))
    parser.add_argument('--weights', default=None,
                        help='a pretraining checkpoint of an earlier run of this benchmark (skips pretraining)')
    parser.add_argument('--workdir', default=None, help='where data and runs go (default: a temporary folder)')
    parser.add_argument('--json', action='store_true', help='print the results as JSON on the last line')
    return parser.parse_args(argv)


def _link_classes(source, dest, classes, pick=None):
    """``dest/<class>/`` holding links to ``source/<class>/`` images (all, or ``pick(sorted names)``)."""
    for name in classes:
        os.makedirs(os.path.join(dest, name))
        files = sorted(os.listdir(os.path.join(source, name)))
        for file in (pick(files) if pick else files):
            os.symlink(os.path.join(source, name, file), os.path.join(dest, name, file))


def make_tasks(root, shots, seeds, pretrain_per_class=None):
    """The pretraining folder and one target folder per seed (``shots`` images a class, drawn by seed)."""
    demo = os.path.join(root, 'digits')
    write_demo(demo)
    for split in ('train', 'val'):
        _link_classes(os.path.join(demo, split), os.path.join(root, 'pretrain', split), PRETRAIN_CLASSES,
                      pick=(lambda files: files[:pretrain_per_class]) if pretrain_per_class else None)
    for seed in range(seeds):
        rng = np.random.RandomState(seed)
        target = os.path.join(root, 'target%d' % seed)
        _link_classes(os.path.join(demo, 'train'), os.path.join(target, 'train'), TARGET_CLASSES,
                      pick=lambda files: sorted(rng.choice(files, shots, replace=False)))
        _link_classes(os.path.join(demo, 'val'), os.path.join(target, 'val'), TARGET_CLASSES)
    return os.path.join(root, 'pretrain')


def pretrain(root, data, epochs):
    """Train resnest14 on digits 0-6 with the main job's schedule; returns (checkpoint, val top-1, seconds)."""
    tic = time.time()
    result = fit(TrainConfig(data_dir=data, save_dir=os.path.join(root, 'runs', 'pretrain'), batch_size=16,
                             lr=0.01, num_epochs=epochs, warmup_epochs=min(1, epochs - 1), seed=0, **COMMON))
    return result.last_checkpoint[:-len('.json')] + '.params', result.val_top1, time.time() - tic


METHODS = {'finetune': dict(pretrained=True), 'scratch': {}, 'linear_probe': dict(pretrained=True, linear_probe=True),
           'finetune_freeze_bn': dict(pretrained=True, freeze_bn=True),
           'finetune_classifier_x1': dict(pretrained=True, classifier_lr_mult=1.0)}
DEFAULT_METHODS = 'finetune,scratch,linear_probe'


def target_run(root, seed, method, weights, args):
    """Held-out top-1 of one method on the target task of ``seed``."""
    extra = dict(METHODS[method])
    if extra.get('pretrained'):
        extra['pretrained'] = weights
    result = fit(TrainConfig(data_dir=os.path.join(root, 'target%d' % seed), batch_size=args.batch_size,
                             lr=args.lr, num_epochs=args.epochs, seed=seed, save_frequency=args.epochs,
                             save_dir=os.path.join(root, 'runs', '%s-%d' % (method, seed)), **extra, **COMMON))
    return result.val_top1


def summarise(runs):
    """{method: {mean, std, runs}} of held-out top-1 (percent)."""
    out = {}
    for method, values in runs.items():
        values = [100 * v for v in values]
        out[method] = {'mean': statistics.mean(values),
                       'std': statistics.stdev(values) if len(values) > 1 else 0.0, 'runs': values}
    return out


def main(argv=None):
    """Run the benchmark; prints a table (and JSON with ``--json``)."""
    args = parse_args(argv)
    root = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='bench-finetune-'))
    data = make_tasks(root, args.shots, args.seeds, args.pretrain_per_class)
    if args.weights:
        weights, pre_top1, pre_seconds = args.weights, None, 0.0
    else:
        weights, pre_top1, pre_seconds = pretrain(root, data, args.pretrain_epochs)
        print('pretrained resnest14 on digits 0-6: val top-1 %.1f%% in %.0f s' % (100 * pre_top1, pre_seconds))
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit('error: unknown method %s (known: %s)' % (unknown[0], ', '.join(METHODS)))
    runs, tic = {m: [] for m in methods}, time.time()
    for seed in range(args.seeds):
        for method in methods:  # interleaved, so that machine load hits every method alike
            runs[method].append(target_run(root, seed, method, weights, args))
            print('seed %d %-12s held-out top-1 %.1f%%' % (seed, method, 100 * runs[method][-1]), flush=True)
    table = summarise(runs)
    print('\n| method | held-out top-1 (mean ± std over %d seeds) | runs |' % args.seeds)
    print('|---|---|---|')
    for method, row in table.items():
        print('| %s | %.1f%% ± %.1f | %s |' % (method, row['mean'], row['std'],
                                             ', '.join('%.1f' % v for v in row['runs'])))
    record = {'machine': platform.processor() or platform.machine(),
              'pretrain_top1': None if pre_top1 is None else 100 * pre_top1,
              'pretrain_seconds': pre_seconds, 'target_seconds': time.time() - tic, 'settings': vars(args),
              'results': table}
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == '__main__':
    sys.exit(main())
