"""train_imagenet.py end to end on tiny data: runs, outputs, resume, Ctrl-C, NaN guard, bad input."""
import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

# train_imagenet.py is a top-level script: importable from the repository root whatever the runner's cwd.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position
from conftest import assert_same_parameters  # noqa: E402
from gluon_resnest import get_model  # noqa: E402
from gluon_resnest.data import EvalTransform, ImageFolder, ImageRecord, make_loader  # noqa: E402
from gluon_resnest.metrics import accuracy as evaluate  # noqa: E402
from gluon_resnest.engine import loop  # noqa: E402
from gluon_resnest.train import TrainConfig, build_run, fit, latest_checkpoint, train  # noqa: E402


def _train(argv):
    """The finished :class:`~gluon_resnest.engine.loop.Run` of a train_imagenet.py command line."""
    return train(build_run(train_imagenet.parse_args(argv)))


def test_tiny_dataset_layout(tiny):
    train = ImageFolder(os.path.join(tiny, 'train'))
    assert train.synsets == ['class0', 'class1', 'class2']
    assert len(train) == 48
    assert sorted(os.listdir(tiny)) == ['train', 'train.idx', 'train.rec', 'val', 'val.idx', 'val.rec']


def _history(save_dir):
    with open(os.path.join(save_dir, 'history.json')) as f:
        return json.load(f)


def _train_split_loss(params, root):
    """Mean cross-entropy of a checkpoint over the fixed training images (evaluation transform)."""
    net = get_model('resnest14', classes=3, pretrained=params)
    loader = make_loader(ImageFolder(os.path.join(root, 'train')), 16, EvalTransform(32))
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    return float(np.mean(np.concatenate([loss_fn(net(x), y).asnumpy() for x, y in loader])))


@pytest.mark.slow
def test_folder_run_writes_outputs_and_learns(quick, tiny, tmp_path):
    save = str(tmp_path / 'run')
    run = _train(quick + ['--data-dir', tiny, '--num-epochs', '3', '--save-frequency', '1',
                        '--warmup-epochs', '1', '--save-dir', save])
    files = sorted(os.listdir(save))
    assert files == ['curve.png', 'history.json'] + ['resnest14-000%d.%s' % (e, ext) for e in (1, 2, 3)
                                                     for ext in ('json', 'params', 'states')] + [
        'train_imagenet.log']
    history = _history(save)
    assert [r['epoch'] for r in history] == [0, 1, 2]
    assert history[-1]['val-top1'] >= 0.5  # 12 val images of 3 colours; chance is 1/3
    log = open(os.path.join(save, 'train_imagenet.log')).read()
    assert '[Epoch 3]' in log and 'val: top-1 %.4f' % history[-1]['val-top1'] in log
    # The checkpoint is what eval.py loads, and gives the logged val top-1 through the same code path.
    record = latest_checkpoint(save, 'resnest14')
    assert (record['epoch'], record['batch'], record['num_update']) == (3, 0, 3 * 6)
    net = get_model('resnest14', classes=3, pretrained=record['params'])
    val = make_loader(ImageFolder(os.path.join(tiny, 'val')), 8, EvalTransform(32))
    assert evaluate(net, val)['top1'] == pytest.approx(history[-1]['val-top1'])
    np.testing.assert_allclose(net.fc.weight.data().asnumpy(), run.net.fc.weight.data().asnumpy())
    # Training lowered the loss on the fixed training images (measured without augmentation).
    first = _train_split_loss(os.path.join(save, 'resnest14-0001.params'), tiny)
    assert _train_split_loss(record['params'], tiny) < 0.8 * first


