"""The recipe's training augmentation with OpenCV on encoded images: the Python training path's fast form.

Per image: decode (OpenCV's libjpeg-turbo), random-resized crop (area ``min_random_area``..1, aspect
3/4..4/3, ten tries, then the central crop of the nearest allowed aspect), bilinear resize to ``input_size``,
horizontal flip, optionally AutoAugment's ImageNet policy (on PIL images), then colour jitter (brightness,
contrast, saturation, in random order), PCA lighting noise and the ImageNet normalisation to CHW float32.

Every colour step is affine in RGB (contrast blends with the image's mean grey level, which an affine step
maps affinely), so the whole chain is one 3x4 matrix per image, built from the crop's mean colour and
applied in one pass (``cv2.transform``), with the BGR->RGB swap and the normalisation folded in. Pixel
values are clipped to 0..255 once, after the colour steps; Gluon's transforms on uint8 images round and
clip after each step, which differs only where a step leaves 0..255.

The random draws of an image come from ``(seed, epoch, index)`` alone, so the same seed gives the same
batches whatever the number of loader processes, and a run resumed mid-epoch sees the images an
uninterrupted run would.
"""
import math
import random

import cv2
import numpy as np

from .autoaugment import auto_augment
from .eval_protocol import MEAN, STD
from .train_transforms import check_crop

__all__ = ['TrainAugment', 'AugmentedTrainSet', 'colour_matrix', 'crop_window']

# ITU-R 601 luma, as MXNet's and torchvision's grey conversions.
GREY = np.array([0.299, 0.587, 0.114])
# AlexNet's PCA of ImageNet RGB pixels (0..255), as Gluon's RandomLighting.
EIGVAL = np.array([55.46, 4.794, 1.148])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])
ASPECT = (3 / 4.0, 4 / 3.0)


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


def colour_matrix(mean_rgb, order, factors, lighting_alpha):
    """``(A, b)``: the affine RGB map (0..255 scale) of the colour steps, ``x -> A x + b``.

    ``order`` lists step ids (0 brightness, 1 contrast, 2 saturation) in the order applied, ``factors``
    their factors (1 = unchanged); ``mean_rgb`` is the mean colour of the image they start from;
    ``lighting_alpha`` the three PCA coefficients (added after the jitter).
    """
    matrix, offset = np.eye(3), np.zeros(3)
    mean = np.asarray(mean_rgb, dtype=np.float64)
    for step, factor in zip(order, factors):
        if step == 0:
            step_m, step_b = factor * np.eye(3), np.zeros(3)
        elif step == 1:  # blend with the mean grey level of the image as it is at this step
            grey = GREY.dot(matrix.dot(mean) + offset)
            step_m, step_b = factor * np.eye(3), np.full(3, (1 - factor) * grey)
        else:  # blend each pixel with its own grey level
            step_m, step_b = factor * np.eye(3) + (1 - factor) * np.outer(np.ones(3), GREY), np.zeros(3)
        matrix, offset = step_m.dot(matrix), step_m.dot(offset) + step_b
    return matrix, offset + EIGVEC.dot(np.asarray(lighting_alpha) * EIGVAL)


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
        images) after the flip, before the colour steps, as in the recipe.
    """

    def __init__(self, input_size=224, min_random_area=0.08, random_mirror=True, jitter=0.4, lighting=0.1,
                 auto_aug=False):
        check_crop(input_size, min_random_area)
        self.input_size = input_size
        self.min_random_area = min_random_area
        self.random_mirror = random_mirror
        self.jitter = jitter
        self.lighting = lighting
        self.auto_aug = auto_aug
        self._scale = 1.0 / (255.0 * np.asarray(STD))
        self._shift = -np.asarray(MEAN) / np.asarray(STD)

    def decode(self, buf, what):
        """HWC uint8 BGR image of ``buf``; a one-line ``ValueError`` naming ``what`` if it does not decode."""
        img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR) if len(buf) else None
        if img is None:
            raise ValueError('cannot decode image %s: not an image OpenCV can read (%d bytes)' % (what, len(buf)))
        return img

    def __call__(self, buf, rng, what='image', out=None):
        """The augmented image of ``buf`` (into ``out``, a float32 (3, size, size) array, if given)."""
        img = self.decode(buf, what)
        top, left, crop_h, crop_w = crop_window(img.shape[0], img.shape[1], rng, self.min_random_area)
        size = self.input_size
        img = cv2.resize(img[top:top + crop_h, left:left + crop_w], (size, size), interpolation=cv2.INTER_LINEAR)
        if self.random_mirror and rng.random() < 0.5:
            img = cv2.flip(img, 1)
        channels = slice(None, None, -1)  # the decoded image is BGR
        if self.auto_aug:
            img = auto_augment(np.ascontiguousarray(img[:, :, ::-1]), random.Random(int(rng.integers(1 << 62))))
            channels = slice(None)
        order = rng.permutation(3)
        factors = rng.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter, 3) if self.jitter > 0 else np.ones(3)
        alpha = rng.normal(0, self.lighting, 3) if self.lighting > 0 else np.zeros(3)
        matrix, offset = colour_matrix(cv2.mean(img)[:3][channels], order, factors, alpha)
        # One pass: the colour steps, then the normalisation (rows scaled), on the BGR image (columns
        # reversed; RGB after AutoAugment). Clipping the normalised values to the images of 0 and 255 is
        # clipping to 0..255.
        transform = np.hstack([matrix[:, channels] * self._scale[:, None],
                               (offset * self._scale + self._shift)[:, None]]).astype(np.float32)
        normalised = cv2.transform(img.astype(np.float32), transform)
        if out is None:
            # Allocated last, after the temporaries above: allocated before them, each image cost twice as
            # long (the decoder and cv2.transform ran 1.6x and 6x slower, measured per call; the heap top
            # was likely being returned to the system and faulted in again).
            out = np.empty((3, size, size), dtype=np.float32)
        for channel in range(3):
            np.clip(normalised[:, :, channel], self._shift[channel], 255 * self._scale[channel] + self._shift[channel],
                    out=out[channel])
        return out


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
