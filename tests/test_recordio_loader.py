"""Training batches through MXNet's C++ RecordIO pipeline: values, labels, shards, determinism, bad input."""
import importlib.util
import os
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.data import MEAN, STD
from gluon_resnest.data.recordio import RecordIOTrainIter, part_sizes

from conftest import (QUICK_FLAGS as QUICK, REPO, SUBPROCESS_TIMEOUT, assert_ranks_identical,
                      assert_resumed_as_uninterrupted, interrupt_training_at, write_tiny_dataset)

sys.path.insert(0, REPO)
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position

NUM = 48


def _colour(i):
    """Record i's RGB colour: red and green encode i, blue encodes its label (i % 4)."""
    return (5 * i, 250 - 5 * i, 40 * (i % 4) + 20)


def _write_rec(path, images, labels, ext='.png'):
    writer = mx.recordio.MXIndexedRecordIO(os.path.splitext(path)[0] + '.idx', path, 'w')
    for i, (img, label) in enumerate(zip(images, labels)):
        buf = cv2.imencode(ext, img[..., ::-1])[1].tobytes() if isinstance(img, np.ndarray) else img
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), buf))
    writer.close()
    return path


@pytest.fixture(scope='module')
def coded(tmp_path_factory):
    """48 lossless single-colour images of different sizes whose colour says which record they are."""
    rng = np.random.RandomState(0)
    images = [np.tile(np.array(_colour(i), np.uint8), (rng.randint(20, 40), rng.randint(20, 40), 1))
              for i in range(NUM)]
    return _write_rec(str(tmp_path_factory.mktemp('coded') / 'coded.rec'), images, [i % 4 for i in range(NUM)])


@pytest.fixture(scope='module')
def textured(tmp_path_factory):
    """48 noise images, so that every crop, flip and colour change shows in the batch."""
    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, size=(rng.randint(24, 48), rng.randint(24, 48), 3)).astype(np.uint8)
              for _ in range(NUM)]
    return _write_rec(str(tmp_path_factory.mktemp('tex') / 'tex.rec'), images, [i % 4 for i in range(NUM)])


def _iter(rec, **kw):
    opts = dict(batch_size=8, input_size=16, min_random_area=0.3, jitter=0, lighting=0, classes=4, threads=2)
    opts.update(kw)
    return RecordIOTrainIter(rec, None, **opts)


def _epoch(it, epoch=0, start_batch=0):
    it.set_epoch(epoch, start_batch)
    return [(d.asnumpy(), l.asnumpy()) for d, l in it]


def _record_ids(data):
    """Undo the normalisation of single-colour crops: (record ids, RGB colours as floats)."""
    rgb = data.mean(axis=(2, 3)) * np.array(STD) * 255 + np.array(MEAN) * 255
    return np.round(rgb[:, 0] / 5).astype(int), rgb


def test_batches_values_and_labels_match_records(coded):
    batches = _epoch(_iter(coded))
    assert len(batches) == 6  # 2 threads x 24 records, slices of 4: 6 batches of 8
    for data, label in batches:
        assert data.shape == (8, 3, 16, 16) and data.dtype == np.float32 and label.dtype == np.int64
        ids, rgb = _record_ids(data)
        # Each crop of a single-colour image is that colour, normalised as (x / 255 - mean) / std.
        expected = (np.array([_colour(i) for i in ids]) / 255.0 - np.array(MEAN)) / np.array(STD)
        np.testing.assert_allclose(data, np.broadcast_to(expected[:, :, None, None], data.shape), atol=1e-5)
        np.testing.assert_allclose(rgb, [_colour(i) for i in ids], atol=1e-3)
        np.testing.assert_array_equal(label, ids % 4)


def test_augmented_values_stay_in_the_normalised_pixel_range(textured):
    data = np.concatenate([d for d, _ in _epoch(_iter(textured, jitter=0.4, lighting=0.1, random_mirror=True))])
    low = (0 - np.array(MEAN)) / np.array(STD)
    high = (1 - np.array(MEAN)) / np.array(STD)
    per_channel = data.transpose(1, 0, 2, 3).reshape(3, -1)
    assert (per_channel.min(axis=1) >= low - 1e-4).all() and (per_channel.max(axis=1) <= high + 1e-4).all()
    assert (per_channel.max(axis=1) - per_channel.min(axis=1) > 0.8 * (high - low)).all()  # not washed out


