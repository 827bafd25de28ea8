"""The ResNeSt evaluation protocol: per-model crop, resize rule and ImageNet normalisation.

The official ``verify.py`` evaluates with two rules, chosen by the crop size:

* crop < 320: resize the short side to ``ceil(crop / crop_ratio)`` (crop_ratio 0.875: 224 -> 256) with
  bilinear interpolation, then take the centre ``crop x crop`` (offsets floor((size - crop) / 2), as Gluon's
  ``transforms.CenterCrop`` and GluonCV's ``verify_pretrained.py`` do);
* crop >= 320: centre-crop a square of side ``short * crop / (crop + 32)`` (offsets and corners rounded as
  the official ``ECenterCrop`` does through PIL), then resize it to ``crop x crop`` bicubically.

Then the image goes to CHW float32 in [0, 1] and is normalised with the ImageNet mean and std, exactly as in
training. :class:`EvalTransform` is the one implementation: the trainer's validation and eval.py both use it.
It applies the protocol two ways with the same result bit for bit: called, with MXNet's image operators on
an NDArray; :meth:`EvalTransform.write`, mostly with OpenCV and numpy, into an array (what the loader
processes use: MXNet's resize and normalisation operators took several times as long there).
"""
import math

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon.data.vision import transforms

__all__ = ['MEAN', 'STD', 'DEFAULT_CROP', 'DEFAULT_CROP_RATIO', 'BICUBIC_FROM',
           'EvalTransform', 'crop_box', 'centre_square', 'short_side_resized', 'normalize']

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEFAULT_CROP = 224
DEFAULT_CROP_RATIO = 0.875
BICUBIC_FROM = 320  # crops of this size and above use the crop-then-bicubic rule

