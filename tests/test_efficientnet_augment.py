"""The recipe's >= 320 px training pipeline and AutoAugment's place, against independent references on
non-square photographs: the crop window against GluonCV's ``EfficientNetRandomCrop`` (draw for draw and as
distributions), the colour steps against PIL's ``ImageEnhance``, the resize against PIL's, the whole fast
path against a step-by-step reference and its statistics against the Gluon/PIL reference pipeline."""
import os
import random
import re
from functools import partial

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.transforms import EfficientNetCenterCrop, EfficientNetRandomCrop
from PIL import Image, ImageEnhance
from scipy.stats import ks_2samp

import gluon_resnest
from gluon_resnest.config import ConfigError, TrainConfig
from gluon_resnest.data import MEAN, STD
from gluon_resnest.data import opencv_augment
from gluon_resnest.data.autoaugment import AutoAugment, auto_augment
from gluon_resnest.data.efficientnet_augment import (efficientnet_crop_window, efficientnet_planes, pil_colour_jitter,
                                                     train_pipeline)
from gluon_resnest.data.eval_protocol import crop_box
from gluon_resnest.data.opencv_augment import TrainAugment, crop_window
from gluon_resnest.data.train_transforms import train_transform

SIZES = ((427, 640), (640, 427), (100, 1280), (333, 334))  # (height, width)
ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
EQUALIZE = ((('Equalize', 1.0, None),),)  # a policy that changes pixels by the image's own histogram


class _PythonRandom(object):
    """A numpy-Generator-like view of Python's ``random`` (GluonCV's crop draws from it)."""

    def __init__(self, source):
        self.source = source

    def uniform(self, low, high):
        return self.source.uniform(low, high)

    def integers(self, low, high):
        return self.source.randint(low, high - 1)


def _photos():
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    return load_sample_images().images  # two 427x640 RGB photographs


def _photo_crops(count, seed=0):
    """``count`` non-square crops (several aspects and sizes) of the two sample photographs."""
    photos, rng, crops = _photos(), np.random.RandomState(seed), []
    for i in range(count):
        photo = photos[i % 2]
        h = rng.randint(150, 400)
        w = min(photo.shape[1], int(h * rng.uniform(0.6, 1.6)))
        top, left = rng.randint(0, photo.shape[0] - h + 1), rng.randint(0, photo.shape[1] - w + 1)
        crops.append(np.ascontiguousarray(photo[top:top + h, left:left + w]))
    return crops


def _gluoncv_box(height, width, size, seed):
    """(top, left, h, w) GluonCV's EfficientNetRandomCrop takes, seeded: read from a coordinate image."""
    coords = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width), mode='I')
    random.seed(seed)
    crop = EfficientNetRandomCrop(size)(coords)
    top, left = divmod(crop.getpixel((0, 0)), width)
    return top, left, crop.size[1], crop.size[0]


@pytest.mark.parametrize('height, width', SIZES)
def test_crop_window_is_gluoncvs_draw_for_draw(height, width):
    fallbacks = 0
    for seed in range(300):
        expected = _gluoncv_box(height, width, 320, seed)
        got = efficientnet_crop_window(height, width, _PythonRandom(random.Random(seed)), 320)
        assert got == expected, seed
        fallbacks += got == _fallback(height, width, 320)
    if (height, width) == (100, 1280):  # a strip: most draws do not fit, so the centre crop is common
        assert fallbacks > 30


def _fallback(height, width, size):
    coords = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width), mode='I')
    crop = EfficientNetCenterCrop(size)(coords)
    top, left = divmod(crop.getpixel((0, 0)), width)
    return top, left, crop.size[1], crop.size[0]