def test_two_workers_read_disjoint_shards_covering_the_epoch(coded):
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            batches = _epoch(_iter(coded, num_parts=2, part_index=rank), epoch)
            assert len(batches) == 3
            seen.append(set(np.concatenate([_record_ids(d)[0] for d, _ in batches]).tolist()))
        assert not seen[0] & seen[1]
        assert seen[0] | seen[1] == set(range(NUM))


def test_epochs_reshuffle(coded):
    it = _iter(coded)
    first, second = ([_record_ids(d)[0].tolist() for d, _ in _epoch(it, e)] for e in (0, 1))
    assert first != second and sorted(sum(first, [])) == sorted(sum(second, []))


def test_same_seed_same_batches_and_resume_replays_the_epoch(textured):
    opts = dict(jitter=0.4, lighting=0.1, random_mirror=True, seed=7, threads=2)
    run_a, run_b = _epoch(_iter(textured, **opts), 1), _epoch(_iter(textured, **opts), 1)
    for (da, la), (db, lb) in zip(run_a, run_b):
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(la, lb)
    other = _epoch(_iter(textured, **dict(opts, seed=8)), 1)
    assert not np.array_equal(run_a[0][0], other[0][0])
    # From batch 4 of the epoch: exactly the uninterrupted run's batches 4 and 5, augmentation included.
    resumed = _epoch(_iter(textured, **opts), 1, start_batch=4)
    assert len(resumed) == 2
    for (da, la), (db, lb) in zip(run_a[4:], resumed):
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(la, lb)


def test_part_sizes_follow_imagerecorditer():
    assert part_sizes(10, 4) == [3, 3, 3, 1]
    assert part_sizes(48, 4) == [12] * 4
    assert part_sizes(3, 4) == [1, 1, 1, 0]


def test_uneven_parts_give_every_worker_the_same_batch_count(coded):
    # 48 records in 2 x 3 parts of 8; slices of 2 or 3 images (batch 7 over 3 threads): 2 batches each.
    counts = [_iter(coded, batch_size=7, threads=3, num_parts=2, part_index=r).batches_per_epoch for r in (0, 1)]
    assert counts == [2, 2]


# ---- bad input: one-line errors ----

def test_missing_index(coded, tmp_path):
    data = open(coded, 'rb').read()
    (tmp_path / 'noidx.rec').write_bytes(data)
    with pytest.raises(FileNotFoundError, match='record index not found: .*noidx.idx'):
        _iter(str(tmp_path / 'noidx.rec'))


def test_mismatched_index(coded, tmp_path):
    lines = open(os.path.splitext(coded)[0] + '.idx').read().split('\n')
    shifted = ['%s\t%d' % (k, int(v) + 4) for k, v in (l.split('\t') for l in lines if l)]
    (tmp_path / 'm.idx').write_text('\n'.join(shifted) + '\n')
    with pytest.raises(ValueError, match='does not match index .*m.idx.*mismatched .idx'):
        RecordIOTrainIter(coded, str(tmp_path / 'm.idx'), batch_size=8, input_size=16)


def test_truncated_rec(coded, tmp_path):
    data = open(coded, 'rb').read()
    (tmp_path / 't.rec').write_bytes(data[:len(data) - 100])
    with pytest.raises(ValueError, match='truncated .rec'):
        RecordIOTrainIter(str(tmp_path / 't.rec'), os.path.splitext(coded)[0] + '.idx', batch_size=8,
                          input_size=16)


def test_undecodable_record_is_named(tmp_path):
    rng = np.random.RandomState(2)
    images = [rng.randint(0, 256, size=(30, 30, 3)).astype(np.uint8) for _ in range(16)]
    images[11] = b'\xff\xd8 not an image at all' * 4
    rec = _write_rec(str(tmp_path / 'bad.rec'), images, [0] * 16)
    with pytest.raises(ValueError, match=r'cannot decode image .*bad.rec record 11\b'):
        _epoch(_iter(rec, threads=2))