@pytest.mark.slow
def test_recordio_run(tiny, tmp_path):
    # The Python API directly, with the recipe's switches on.
    save = str(tmp_path / 'rec')
    run = fit(TrainConfig(model='resnest14', input_size=32, batch_size=8, num_data_workers=0, progress=False,
                          log_interval=0, lr=0.004, seed=3, min_random_area=0.5, jitter_param=0,
                          lighting_param=0, rec_train=os.path.join(tiny, 'train.rec'),
                          rec_val=os.path.join(tiny, 'val.rec'), classes=3, num_epochs=1, save_dir=save,
                          mixup=True, label_smoothing=0.1, auto_aug=True, no_wd=True, last_gamma=True))
    history = _history(save)
    record = latest_checkpoint(save, 'resnest14')
    assert len(history) == 1 and record['num_update'] == 48 // 8 and record['config']['mixup'] is True
    # The logged val top-1/top-5 are the checkpoint's, measured independently on val.rec.
    net = get_model('resnest14', classes=3, pretrained=record['params'])
    measured = evaluate(net, make_loader(ImageRecord(os.path.join(tiny, 'val.rec')), 5, EvalTransform(32)))
    assert (history[0]['val-top1'], history[0]['val-top5']) == (pytest.approx(measured['top1']), 1.0)
    assert run.history[-1]['val-top1'] == run.val_top1 == history[0]['val-top1']
    assert (run.model, run.classes, run.epochs, run.last_checkpoint) == ('resnest14', 3, 1, record['json'])
    assert 'net' not in run.to_dict() and run.to_dict()['history'] == history
    assert math.isfinite(history[0]['loss']) and history[0]['loss'] > 0
    assert os.path.getsize(os.path.join(save, 'curve.png')) > 1000


@pytest.mark.slow
def test_redirected_log_has_no_bar_frames(quick, tiny, tmp_path):
    # Without --no-progress, but stderr goes to a file (as in CI or `> log 2>&1`): log lines only.
    flags = [f for f in quick if f != '--no-progress'] + ['--data-dir', tiny, '--num-epochs', '1',
                                                          '--log-interval', '2', '--save-dir', str(tmp_path / 's')]
    with open(str(tmp_path / 'log'), 'w') as log:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train_imagenet.py')] + flags, stdout=log,
                              stderr=subprocess.STDOUT, timeout=300, check=False,
                              env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT))
    text = open(str(tmp_path / 'log')).read()
    assert proc.returncode == 0, text
    assert '\r' not in text and 'batch/s' not in text and 'epoch 1/1:' not in text
    assert text.count('epoch 1 batch ') == 3 and '[Epoch 1]' in text  # 6 batches, logged every 2


def _crash_at_epoch(monkeypatch, crash_epoch):
    real = loop._train_epoch

    def crashing(run, epoch, start_batch, sigint):
        if epoch == crash_epoch:
            raise RuntimeError('simulated crash')
        return real(run, epoch, start_batch, sigint)
    monkeypatch.setattr(loop, '_train_epoch', crashing)


@pytest.mark.slow
@pytest.mark.smoke
def test_resume_after_crash_matches_uninterrupted_run(quick, tiny, tmp_path, monkeypatch):
    args = quick + ['--data-dir', tiny, '--num-epochs', '3', '--save-frequency', '1', '--warmup-epochs', '1',
                    '--dropblock-prob', '0.1']
    straight = _train(args + ['--save-dir', str(tmp_path / 'a')])
    _crash_at_epoch(monkeypatch, 2)
    with pytest.raises(RuntimeError, match='simulated crash'):
        _train(args + ['--save-dir', str(tmp_path / 'b')])
    assert latest_checkpoint(str(tmp_path / 'b'), 'resnest14')['epoch'] == 2
    monkeypatch.undo()
    resumed = _train(args + ['--save-dir', str(tmp_path / 'b'), '--resume'])
    assert resumed.start_epoch == 2
    a, b = (latest_checkpoint(str(tmp_path / d), 'resnest14') for d in 'ab')
    for key in ('epoch', 'batch', 'num_update', 'learning_rate'):
        assert a[key] == b[key], key
    assert resumed.trainer.learning_rate == straight.trainer.learning_rate
    # Same data order, augmentation and DropBlock draws: the same weights, bit for bit.
    assert_same_parameters(a['params'], b['params'])
    assert [r['epoch'] for r in _history(str(tmp_path / 'b'))] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize('sigint_after, saved_at', [
    (8, (1, 2, 8)),   # the 2nd batch of the 2nd epoch (6 batches per epoch): a mid-epoch checkpoint
    (6, (1, 0, 6)),   # the last batch of the 1st epoch: the epoch is finished (validated, logged) first
])
def test_ctrl_c_saves_checkpoint_and_resumes(quick, tiny, tmp_path, monkeypatch, capsys, sigint_after,
                                              saved_at):
    save = str(tmp_path / 'c')
    args = quick + ['--data-dir', tiny, '--num-epochs', '2', '--save-dir', save, '--save-frequency', '5']
    real = loop._train_step
    calls = []

    def step_then_sigint(run, epoch, data, label):
        calls.append(epoch)
        loss = real(run, epoch, data, label)
        if len(calls) == sigint_after:
            os.kill(os.getpid(), signal.SIGINT)
        return loss
    monkeypatch.setattr(loop, '_train_step', step_then_sigint)
    assert train_imagenet.main(args) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines
    assert last.startswith('interrupted: interrupted a') and last.endswith('.json'), last
    record = latest_checkpoint(save, 'resnest14')
    assert (record['epoch'], record['batch'], record['num_update']) == saved_at
    assert [r['epoch'] for r in _history(save)] == [0]
    monkeypatch.undo()
    run = _train(args + ['--resume'])
    assert (run.start_epoch, run.start_batch) == saved_at[:2]
    final = latest_checkpoint(save, 'resnest14')
    assert (final['epoch'], final['batch'], final['num_update']) == (2, 0, 12)
    assert [r['epoch'] for r in _history(save)] == [0, 1]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(quick, tiny, tmp_path):
    save = str(tmp_path / 'nan')
    args = quick + ['--data-dir', tiny, '--save-dir', save]
    assert train_imagenet.main(args + ['--num-epochs', '1']) == 0
    line = _expect_error(args + ['--num-epochs', '3', '--resume', '--lr', '1e30'], 'at epoch 2 batch', 1)
    assert re.match(r'error: loss is (nan|inf) at epoch 2 batch .*last good checkpoint: .*resnest14-0001.json', line)
    assert latest_checkpoint(save, 'resnest14')['epoch'] == 1
    assert sorted(f for f in os.listdir(save) if f.startswith('resnest14')) == [
        'resnest14-0001.json', 'resnest14-0001.params', 'resnest14-0001.states']


