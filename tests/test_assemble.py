"""gluon_resnest.engine.assemble: the rules every task's run assembly shares, for classification's and
detection's configs alike: where a task keeps its checkpoints, what a run resumes from, and when a fresh
start is refused, and trainer states that do not fit the network. (The assembled runs themselves train, stop
and resume in tests/test_loop.py, for both.)"""
import dataclasses
import logging
import os
import sys

import mxnet as mx
import pytest

from conftest import QUICK_FLAGS, REPO, command_error, stepped_trainer, write_tiny_dataset
from gluon_resnest import get_model
from gluon_resnest.classification.config import TrainConfig
from gluon_resnest.classification.task import ClassificationTask
from gluon_resnest.detection.config import DetectionConfig
from gluon_resnest.detection.task import DetectionTask
from gluon_resnest.engine.assemble import resume_source
from gluon_resnest.engine.checkpoint import checkpoint_prefix, save_checkpoint

sys.path.insert(0, REPO)
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position


def _classification(folder):
    return ClassificationTask(), TrainConfig(model='resnest14', save_dir=folder)


def _detection(folder):
    return DetectionTask(), DetectionConfig(network='resnest14', save_prefix=os.path.join(folder, 'det'))


TASKS = [_classification, _detection]


def _save(save_dir, name, epoch, batch):
    net = mx.gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    save_checkpoint(checkpoint_prefix(save_dir, name, epoch, batch), net, trainer, {'epoch': epoch, 'batch': batch})


@pytest.mark.parametrize('make', TASKS, ids=['classification', 'detection'])
def test_fresh_start_resume_and_weights_only_follow_one_set_of_rules(make, tmp_path, caplog):
    task, config = make(str(tmp_path))
    save_dir, name, log_path = task.place(config)
    assert save_dir == str(tmp_path) and log_path.startswith(save_dir + os.sep)
    log = logging.getLogger('test_assemble')
    assert resume_source(config, save_dir, name, log, True) is None  # nothing there: a fresh start
    with caplog.at_level(logging.WARNING, logger='test_assemble'):
        assert resume_source(dataclasses.replace(config, resume=True), save_dir, name, log, True) is None
    assert 'no complete checkpoint of %s in %s; starting from scratch' % (name, save_dir) in caplog.text

    _save(save_dir, name, 1, 0)
    _save(save_dir, name, 2, 3)
    with pytest.raises(ValueError, match='already holds checkpoints of %s .%s-0002-b000003.params.' % (name, name)):
        resume_source(config, save_dir, name, log, True)
    record = resume_source(dataclasses.replace(config, resume=True), save_dir, name, log, True)
    assert (record['epoch'], record['batch']) == (2, 3)
    assert record['json'] == checkpoint_prefix(save_dir, name, 2, 3) + '.json'

    weights = checkpoint_prefix(save_dir, name, 1, 0) + '.params'
    source = resume_source(dataclasses.replace(config, resume_params=weights, resume_epoch=1), save_dir, name,
                           log, True)
    assert source == {'params': weights, 'states': '', 'epoch': 1, 'batch': 0, 'json': None}
    with pytest.raises(FileNotFoundError, match='resume file not found: .*missing.params'):
        resume_source(dataclasses.replace(config, resume_params=str(tmp_path / 'missing.params')), save_dir,
                      name, log, True)


def test_states_of_another_network_fail_before_the_first_step(tmp_path, capsys):
    # train_imagenet.py --resume-params P --resume-states S with S saved by another network's trainer:
    # one line naming the file and the first state that does not fit, status 1, no step taken, nothing
    # written over.
    net = get_model('resnest14', classes=3)
    net.initialize()
    net.save_parameters(str(tmp_path / 'r14.params'))
    stepped_trainer(mx.gluon.nn.Dense(2, in_units=3)).save_states(str(tmp_path / 'dense.states'))
    save = tmp_path / 'run'
    argv = QUICK_FLAGS + ['--data-dir', write_tiny_dataset(str(tmp_path / 'data')), '--num-epochs', '2',
                          '--save-dir', str(save), '--resume-params', str(tmp_path / 'r14.params'),
                          '--resume-states', str(tmp_path / 'dense.states'), '--resume-epoch', '1']
    status, line = command_error(train_imagenet.main, argv, capsys)
    assert status == 1
    assert line.startswith('error: %s does not fit this network: its state 0 has shape (2' % (tmp_path / 'dense.states'))
    assert not [f for f in os.listdir(str(save)) if f.endswith(('.params', '.states', '.json'))]