def test_label_beyond_classes_is_named(tmp_path):
    images = [np.full((20, 20, 3), 9 * i, np.uint8) for i in range(16)]
    rec = _write_rec(str(tmp_path / 'lab.rec'), images, [i % 4 for i in range(15)] + [6])
    with pytest.raises(ValueError, match=r'lab.rec record 15 has label 6, outside 0..3 \(--classes 4\)'):
        _epoch(_iter(rec))
    assert len(_epoch(_iter(rec, classes=7))) == 2


# ---- through train_imagenet.py ----

def _train(argv):
    """The finished :class:`~gluon_resnest.engine.loop.Run` of a train_imagenet.py command line."""
    from gluon_resnest.train import build_run, train  # pylint: disable=import-outside-toplevel
    return train(build_run(train_imagenet.parse_args(argv)))


def _rec_flags(root):
    return ['--rec-train', os.path.join(root, 'train.rec'), '--rec-val', os.path.join(root, 'val.rec'),
            '--classes', '3']


def test_backend_choice_is_logged(tiny, tmp_path):
    flags = QUICK + _rec_flags(tiny) + ['--num-epochs', '1']
    run = _train(flags + ['--save-dir', str(tmp_path / 'a')])
    assert run.config.data_backend == 'python' and type(run.loader).__name__ == 'SharedBatchLoader'
    log = open(str(tmp_path / 'a' / 'train_imagenet.log')).read()
    assert ('decoded and augmented with OpenCV (inception pipeline) in 0 loader process(es) '
            '(-j 0: in the training process)') in log
    args = train_imagenet.parse_args(flags + ['--auto-aug', '--save-dir', str(tmp_path / 'b')])
    from gluon_resnest.classification.data import data_backend  # pylint: disable=import-outside-toplevel
    backend, reason = data_backend(args)
    assert backend == 'python' and 'with OpenCV (AutoAugment, then the inception pipeline) in 0 loader' in reason
    # auto keeps a resumed run of the C++ path on it; a resumed run of the Python path stays in Python.
    _train(flags + ['--data-backend', 'recordio', '--save-dir', str(tmp_path / 'c')])
    for save, backend in (('a', 'python'), ('c', 'recordio')):
        run = _train(QUICK + _rec_flags(tiny) + ['--num-epochs', '2', '--resume', '--save-dir',
                                                 str(tmp_path / save)])
        assert run.config.data_backend == backend
    assert "MXNet's C++ RecordIO pipeline (1 thread(s)), as the run being resumed" in \
        open(str(tmp_path / 'c' / 'train_imagenet.log')).read()


@pytest.mark.parametrize('flags, message', [
    (['--data-backend', 'recordio', '--data-dir', '/nowhere'], '--data-backend recordio needs --rec-train'),
    (['--data-backend', 'recordio', '--auto-aug', '--rec-train', 'a.rec', '--rec-val', 'b.rec'],
     'cannot apply --auto-aug'),
])
def test_bad_backend_flags(flags, message, capsys):
    assert train_imagenet.main(QUICK + flags) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('backend, workers', [('python', '0'), ('python', '2'), ('recordio', '1')])