@pytest.mark.parametrize('flags, message', [
    (['--model', 'resnest51'], "unknown --model 'resnest51'"),
    (['--batch-size', '0'], '--batch-size must be >= 2 per device'),
    (['--batch-size', '1'], '--batch-size must be >= 2 per device (BatchNorm in split attention'),
    (['--dtype', 'float16'], '--dtype float16 needs --gpus'),
    (['--resume', '--resume-params', 'x.params'], '--resume cannot be combined'),
    (['--mixup', '--mixup-alpha', '0'], '--mixup needs --mixup-alpha > 0'),
    (['--warmup-epochs', '5', '--num-epochs', '5'], '--warmup-epochs must be in'),
    (['--rec-train', 'a.rec'], '--rec-train and --rec-val go together'),
    (['--input-size', '16'], '--input-size must be >= 32'),
    (['--label-smoothing', '1.5'], '--label-smoothing must be in'),
    (['--kv-store', 'nccl'], "invalid choice: 'nccl'"),
    (['--lr-decay-epoch', '30;60'], '--lr-decay-epoch must be comma-separated epochs'),
])
def test_bad_flags_are_one_line_errors(flags, message, capsys):
    assert train_imagenet.main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]


def _expect_error(argv, message, status):
    """train_imagenet.py's ``argv`` ends with ``status`` (2 bad usage, 1 a failed run) and one line on stderr
    naming ``message``; returns that line."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert train_imagenet.main(argv) == status, stderr.getvalue()
    lines = [line for line in stderr.getvalue().splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and message in lines[0] and 'Traceback' not in stderr.getvalue(), stderr.getvalue()
    return lines[0]


def test_missing_data_dir(quick, tmp_path):
    _expect_error(quick + ['--data-dir', str(tmp_path / 'nope'), '--save-dir', str(tmp_path / 's')],
                  'data folder not found', 2)


def test_data_dir_without_splits(quick, tmp_path):
    (tmp_path / 'd' / 'cat').mkdir(parents=True)
    _expect_error(quick + ['--data-dir', str(tmp_path / 'd'), '--save-dir', str(tmp_path / 's')],
                  'needs train/ and val/ sub-folders', 2)


def test_empty_class_folder(quick, tiny, tmp_path):
    import shutil
    root = tmp_path / 'd'
    shutil.copytree(tiny, str(root))
    (root / 'train' / 'class9').mkdir()
    _expect_error(quick + ['--data-dir', str(root), '--save-dir', str(tmp_path / 's')],
                  'class folder class9 has no images', 1)


def test_corrupt_jpeg_is_a_clear_error(quick, tiny, tmp_path):
    import shutil
    root = tmp_path / 'd'
    shutil.copytree(tiny, str(root))
    for name in os.listdir(str(root / 'train' / 'class1')):
        (root / 'train' / 'class1' / name).write_bytes(b'\xff\xd8 not really a jpeg')
    _expect_error(quick + ['--data-dir', str(root), '--save-dir', str(tmp_path / 's'), '--num-epochs', '1'],
                  'cannot decode image', 1)


def test_truncated_rec(quick, tiny, tmp_path):
    data = open(os.path.join(tiny, 'train.rec'), 'rb').read()
    (tmp_path / 't.rec').write_bytes(data[:len(data) // 2])
    _expect_error(quick + ['--rec-train', str(tmp_path / 't.rec'), '--rec-train-idx',
                           os.path.join(tiny, 'train.idx'), '--rec-val', os.path.join(tiny, 'val.rec'),
                           '--save-dir', str(tmp_path / 's')], 'truncated .rec', 1)


def test_classes_disagreeing_with_folders(quick, tiny, tmp_path):
    _expect_error(quick + ['--data-dir', tiny, '--classes', '5', '--save-dir', str(tmp_path / 's')],
                  'classes 5 but', 1)


def test_batch_larger_than_dataset(quick, tiny, tmp_path):
    _expect_error(quick + ['--data-dir', tiny, '--batch-size', '64', '--save-dir', str(tmp_path / 's')],
                  'fewer than one batch', 1)


def test_missing_resume_file(quick, tiny, tmp_path):
    _expect_error(quick + ['--data-dir', tiny, '--resume-params', str(tmp_path / 'x.params'),
                           '--save-dir', str(tmp_path / 's')], 'resume file not found', 2)


def test_horovod_missing_is_a_clear_error(quick, tiny, tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'horovod.mxnet', None)  # import fails as if not installed
    _expect_error(quick + ['--data-dir', tiny, '--kv-store', 'horovod', '--save-dir', str(tmp_path / 's')],
                  'needs Horovod: run bash scripts/setup.d/50-horovod.sh', 1)


def test_gpus_this_machine_lacks(quick, tiny, tmp_path):
    if mx.context.num_gpus() > 8:
        pytest.skip('machine has more than 8 GPUs')
    _expect_error(quick + ['--data-dir', tiny, '--gpus', '8', '--save-dir', str(tmp_path / 's')],
                  'so there is no GPU 8', 1)


@pytest.mark.slow
def test_resume_params_and_epoch_gluoncv_style(quick, tiny, tmp_path):
    first = str(tmp_path / 'first')
    _train(quick + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', first])
    second = str(tmp_path / 'second')
    run = _train(quick + ['--data-dir', tiny, '--num-epochs', '2', '--save-dir', second,
                                       '--resume-params', os.path.join(first, 'resnest14-0001.params'),
                                       '--resume-epoch', '1'])
    assert run.start_epoch == 1
    record = latest_checkpoint(second, 'resnest14')
    # The schedule continued from update 6 (epoch 1 of 6 batches) without the states file.
    assert (record['epoch'], record['num_update']) == (2, 12)
    assert [r['epoch'] for r in _history(second)] == [1]


@pytest.mark.slow
def test_fresh_start_never_overwrites_an_earlier_run(quick, tiny, tmp_path):
    save = str(tmp_path / 'run')
    _train(quick + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', save])
    before = {name: open(os.path.join(save, name), 'rb').read() for name in os.listdir(save)
              if name.startswith('resnest14-')}
    assert 'resnest14-0001.params' in before
    _expect_error(quick + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', save],
                  'already holds checkpoints of resnest14 (resnest14-0001.params): resume (--resume) continues', 1)
    assert {name: open(os.path.join(save, name), 'rb').read() for name in before} == before
    # --resume of a finished run trains nothing more and leaves its checkpoint the latest.
    run = _train(quick + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', save,
                                       '--resume'])
    assert run.start_epoch == 1 and latest_checkpoint(save, 'resnest14')['epoch'] == 1
    assert open(os.path.join(save, 'resnest14-0001.params'), 'rb').read() == before['resnest14-0001.params']
