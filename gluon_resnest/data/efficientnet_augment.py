"""The recipe's training augmentation from 320 px on (ResNeSt-200/269's input sizes), on numpy images.

GluonCV's ``train_horovod.py`` and the official ``scripts/gluon/train.py`` switch pipelines at
``input_size >= 320``: after AutoAugment (when asked, on the whole decoded image),

1. GluonCV's ``EfficientNetRandomCrop``: an aspect ratio (width / height) drawn uniformly from [3/4, 4/3],
   a height drawn uniformly between the heights that give 10% and 100% of the image's area at that aspect
   (capped so the crop fits), ten attempts, then ``EfficientNetCenterCrop`` (the centre square of side
   ``short * size / (size + 32)``, the evaluation crop from 320 px); also when the draw is the whole image;
2. PIL's bicubic resize of the crop to ``size x size``;
3. a random horizontal flip;
4. a PIL-image ``ColorJitter(0.4, 0.4, 0.4)`` (torchvision's semantics): factors uniform in
   [1 - 0.4, 1 + 0.4]; brightness, contrast and saturation by PIL's ``ImageEnhance`` in a random order.
   PIL blends in float32 and truncates to uint8: brightness scales, contrast blends with the mean of the
   image's grey (``L``) version rounded to a level, saturation blends each pixel with its own grey level
   ``(19595 R + 38470 G + 7471 B + 32768) >> 16``;
5. Gluon's ``RandomLighting(0.1)`` on the float image (the scripts turn the PIL image into a float32
   NDArray first, so nothing is clipped or rounded), then ``ToTensor`` and ``Normalize``.

This module computes the same steps on numpy arrays (the crop window from a ``numpy.random.Generator``,
the resize by PIL itself, the colour steps as lookup tables and float32 blends), for
:class:`~gluon_resnest.data.opencv_augment.TrainAugment`; ``tests/test_efficientnet_augment.py`` checks
them against GluonCV's crop and PIL's enhancers.
"""
import math

import cv2
import numpy as np
from PIL import Image

from .eval_protocol import BICUBIC_FROM, centre_square

__all__ = ['AREA', 'ASPECT', 'efficientnet_crop_window', 'pil_grey', 'pil_colour_jitter', 'efficientnet_planes',
           'train_pipeline', 'PIPELINES']

AREA = (0.1, 1.0)
ASPECT = (3 / 4.0, 4 / 3.0)
PIPELINES = ('inception', 'efficientnet')
_LEVELS = np.arange(256, dtype=np.float32)


def train_pipeline(input_size):
    """The recipe's training pipeline at ``input_size``: 'efficientnet' from 320 px on, else 'inception'."""
    return 'efficientnet' if input_size >= BICUBIC_FROM else 'inception'


def _fitting_heights(height, width, ratio, area):
    # The range of crop heights at aspect `ratio` whose area lies in `area` (fractions) and that fit.
    low = int(round(math.sqrt(area[0] * height * width / ratio)))
    high = int(round(math.sqrt(area[1] * height * width / ratio)))
    if high * ratio > width:
        high = int((width + 0.5 - 1e-7) / ratio)  # the tallest crop whose rounded width still fits
        if high * ratio > width:
            high -= 1
    high = min(high, height)
    return min(low, high), high


def efficientnet_crop_window(height, width, rng, size, area=AREA, aspect=ASPECT, tries=10):
    """``(top, left, crop height, crop width)`` of ``EfficientNetRandomCrop(size)`` on a ``height x width``
    image.

    Parameters
    ----------
    rng : numpy.random.Generator
        (or anything with ``uniform(low, high)`` and ``integers(low, high_exclusive)``).
    size : int
        The training size; it sets the fallback's centre square (``short * size / (size + 32)``).
    """
    total = float(height * width)
    for _ in range(tries):
        ratio = rng.uniform(*aspect)
        low, high = _fitting_heights(height, width, ratio, area)
        crop_h = int(round(rng.uniform(low, high)))
        crop_w = int(round(crop_h * ratio))
        if not area[0] * total <= crop_h * crop_w <= area[1] * total or crop_w > width or crop_h > height:
            continue
        if (crop_h, crop_w) == (height, width):
            break  # the whole image: the centre crop instead, as the EfficientNet preprocessing does
        left = int(rng.integers(0, width - crop_w + 1))  # left first, as GluonCV draws them
        return int(rng.integers(0, height - crop_h + 1)), left, crop_h, crop_w
    left, top, crop_w, crop_h = centre_square(height, width, float(size) / (size + 32))
    return top, left, crop_h, crop_w


def _to_uint8(values):
    # PIL's blend: float32 result, clipped to 0..255 and truncated.
    return np.clip(values, 0, 255).astype(np.uint8)


def pil_grey(planes):
    """PIL's ``convert('L')`` of uint8 R, G, B planes (ITU-R 601-2 luma in 16-bit fixed point, rounded)."""
    red, green, blue = (plane.astype(np.uint32) for plane in planes)
    return ((red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16).astype(np.uint8)


def _saturate(planes, factor):
    # PIL's blend with each pixel's grey level: grey + factor * (pixel - grey) in float32, truncated.
    grey = pil_grey(planes).astype(np.float32)
    out, blend = [], np.empty_like(grey)
    for plane in planes:
        np.subtract(plane, grey, out=blend)
        np.multiply(blend, factor, out=blend)
        np.add(blend, grey, out=blend)
        out.append(_to_uint8(np.clip(blend, 0, 255, out=blend)))
    return out


def pil_colour_jitter(planes, order, factors):
    """PIL's ``ImageEnhance`` brightness (0), contrast (1) and colour (2) on uint8 RGB planes.

    ``order`` lists the step ids in the order applied, ``factors`` their enhancement factors (1 leaves the
    image as it is). Returns the three new planes.
    """
    for step, factor in zip(order, factors):
        factor = np.float32(factor)
        if step == 0:
            table = _to_uint8(_LEVELS * factor)
        elif step == 1:
            # ImageStat's mean of the grey image, rounded to a level (+0.5, truncated) as ImageEnhance does.
            mean = np.float32(int(pil_grey(planes).mean() + 0.5))
            table = _to_uint8(mean + factor * (_LEVELS - mean))
        else:
            planes = _saturate(planes, factor)
            continue
        planes = [cv2.LUT(plane, table) for plane in planes]
    return planes


def efficientnet_planes(img, rng, size, random_mirror=True, jitter=0.4, bgr=False):
    """Steps 1-4 of the pipeline on a decoded HWC uint8 image: the R, G, B planes (``size x size``).

    ``bgr`` says the image's channels are in OpenCV's order. Draws from ``rng`` in the order: crop window,
    flip, colour order, colour factors.
    """
    top, left, crop_h, crop_w = efficientnet_crop_window(img.shape[0], img.shape[1], rng, size)
    crop = img[top:top + crop_h, left:left + crop_w]
    crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(crop)
    img = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
    if random_mirror and rng.random() < 0.5:
        img = cv2.flip(img, 1)
    planes = cv2.split(img)
    if jitter > 0:
        order = rng.permutation(3)
        factors = rng.uniform(max(0.0, 1 - jitter), 1 + jitter, 3)
        planes = pil_colour_jitter(planes, order, factors)
    return planes