@pytest.mark.parametrize('height, width', [(427, 640), (100, 1280)])
def test_crop_statistics_match_gluoncv(height, width):
    # 4000 windows from a numpy Generator against 4000 of GluonCV's class on Python's random: two-sample
    # Kolmogorov-Smirnov distance of the area fraction and the aspect below 0.045 (the 0.1% critical value
    # for two samples of 4000 is 0.0436), fallback rates within four standard errors.
    n, rng = 4000, np.random.Generator(np.random.PCG64(7))
    ours = np.array([efficientnet_crop_window(height, width, rng, 320) for _ in range(n)])
    theirs = np.array([_gluoncv_box(height, width, 320, 10 ** 6 + seed) for seed in range(n)])
    fallback = _fallback(height, width, 320)
    rates = []
    for boxes in (ours, theirs):
        area, aspect = boxes[:, 2] * boxes[:, 3] / float(height * width), boxes[:, 3] / boxes[:, 2].astype(float)
        assert area.min() >= 0.1 * 0.99 and (aspect >= 3 / 4.0 * 0.98).all() and (aspect <= 4 / 3.0 * 1.02).all() \
            or (boxes == fallback).all(1).any()
        rates.append((boxes == fallback).all(1).mean())
    for column in (lambda b: b[:, 2] * b[:, 3], lambda b: b[:, 3] / b[:, 2].astype(float)):
        assert ks_2samp(column(ours), column(theirs)).statistic < 0.045
    rate = (rates[0] + rates[1]) / 2
    assert abs(rates[0] - rates[1]) <= 4 * np.sqrt(2 * rate * (1 - rate) / n) + 1e-9
    if height == 100:
        assert 0.1 < rate < 0.9  # the check above compares real fallback rates


def _pil_jitter(img, order, factors):
    img = Image.fromarray(img)
    for step, factor in zip(order, factors):
        img = ENHANCERS[step](img).enhance(float(factor))
    return np.asarray(img)


