"""The Python training path's OpenCV augmentation: its colour steps against MXNet's own image operators, the
whole augmentation against naive step-by-step references, its statistics against Gluon's transforms, its crop window,
determinism by (seed, epoch, index) across loader processes, mid-epoch resume (also after Ctrl-C with loader
processes) and undecodable images."""
import itertools
import os
import random
import signal
import sys
from types import SimpleNamespace

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_resumed_as_uninterrupted, interrupt_training_at
from gluon_resnest.config import TrainConfig
from gluon_resnest.data import MEAN, STD, ImageFolder, ImageRecord
from gluon_resnest.data.autoaugment import IMAGENET_POLICY, AutoAugment
from gluon_resnest.data.opencv_augment import (EIGVAL, EIGVEC, AugmentedTrainSet, TrainAugment, colour_steps,
                                               crop_window)
from gluon_resnest.data.train_transforms import train_transform
from gluon_resnest.classification.data import train_loader

sys.path.insert(0, REPO)  # train_imagenet.py, a top-level script
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position


# One grey level in the normalised images (the largest step, that of the smallest std).
ONE_LEVEL = 1.0 / (255 * min(STD)) + 1e-5
STEPS = ('brightness', 'contrast', 'saturation')


def _naive_colour(img, order, factors, alpha):
    """MXNet's colour operators written plainly on a uint8 RGB image: float32 pixels, each step's result
    clipped to 0..255 and truncated to whole levels, saturation's grey being 0.114 x blue."""
    img = img.astype(np.float32)
    for step, factor in zip(order, factors):
        factor = np.float32(factor)
        if step == 0:
            img = img * factor
        elif step == 1:
            grey_mean = np.float32((img.astype(np.float64) * [0.299, 0.587, 0.114]).sum(-1).mean())
            img = img * factor + (1 - factor) * grey_mean
        else:
            img = img * factor + img[..., 2:] * np.float32(0.114) * (1 - factor)
        img = np.floor(np.clip(img, 0, 255))
    rgb = np.dot(EIGVEC * alpha, EIGVAL)  # Gluon RandomLighting's formula
    return np.floor(np.clip(img + rgb.astype(np.float32), 0, 255))


def _mxnet_colour(img, order, factors, alpha):
    """The colour steps by MXNet's own operators, their random ranges degenerate (factor..factor)."""
    out = mx.nd.array(img, dtype='uint8')
    for step, factor in zip(order, factors):
        out = getattr(mx.nd.image, 'random_' + STEPS[step])(out, float(factor), float(factor))
    return mx.nd.image.adjust_lighting(out, alpha=tuple(float(a) for a in alpha)).asnumpy()


