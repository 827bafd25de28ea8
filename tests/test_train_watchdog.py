"""The no-progress watchdog: its bound, its one-line message, and ending a process blocked in a call."""
import re
import subprocess
import sys
import threading
import time

import pytest

from gluon_resnest.engine.watchdog import EXIT_NO_PROGRESS, Watchdog


class _Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bound_is_first_allowance_then_scales_with_median_duration():
    clock = _Clock()
    watch = Watchdog(5, factor=10, first_factor=4, clock=clock)
    assert watch.bound('training batch') == 20  # nothing measured yet: 4 x 5 s
    watch.beat('training batch')
    for duration in (30.0, 0.1, 0.1, 0.2):  # a slow first batch (tracing), then fast steps
        clock.now += duration
        watch.beat('training batch')
    assert watch.bound('training batch') == 5  # 10 x median 0.15 s = 1.5 s is below the floor
    for _ in range(10):
        clock.now += 2.0
        watch.beat('training batch')
    assert watch.bound('training batch') == pytest.approx(20.0)  # 10 x median 2 s
    assert watch.bound('checkpoint') == 20  # each kind has its own record


def test_check_names_the_stall_in_one_line_only_past_the_bound():
    clock = _Clock()
    watch = Watchdog(8, first_factor=1, clock=clock, context=lambda: 'last checkpoint: runs/m-0001.json')
    watch.beat('validation batch')
    clock.now += 8.0
    assert watch.check() is None
    clock.now += 0.5
    message = watch.check()
    assert message == ('no progress for 8.5 s (validation batch, bound 8 s): a peer worker or the parameter '
                       'server is probably gone; stopping; last checkpoint: runs/m-0001.json')
    watch.beat('validation batch')
    assert watch.check() is None


def test_thread_fires_once_without_beats_and_never_with_them():
    fired = []
    watch = Watchdog(0.4, first_factor=1, on_timeout=fired.append)
    with watch.start():
        watch.beat('training batch')
        for _ in range(15):  # 1.5 s of steady progress, each beat well inside the bound
            time.sleep(0.1)
            watch.beat('training batch')
        assert fired == []
        time.sleep(1.5)
    assert len(fired) == 1 and 'no progress for' in fired[0]
    assert not [t for t in threading.enumerate() if t.name == 'gluon_resnest-watchdog']


def test_disabled_watchdog_starts_no_thread():
    watch = Watchdog(0).start()
    assert not watch.enabled and watch._thread is None  # pylint: disable=protected-access
    watch.stop()
    with pytest.raises(ValueError, match='must be >= 0'):
        Watchdog(-1)


# The main thread blocks in a call that never returns (as in a kvstore pull whose peer is gone).
BLOCKED = '''
import logging, sys, threading
from gluon_resnest.engine.watchdog import Watchdog
log = logging.getLogger('gluon_resnest.train')
log.addHandler(logging.StreamHandler(sys.stderr))
watch = Watchdog(0.5, first_factor=1, log=log, context=lambda: 'last checkpoint: none').start()
watch.beat('training batch')
threading.Event().wait()
'''


@pytest.mark.slow
def test_blocked_process_ends_with_status_and_one_line():
    tic = time.time()
    proc = subprocess.run([sys.executable, '-c', BLOCKED], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_NO_PROGRESS
    assert time.time() - tic < 30
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(r'no progress for [\d.]+ s \(training batch, bound 0\.5 s\)', lines[0]), lines[0]
    assert lines[0].endswith('probably gone; stopping; last checkpoint: none')
