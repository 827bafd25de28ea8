"""Checkpoints are atomic and only complete ones are resumed from."""
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import mxnet as mx
import pytest

from conftest import stepped_trainer
from gluon_resnest.engine.checkpoint import (atomic_write, check_states, checkpoint_prefix, latest_checkpoint,
                                            read_checkpoint, remove_incomplete, save_checkpoint)


def _net_and_trainer():
    net = mx.gluon.nn.Dense(3, in_units=4)
    return net, stepped_trainer(net)


@pytest.fixture
def saved(tmp_path):
    net, trainer = _net_and_trainer()
    for epoch, batch in ((1, 0), (2, 0), (2, 5)):
        save_checkpoint(checkpoint_prefix(str(tmp_path), 'm', epoch, batch), net, trainer,
                        {'epoch': epoch, 'batch': batch})
    return tmp_path


def test_latest_is_the_furthest_position(saved):
    record = latest_checkpoint(str(saved), 'm')
    assert (record['epoch'], record['batch']) == (2, 5)
    assert record['params'].endswith('m-0002-b000005.params') and os.path.isfile(record['states'])
    assert not [f for f in os.listdir(str(saved)) if '.tmp-' in f]


@pytest.mark.parametrize('damage', ['truncate_params', 'truncate_states', 'bad_json', 'no_json', 'no_params'])
def test_incomplete_checkpoint_is_never_picked(saved, damage):
    prefix = str(saved / 'm-0002-b000005')
    if damage.startswith('truncate'):
        path = prefix + ('.params' if damage == 'truncate_params' else '.states')
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) - 7])
    elif damage == 'bad_json':
        text = open(prefix + '.json').read()
        open(prefix + '.json', 'w').write(text[:len(text) // 2])
    elif damage == 'no_json':
        os.remove(prefix + '.json')
    else:
        os.remove(prefix + '.params')
    record = latest_checkpoint(str(saved), 'm')
    assert (record['epoch'], record['batch']) == (2, 0)


def test_altered_file_is_rejected_with_one_line(saved):
    path = str(saved / 'm-0001.params')
    data = bytearray(open(path, 'rb').read())
    data[-1] ^= 0xff  # same size, different bytes
    open(path, 'wb').write(bytes(data))
    with pytest.raises(ValueError, match=r'm-0001.params is truncated or altered'):
        read_checkpoint(str(saved / 'm-0001.json'))


def test_other_models_checkpoints_are_ignored(saved):
    assert latest_checkpoint(str(saved), 'mm') is None
    assert latest_checkpoint(str(saved), 'm-0001') is None


def test_crash_mid_write_keeps_previous_file(tmp_path):
    path = str(tmp_path / 'f.json')
    atomic_write(path, lambda tmp: open(tmp, 'w').write('{"ok": 1}'))

    def crash(tmp):
        with open(tmp, 'w') as f:
            f.write('{"ok": ')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert json.load(open(path)) == {'ok': 1}
    assert os.listdir(str(tmp_path)) == ['f.json']


def test_states_restore_update_count(saved):
    net, _ = _net_and_trainer()
    trainer = mx.gluon.Trainer(net.collect_params(), 'nag', {'learning_rate': 0.1, 'momentum': 0.9})
    trainer.load_states(latest_checkpoint(str(saved), 'm')['states'])
    assert trainer.optimizer.num_update == 1


def _two_layer_trainer(first_units=5, **params):
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(first_units, in_units=4), mx.gluon.nn.Dense(3, in_units=first_units))
    return stepped_trainer(net, 'sgd', **params)


@pytest.mark.parametrize('kwargs', [{}, {'multi_precision': True}], ids=['momentum', 'multi-precision'])
def test_states_that_fit_pass_the_check(tmp_path, kwargs):
    trainer = _two_layer_trainer(**kwargs)
    trainer.save_states(str(tmp_path / 's.states'))
    params = trainer._params  # pylint: disable=protected-access
    check_states(str(tmp_path / 's.states'), params)
    # Shapes not known yet (deferred initialisation: None, or 0 for a dimension) are not held against it.
    deferred = mx.gluon.Parameter('deferred')
    check_states(str(tmp_path / 's.states'), [deferred] + params[1:])
    partly = mx.gluon.Parameter('partly', shape=(params[0].shape[0],) + (0,) * (len(params[0].shape) - 1))
    check_states(str(tmp_path / 's.states'), [partly] + params[1:])
    plain = _two_layer_trainer(momentum=0.0)  # SGD without momentum keeps no state (None)
    plain.save_states(str(tmp_path / 'none.states'))
    check_states(str(tmp_path / 'none.states'), plain._params)  # pylint: disable=protected-access


def test_states_of_another_network_or_order_are_refused(tmp_path):
    trainer = _two_layer_trainer()
    trainer.save_states(str(tmp_path / 's.states'))
    params = trainer._params  # pylint: disable=protected-access
    # The same parameters in another order (what a name-ordered trainer gets from other layer names).
    swapped = [params[1], params[0]] + params[2:]
    with pytest.raises(ValueError, match=re.escape('does not fit this network: its state 0 has shape %s, '
                                                   'parameter %s has shape %s' % (params[0].shape, params[1].name,
                                                                                   params[1].shape))):
        check_states(str(tmp_path / 's.states'), swapped)
    # Another network: the first layer's width differs.
    other = _two_layer_trainer(first_units=6)._params  # pylint: disable=protected-access
    with pytest.raises(ValueError, match=re.escape('parameter %s has shape %s' % (other[0].name, other[0].shape))):
        check_states(str(tmp_path / 's.states'), other)
    with pytest.raises(ValueError, match='holds a state for parameter [23]; this trainer has 2 parameters'):
        check_states(str(tmp_path / 's.states'), params[:2])
    (tmp_path / 'bad.states').write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match='bad.states is not a trainer states file'):
        check_states(str(tmp_path / 'bad.states'), params)


