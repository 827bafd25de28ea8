"""No process a run starts outlives it: SIGKILL of the trainer, of eval.py or of any parent of the project's
workers leaves none of them behind (gluon_resnest.procs).

Every process is found through /proc (pid, state, parent, process group), and each test kills whatever
of its own is left in a ``finally``, so a failing test does not leak processes either.
"""
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
import time

import mxnet as mx
import pytest

from conftest import QUICK_FLAGS, REPO, SUBPROCESS_TIMEOUT, write_tiny_dataset

import gluon_resnest
from gluon_resnest import procs

GRACE = 5.0  # seconds within which every process of a killed parent must be gone


def _stat(pid):
    """(state, ppid, pgrp) of ``pid``, or None once it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(')') + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid):
    stat = _stat(pid)
    return stat is not None and stat[0] != 'Z'  # a zombie has ended; only its reaper is missing


def _group(pgid):
    """Live pids of process group ``pgid``."""
    stats = {int(name): _stat(int(name)) for name in os.listdir('/proc') if name.isdigit()}
    return [pid for pid, stat in stats.items() if stat is not None and stat[0] != 'Z' and stat[2] == pgid]


def _wait_gone(pids, grace=GRACE):
    """The pids of ``pids`` still alive after at most ``grace`` seconds."""
    deadline = time.time() + grace
    left = [pid for pid in pids if _alive(pid)]
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if _alive(pid)]
    return left


def _kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---- die_with_parent itself: a child whose parent (not this test) is SIGKILLed ----

def _sleep_forever():
    while True:
        time.sleep(1)


def _child(body):
    """Fork; the child runs ``body()`` and never returns into pytest. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def _middle(report):
    """The parent to be killed: starts one child of each kind, writes their pids to ``report``, waits."""
    me = os.getpid()

    def armed_fork():
        procs.die_with_parent(me)
        _sleep_forever()

    def polling_fork():  # the fallback where prctl is unavailable
        procs._PRCTL = None  # pylint: disable=protected-access
        assert procs.die_with_parent(me, poll_interval=0.2) == 'poll'
        _sleep_forever()

    fork = multiprocessing.get_context('fork')
    with procs.children_die_with_this_process():
        in_scope = fork.Process(target=_sleep_forever, daemon=True)
        in_scope.start()
    # The control: forked after the block, not armed, so it must outlive its parent (and is killed by the test).
    control = fork.Process(target=_sleep_forever, daemon=True)
    control.start()
    program = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],
                               preexec_fn=procs.preexec_die_with_this_process())
    pids = [_child(armed_fork), _child(polling_fork), in_scope.pid, program.pid, control.pid]
    os.write(report, (' '.join(map(str, pids)) + '\n').encode())
    _sleep_forever()


