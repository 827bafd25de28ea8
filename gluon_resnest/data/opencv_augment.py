"""The recipe's training augmentation with OpenCV on encoded images: the Python training path's fast form.

Per image: decode (OpenCV's libjpeg-turbo), optionally AutoAugment's ImageNet policy on the whole decoded
image (on PIL images; first, as GluonCV's ``train_horovod.py`` and the official ``train.py`` apply it), then
one of the recipe's two pipelines, chosen by the input size as those scripts choose it
(:func:`~gluon_resnest.data.efficientnet_augment.train_pipeline`):

* ``inception`` (below 320 px): random-resized crop (area ``min_random_area``..1, aspect 3/4..4/3, ten
  tries, then the central crop of the nearest allowed aspect), bilinear resize to ``input_size``,
  horizontal flip, colour jitter (brightness, contrast, saturation, in random order) and PCA lighting noise
  as MXNet's image operators compute them (described below);
* ``efficientnet`` (320 px and above): EfficientNet's random crop, PIL's bicubic resize, flip, PIL's colour
  enhancers in random order and lighting on the float image
  (:mod:`~gluon_resnest.data.efficientnet_augment`);

and the ImageNet normalisation to CHW float32.

The colour steps are those of MXNet's image operators, which Gluon's ``RandomColorJitter`` and
``RandomLighting`` call (``src/operator/image/image_random-inl.h``, MXNet 1.9.1): float32 arithmetic, each
step's result clipped to 0..255 and truncated (not rounded) to uint8; contrast blends with the mean grey
level of the image as it is at that step; saturation blends each channel with 0.114 x blue (MXNet's grey
keeps only the last term of 0.299 R + 0.587 G + 0.114 B). Brightness, contrast and lighting act on each
channel alone, so the steps between two saturation steps compose into one 256-entry table per channel
(contrast's mean grey read from the channel histograms through the tables), applied with ``cv2.LUT``;
the last table also holds the ImageNet normalisation and writes the CHW float32 planes directly.

The random draws of an image come from ``(seed, epoch, index)`` alone, so the same seed gives the same
batches whatever the number of loader processes, and a run resumed mid-epoch sees the images an
uninterrupted run would.
"""
import math
import random

import cv2
import numpy as np

from .autoaugment import auto_augment
from .efficientnet_augment import ASPECT, PIPELINES, efficientnet_planes, train_pipeline
from .eval_protocol import MEAN, STD
from .train_transforms import check_crop

__all__ = ['TrainAugment', 'AugmentedTrainSet', 'colour_steps', 'crop_window', 'to_uint8']

# MXNet's grey coefficients (ITU-R 601 luma), float32 as its operators hold them.
GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# AlexNet's PCA of ImageNet RGB pixels (0..255), as Gluon's RandomLighting.
EIGVAL = np.array([55.46, 4.794, 1.148])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])
# MXNet's lighting table: eigenvalue x eigenvector component in double, stored as float32.
_EIG = (EIGVEC * EIGVAL).astype(np.float32)
_LEVELS = np.arange(256, dtype=np.float32)


