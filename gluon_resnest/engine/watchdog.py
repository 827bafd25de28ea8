"""Stop a worker that makes no progress: a lost peer must not hold every other machine forever.

Under MXNet's parameter-server kvstores (``dist_sync``, ``dist_device_sync``) a worker whose peer or server
died waits forever inside a push/pull: the call blocks in C++, ps-lite never fails it, and its heartbeats
only let the scheduler hand a dead node's id to a restarted one. :class:`Watchdog` is a thread beside the
training loop: the loop reports progress with :meth:`Watchdog.beat`; when none comes for longer than the
bound, the watchdog logs one line and ends the process with :data:`EXIT_NO_PROGRESS`. Checkpoints are
written atomically, so ending at any moment leaves the last complete one in place.

The bound of a unit of work (a training batch, a validation batch, the epoch-end synchronisation, a
checkpoint) is ``max(timeout, factor x the median of its kind's recent durations)``: slow models and
machines get a proportionally longer bound. The first unit of each kind, which includes graph tracing,
memory allocation or the first file writes, gets ``first_factor x timeout``.
"""
import collections
import logging
import os
import statistics
import sys
import threading
import time

from ..cli import EXIT_FAILED

__all__ = ['Watchdog', 'EXIT_NO_PROGRESS']

EXIT_NO_PROGRESS = EXIT_FAILED  # a failed run, as every command reports one (gluon_resnest.cli)


class Watchdog(object):
    """End the process when :meth:`beat` is not called within the bound.

    Parameters
    ----------
    timeout : float
        Seconds without progress before stopping, at least (0 disables the watchdog).
    factor : float, default 10
        The bound also covers ``factor`` times the median recent duration of the same kind of work.
    first_factor : float, default 10
        The first unit of each kind may take ``first_factor * timeout``.
    window : int, default 50
        Recent durations kept per kind.
    log : logging.Logger, optional
        Where the one-line message goes (default: ``gluon_resnest.train``).
    context : callable, optional
        Returns text appended to the message (e.g. the last checkpoint).
    on_timeout : callable, optional
        Called with the message instead of logging it and ending the process (for tests).
    clock : callable, default time.monotonic
    """

    def __init__(self, timeout, factor=10.0, first_factor=10.0, window=50, log=None, context=None,
                 on_timeout=None, clock=time.monotonic):
        if timeout < 0:
            raise ValueError('watchdog timeout must be >= 0 seconds, got %s' % timeout)
        self.timeout = float(timeout)
        self.factor = factor
        self.first_factor = first_factor
        self._durations = collections.defaultdict(lambda: collections.deque(maxlen=window))
        self._log = log or logging.getLogger('gluon_resnest.train')
        self._context = context
        self._on_timeout = on_timeout or self._exit
        self._clock = clock
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = None
        self._kind, self._since = None, None

    @property
    def enabled(self):
        """False when ``timeout`` is 0."""
        return self.timeout > 0

    def bound(self, kind):
        """Seconds a unit of ``kind`` may run before the watchdog stops the process."""
        recent = self._durations.get(kind)
        if not recent:
            return self.first_factor * self.timeout
        return max(self.timeout, self.factor * statistics.median(recent))

    def beat(self, kind):
        """Progress: the unit of work under way is done, and one of ``kind`` starts now."""
        now = self._clock()
        with self._lock:
            if self._kind is not None:
                self._durations[self._kind].append(now - self._since)
            self._kind, self._since = kind, now

    def iterate(self, iterable, kind):
        """Yield from ``iterable``, beating ``kind`` before each item is handed over."""
        for item in iterable:
            self.beat(kind)
            yield item

    def check(self):
        """The one-line message if the unit under way is over its bound, else None."""
        with self._lock:
            if self._kind is None:
                return None
            elapsed, bound = self._clock() - self._since, self.bound(self._kind)
            kind = self._kind
        if elapsed <= bound:
            return None
        extra = self._context() if self._context is not None else ''
        return ('no progress for %.3g s (%s, bound %.3g s): a peer worker or the parameter server is '
                'probably gone; stopping%s' % (elapsed, kind, bound, '; ' + extra if extra else ''))

    def start(self):
        """Start watching from the next :meth:`beat` on (no-op when disabled)."""
        if self.enabled and self._thread is None:
            self._stopped.clear()
            self._thread = threading.Thread(target=self._run, name='gluon_resnest-watchdog', daemon=True)
            self._thread.start()
        return self

    def stop(self):
        """Stop watching (the process goes on)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        # Poll often enough that the process ends within a few percent of the bound.
        while not self._stopped.wait(min(1.0, self.timeout / 20)):
            message = self.check()
            if message is not None:
                self._on_timeout(message)
                return

    def _exit(self, message):
        self._log.error(message)
        for handler in self._log.handlers + logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        # The main thread is blocked inside the kvstore's C++ code: only the process can end.
        os._exit(EXIT_NO_PROGRESS)  # pylint: disable=protected-access
