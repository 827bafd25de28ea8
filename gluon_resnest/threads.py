"""Compute threads of this project's command-line tools, decided before MXNet loads.

MXNet reads ``OMP_NUM_THREADS`` once, when its library loads, and by default starts one OpenMP thread
per two logical cores. Measured on a 2-core machine, each tool is fastest with:

- inference and export (``eval.py``, ``python -m gluon_resnest.export``, the PyTorch checkpoint
  converter, ``python -m gluon_resnest.summary``): all cores. ResNeSt-50 batch-1 inference took 129 ms
  of operator time with both cores and 288 ms with MXNet's default of one.
- training (``train_imagenet.py``): the cores left over by the data-loading worker processes
  (``-j``), at least one. The README demo (one worker) trained at 86 images/s with one compute thread
  and 56 images/s with two, which made the worker and the compute threads share a core.

``OMP_NUM_THREADS`` set by the user always wins. The choice is printed once, to stderr.

This module must not import MXNet: the package calls :func:`configure_command_line` first thing, before
anything loads MXNet, because ``python -m gluon_resnest.X`` imports the package before the tool itself.
"""
import os
import sys

__all__ = ['available_cores', 'compute_threads', 'configure', 'configure_command_line']

# Command line -> tool: module names run with ``python -m``, console scripts and script file names.
TOOLS = {
    'gluon_resnest.export': 'export', 'gluon_resnest.export.__main__': 'export',
    'gluon-resnest-export': 'export',
    'gluon_resnest.export.torch_convert': 'convert', 'gluon-resnest-convert-torch': 'convert',
    'gluon_resnest.summary': 'summary',
    'eval.py': 'eval',
    'train_imagenet.py': 'train',
}
INTERPRETER_OPTIONS_WITH_VALUE = ('-W', '-X', '-Q')
DATA_WORKER_FLAGS = ('-j', '--num-data-workers')
DEFAULT_DATA_WORKERS = 4  # -j's default in every job (TrainConfig/EvalConfig take it from here)


def available_cores():
    """Logical cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compute_threads(tool, cores, data_workers=0):
    """Fastest OpenMP thread count for ``tool`` ('train', 'eval', 'export', 'convert', 'summary')."""
    if tool == 'train':
        return max(1, cores - data_workers)
    if tool in ('eval', 'export', 'convert', 'summary'):
        return cores
    raise ValueError('unknown tool %r' % (tool,))


def configure(tool, data_workers=0, stream=None):
    """Set ``OMP_NUM_THREADS`` for ``tool`` unless the user set it; print the choice once.

    Returns the thread count in effect. Has no effect on MXNet if it is already loaded (it then only
    reports what MXNet read).
    """
    stream = stream or sys.stderr
    if os.environ.get('OMP_NUM_THREADS'):
        threads, why = os.environ['OMP_NUM_THREADS'], 'set by OMP_NUM_THREADS'
    else:
        cores = available_cores()
        threads = str(compute_threads(tool, cores, data_workers))
        why = ('%d cores - %d data workers' % (cores, data_workers) if tool == 'train'
               else 'all %d cores' % cores)
        if 'mxnet' not in sys.modules:
            os.environ['OMP_NUM_THREADS'] = threads
        else:
            threads, why = 'MXNet default', 'MXNet was loaded before the thread count could be set'
    if why != 'set by OMP_NUM_THREADS':
        why += '; set OMP_NUM_THREADS to override'
    stream.write('%s: %s compute threads (%s)\n' % (tool, threads, why))
    stream.flush()
    return threads


def _data_workers(argv):
    """The value of train_imagenet.py's -j/--num-data-workers in ``argv`` (its default if absent)."""
    workers = DEFAULT_DATA_WORKERS
    for index, arg in enumerate(argv):
        name, _, value = arg.partition('=')
        if name in DATA_WORKER_FLAGS and not value and index + 1 < len(argv):
            value = argv[index + 1]
        elif name not in DATA_WORKER_FLAGS and arg.startswith('-j'):
            value = arg[2:]  # -j4
        elif name not in DATA_WORKER_FLAGS:
            continue
        if value.isdigit():
            workers = int(value)
    return workers


def command_line_tool(argv):
    """The tool this interpreter command line (``sys.orig_argv``) runs, or None if not one of ours."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == '-m' and index + 1 < len(argv):
            return TOOLS.get(argv[index + 1]), argv[index + 2:]
        if not arg.startswith('-'):
            return TOOLS.get(os.path.basename(arg)), argv[index + 1:]
        index += 2 if arg in INTERPRETER_OPTIONS_WITH_VALUE else 1
    return None, []


def configure_command_line():
    """Apply :func:`configure` when this process runs one of the project's command-line tools."""
    argv = list(getattr(sys, 'orig_argv', sys.argv))
    tool, args = command_line_tool(argv)
    if tool is None:
        return None
    return configure(tool, _data_workers(args) if tool == 'train' else 0)
