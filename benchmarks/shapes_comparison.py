"""Cascade R-CNN against Faster R-CNN on the shapes dataset, over several seeds.

Trains both detectors on ResNeSt-14 from scratch with ``python -m gluon_resnest.detection.train``
(the same backbone, heads and schedule; held-out images resized by the validation transform), a few
runs at a time with one MXNet thread each, then reads every epoch's held-out results from the
checkpoints' JSON and writes a table (mean, sample standard deviation, min and max over the seeds at
IoU 0.5, 0.7 and VOC07 mAP averaged over IoU 0.5:0.05:0.95) and a plot of the curves::

    python benchmarks/shapes_comparison.py --out runs/shapes_comparison \\
        --plot docs/img/shapes_comparison.png

Defaults: 160 training and 60 held-out shapes images of 120 px, trained and tested at 96 px (the
validation transform resizes by 0.8), 4 epochs of cosine schedule (80 steps of 2 images each),
seeds 1, 2, 3, two runs at a time.

``--report-only`` rereads the JSON of finished runs and rewrites the table and plot. All values are
mAP as a fraction (0-1).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETECTORS = ('cascade_rcnn', 'faster_rcnn')
NAMES = {'cascade_rcnn': 'Cascade R-CNN', 'faster_rcnn': 'Faster R-CNN'}
METRICS = (('mAP@0.5', 'IoU 0.5'), ('mAP@0.7', 'IoU 0.7'), ('mAP@0.5:0.95', 'IoU 0.5:0.95'))
# The CPU settings of docs/detection.md's shapes command (--lr is the rate of a step of 2 images).
TRAIN_FLAGS = ['--network', 'resnest14', '--dataset', 'shapes', '--norm-layer', 'bn',
               '--no-pretrained-base', '--fpn-channels', '128', '--box-head', '2fc',
               '--box-head-units', '256', '--num-sample', '32', '--rpn-train-post-nms', '200',
               '--rpn-test-post-nms', '50', '--lr', '0.03', '--wd', '1e-4', '--lr-mode', 'cosine',
               '--lr-warmup', '100', '--log-interval', '50', '--no-progress']


def parse_args(argv=None):
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset-root', default=os.path.join(ROOT, 'runs', 'shapes120'),
                   help='shapes dataset (written with --size, --num-train, --num-val if missing)')
    p.add_argument('--size', type=int, default=120, help='side of the written shapes images')
    p.add_argument('--num-train', type=int, default=160, help='training images written')
    p.add_argument('--num-val', type=int, default=60, help='held-out images written')
    p.add_argument('--short', type=int, default=96, help='train/test short side (and max size)')
    p.add_argument('--seeds', default='1,2,3', help='training seeds')
    p.add_argument('--epochs', type=int, default=4, help='epochs of the cosine schedule')
    p.add_argument('--parallel', type=int, default=2, help='runs at a time (one thread each)')
    p.add_argument('--runs', default='',
                   help="train only these, e.g. 'cascade_rcnn:3,faster_rcnn:1' (default: all)")
    p.add_argument('--out', default=os.path.join(ROOT, 'runs', 'shapes_comparison'),
                   help='folder of the runs, table.md and summary.json')
    p.add_argument('--plot', default=os.path.join(ROOT, 'docs', 'img', 'shapes_comparison.png'))
    p.add_argument('--report-only', action='store_true', help='only read finished runs')
    return p.parse_args(argv)


def _command(args, detector, seed):
    prefix = os.path.join(args.out, '%s_seed%d' % (detector, seed))
    return prefix, [sys.executable, '-m', 'gluon_resnest.detection.train', '--detector', detector,
                    '--dataset-root', args.dataset_root, '--short', str(args.short),
                    '--max-size', str(args.short), '--epochs', str(args.epochs),
                    '--seed', str(seed), '--save-prefix', prefix] + TRAIN_FLAGS


def run_all(args, seeds):
    """Train every (detector, seed), ``--parallel`` at a time; the slower cascades start first."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MXNET_CPU_WORKER_NTHREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    queue = [(det, seed) for det in DETECTORS for seed in seeds]
    if args.runs:
        queue = [(det, int(seed)) for det, seed in (r.split(':') for r in args.runs.split(','))]
    running = []
    while queue or running:
        while queue and len(running) < args.parallel:
            det, seed = queue.pop(0)
            prefix, cmd = _command(args, det, seed)
            out = open(prefix + '.out', 'w')
            running.append((det, seed, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                                        stderr=subprocess.STDOUT), out, time.time()))
            print('started %s seed %d' % (det, seed), flush=True)
        time.sleep(5)
        for item in list(running):
            det, seed, proc, out, tic = item
            if proc.poll() is not None:
                out.close()
                running.remove(item)
                print('%s seed %d finished (exit %d) in %.1f min'
                      % (det, seed, proc.returncode, (time.time() - tic) / 60), flush=True)
                if proc.returncode:
                    raise RuntimeError('%s seed %d failed: see %s.out'
                                       % (det, seed, _command(args, det, seed)[0]))


