"""Run one of GluonCV's scripts unchanged, with our networks registered in GluonCV.

    python -m gluon_resnest.gluoncv SCRIPT.py [ARGS...]

registers the plugin, then runs SCRIPT.py as ``__main__`` with ``sys.argv == [SCRIPT.py, ARGS...]`` and
its folder first on ``sys.path``, exactly as ``python SCRIPT.py ARGS...`` would. The script's exit status
(``sys.exit(n)``, an uncaught exception) is the command's.
"""
import argparse
import os
import runpy
import sys

from .registry import register


def parse_args(argv=None):
    """Parse ``SCRIPT.py [ARGS...]``; everything after the script goes to the script untouched."""
    parser = argparse.ArgumentParser(
        prog='python -m gluon_resnest.gluoncv',
        description='Run a GluonCV script (train_imagenet.py, segmentation/train.py, '
                    'train_faster_rcnn.py, their eval/demo scripts, ...) with gluon_resnest\'s '
                    'networks registered in GluonCV.')
    parser.add_argument('script', help='path of the Python script to run')
    parser.add_argument('script_args', nargs=argparse.REMAINDER,
                        help='arguments passed to the script unchanged')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.script):
        parser.error('script not found: %s' % args.script)
    return args


def main(args):
    """Register, then run ``args.script`` as ``__main__``; sys.argv and sys.path are restored after.

    A ``SystemExit`` raised by the script propagates, so the process exits with the script's status.
    """
    register()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [args.script] + list(args.script_args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    try:
        runpy.run_path(args.script, run_name='__main__')
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0


if __name__ == '__main__':
    sys.exit(main(parse_args()))
