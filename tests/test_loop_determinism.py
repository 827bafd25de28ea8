"""gluon_resnest.engine.loop's determinism. Same seed, same flags, same run: training on the CPU is
bit-identical whatever the validation, checkpoint and logging frequencies and ``-j`` (compute threads held
equal), and a run killed anywhere and resumed ends with the weights and history of one never interrupted.

Every run is a subprocess of conftest's fault worker with the same environment (one OpenMP thread); all
use DropBlock and mixup, so the random streams matter too.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import QUICK_FLAGS, SUBPROCESS_TIMEOUT, assert_same_parameters, training_env, write_fault_worker

# 2 epochs of 6 batches on the tiny set; a checkpoint every epoch.
FLAGS = QUICK_FLAGS + ['--num-epochs', '2', '--dropblock-prob', '0.2', '--mixup', '--save-frequency', '1']


def _train(folder, data, name, extra=(), fault=None, status=0):
    """train_imagenet.py with ``FLAGS + extra`` saving to ``folder/name``; returns that save folder."""
    save = os.path.join(str(folder), name)
    # train_imagenet.py sets MXNET_CPU_TEMP_COPY=1 for itself: the runs here keep it.
    env = dict(training_env(), MXNET_CPU_TEMP_COPY='1', FAULT=json.dumps(fault or {}))
    proc = subprocess.run([sys.executable, write_fault_worker(folder)] + FLAGS + ['--data-dir', data, '--save-dir',
                          save] + list(extra), env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                          check=False)
    assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-3000:]
    return save


def _history(save):
    with open(os.path.join(save, 'history.json')) as f:
        records = json.load(f)
    for record in records:
        del record['images_per_sec']  # a time
    return records


def _logged_steps(save):
    """The log's batch and epoch lines without their times and speeds."""
    with open(os.path.join(save, 'train_imagenet.log')) as f:
        lines = [line.split(' INFO ', 1)[-1] for line in f if ' batch ' in line or '[Epoch' in line]
    return [re.sub(r'[\d.]+ img/s', '', line) for line in lines]


def assert_same_weights(a, b):
    """The final checkpoints of save folders ``a`` and ``b`` hold the same parameters, bit for bit."""
    assert_same_parameters(os.path.join(a, 'resnest14-0002.params'), os.path.join(b, 'resnest14-0002.params'))


@pytest.fixture(scope='module')
def reference(tiny, tmp_path_factory):
    """(data, save folder) of an uninterrupted run validating after every epoch, logging every batch."""
    return tiny, _train(tmp_path_factory.mktemp('reference'), tiny, 'run', ['--log-interval', '1'])


@pytest.mark.slow
def test_same_seed_and_flags_give_the_same_run(reference, tmp_path):
    data, first = reference
    # The same computation with other timing: MXNet's engine runs every queued operation before the
    # optimizer's are queued.
    second = _train(tmp_path, data, 'again', ['--log-interval', '1'], fault={'drain_before_update': True})
    logged = _logged_steps(first)
    assert len(logged) == 2 * 6 + 2 and all('val: top-1' in line for line in logged if '[Epoch' in line)
    assert _logged_steps(second) == logged
    assert _history(second) == _history(first)
    assert_same_weights(first, second)


@pytest.mark.slow
def test_validation_checkpoints_logging_and_loader_processes_change_nothing(reference, tmp_path):
    data, first = reference
    # Validated only after the last epoch, one checkpoint, no batch lines, one loader process.
    other = _train(tmp_path, data, 'other', ['--eval-frequency', '100', '--save-frequency', '2',
                                              '--log-interval', '0', '-j', '1'])
    assert not os.path.exists(os.path.join(other, 'resnest14-0001.params'))
    expected = _history(first)
    del expected[0]['val-top1'], expected[0]['val-top5']
    assert _history(other) == expected
    assert_same_weights(first, other)


@pytest.mark.slow
def test_killed_and_resumed_run_ends_as_uninterrupted(reference, tmp_path):
    data, first = reference
    # Ctrl-C after batch 2 of epoch 2 (a mid-epoch checkpoint), then kill -9 before batch 4 of the
    # resumed epoch (resumed again from that checkpoint), then a run to the end.
    _train(tmp_path, data, 'cut', fault={'sigint': [1, 1]}, status=130)
    save = _train(tmp_path, data, 'cut', ['--resume'], fault={'kill': [1, 3], 'kill_rank': 0}, status=-9)
    assert sorted(f for f in os.listdir(save) if f.endswith('.json') and f != 'history.json') == [
        'resnest14-0001-b000002.json', 'resnest14-0001.json']
    _train(tmp_path, data, 'cut', ['--resume'])
    with open(os.path.join(save, 'train_imagenet.log')) as f:
        assert f.read().count('at epoch 1 batch 2 (update 8') == 2  # both resumed mid-epoch
    assert _history(save) == _history(first)
    assert_same_weights(first, save)
