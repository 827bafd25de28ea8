"""Checkpoints are atomic and only complete ones are resumed from."""
import json
import os

import mxnet as mx
import pytest

from gluon_resnest.train.checkpoint import (atomic_write, checkpoint_prefix, latest_checkpoint,
                                            read_checkpoint, save_checkpoint)


def _net_and_trainer():
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), 'nag', {'learning_rate': 0.1, 'momentum': 0.9})
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    return net, trainer


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
