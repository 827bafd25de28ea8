"""AutoAugment (Cubuk et al., 2019) with its ImageNet policy, as the ResNeSt recipe trains with.

GluonCV has no AutoAugment. The policy is the paper's 25 ImageNet sub-policies; each is two operations,
each applied with its own probability at a magnitude bin 0..9 (10 bins, as the paper discretises them).
Geometric and enhancement operations get a random sign, as in the paper. Operations run on PIL images;
the block takes and returns HWC uint8 RGB arrays (NDArray or NumPy), so it sits in a Gluon ``Compose``
between the random crop and ``ToTensor``.
"""
import random

import mxnet as mx
import numpy as np
from mxnet.gluon import Block
from PIL import Image, ImageEnhance, ImageOps

__all__ = ['AutoAugment', 'IMAGENET_POLICY', 'apply_op', 'auto_augment', 'OPS']

NUM_BINS = 10
FILL = (128, 128, 128)  # grey fill for pixels uncovered by rotations and shears

# (operation, probability, magnitude bin); None where the operation has no magnitude.
IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, None)),
    (('Equalize', 0.8, None), ('Equalize', 0.6, None)),
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),
    (('Equalize', 0.4, None), ('Solarize', 0.2, 4)),
    (('Equalize', 0.4, None), ('Rotate', 0.8, 8)),
    (('Solarize', 0.6, 3), ('Equalize', 0.6, None)),
    (('Posterize', 0.8, 5), ('Equalize', 1.0, None)),
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
    (('Equalize', 0.6, None), ('Posterize', 0.4, 6)),
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
    (('Rotate', 0.4, 9), ('Equalize', 0.6, None)),
    (('Equalize', 0.0, None), ('Equalize', 0.8, None)),
    (('Invert', 0.6, None), ('Equalize', 1.0, None)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
    (('Sharpness', 0.4, 7), ('Invert', 0.6, None)),
    (('ShearX', 0.6, 5), ('Equalize', 1.0, None)),
    (('Color', 0.4, 0), ('Equalize', 0.6, None)),
    (('Equalize', 0.4, None), ('Solarize', 0.2, 4)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, None)),
    (('Invert', 0.6, None), ('Equalize', 1.0, None)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Equalize', 0.8, None), ('Equalize', 0.6, None)),
)


def _level(magnitude, high, rng):
    """Signed value of bin ``magnitude`` on the paper's range [0, high]."""
    value = high * magnitude / (NUM_BINS - 1)
    return -value if rng.random() < 0.5 else value


def _shear(img, axis, magnitude, rng):
    shear = _level(magnitude, 0.3, rng)
    coeffs = (1, shear, 0, 0, 1, 0) if axis == 'x' else (1, 0, 0, shear, 1, 0)
    return img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=FILL)


def _translate(img, axis, magnitude, rng):
    # The paper's 150 px of 331 px, as a fraction of the image side.
    shift = _level(magnitude, 150.0 / 331, rng) * img.size[0 if axis == 'x' else 1]
    coeffs = (1, 0, shift, 0, 1, 0) if axis == 'x' else (1, 0, 0, 0, 1, shift)
    return img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=FILL)


def _enhance(enhancer):
    # Factor 1 is the identity; the paper's range is [0.1, 1.9].
    return lambda img, magnitude, rng: enhancer(img).enhance(1.0 + _level(magnitude, 0.9, rng))


def _posterize(img, magnitude, _rng):
    bits = int(round(8 - 4 * magnitude / (NUM_BINS - 1)))  # 8 bits (identity) .. 4 bits
    return ImageOps.posterize(img, bits)


def _solarize(img, magnitude, _rng):
    threshold = int(round(256 * (1 - magnitude / (NUM_BINS - 1))))  # 256 (identity) .. 0 (invert all)
    return ImageOps.solarize(img, threshold)


OPS = {
    'ShearX': lambda img, m, rng: _shear(img, 'x', m, rng),
    'ShearY': lambda img, m, rng: _shear(img, 'y', m, rng),
    'TranslateX': lambda img, m, rng: _translate(img, 'x', m, rng),
    'TranslateY': lambda img, m, rng: _translate(img, 'y', m, rng),
    'Rotate': lambda img, m, rng: img.rotate(_level(m, 30.0, rng), resample=Image.BILINEAR, fillcolor=FILL),
    'Color': _enhance(ImageEnhance.Color),
    'Contrast': _enhance(ImageEnhance.Contrast),
    'Brightness': _enhance(ImageEnhance.Brightness),
    'Sharpness': _enhance(ImageEnhance.Sharpness),
    'Posterize': _posterize,
    'Solarize': _solarize,
    'AutoContrast': lambda img, m, rng: ImageOps.autocontrast(img),
    'Equalize': lambda img, m, rng: ImageOps.equalize(img),
    'Invert': lambda img, m, rng: ImageOps.invert(img),
}


def apply_op(img, name, magnitude, rng=random):
    """Apply operation ``name`` at bin ``magnitude`` to a PIL RGB image (always, no probability)."""
    if name not in OPS:
        raise ValueError('unknown AutoAugment operation %r' % (name,))
    return OPS[name](img, magnitude, rng)


def auto_augment(img, rng, policy=IMAGENET_POLICY):
    """One randomly chosen sub-policy of ``policy`` applied to an HWC uint8 RGB NumPy image.

    ``rng`` is a ``random.Random`` (or the ``random`` module); returns a new HWC uint8 array.
    """
    img = Image.fromarray(img)
    for name, prob, magnitude in policy[rng.randrange(len(policy))]:
        if rng.random() < prob:
            img = apply_op(img, name, magnitude, rng)
    return np.asarray(img, dtype=np.uint8)


class AutoAugment(Block):
    """Apply one randomly chosen sub-policy of ``policy`` to an HWC uint8 RGB image.

    Parameters
    ----------
    policy : sequence of sub-policies, default IMAGENET_POLICY
        Each sub-policy is a sequence of (operation, probability, magnitude bin).
    rng : random.Random, optional
        Source of randomness; default the ``random`` module (seeded per epoch by the trainer).
    """

    def __init__(self, policy=IMAGENET_POLICY, rng=None):
        super(AutoAugment, self).__init__()
        for sub in policy:
            for name, prob, _ in sub:
                if name not in OPS or not 0 <= prob <= 1:
                    raise ValueError('bad AutoAugment policy entry %r' % ((name, prob),))
        self.policy = tuple(policy)
        self._rng = rng

    def forward(self, x):  # pylint: disable=arguments-differ
        is_nd = isinstance(x, mx.nd.NDArray)
        out = auto_augment(x.asnumpy() if is_nd else np.asarray(x), self._rng or random, self.policy)
        return mx.nd.array(out, dtype='uint8') if is_nd else out

    def __repr__(self):
        return 'AutoAugment(%d sub-policies)' % len(self.policy)