def test_cli_label_error_is_one_line(tiny, tmp_path, backend, workers, capsys):
    assert train_imagenet.main(QUICK + _rec_flags(tiny)[:-1] + ['2', '--data-backend', backend, '-j', workers,
                                                                '--save-dir', str(tmp_path / 's')]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'has label 2, outside 0..1 (--classes 2)' in errors[0]
    assert 'train.rec record ' in errors[0]


@pytest.mark.slow
def test_ctrl_c_mid_epoch_resumes_as_uninterrupted(tiny, tmp_path):
    from gluon_resnest.train import latest_checkpoint  # pylint: disable=import-outside-toplevel
    args = QUICK + _rec_flags(tiny) + ['--data-backend', 'recordio', '-j', '2', '--num-epochs', '2',
                                       '--save-frequency', '1', '--jitter-param', '0.4', '--random-mirror', '1']
    _train(args + ['--save-dir', str(tmp_path / 'a')])
    with interrupt_training_at(8):  # the 2nd batch of the 2nd epoch (6 batches per epoch)
        assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'b')]) == 130
    assert latest_checkpoint(str(tmp_path / 'b'), 'resnest14')['batch'] == 2
    # Resumed with another -j: the checkpoint's thread count is kept, so epoch 2 continues with its batches.
    run = _train(args + ['-j', '1', '--save-dir', str(tmp_path / 'b'), '--resume'])
    assert run.loader.threads == 2
    log = open(str(tmp_path / 'b' / 'train_imagenet.log')).read()
    assert "using the checkpoint's -j 2 (not 1)" in log and 'decoding the first 2 batches of epoch 2 again' in log
    # Same images, augmentation and order: the same weights up to MXNet's float non-determinism.
    checkpoint = assert_resumed_as_uninterrupted(str(tmp_path / 'a'), str(tmp_path / 'b'))
    assert (checkpoint['epoch'], checkpoint['num_update']) == (2, 12)


@pytest.mark.slow
def test_demo_trains_from_rec_through_the_cpp_path(tmp_path):
    from gluon_resnest.data.demo import write_demo  # pylint: disable=import-outside-toplevel
    root = str(tmp_path / 'demo')
    write_demo(root)
    run = _train([
        '--model', 'resnest14', '--rec-train', os.path.join(root, 'train.rec'), '--rec-val',
        os.path.join(root, 'val.rec'), '--classes', '10', '--input-size', '32', '--batch-size', '16',
        '--lr', '0.01', '--num-epochs', '2', '--warmup-epochs', '1', '--last-gamma', '--no-wd',
        '--label-smoothing', '0.1', '--min-random-area', '0.5', '--random-mirror', '0', '--jitter-param', '0',
        '--lighting-param', '0', '-j', '1', '--save-dir', str(tmp_path / 'run'), '--no-progress',
        '--data-backend', 'recordio'])
    assert run.config.data_backend == 'recordio' and type(run.loader).__name__ == 'RecordIOTrainIter'
    # 0.95 after these 2 epochs (seeded); the folder path reaches 0.96-0.98 after 3 epochs (0.98 after 5).
    assert run.history.records[-1]['val-top1'] >= 0.9


HOROVOD_WORKER = """
import sys
sys.path.insert(0, {root!r})
import train_imagenet
from gluon_resnest.train import build_run, train
run = train(build_run(train_imagenet.parse_args(sys.argv[1:])))
run.net.save_parameters({out!r} + '/rank%d.params' % run.dist.rank)
print('rank', run.dist.rank, type(run.loader).__name__, 'part', run.loader.part_index, 'of',
      run.loader.num_parts, 'updates', run.trainer.optimizer.num_update)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('horovod') is None,
                    reason='Horovod is not installed (bash scripts/setup.d/50-horovod.sh builds it)')
def test_horovod_workers_read_their_own_shards(tmp_path, subprocess_env):
    pytest.importorskip('horovod.mxnet', reason='horovod is installed without its MXNet extension')
    import subprocess  # pylint: disable=import-outside-toplevel
    data, out = write_tiny_dataset(str(tmp_path / 'data')), tmp_path / 'out'
    out.mkdir()
    script = tmp_path / 'worker.py'
    script.write_text(HOROVOD_WORKER.format(root=REPO, out=str(out)))
    horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    cmd = [horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', '--network-interface', 'lo', sys.executable,
           str(script)] + QUICK + _rec_flags(data) + ['--num-epochs', '2', '--save-dir', str(tmp_path / 'save'),
                                                      '--kv-store', 'horovod', '--data-backend', 'recordio']
    proc = subprocess.run(cmd, env=subprocess_env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 48 records / (2 workers x batch 8): 3 batches per worker and epoch, each worker on its own part.
    for rank in (0, 1):
        assert 'rank %d RecordIOTrainIter part %d of 2 updates 6' % (rank, rank) in proc.stdout
    assert_ranks_identical(out, str(tmp_path / 'save'))