def _dead_pid():
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def test_interrupted_writes_are_removed_and_nothing_else(saved):
    shutil.copy(str(saved / 'm-0002-b000005.params'), str(saved / 'm-0003.params'))  # full disk: no .states
    dead, live = _dead_pid(), os.getpid()
    keep = ['m-0001.params.bak', 'mm-0004.params', 'm-0004.txt', 'notes.json', 'm-0003.states.tmp-%d' % live]
    for name in keep + ['m-0004-b000002.states.tmp-%d' % dead, 'm-0005.json.tmp-%d' % dead]:
        (saved / name).write_bytes(b'x')
    os.remove(str(saved / 'm-0001.json'))  # m-0001's files are leftovers now
    before = set(os.listdir(str(saved)))
    assert latest_checkpoint(str(saved), 'm')['json'].endswith('m-0002-b000005.json')  # never picked
    removed = remove_incomplete(str(saved), 'm')
    assert [os.path.basename(p) for p in removed] == [
        'm-0001.params', 'm-0001.states', 'm-0003.params', 'm-0004-b000002.states.tmp-%d' % dead,
        'm-0005.json.tmp-%d' % dead]
    assert set(os.listdir(str(saved))) == before - {os.path.basename(p) for p in removed}
    for name in ('m-0002', 'm-0002-b000005'):  # complete sets untouched and still valid
        read_checkpoint(str(saved / (name + '.json')))
    assert remove_incomplete(str(saved), 'm') == []


def test_resume_lookup_cleans_and_says_so(saved, caplog):
    (saved / 'm-0003.params').write_bytes(b'x')
    log = logging.getLogger('test_checkpoint_clean')
    with caplog.at_level(logging.WARNING, logger='test_checkpoint_clean'):
        record = latest_checkpoint(str(saved), 'm', log, clean=True)
    assert (record['epoch'], record['batch']) == (2, 5)
    assert not (saved / 'm-0003.params').exists()
    assert [r.getMessage() for r in caplog.records] == [
        'removed 1 file(s) of incomplete checkpoints (interrupted write or full disk): m-0003.params']


def test_failed_write_removes_its_own_files(saved):
    net, trainer = _net_and_trainer()

    def full_disk(path):
        open(path, 'wb').write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')
    trainer.save_states = full_disk
    before = sorted(os.listdir(str(saved)))
    with pytest.raises(OSError, match='No space left'):
        save_checkpoint(checkpoint_prefix(str(saved), 'm', 3), net, trainer, {'epoch': 3, 'batch': 0})
    assert sorted(os.listdir(str(saved))) == before
    assert latest_checkpoint(str(saved), 'm')['json'].endswith('m-0002-b000005.json')


# A writer killed between its .params and its .json (as the no-progress watchdog's os._exit would).
KILLED_WRITER = '''
import os, sys
sys.path.insert(0, {tests!r})
from test_checkpoint import _net_and_trainer
from gluon_resnest.engine.checkpoint import checkpoint_prefix, save_checkpoint
net, trainer = _net_and_trainer()
real = trainer.save_states
def killed(path):
    real(path)
    os._exit(124)
trainer.save_states = killed
save_checkpoint(checkpoint_prefix({folder!r}, 'm', 3), net, trainer, {{'epoch': 3, 'batch': 0}})
'''


@pytest.mark.slow
def test_killed_writer_leaves_previous_checkpoint_and_cleanable_files(saved):
    script = KILLED_WRITER.format(tests=os.path.dirname(os.path.abspath(__file__)), folder=str(saved))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 124, proc.stderr[-2000:]
    left = sorted(f for f in os.listdir(str(saved)) if f.startswith('m-0003'))
    assert left[0] == 'm-0003.params' and re.match(r'^m-0003\.states\.tmp-\d+$', left[1]) and len(left) == 2
    assert latest_checkpoint(str(saved), 'm')['json'].endswith('m-0002-b000005.json')
    assert sorted(os.path.basename(p) for p in remove_incomplete(str(saved), 'm')) == left