@pytest.mark.parametrize('order', [(0,), (1,), (2,), (0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_colour_steps_are_pils_enhancers(order):
    rng = np.random.RandomState(len(order) * 10 + order[0])
    for img in _photo_crops(4, seed=order[0]):
        for factors in (rng.uniform(0.6, 1.4, 3), (0.6, 1.4, 0.6), (1.4, 0.6, 1.4)):
            got = np.dstack(pil_colour_jitter(cv2.split(img), order, factors[:len(order)]))
            np.testing.assert_array_equal(got, _pil_jitter(img, order, factors[:len(order)]))


def test_resize_is_pils_bicubic_and_the_crop_gluoncvs():
    # jitter 0, no flip: the planes are PIL's bicubic resize of GluonCV's window (maximum difference 0).
    for i, img in enumerate(_photo_crops(6)):
        random.seed(i)
        expected = EfficientNetRandomCrop(64)(Image.fromarray(img)).resize((64, 64), Image.BICUBIC)
        planes = efficientnet_planes(img, _PythonRandom(random.Random(i)), 64, random_mirror=False, jitter=0)
        np.testing.assert_array_equal(np.dstack(planes), np.asarray(expected))


def _encode(img):
    return cv2.imencode('.png', np.ascontiguousarray(img[..., ::-1]))[1].tobytes()


def _naive_efficientnet(buf, seed, size, jitter, lighting):
    """The documented >= 320 steps written plainly: GluonCV-semantics window, PIL resize and enhancers,
    MXNet's lighting on the float image, its to_tensor and normalize."""
    rng = np.random.Generator(np.random.PCG64(seed))
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    top, left, h, w = efficientnet_crop_window(img.shape[0], img.shape[1], rng, size)
    img = Image.fromarray(np.ascontiguousarray(img[top:top + h, left:left + w])).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    order, factors = rng.permutation(3), rng.uniform(1 - jitter, 1 + jitter, 3)
    img = mx.nd.array(_pil_jitter(np.asarray(img), order, factors), dtype='float32')
    img = mx.nd.image.adjust_lighting(img, alpha=tuple(float(a) for a in rng.normal(0, lighting, 3)))
    return mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=MEAN, std=STD).asnumpy()


def test_fast_pipeline_matches_the_naive_steps():
    augment = TrainAugment(48, jitter=0.4, lighting=0.1, pipeline='efficientnet')
    for i, img in enumerate(_photo_crops(6)):
        buf = _encode(img)
        for seed in range(3):
            out = augment(buf, np.random.Generator(np.random.PCG64(seed)))
            np.testing.assert_allclose(out, _naive_efficientnet(buf, seed, 48, 0.4, 0.1), atol=1e-4, rtol=0,
                                       err_msg='image %d seed %d' % (i, seed))


def _per_draw_stats(outputs):
    """(draws, 6): each normalised image's per-channel mean and std."""
    outputs = np.stack(outputs)
    return np.concatenate([outputs.mean((2, 3)), outputs.std((2, 3))], axis=1)


def test_statistics_at_320_match_the_reference_pipeline():
    # A sanity check of the whole default pipeline at 320 px against the Gluon/PIL reference (GluonCV's
    # crop class, PIL's resize and enhancers, Gluon's lighting; their own random sources) on 24 photographs
    # x 4 draws: a two-sample z-test per statistic (each image's per-channel mean and std), |z| < 4. The
    # exact agreement of the steps is checked by the tests above.
    crops, draws = _photo_crops(24, seed=3), 4
    reference = train_transform(320)
    mx.random.seed(0)
    random.seed(0)
    ref = _per_draw_stats([reference(mx.nd.array(img, dtype='uint8')).asnumpy() for img in crops
                           for _ in range(draws)])
    fast = TrainAugment(320)
    assert fast.pipeline == 'efficientnet'
    ours = _per_draw_stats([fast(_encode(img), np.random.Generator(np.random.PCG64([i, j])))
                            for i, img in enumerate(crops) for j in range(draws)])
    z = (ours.mean(0) - ref.mean(0)) / np.sqrt((ours.var(0, ddof=1) + ref.var(0, ddof=1)) / len(ref))
    assert np.abs(z).max() < 4, z


def _equalized_before_and_after_crop(img, size):
    """(AutoAugment's Equalize on the whole image then the crop, the crop then Equalize) for seed 0's draws,
    with jitter, lighting and flip off (inception pipeline)."""
    rng = np.random.Generator(np.random.PCG64(0))
    rng.integers(1 << 62)  # AutoAugment's seed is drawn first
    top, left, h, w = crop_window(img.shape[0], img.shape[1], rng, 0.08)

    def crop(x):
        return cv2.resize(np.ascontiguousarray(x[top:top + h, left:left + w]), (size, size),
                          interpolation=cv2.INTER_LINEAR)
    equalize = partial(auto_augment, rng=random.Random(0), policy=EQUALIZE)
    return crop(equalize(img)), equalize(crop(img))


def test_autoaugment_runs_on_the_whole_image_before_the_crop(monkeypatch):
    img = _photo_crops(1, seed=5)[0]
    size = 40
    before, after = _equalized_before_and_after_crop(img, size)
    assert np.abs(before.astype(int) - after).mean() > 5  # the check distinguishes the two orders
    monkeypatch.setattr(opencv_augment, 'auto_augment', partial(auto_augment, policy=EQUALIZE))
    augment = TrainAugment(size, random_mirror=False, jitter=0, lighting=0, auto_aug=True, pipeline='inception')
    out = augment(_encode(img), np.random.Generator(np.random.PCG64(0)))
    expected = ((before / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
    # The reference pipelines put the block first as well, for both pipelines.
    for input_size in (224, 320):
        assert isinstance(train_transform(input_size, auto_aug=True)[0], AutoAugment)


def test_pipeline_is_chosen_by_the_input_size():
    assert [train_pipeline(s) for s in (224, 256, 319, 320, 416)] == ['inception'] * 3 + ['efficientnet'] * 2
    assert TrainAugment(319).pipeline == 'inception' and TrainAugment(320).pipeline == 'efficientnet'
    assert 'EfficientNetRandomCrop' in repr(train_transform(320))
    assert 'EfficientNetRandomCrop' not in repr(train_transform(288))
    with pytest.raises(ValueError, match="unknown training pipeline 'x'"):
        TrainAugment(32, pipeline='x')
    with pytest.raises(ConfigError, match='recordio cannot apply the >= 320 px pipeline'):
        TrainConfig(model='resnest269', input_size=320, data_backend='recordio', rec_train='t.rec',
                    rec_val='v.rec')


@pytest.mark.parametrize('height, width', SIZES)
def test_validation_crop_at_320_is_gluoncvs_efficientnet_centre_crop(height, width):
    # EvalTransform's box from 320 px is GluonCV's EfficientNetCenterCrop's (the resize after it is MXNet's
    # bicubic, not PIL's: docs/training.md gives the measured difference).
    for size in (320, 416):
        resize, (x0, y0, w, h), _ = crop_box(height, width, size)
        assert resize is None and (y0, x0, h, w) == _fallback(height, width, size)


@pytest.mark.parametrize('recipe', ['resnest14', 'resnest26', 'resnest50', 'resnest101', 'resnest200', 'resnest269'])
def test_each_recipe_names_the_pipeline_it_trains_with(recipe):
    path = os.path.join(os.path.dirname(gluon_resnest.__file__), 'recipes', 'imagenet', recipe + '.yaml')
    config = TrainConfig.from_file(recipe)
    named = re.search(r'^# Training pipeline: (\w+)', open(path).read(), flags=re.M).group(1)
    assert named == train_pipeline(config.input_size) == TrainAugment(config.input_size).pipeline