def _read_line(fd, timeout):
    deadline, data = time.time() + timeout, b''
    while not data.endswith(b'\n') and time.time() < deadline:
        if not select.select([fd], [], [], max(0.0, deadline - time.time()))[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_children_die_with_their_killed_parent():
    read, write = os.pipe()
    middle = _child(lambda: _middle(write))  # double fork: this test is not the parent of the children
    os.close(write)
    pids = []
    try:
        pids = [int(p) for p in _read_line(read, 60).split()]
        assert len(pids) == 5 and all(_alive(pid) for pid in pids), pids
        assert all(_stat(pid)[1] == middle for pid in pids)
        time.sleep(0.5)  # the polling child checks its parent every 0.2 s: let it settle into its loop
        os.kill(middle, signal.SIGKILL)
        os.waitpid(middle, 0)
        # Armed fork, polling fork, multiprocessing child of the scope, subprocess: all gone.
        left = _wait_gone(pids[:4])
        assert not left, 'alive %s of %s' % (left, pids)
        assert _alive(pids[4])  # the control: an orphan like these would be without die_with_parent
    finally:
        os.close(read)
        _kill_all(pids + [middle])


def test_child_of_an_already_dead_parent_exits_at_once():
    # The parent died between the fork and the child's die_with_parent: the pid it was given is not its
    # parent's any more, so it exits at once instead of arming a signal that would never come.
    def late():
        procs.die_with_parent(os.getppid() + 100000)
        os._exit(7)  # not reached
    pid = _child(late)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1


def test_scope_is_left_after_the_block_and_nests():
    assert getattr(procs._SCOPE, 'parent', None) is None  # pylint: disable=protected-access
    with procs.children_die_with_this_process():
        with procs.children_die_with_this_process():
            pass
        assert procs._SCOPE.parent == os.getpid()  # pylint: disable=protected-access
    assert procs._SCOPE.parent is None  # pylint: disable=protected-access


# ---- the command-line tools, killed mid-run ----

class _Run(object):
    """A command in its own session (so its process group holds it and everything it starts)."""

    def __init__(self, argv, env, cwd):
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines = []
        # A thread reads: the orphans a failing run leaves hold the pipe open, so the output may never end.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text, count=1, timeout=SUBPROCESS_TIMEOUT):
        deadline = time.time() + timeout
        while ''.join(self.lines).count(text) < count:
            assert self.proc.poll() is None, 'exited with %s:\n%s' % (self.proc.returncode, ''.join(self.lines))
            assert time.time() < deadline, 'no %r within %d s:\n%s' % (text, timeout, ''.join(self.lines))
            time.sleep(0.1)

    def kill_and_check(self, min_workers):
        """SIGKILL the command alone; its workers must be gone within GRACE seconds."""
        pgid = self.proc.pid
        workers = [pid for pid in _group(pgid) if pid != pgid]
        assert len(workers) >= min_workers, workers
        self.proc.kill()
        self.proc.wait(timeout=60)
        left = _wait_gone(workers)
        assert not left, 'still running %.0f s after the kill: %s' % (GRACE, left)

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp('orphans')))


@pytest.mark.slow
def test_killed_trainer_leaves_no_loader_workers(data, tmp_path, subprocess_env):
    args = list(QUICK_FLAGS)
    args[args.index('-j') + 1], args[args.index('--log-interval') + 1] = '2', '1'
    run = _Run([sys.executable, os.path.join(REPO, 'train_imagenet.py')] + args +
               ['--data-dir', data, '--num-epochs', '50', '--save-dir', str(tmp_path / 'save')],
               subprocess_env, str(tmp_path))
    try:
        run.wait_for('epoch 1 batch 2/')  # mid-epoch: the training loader's workers are making batches
        run.kill_and_check(min_workers=4)  # 2 training loader workers + 2 of the validation loader
    finally:
        run.close()


# eval.py whose loader workers are busy on a long batch when it is killed (sleeping in each image read).
# Gluon's idle pool workers exit by themselves when the evaluation dies (their task pipe ends), but a busy
# one finishes its batch first: with large batches or slow storage that is minutes of a dead run's work.
EVAL_SLOWLY = '''
import os, sys, time
sys.path.insert(0, {root!r})
import eval as tool
from gluon_resnest.data import ImageFolder
real = ImageFolder.__getitem__

def slowly(self, idx):
    os.write(1, b'worker busy\\n')  # one write: the two workers' lines do not interleave
    time.sleep(60)
    return real(self, idx)

ImageFolder.__getitem__ = slowly
sys.exit(tool.main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_killed_evaluation_leaves_no_loader_workers(data, tmp_path, subprocess_env):
    net = gluon_resnest.get_model('resnest14', classes=3)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    params = str(tmp_path / 'net.params')
    net.save_parameters(params)
    script = tmp_path / 'eval_slowly.py'
    script.write_text(EVAL_SLOWLY.format(root=REPO))
    run = _Run([sys.executable, str(script), '--model', 'resnest14', '--params-file', params, '--data-dir', data,
                '--input-size', '32', '--batch-size', '2', '-j', '2', '--no-progress'],
               subprocess_env, str(tmp_path))
    try:
        run.wait_for('busy', count=2)  # both workers are in the middle of a batch
        run.kill_and_check(min_workers=2)
    finally:
        run.close()