def _smooth_image(rng, shape):
    """A uint8 RGB image of smooth colour gradients and noise, saturated in places (as photos are)."""
    img = cv2.resize(rng.randint(0, 256, (4, 5, 3)).astype(np.uint8), shape[::-1], interpolation=cv2.INTER_CUBIC)
    return np.clip(img.astype(int) * 1.3 - 20 + rng.randint(-8, 9, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('order', list(itertools.permutations(range(3))))
def test_colour_steps_are_mxnet_operators(order):
    rng = np.random.RandomState(sum(order[i] * 3 ** i for i in range(3)))
    for shape in ((37, 58), (61, 23)):
        img = _smooth_image(rng, shape)
        factors, alpha = rng.uniform(0.6, 1.4, 3), rng.normal(0, 0.1, 3)
        planes, tables = colour_steps(cv2.split(img), order, factors, alpha)
        got = np.dstack([table[plane] for plane, table in zip(planes, tables)])
        expected = _mxnet_colour(img, order, factors, alpha)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, _naive_colour(img, order, factors, alpha))


def test_mxnet_saturation_grey_is_blue_only():
    # MXNet's saturation blends with 0.114 x blue, not the full grey level torchvision uses: pure red at
    # factor 0.5 halves (truncated) instead of moving towards its grey level 0.299 x 200.
    img = np.array([[[200, 0, 0], [0, 0, 200], [101, 151, 51]]], dtype=np.uint8)
    out = mx.nd.image.random_saturation(mx.nd.array(img, dtype='uint8'), 0.5, 0.5).asnumpy()
    np.testing.assert_array_equal(out, [[[100, 0, 0], [11, 11, 111], [53, 78, 28]]])
    planes, tables = colour_steps(cv2.split(img), (2,), (0.5,), None)
    np.testing.assert_array_equal(np.dstack([t[p] for p, t in zip(planes, tables)]), out)


def test_crop_window_area_aspect_and_fallback():
    rng = np.random.Generator(np.random.PCG64(3))
    for _ in range(300):
        top, left, h, w = crop_window(375, 500, rng, min_area=0.08)
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        assert 0.08 * 0.97 <= h * w / (375.0 * 500) <= 1.0
        assert 3 / 4.0 * 0.97 <= w / float(h) <= 4 / 3.0 * 1.03
    # A 10x400 strip fits no crop of aspect <= 4/3 and area >= 0.5: the central crop of aspect 4/3.
    assert crop_window(10, 400, rng, min_area=0.5) == (0, 193, 10, 13)
    assert crop_window(400, 10, rng, min_area=0.5) == (193, 0, 13, 10)


def _naive_augment(png, seed, size, min_area, jitter, lighting, policy=None):
    """The documented augmentation written step by step (PIL decode, uint8 crop, float colour steps)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    img = np.asarray(Image.open(png).convert('RGB'))
    if policy:  # the policy through Gluon's AutoAugment block on the whole image, seeded as documented
        block = AutoAugment(policy, rng=random.Random(int(rng.integers(1 << 62))))
        img = block(mx.nd.array(img, dtype='uint8')).asnumpy()
    top, left, h, w = crop_window(img.shape[0], img.shape[1], rng, min_area)
    img = cv2.resize(np.ascontiguousarray(img[top:top + h, left:left + w]), (size, size),
                     interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    order = rng.permutation(3)
    factors = rng.uniform(1 - jitter, 1 + jitter, 3)
    alpha = rng.normal(0, lighting, 3)
    img = _naive_colour(img, order, factors, alpha) / 255.0
    return ((img - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)


def _png(tmp_path, seed, shape):
    """(random pixels, path of their PNG, the PNG's bytes)."""
    pixels = np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)
    png = str(tmp_path / ('%d.png' % seed))
    Image.fromarray(pixels).save(png)
    with open(png, 'rb') as f:
        return pixels, png, f.read()


def test_augment_matches_the_naive_steps(tmp_path):
    pixels, png, buf = _png(tmp_path, 0, (61, 83, 3))
    augment = TrainAugment(24, min_random_area=0.3, jitter=0.4, lighting=0.1)
    for seed in range(8):
        out = augment(buf, np.random.Generator(np.random.PCG64(seed)))
        assert out.shape == (3, 24, 24) and out.dtype == np.float32
        np.testing.assert_allclose(out, _naive_augment(png, seed, 24, 0.3, 0.4, 0.1), atol=ONE_LEVEL, rtol=0)
    # Without jitter and lighting: the crop itself, normalised (the colour pass is skipped).
    plain = TrainAugment(24, min_random_area=0.3, random_mirror=False, jitter=0, lighting=0)
    rng = np.random.Generator(np.random.PCG64(5))
    top, left, h, w = crop_window(61, 83, np.random.Generator(np.random.PCG64(5)), 0.3)
    expected = cv2.resize(np.ascontiguousarray(pixels[top:top + h, left:left + w]), (24, 24),
                          interpolation=cv2.INTER_LINEAR) / 255.0
    np.testing.assert_allclose(plain(buf, rng), ((expected - MEAN) / STD).transpose(2, 0, 1), atol=2e-5)


def test_augment_with_autoaugment_matches_the_naive_steps(tmp_path):
    _, png, buf = _png(tmp_path, 1, (50, 70, 3))
    augment = TrainAugment(20, min_random_area=0.3, jitter=0.4, lighting=0.1, auto_aug=True)
    identity = ((('Equalize', 0.0, None),),)  # draws as the policy does, changes nothing
    changed = 0
    for seed in range(12):
        expected = _naive_augment(png, seed, 20, 0.3, 0.4, 0.1, IMAGENET_POLICY)
        out = augment(buf, np.random.Generator(np.random.PCG64(seed)))
        np.testing.assert_allclose(out, expected, atol=ONE_LEVEL, rtol=0)
        changed += not np.allclose(expected, _naive_augment(png, seed, 20, 0.3, 0.4, 0.1, identity), atol=1e-3)
    assert changed >= 6  # the policy changed most of these images, so skipping it would fail above


def _photo_pngs(count):
    """``count`` PNGs (bytes) of 96x128 crops of scikit-learn's two sample photographs."""
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    photos = load_sample_images().images
    rng = np.random.RandomState(0)
    pngs = []
    for i in range(count):
        photo = photos[i % 2]
        top, left = rng.randint(0, photo.shape[0] - 240), rng.randint(0, photo.shape[1] - 320)
        crop = cv2.resize(photo[top:top + 240, left:left + 320], (128, 96), interpolation=cv2.INTER_AREA)
        pngs.append(cv2.imencode('.png', np.ascontiguousarray(crop[..., ::-1]))[1].tobytes())
    return pngs


def test_statistics_match_gluon_transforms():
    # Per-channel mean and std of 512 augmentations of photographs by each path, with the recipe's jitter
    # and lighting. The crops alone make the means differ by up to 0.045 (measured with jitter 0, other
    # seeds), the random colour factors by about 0.03 more; colour steps clipped once and rounded (not
    # MXNet's per-step truncation and blue-only saturation grey) differed by 0.11-0.19.
    pngs, size, per_image = _photo_pngs(8), 64, 64
    augment, gluon = TrainAugment(size, jitter=0.4, lighting=0.1), train_transform(size, jitter=0.4, lighting=0.1)
    mx.random.seed(0)
    random.seed(0)  # Gluon's crop draws
    ours, theirs = [], []
    for i, png in enumerate(pngs):
        rgb = mx.nd.array(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1], dtype='uint8')
        for j in range(per_image):
            ours.append(augment(png, np.random.Generator(np.random.PCG64([i, j]))))
            theirs.append(gluon(rgb).asnumpy())
    ours, theirs = np.stack(ours), np.stack(theirs)
    np.testing.assert_allclose(ours.mean((0, 2, 3)), theirs.mean((0, 2, 3)), atol=0.09, rtol=0)
    np.testing.assert_allclose(ours.std((0, 2, 3)), theirs.std((0, 2, 3)), atol=0.06, rtol=0)