def read_curves(out, seeds, epochs):
    """{detector: {metric: array (seeds, epochs)}} from the checkpoints' JSON."""
    curves = {}
    for det in DETECTORS:
        values = {name: np.zeros((len(seeds), epochs)) for name, _ in METRICS}
        for i, seed in enumerate(seeds):
            for epoch in range(epochs):
                with open(os.path.join(out, '%s_seed%d-%04d.json' % (det, seed, epoch + 1))) as f:
                    record = json.load(f)
                if record.get('val_unit') != 'fraction (0-1)':
                    raise ValueError('%s seed %d epoch %d: unexpected mAP unit %r'
                                     % (det, seed, epoch, record.get('val_unit')))
                for name, _ in METRICS:
                    values[name][i, epoch] = record['val'][name]
        curves[det] = values
    return curves


def table(curves, seeds):
    """Markdown: per epoch and metric, mean +- sample std [min, max] over the seeds."""
    head = '| after epoch | ' + ' | '.join('%s %s' % (det.split('_')[0].capitalize(), label)
                                          for det in DETECTORS for _, label in METRICS) + ' |'
    rows = [head, '|' + '---|' * (1 + len(DETECTORS) * len(METRICS))]
    epochs = curves[DETECTORS[0]][METRICS[0][0]].shape[1]
    for epoch in range(epochs):
        cells = []
        for det in DETECTORS:
            for name, _ in METRICS:
                v = curves[det][name][:, epoch]
                cells.append('%.3f ± %.3f [%.3f, %.3f]' % (v.mean(), v.std(ddof=1) if len(v) > 1
                                                           else 0., v.min(), v.max()))
        rows.append('| %d | %s |' % (epoch + 1, ' | '.join(cells)))
    return '\n'.join(rows) + '\n\nmean ± sample standard deviation [min, max] over seeds %s\n' \
        % ', '.join(map(str, seeds))


def plot(curves, path, seeds):
    """One panel per IoU: mean over seeds, each seed thin, epochs on x, mAP (0-1) on y."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4), sharey=True)
    for ax, (name, label) in zip(axes, METRICS):
        for det, colour in zip(DETECTORS, ('tab:blue', 'tab:orange')):
            values = curves[det][name]
            epochs = np.arange(1, values.shape[1] + 1)
            for run in values:
                ax.plot(epochs, run, color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(epochs, values.mean(0), color=colour, linewidth=2,
                    label='%s (mean of %d seeds)' % (NAMES[det],
                                                     len(seeds)))
        ax.set_title('held-out VOC07 mAP, %s' % label)
        ax.set_xlabel('epoch')
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('mAP (0-1)')
    axes[0].legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv=None):
    """Train (unless ``--report-only``), then write table.md, summary.json and the plot."""
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:
        if not os.path.isdir(os.path.join(args.dataset_root, 'VOC2007')):
            subprocess.check_call([sys.executable, '-m', 'gluon_resnest.detection.shapes',
                                   args.dataset_root, '--size', str(args.size), '--num-train',
                                   str(args.num_train), '--num-val', str(args.num_val)], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=ROOT))
        tic = time.time()
        run_all(args, seeds)
        print('all runs: %.1f min' % ((time.time() - tic) / 60))
    curves = read_curves(args.out, seeds, args.epochs)
    text = table(curves, seeds)
    with open(os.path.join(args.out, 'table.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(args.out, 'summary.json'), 'w') as f:
        json.dump({det: {name: v.tolist() for name, v in c.items()} for det, c in curves.items()},
                  f, indent=1)
    plot(curves, args.plot, seeds)
    print(text)


if __name__ == '__main__':
    main()
