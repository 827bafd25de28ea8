"""Compute threads of this project's command-line tools, decided before MXNet loads.

MXNet reads ``OMP_NUM_THREADS`` once, when its library loads, and by default starts one OpenMP thread
per two logical cores. Measured on a 2-core machine, each tool is fastest with:

- inference and export (``eval.py``, ``python -m gluon_resnest.export``, the PyTorch checkpoint
  converter, ``python -m gluon_resnest.summary``): all cores. ResNeSt-50 batch-1 inference took 129 ms
  of operator time with both cores and 288 ms with MXNet's default of one.
- training (``train_imagenet.py``) on the CPU: all cores. The README demo (one data worker) trained
  at 82-99 images/s with two compute threads and 60-70 with one; 70-80 against 56-62 with
  ``--auto-aug``; 81-85 against 58-61 through the C++ RecordIO pipeline: the loaders wait for the slow
  CPU steps most of the time. (When the workers ran Gluon's transforms, whose MXNet operators compete
  with the compute threads, one thread was faster: 56-58 against 39 images/s.)
- training on GPUs (``--gpus`` or ``--num-gpus``): the cores the ``-j`` workers leave, at least one,
  since there the loader is what limits (not measured here: no GPU).

``OMP_NUM_THREADS`` set by the user always wins. The choice is printed once, to stderr.

Training also sets ``MXNET_CPU_TEMP_COPY=1`` unless the user set it: MXNet keeps that many temporary
workspaces per CPU (4 by default), hands them to operators in turn, and each grows to the largest request
of its operators, while its one CPU engine worker (``MXNET_CPU_WORKER_NTHREADS=1``, the default) runs
operators one at a time, so a single workspace serves them all. Measured for a ResNeSt-50 training step
at batch 8 on 2 cores: 100 MiB less peak memory, the same speed. (MXNet reads it when it runs its first
operator.)

This module must not import MXNet: the package calls :func:`configure_command_line` first thing, before
anything loads MXNet, because ``python -m gluon_resnest.X`` imports the package before the tool itself.
"""
import os
import sys

__all__ = ['available_cores', 'compute_threads', 'configure', 'configure_command_line']

# Command line -> tool: module names run with ``python -m``, console scripts and script file names.
# The GluonCV runner runs GluonCV's training and evaluation scripts: the training policy suits both.
TOOLS = {
    'gluon_resnest.export': 'export', 'gluon_resnest.export.__main__': 'export',
    'gluon-resnest-export': 'export',
    'gluon_resnest.export.torch_convert': 'convert', 'gluon-resnest-convert-torch': 'convert',
    'gluon_resnest.summary': 'summary', 'gluon-resnest-summary': 'summary',
    'gluon_resnest.data.demo': 'data', 'gluon_resnest.detection.shapes': 'data',
    'gluon-resnest-make-demo-data': 'data', 'gluon-resnest-make-shapes-data': 'data',
    'eval.py': 'eval', 'gluon-resnest-eval': 'eval',
    'train_imagenet.py': 'train', 'gluon-resnest-train': 'train',
    'gluon_resnest.detection.train': 'train', 'gluon-resnest-train-detection': 'train',
    'gluon_resnest.gluoncv': 'train', 'gluon_resnest.gluoncv.__main__': 'train',
    'gluon-resnest-run-gluoncv': 'train',
}
INTERPRETER_OPTIONS_WITH_VALUE = ('-W', '-X', '-Q')
# Every command spells data workers and devices with these flags (cli.py builds the parsers from them;
# --num-workers is the spelling of GluonCV's detection scripts).
DATA_WORKER_FLAGS = ('-j', '--num-data-workers', '--num-workers')
GPU_FLAG, GPU_COUNT_FLAG = '--gpus', '--num-gpus'
DEFAULT_DATA_WORKERS = 4  # -j's default in every job (TrainConfig/EvalConfig take it from here)
# Commands whose -j default differs from DEFAULT_DATA_WORKERS.
WORKER_DEFAULTS = {'gluon_resnest.detection.train': 0, 'gluon-resnest-train-detection': 0}