_BILINEAR, _BICUBIC = cv2.INTER_LINEAR, cv2.INTER_CUBIC  # OpenCV's codes (1, 2), which mx.image takes too
# Per channel, shaped to broadcast over CHW.
_MEAN_CHW = np.array(MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD_CHW = np.array(STD, dtype=np.float32).reshape(3, 1, 1)


def short_side_resized(height, width, short):
    """``(height, width)`` after resizing the short side to ``short``, as ``mx.image.resize_short`` rounds."""
    if height > width:
        return short * height // width, short
    return short, short * width // height


def crop_box(height, width, crop, crop_ratio=None):
    """Where the protocol crops an image of ``height x width``.

    ``crop_ratio`` None means the published rule: 0.875 below 320, ``crop / (crop + 32)`` from 320 on.

    Returns
    -------
    (resize, (x0, y0, w, h), interp)
        ``resize`` is the short side the image is first resized to (None for the >= 320 rule, which crops
        the original); the box is in the (resized) image; ``interp`` is the OpenCV interpolation code of the
        resize before (bilinear) or after (bicubic) the crop.
    """
    if crop < BICUBIC_FROM:
        resize = int(math.ceil(crop / (crop_ratio or DEFAULT_CROP_RATIO)))
        height, width = short_side_resized(height, width, resize)
        return resize, ((width - crop) // 2, (height - crop) // 2, crop, crop), _BILINEAR
    fraction = float(crop) / (crop + 32) if crop_ratio is None else crop_ratio
    return None, centre_square(height, width, fraction), _BICUBIC


def centre_square(height, width, fraction):
    """``(x0, y0, w, h)`` of the centre square of side ``fraction * min(height, width)``, its corners rounded
    as PIL's ``crop`` rounds a float box (GluonCV's ``EfficientNetCenterCrop``, the official ``ECenterCrop``)."""
    side = fraction * min(height, width)
    top = int(round((height - side) / 2.0))
    left = int(round((width - side) / 2.0))
    bottom, right = int(round(top + side)), int(round(left + side))
    return left, top, right - left, bottom - top


def normalize(img):
    """HWC uint8 (or float 0..255) image -> CHW float32 normalised with :data:`MEAN`/:data:`STD`."""
    img = mx.nd.image.to_tensor(img)
    return mx.nd.image.normalize(img, mean=MEAN, std=STD)


class EvalTransform(object):
    """The evaluation transform: HWC uint8 RGB image -> normalised CHW float32 ``crop x crop``.

    Parameters
    ----------
    crop : int, default 224
        Output side. Use :func:`gluon_resnest.pretrained.eval_crop` for a model's published protocol.
    crop_ratio : float, optional
        None (default) is the published rule. For crop < 320 the short side is first resized to
        ``ceil(crop / crop_ratio)`` (default 0.875); for crop >= 320 the square cropped from the original has
        side ``short * crop_ratio`` (default ``crop / (crop + 32)``).
    normalize : bool, default True
        False returns the cropped HWC uint8 image (for graphs that normalise themselves).

    Examples
    --------
    >>> transform = EvalTransform(pretrained.eval_crop('resnest200'))     # 320: crop, then bicubic
    >>> loader = make_loader(ImageFolder('val'), 32, transform)
    """

    def __init__(self, crop=DEFAULT_CROP, crop_ratio=None, normalize=True):
        crop = int(crop)
        if crop < 1:
            raise ValueError('crop size must be positive, got %d' % crop)
        if crop_ratio is not None and not 0 < crop_ratio <= 1:
            raise ValueError('crop ratio must be in (0, 1], got %s' % crop_ratio)
        self.crop = crop
        self.crop_ratio = crop_ratio
        self.normalize = normalize

    def __call__(self, img):
        height, width = img.shape[:2]
        resize, (x0, y0, w, h), interp = crop_box(height, width, self.crop, self.crop_ratio)
        if resize is not None:
            img = mx.image.resize_short(img, resize, interp=interp)
            img = mx.image.fixed_crop(img, x0, y0, w, h)
        else:
            img = mx.image.fixed_crop(img, x0, y0, w, h, size=(self.crop, self.crop), interp=interp)
        return normalize(img) if self.normalize else img

    def write(self, image, out):
        """Write the transformed ``image`` into ``out``: the same values as calling the transform, bit
        for bit, with OpenCV's bilinear resize and numpy instead of MXNet's operators (the bicubic resize
        of crops >= 320 stays MXNet's).

        Parameters
        ----------
        image : numpy.ndarray
            HWC uint8 RGB.
        out : numpy.ndarray
            float32 ``(3, crop, crop)``, or uint8 ``(crop, crop, 3)`` with ``normalize=False``.
        """
        height, width = image.shape[:2]
        resize, (x0, y0, w, h), interp = crop_box(height, width, self.crop, self.crop_ratio)
        if resize is not None:
            new_height, new_width = short_side_resized(height, width, resize)
            image = cv2.resize(image, (new_width, new_height), interpolation=interp)[y0:y0 + h, x0:x0 + w]
        else:
            image = image[y0:y0 + h, x0:x0 + w]
            if (w, h) != (self.crop, self.crop):  # mx.image.fixed_crop resizes only then
                # MXNet's operator: the cv2 module's bicubic resize differs from the OpenCV inside MXNet by
                # one level at ~5% of the pixels (cv2 4.11, MXNet 1.9.1); their bilinear ones agree.
                image = mx.image.imresize(mx.nd.array(image, dtype='uint8'), self.crop, self.crop,
                                          interp=interp).asnumpy()
        if not self.normalize:
            out[...] = image
            return
        # The operations of MXNet's to_tensor and normalize, in their order and in float32.
        np.divide(image.transpose(2, 0, 1), np.float32(255), out=out)
        out -= _MEAN_CHW
        out /= _STD_CHW

    def __repr__(self):
        return 'EvalTransform(crop=%d, crop_ratio=%s, rule=%s)' % (
            self.crop, self.crop_ratio,
            'resize-short+centre-crop (bilinear)' if self.crop < BICUBIC_FROM
            else 'centre-crop+resize (bicubic)')
