"""Both trainers on the one engine: Ctrl-C checkpoint and bit-identical resume, the NaN guard, the watchdog and
bad input, each run for classification (train_imagenet.py) and detection (python -m gluon_resnest.detection.train)."""
import os
import sys
import time

import pytest

from conftest import (QUICK_FLAGS, assert_resumed_as_uninterrupted, command_error, interrupt_training_at,
                      write_tiny_dataset)
from gluon_resnest.detection import shapes
from gluon_resnest.detection import train as detection
from gluon_resnest.engine.loop import Hooks, hooks_installed
from gluon_resnest.train import latest_checkpoint
from gluon_resnest.engine.watchdog import Watchdog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position


class Classification(object):
    """train_imagenet.py on 48 tiny images: 6 batches per epoch."""
    name, steps_per_epoch = 'resnest14', 6

    @staticmethod
    def data(folder):
        return write_tiny_dataset(folder)

    @staticmethod
    def argv(data, save, epochs):
        return QUICK_FLAGS + ['--data-dir', data, '--num-epochs', str(epochs), '--save-dir', save,
                              '--save-frequency', '1']

    main = staticmethod(train_imagenet.main)


class Detection(object):
    """The detection command on 4 shapes images: 2 batches of 2 per epoch, the smallest network."""
    name, steps_per_epoch = 'det', 2

    @staticmethod
    def data(folder):
        shapes.write_shapes(folder, num_train=4, num_val=2, size=96)
        return folder

    @staticmethod
    def argv(data, save, epochs):
        return ['--network', 'resnest14', '--dataset', 'shapes', '--dataset-root', data, '--norm-layer', 'bn',
                '--no-pretrained-base', '--short', '96', '--max-size', '96', '--num-sample', '16',
                '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20', '--box-head', '2fc',
                '--box-head-units', '32', '--lr-warmup', '1', '--no-progress', '--epochs', str(epochs),
                '--save-prefix', os.path.join(save, 'det')]

    main = staticmethod(detection.main)


TRAINERS = [Classification, Detection]


@pytest.fixture(scope='module', params=TRAINERS, ids=lambda t: t.__name__.lower())
def trainer(request, tmp_path_factory):
    """(trainer, its data folder)."""
    return request.param, request.param.data(str(tmp_path_factory.mktemp(request.param.__name__)))


@pytest.mark.slow
def test_ctrl_c_checkpoints_mid_epoch_and_resume_is_bit_identical(trainer, tmp_path):
    kind, data = trainer
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    assert kind.main(kind.argv(data, a, 2)) == 0
    with interrupt_training_at(kind.steps_per_epoch + 1):  # the 1st batch of the 2nd epoch
        assert kind.main(kind.argv(data, b, 2)) == 130
    record = latest_checkpoint(b, kind.name)
    assert (record['epoch'], record['batch']) == (1, 1)
    assert kind.main(kind.argv(data, b, 2) + ['--resume']) == 0
    final = assert_resumed_as_uninterrupted(a, b, kind.name)
    assert (final['epoch'], final['batch'], final['num_update']) == (2, 0, 2 * kind.steps_per_epoch)


@pytest.mark.slow
def test_nan_loss_is_one_line_and_keeps_the_last_good_checkpoint(trainer, tmp_path, capsys):
    kind, data = trainer
    save = str(tmp_path / 'nan')
    assert kind.main(kind.argv(data, save, 1)) == 0
    status, line = command_error(kind.main, kind.argv(data, save, 3) + ['--resume', '--lr', '1e30'], capsys)
    assert status == 1 and line.startswith('error: loss is ') and ' at epoch 2 batch ' in line
    assert line.endswith('last good checkpoint: %s' % os.path.join(save, kind.name + '-0001.json'))
    assert sorted(f for f in os.listdir(save) if f.startswith(kind.name + '-')) == [
        kind.name + '-0001.' + ext for ext in ('json', 'params', 'states')]


@pytest.mark.slow
def test_watchdog_names_a_stalled_step_and_the_last_checkpoint(trainer, tmp_path):
    # The engine arms the watchdog only for dist kvstores; here a local run gets one whose bound is 4 s.
    kind, data = trainer
    save = str(tmp_path / 'w')
    fired = []

    def armed(run):
        return Watchdog(4, factor=1, first_factor=3, on_timeout=fired.append,
                        context=lambda: 'last checkpoint: %s' % run.last_checkpoint)

    def stalling(run, epoch, batch):  # pylint: disable=unused-argument
        if epoch == 1 and not fired:
            time.sleep(8)  # a peer that never answers, for the second epoch's first step
    with hooks_installed(Hooks(before_step=[stalling], watchdog=[armed])):
        assert kind.main(kind.argv(data, save, 2)) == 0
    stalls = [m for m in fired if '(training batch, bound ' in m]
    assert stalls and stalls[0].endswith('last checkpoint: %s' % os.path.join(save, kind.name + '-0001.json'))


def test_a_fresh_start_never_overwrites_checkpoints(trainer, tmp_path, capsys):
    kind, data = trainer
    save = tmp_path / 'old'
    save.mkdir()
    (save / (kind.name + '-0001.params')).write_text('an earlier run')
    status, line = command_error(kind.main, kind.argv(data, str(save), 2), capsys)
    assert status == 1 and 'already holds checkpoints of %s (%s-0001.params)' % (kind.name, kind.name) in line
    assert (save / (kind.name + '-0001.params')).read_text() == 'an earlier run'


@pytest.mark.parametrize('flags, message', [
    (['--resume', '--resume-params', 'x.params'], '--resume cannot be combined with --resume-params'),
    (['--kv-store', 'nccl'], 'nccl'),
    (['--lr', '0'], '--lr must be positive, got 0.0'),
    (['--step-timeout', '-1'], '--step-timeout must be >= 0 seconds (0: no limit), got -1.0'),
    (['--resume-params', 'missing.params'], 'error: resume file not found: missing.params'),
])
def test_bad_usage_is_one_line_and_status_2(trainer, tmp_path, capsys, flags, message):
    kind, data = trainer
    status, line = command_error(kind.main, kind.argv(data, str(tmp_path), 2) + flags, capsys)
    assert status == 2 and line.startswith('error: ') and message in line


def test_missing_data_folder_is_bad_usage(trainer, tmp_path, capsys):
    # A path named on the command line that does not exist is bad usage, as a bad flag value is.
    kind, _ = trainer
    status, line = command_error(kind.main, kind.argv(str(tmp_path / 'nowhere'), str(tmp_path / 's'), 2), capsys)
    assert status == 2 and line.startswith('error: ') and 'nowhere' in line