def available_cores():
    """Logical cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compute_threads(tool, cores, data_workers=0, workers_busy=True):
    """Fastest OpenMP thread count for ``tool`` ('train', 'eval', 'export', 'convert', 'summary', 'data').

    ``workers_busy`` (training only): the ``-j`` data workers need their cores (training on GPUs);
    otherwise training takes all cores.
    """
    if tool == 'train':
        return max(1, cores - data_workers) if workers_busy else cores
    if tool in ('eval', 'export', 'convert', 'summary', 'data'):
        return cores
    raise ValueError('unknown tool %r' % (tool,))


def configure(tool, data_workers=0, stream=None, workers_busy=True):
    """Set ``OMP_NUM_THREADS`` for ``tool`` unless the user set it; print the choice once. Training
    also sets ``MXNET_CPU_TEMP_COPY=1`` unless the user set it (see the module's text).

    Returns the thread count in effect. Has no effect on MXNet if it is already loaded (it then only
    reports what MXNet read).
    """
    stream = stream or sys.stderr
    if tool == 'train':
        os.environ.setdefault('MXNET_CPU_TEMP_COPY', '1')
    if os.environ.get('OMP_NUM_THREADS'):
        threads, why = os.environ['OMP_NUM_THREADS'], 'set by OMP_NUM_THREADS'
    else:
        cores = available_cores()
        threads = str(compute_threads(tool, cores, data_workers, workers_busy))
        if tool != 'train':
            why = 'all %d cores' % cores
        elif workers_busy:
            why = '%d cores - %d data workers' % (cores, data_workers)
        else:
            why = 'all %d cores: training on the CPU, the data workers mostly wait for it' % cores
        if 'mxnet' not in sys.modules:
            os.environ['OMP_NUM_THREADS'] = threads
        else:
            threads, why = 'MXNet default', 'MXNet was loaded before the thread count could be set'
    if why != 'set by OMP_NUM_THREADS':
        why += '; set OMP_NUM_THREADS to override'
    stream.write('%s: %s compute threads (%s)\n' % (tool, threads, why))
    stream.flush()
    return threads


def _option(argv, names):
    """The last value given to option ``names`` in ``argv`` (``--name V``, ``--name=V``, ``-jV``), or None."""
    found = None
    for index, arg in enumerate(argv):
        name, eq, value = arg.partition('=')
        if name in names and not eq:
            value = argv[index + 1] if index + 1 < len(argv) else None
        elif name not in names:
            short = [n for n in names if len(n) == 2 and arg.startswith(n) and len(arg) > 2]
            if not short:
                continue
            value = arg[2:]
        found = value
    return found


def _workers_busy(argv):
    """Whether a training command's data workers need their own cores: when it trains on GPUs
    (``--gpus 0,1`` or GluonCV's ``--num-gpus N`` with N > 0)."""
    count = _option(argv, (GPU_COUNT_FLAG,))
    return bool(_option(argv, (GPU_FLAG,))) or (count is not None and count.isdigit() and int(count) > 0)


def _data_workers(argv, default=DEFAULT_DATA_WORKERS):
    """The value of -j (or its long spellings) in ``argv``, ``default`` if absent."""
    value = _option(argv, DATA_WORKER_FLAGS)
    return int(value) if value is not None and value.isdigit() else default


def _command(argv):
    """(command name as TOOLS spells it, the arguments after it) of an interpreter command line."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == '-m' and index + 1 < len(argv):
            return argv[index + 1], argv[index + 2:]
        if not arg.startswith('-'):
            return os.path.basename(arg), argv[index + 1:]
        index += 2 if arg in INTERPRETER_OPTIONS_WITH_VALUE else 1
    return None, []


def command_line_tool(argv):
    """The tool this interpreter command line (``sys.orig_argv``) runs, or None if not one of ours."""
    command, args = _command(argv)
    return TOOLS.get(command), args


def configure_command_line():
    """Apply :func:`configure` when this process runs one of the project's command-line tools."""
    command, args = _command(list(getattr(sys, 'orig_argv', sys.argv)))
    tool = TOOLS.get(command)
    if tool is None:
        return None
    if tool == 'train':
        workers = _data_workers(args, WORKER_DEFAULTS.get(command, DEFAULT_DATA_WORKERS))
        return configure(tool, workers, workers_busy=_workers_busy(args))
    return configure(tool)
