"""Start-up time of the project's commands against plain MXNet and GluonCV, in fresh processes.

Every row is a new interpreter (this one's, ``sys.executable``) running one statement or command that ends
as soon as everything is imported; the figure is the median wall time in seconds of ``--runs`` runs after
``--warmup`` runs (1: it fills the page cache), the rows taking turns in every run so that load on the
machine hits them alike:

- ``import mxnet``: what any MXNet program pays, MXNet's optional imports included (scikit-learn and
  scipy.stats when installed);
- ``import mxnet, gluoncv``: what a GluonCV script pays;
- ``import gluon_resnest``: MXNet loaded by ``gluon_resnest_compat.import_mxnet`` (without those
  optional imports), GluonCV, and the package;
- ``train_imagenet.py --help`` and ``eval.py --help``: a command's start, argument parsing included.

Usage::

    python benchmarks/bench_startup.py --runs 7 --json startup.json
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = [
    ('import mxnet', ['-c', 'import mxnet']),
    ('import mxnet, gluoncv', ['-c', 'import mxnet, gluoncv']),
    ('import gluon_resnest', ['-c', 'import gluon_resnest']),
    ('train_imagenet.py --help', [os.path.join(REPO, 'train_imagenet.py'), '--help']),
    ('eval.py --help', [os.path.join(REPO, 'eval.py'), '--help']),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=7, help='timed runs of each row (7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs of each row first (1)')
    parser.add_argument('--json', help='also write the results here')
    return parser.parse_args(argv)


def seconds(args):
    """Wall time of one fresh interpreter running ``args``, in seconds (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), check=False)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit('%s failed (%d): %s' % (' '.join(args), done.returncode, done.stderr[-2000:]))
    return elapsed


def main(args):
    times = {name: [] for name, _ in ROWS}
    for run in range(args.warmup + args.runs):
        for name, command in ROWS:
            elapsed = seconds(command)
            if run >= args.warmup:
                times[name].append(elapsed)
    results = {name: statistics.median(values) for name, values in times.items()}
    # After the timing: bench_deploy sets OMP_NUM_THREADS when it loads, which the timed commands would inherit.
    sys.path.insert(0, REPO)
    from bench_deploy import cpu_name  # pylint: disable=import-outside-toplevel
    print('%s, %d cores, Python %s, %d runs (median, s)' % (cpu_name(), os.cpu_count(),
                                                            platform.python_version(), args.runs))
    print('| start | seconds | of `import mxnet, gluoncv` |\n|---|---|---|')
    for name, value in results.items():
        print('| `%s` | %.2f | %.2f |' % (name, value, value / results['import mxnet, gluoncv']))
    if args.json:
        from gluon_resnest.fileio import write_json  # pylint: disable=import-outside-toplevel
        write_json(args.json, dict(results, runs=args.runs, python=platform.python_version()))
    return results


if __name__ == '__main__':
    main(parse_args())
