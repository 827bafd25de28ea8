"""Processes this project starts end when the process that started them ends, even by SIGKILL.

A loader worker blocked on its task queue would otherwise live on as an orphan when the training or
evaluation process is killed (an out-of-memory kill, a preempted machine, ``kill -9``), holding its memory
until removed by hand. Three ways in, one mechanism (:func:`die_with_parent`):

- a worker the project forks itself calls :func:`die_with_parent` first thing
  (:class:`~gluon_resnest.data.shared_batches.SharedBatchLoader`);
- processes forked by code the project does not own (Gluon's ``DataLoader`` forks a
  ``multiprocessing.Pool``) are armed at the fork by building them inside
  :func:`children_die_with_this_process`;
- a program run with ``subprocess`` gets ``preexec_fn=preexec_die_with_this_process()``.

On Linux the kernel sends the parent-death signal (``prctl(PR_SET_PDEATHSIG)``) as the parent ends.
Elsewhere, or where ``prctl`` fails, a forked worker polls its parent pid once a second instead; an
executed program has no such fallback (its threads do not survive ``exec``). Caveats: on Linux the
"parent" is the *thread* that forked, so start workers from a thread that lives as long as they should
(the main thread, as everything here does); and a ``multiprocessing.Pool`` replaces a worker that died
from its own handler thread, outside the block, so such a replacement is not armed.

Standard library only: the benchmarks' helpers use it too.
"""
import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time

__all__ = ['die_with_parent', 'children_die_with_this_process', 'preexec_die_with_this_process']

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# SIGKILL rather than SIGTERM: a worker holds nothing that needs cleaning up (its batch buffers are the
# parent's shared mappings, freed with the last process using them), and a Python SIGTERM handler runs
# only between bytecodes, so it would never run in a worker blocked in C code on a queue whose other end
# is gone.
_SIGNAL = signal.SIGKILL


def _load_prctl():
    if not sys.platform.startswith('linux'):
        return None
    try:  # resolved here, not in the child: dlopen after a fork of a threaded process can deadlock
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()
_SCOPE = threading.local()  # parent pid for children forked by this thread inside the context manager


def die_with_parent(parent_pid, poll_interval=1.0, poll=True):
    """Make the calling process exit when its parent ``parent_pid`` ends, whatever ends it.

    Call it first thing in a child process, with the parent's pid taken *before* the fork
    (``os.getpid()`` in the parent): if the parent is already gone, the child exits at once.

    Parameters
    ----------
    parent_pid : int
    poll_interval : float, default 1.0
        Seconds between parent checks of the fallback (no ``prctl``).
    poll : bool, default True
        Start the fallback thread where ``prctl`` is unavailable (pointless before ``exec``).

    Returns
    -------
    str
        ``'prctl'`` (the kernel sends SIGKILL), ``'poll'`` (a daemon thread checks the parent) or
        ``'none'`` (no ``prctl`` and ``poll=False``).
    """
    armed = _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(_SIGNAL), 0, 0, 0) == 0
    # After arming, so that a parent dying in between is seen here or signals us.
    if os.getppid() != parent_pid:
        os._exit(1)  # pylint: disable=protected-access
    if armed:
        return 'prctl'
    if not poll:
        return 'none'
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_interval), name='gluon_resnest-parent-watch',
                     daemon=True).start()
    return 'poll'


def _watch_parent(parent_pid, interval):
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)  # pylint: disable=protected-access


@contextlib.contextmanager
def children_die_with_this_process():
    """Processes forked by this thread inside the block (``os.fork``, ``multiprocessing`` 'fork') are
    armed with :func:`die_with_parent` at the fork, before they run anything else.

    For workers forked by code the project does not own, e.g. Gluon's ``DataLoader(num_workers=N)``,
    whose ``multiprocessing.Pool`` forks its workers when the loader is built::

        with children_die_with_this_process():
            loader = DataLoader(dataset, batch_size, num_workers=4)

    Other threads' forks, and forks after the block, are left alone.
    """
    previous = getattr(_SCOPE, 'parent', None)
    _SCOPE.parent = os.getpid()
    try:
        yield
    finally:
        _SCOPE.parent = previous


def _arm_forked_child():
    # Runs in every forked child (os.register_at_fork), in the thread that forked.
    parent = getattr(_SCOPE, 'parent', None)
    if parent is not None:
        _SCOPE.parent = None  # the child's own children are its business
        die_with_parent(parent)


os.register_at_fork(after_in_child=_arm_forked_child)


def preexec_die_with_this_process():
    """A ``preexec_fn`` for ``subprocess``: the program gets SIGKILL when this process ends (Linux)."""
    return functools.partial(die_with_parent, os.getpid(), poll=False)
