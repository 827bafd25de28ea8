"""Run one of GluonCV's scripts unchanged, with our networks registered in GluonCV.

    gluon-resnest-run-gluoncv SCRIPT.py [ARGS...]      # or python -m gluon_resnest.gluoncv

registers the plugin, then runs SCRIPT.py as ``__main__`` with ``sys.argv == [SCRIPT.py, ARGS...]`` and
its folder first on ``sys.path``, exactly as ``python SCRIPT.py ARGS...`` would. The script's exit status
(``sys.exit(n)``) is the command's; its errors follow the commands' one policy (one line, status 1).
"""
import argparse
import os
import runpy
import sys

from .. import cli
from .registry import register


class ScriptFailed(RuntimeError):
    """An error a GluonCV script raised, as one line: the message of ``ValueError``/``RuntimeError``,
    prefixed by the type's name for other errors (``KeyError: 'mask'``)."""

    def __init__(self, err):
        text = (str(err).strip().splitlines() or [''])[0]
        if not isinstance(err, (ValueError, RuntimeError)) or not text:
            text = '%s: %s' % (type(err).__name__, text) if text else type(err).__name__
        super(ScriptFailed, self).__init__(text)


def parse_args(argv=None):
    """Parse ``SCRIPT.py [ARGS...]``; everything after the script goes to the script untouched."""
    parser = cli.ArgumentParser(
        prog='gluon-resnest-run-gluoncv',
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


def run_script(args):
    """Register, then run ``args.script`` as ``__main__``; sys.argv and sys.path are restored after.

    A ``SystemExit`` (and Ctrl-C) raised by the script propagates; any other error it raises is the
    script's failed run, re-raised as :class:`ScriptFailed` (status 1 through the commands' policy), also
    ``AssertionError``, ``KeyError``, ``TypeError`` and a missing file inside the script.
    """
    register()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [args.script] + list(args.script_args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    try:
        runpy.run_path(args.script, run_name='__main__')
    except Exception as err:  # pylint: disable=broad-except  # the policy's boundary: re-raised, not swallowed
        raise ScriptFailed(err) from err
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def main(argv=None):
    """``gluon-resnest-run-gluoncv SCRIPT.py [ARGS...]``; returns the exit status: the script's own
    (``sys.exit(n)``), else as :func:`gluon_resnest.cli.run_command` (2 for a wrong runner command line)."""
    return cli.run_command(lambda argv: run_script(parse_args(argv)), argv)


if __name__ == '__main__':
    sys.exit(main())
