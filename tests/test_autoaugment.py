"""gluon_resnest.data.autoaugment (the paper's ImageNet policy) and the training transform that applies it."""
import random

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.data.autoaugment import IMAGENET_POLICY, OPS, AutoAugment, apply_op
from gluon_resnest.data.train_transforms import train_transform


def test_autoaugment_policy_is_the_papers_25_pairs():
    assert len(IMAGENET_POLICY) == 25
    assert all(len(sub) == 2 and all(op in OPS for op, _, _ in sub) for sub in IMAGENET_POLICY)


@pytest.mark.parametrize('op', sorted(OPS))
def test_autoaugment_ops_give_valid_images(op):
    from PIL import Image
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (24, 30, 3)).astype(np.uint8))
    out = np.asarray(apply_op(img, op, 9, random.Random(0)))
    assert out.shape == (24, 30, 3) and out.dtype == np.uint8
    if op not in ('Equalize', 'AutoContrast'):  # these can be near-identity on uniform noise
        assert np.abs(out.astype(int) - np.asarray(img, dtype=int)).sum() > 0, op


@pytest.mark.parametrize('op', ['Posterize', 'Solarize', 'Rotate', 'ShearX', 'Color'])
def test_autoaugment_magnitude_zero_is_identity(op):
    from PIL import Image
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (16, 16, 3)).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(apply_op(img, op, 0, random.Random(0))), np.asarray(img))


def test_autoaugment_block_on_ndarray_is_seeded():
    img = mx.nd.array(np.random.RandomState(0).randint(0, 256, (20, 20, 3)), dtype='uint8')
    outs = [AutoAugment(rng=random.Random(5))(img).asnumpy() for _ in range(2)]
    assert outs[0].dtype == np.uint8 and outs[0].shape == (20, 20, 3)
    np.testing.assert_array_equal(outs[0], outs[1])
    with pytest.raises(ValueError, match='bad AutoAugment policy'):
        AutoAugment(policy=((('Blur', 0.5, 3),),))


@pytest.mark.parametrize('auto_aug', [False, True])
def test_train_transform_output(auto_aug):
    img = mx.nd.array(np.random.RandomState(0).randint(0, 256, (50, 60, 3)), dtype='uint8')
    out = train_transform(32, auto_aug=auto_aug)(img)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert -3 < float(out.min().asscalar()) < float(out.max().asscalar()) < 3  # normalised