def crop_window(height, width, rng, min_area=0.08, aspect=ASPECT, tries=10):
    """``(top, left, crop height, crop width)`` of a random-resized crop of a ``height`` x ``width`` image.

    Area fraction uniform in ``min_area``..1, aspect (width/height) log-uniform in ``aspect``; after
    ``tries`` draws that do not fit, the largest central crop whose aspect is clamped into ``aspect``.
    """
    area = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(tries):
        target = rng.uniform(min_area, 1.0) * area
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        crop_w = int(round(math.sqrt(target * ratio)))
        crop_h = int(round(math.sqrt(target / ratio)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), \
                crop_h, crop_w
    ratio = min(max(width / float(height), aspect[0]), aspect[1])
    crop_w, crop_h = width, height
    if width / float(height) > ratio:
        crop_w = max(1, int(round(height * ratio)))
    else:
        crop_h = max(1, int(round(width / ratio)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def to_uint8(values):
    """float32 values as MXNet's ``saturate_cast<uint8_t>``: clipped to 0..255, then truncated."""
    return np.clip(values, 0, 255).astype(np.uint8)


def lighting_offset(alpha):
    """The float32 RGB offset of PCA lighting noise with coefficients ``alpha``, summed as MXNet does."""
    alpha = np.asarray(alpha, dtype=np.float32)
    return _EIG[:, 0] * alpha[0] + _EIG[:, 1] * alpha[1] + _EIG[:, 2] * alpha[2]


def _saturate(planes, factor):
    # Each channel blended with 0.114 x blue, in MXNet's operation order; blue's own result depends on
    # blue alone (a table), red's and green's on two channels (a float pass each).
    grey = _LEVELS * GREY[2] * (np.float32(1) - factor)
    blue = planes[2]
    grey_of_blue = cv2.LUT(blue, grey)
    mixed = [to_uint8(grey_of_blue + plane * factor) for plane in planes[:2]]
    return mixed + [cv2.LUT(blue, to_uint8(grey + _LEVELS * factor))]


def colour_steps(planes, order, factors, alpha):
    """MXNet's colour jitter and lighting on uint8 RGB planes: ``(planes, tables)``.

    The result is ``tables[c][planes[c]]`` for each channel ``c`` (tables: (3, 256) uint8). ``order``
    lists step ids (0 brightness, 1 contrast, 2 saturation) in the order applied, ``factors`` their factors
    (1 = unchanged, as MXNet's operators leave the image then); ``alpha`` the three PCA lighting
    coefficients, or None for no lighting step.
    """
    tables = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
    hists = None
    for step, factor in zip(order, factors):
        factor = np.float32(factor)
        if factor == 1:
            continue
        if step == 0:
            tables = to_uint8(tables * factor)
        elif step == 1:
            if hists is None:
                # cv2.calcHist: 5x np.bincount's speed; float32 counts are exact below 2**24 pixels.
                hists = np.stack([cv2.calcHist([plane], [0], None, [256], [0, 256])[:, 0] for plane in planes])
            means = (hists.astype(np.float64) * tables).sum(1) / planes[0].size
            grey = np.float32(means.dot(GREY.astype(np.float64)))
            tables = to_uint8(tables * factor + (np.float32(1) - factor) * grey)
        else:
            planes = _saturate([cv2.LUT(p, t) for p, t in zip(planes, tables)], factor)
            tables, hists = np.tile(np.arange(256, dtype=np.uint8), (3, 1)), None
    if alpha is not None:
        tables = to_uint8(tables + lighting_offset(alpha)[:, None])
    return planes, tables


class TrainAugment(object):
    """Encoded image bytes + a ``numpy.random.Generator`` -> normalised CHW float32 ``input_size`` square.

    Parameters
    ----------
    input_size : int
    min_random_area : float
        Smallest crop area, as a fraction of the image.
    random_mirror : bool
    jitter, lighting : float
        Brightness/contrast/saturation jitter and PCA lighting noise (0 disables).
    auto_aug : bool
        AutoAugment's ImageNet policy (:func:`~gluon_resnest.data.autoaugment.auto_augment`, on PIL
        images) on the whole decoded image, before the crop, as in the recipe's scripts.
    pipeline : {'inception', 'efficientnet'}, optional
        Default: the recipe's choice at ``input_size`` ('efficientnet' from 320 px on). The
        'efficientnet' crop's area range is its own (0.1..1): ``min_random_area`` does not apply to it.
    """

    def __init__(self, input_size=224, min_random_area=0.08, random_mirror=True, jitter=0.4, lighting=0.1,
                 auto_aug=False, pipeline=None):
        check_crop(input_size, min_random_area)
        if pipeline is not None and pipeline not in PIPELINES:
            raise ValueError('unknown training pipeline %r (choose from %s)' % (pipeline, ', '.join(PIPELINES)))
        self.pipeline = pipeline or train_pipeline(input_size)
        self.input_size = input_size
        self.min_random_area = min_random_area
        self.random_mirror = random_mirror
        self.jitter = jitter
        self.lighting = lighting
        self.auto_aug = auto_aug
        self._mean = np.asarray(MEAN)[:, None]
        self._std = np.asarray(STD)[:, None]

    def decode(self, buf, what):
        """HWC uint8 BGR image of ``buf``; a one-line ``ValueError`` naming ``what`` if it does not decode."""
        img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR) if len(buf) else None
        if img is None:
            raise ValueError('cannot decode image %s: not an image OpenCV can read (%d bytes)' % (what, len(buf)))
        return img

    def __call__(self, buf, rng, what='image', out=None):
        """The augmented image of ``buf`` (into ``out``, a float32 (3, size, size) array, if given)."""
        img, bgr = self.decode(buf, what), True
        if self.auto_aug:
            img = auto_augment(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), random.Random(int(rng.integers(1 << 62))))
            bgr = False
        size = self.input_size
        if self.pipeline == 'efficientnet':
            planes = efficientnet_planes(img, rng, size, self.random_mirror, self.jitter, bgr)
            # Lighting on the float image (no rounding), then ToTensor and Normalize, as one table per channel.
            offset = lighting_offset(rng.normal(0, self.lighting, 3)) if self.lighting > 0 else np.zeros(3)
            normalised = ((_LEVELS + offset[:, None]) / 255.0 - self._mean) / self._std
        else:
            planes, tables = self._inception(img, rng, bgr)
            # The last tables and the normalisation (ToTensor and Normalize) as one float table per channel.
            normalised = (tables / 255.0 - self._mean) / self._std
        if out is None:
            # Allocated last, after the temporaries above: allocated before them, each image cost twice as
            # long (the decoder ran 1.6x slower, measured per call; the heap top was likely being returned
            # to the system and faulted in again).
            out = np.empty((3, size, size), dtype=np.float32)
        for channel in range(3):
            cv2.LUT(planes[channel], normalised[channel].astype(np.float32), dst=out[channel])
        return out

    def _inception(self, img, rng, bgr):
        # Crop, resize, flip and MXNet's colour steps: (planes, tables) as colour_steps returns them.
        top, left, crop_h, crop_w = crop_window(img.shape[0], img.shape[1], rng, self.min_random_area)
        size = self.input_size
        img = cv2.resize(img[top:top + crop_h, left:left + crop_w], (size, size), interpolation=cv2.INTER_LINEAR)
        if self.random_mirror and rng.random() < 0.5:
            img = cv2.flip(img, 1)
        planes = cv2.split(img)
        planes = planes[::-1] if bgr else planes
        order = rng.permutation(3)
        factors = rng.uniform(1 - self.jitter, 1 + self.jitter, 3) if self.jitter > 0 else np.ones(3)
        alpha = rng.normal(0, self.lighting, 3) if self.lighting > 0 else None
        return colour_steps(planes, order, factors, alpha)


class AugmentedTrainSet(object):
    """A training dataset read as encoded images and augmented by :class:`TrainAugment`.

    Items are keyed by ``(epoch, index)`` (the trainer's sampler yields such keys): the augmentation of
    ``index`` in ``epoch`` draws from ``(seed, epoch, index)``. ``write(key, out)`` augments into a given
    array (:class:`~gluon_resnest.data.shared_batches.SharedBatchLoader`'s buffers).

    Parameters
    ----------
    dataset : ImageFolder or ImageRecord
        Anything with ``read_encoded(index) -> (bytes, label, name)`` and ``len``.
    augment : TrainAugment
    seed : int
    classes : int, optional
        Labels must lie in 0..classes-1 (a one-line ``ValueError`` naming the image otherwise).
    """

    def __init__(self, dataset, augment, seed=0, classes=None):
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.classes = classes

    def write(self, key, out):
        """Augment the image of ``key`` into ``out`` (float32, (3, size, size)); returns its label."""
        return self._augment(key, out)[1]

    def __getitem__(self, key):
        return self._augment(key, None)

    def _augment(self, key, out):
        epoch, index = key
        buf, label, what = self.dataset.read_encoded(index)
        if self.classes is not None and not 0 <= label < self.classes:
            raise ValueError('%s has label %d, outside 0..%d (--classes %d)'
                             % (what, label, self.classes - 1, self.classes))
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch, index]))
        return self.augment(buf, rng, what, out), label

    def __len__(self):
        return len(self.dataset)