def test_undecodable_image_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r'^cannot decode image x\.jpg: not an image OpenCV can read \(5 bytes\)$'):
        TrainAugment(8)(b'hello', np.random.Generator(np.random.PCG64(0)), 'x.jpg')
    with pytest.raises(ValueError, match='must be positive'):
        TrainAugment(0)


def _config(**kwargs):
    return TrainConfig(**dict(dict(model='resnest14', data_dir='unused', input_size=32, batch_size=4,
                                   jitter_param=0.4, lighting_param=0.1, seed=11), **kwargs))


def _epoch(loader, sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return [(d.asnumpy(), l.asnumpy()) for d, l in loader]


def test_loader_batches_depend_on_seed_epoch_and_index_only(tiny):
    folder = ImageFolder(os.path.join(tiny, 'train'))
    one = SimpleNamespace(num_workers=1, rank=0)
    in_process = train_loader(folder, _config(num_data_workers=0), one, 4)
    two_procs = train_loader(folder, _config(num_data_workers=2), one, 4)
    first = _epoch(*in_process, epoch=3)
    assert len(first) == 12 and first[0][0].shape == (4, 3, 32, 32) and first[0][0].dtype == np.float32
    for (a, la), (b, lb) in zip(first, _epoch(*two_procs, epoch=3)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    # Resumed at batch 5: the rest of the epoch, pixel for pixel.
    for (a, _), (b, _) in zip(first[5:], _epoch(*in_process, epoch=3, start=5)):
        np.testing.assert_array_equal(a, b)
    # Another epoch or seed: other images or other augmentations.
    assert not np.array_equal(first[0][0], _epoch(*in_process, epoch=4)[0][0])
    other_seed = train_loader(folder, _config(num_data_workers=0, seed=12), one, 4)
    assert not np.array_equal(first[0][0], _epoch(*other_seed, epoch=3)[0][0])
    # Labels are the folder's: every class, each image once per epoch.
    labels = np.concatenate([l for _, l in first])
    assert sorted(np.bincount(labels.astype(int)).tolist()) == [16, 16, 16]


def test_folder_and_its_record_file_give_the_same_batches(tiny):
    folder = ImageFolder(os.path.join(tiny, 'train'))
    record = ImageRecord(os.path.join(tiny, 'train.rec'))
    for idx in (0, 17, 47):
        buf, label, name = folder.read_encoded(idx)
        assert record.read_encoded(idx)[:2] == (buf, label)
        assert name == folder.items[idx][0] and record.read_encoded(idx)[2].endswith('train.rec record %d' % idx)
    one = SimpleNamespace(num_workers=1, rank=0)
    from_folder = _epoch(*train_loader(folder, _config(), one, 4), epoch=0)
    from_record = _epoch(*train_loader(record, _config(), one, 4), epoch=0)
    for (a, la), (b, lb) in zip(from_folder, from_record):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_corrupt_training_image_stops_the_loader_naming_the_file(tmp_path, tiny_dataset):
    root = tiny_dataset(str(tmp_path / 'data'), classes=2, train_per_class=4, val_per_class=1)
    folder = ImageFolder(os.path.join(root, 'train'))
    bad = folder.items[2][0]
    with open(bad, 'wb') as f:
        f.write(b'\xff\xd8 truncated')
    dataset = AugmentedTrainSet(folder, TrainAugment(16), seed=0)
    with pytest.raises(ValueError, match='^cannot decode image %s' % bad):
        dataset[(0, 2)]
    loader, sampler = train_loader(folder, _config(), SimpleNamespace(num_workers=1, rank=0), 8)
    with pytest.raises(ValueError, match='cannot decode image %s' % bad):
        _epoch(loader, sampler, 0)


@pytest.mark.slow
def test_ctrl_c_with_loader_processes_resumes_as_uninterrupted(tiny, quick, tmp_path, monkeypatch, capfd):
    # A terminal's Ctrl-C reaches the loader processes too: they leave it to the trainer (no
    # KeyboardInterrupt of theirs), which checkpoints; the resumed run sees the batches an uninterrupted
    # one saw.
    from gluon_resnest.train import latest_checkpoint  # pylint: disable=import-outside-toplevel
    args = quick + ['--data-dir', tiny, '-j', '2', '--num-epochs', '2', '--save-frequency', '1',
                    '--jitter-param', '0.4', '--random-mirror', '1']
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'a')]) == 0

    def ctrl_c_to_workers(run):
        for worker in run.loader._workers:  # pylint: disable=protected-access
            os.kill(worker.pid, signal.SIGINT)
    interrupt_training_at(monkeypatch, 8, before=ctrl_c_to_workers)  # the 2nd batch of the 2nd epoch
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'b')]) == 130
    monkeypatch.undo()
    assert latest_checkpoint(str(tmp_path / 'b'), 'resnest14')['batch'] == 2
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'b'), '--resume']) == 0
    assert 'KeyboardInterrupt' not in capfd.readouterr().err
    checkpoint = assert_resumed_as_uninterrupted(str(tmp_path / 'a'), str(tmp_path / 'b'))
    assert (checkpoint['epoch'], checkpoint['num_update']) == (2, 12)
