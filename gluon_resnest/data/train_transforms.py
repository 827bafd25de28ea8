"""The training-time image transform of the ResNeSt recipe as Gluon transforms on decoded images.

The trainer uses the same steps in OpenCV on encoded images (:mod:`.opencv_augment`, 2-6x faster); this
Gluon form is for a user's own ``DataLoader`` of decoded images, and the reference the fast form is tested
against. The validation transform is ``EvalTransform``.

Optional AutoAugment (ImageNet policy) first, on the whole image, then the recipe's pipeline for the input
size, as GluonCV's ``train_horovod.py`` and the official ``train.py`` build it:

* below 320 px (``inception``): Gluon's random-resized crop to ``input_size``, horizontal flip, colour
  jitter 0.4 and PCA lighting noise 0.1;
* from 320 px (``efficientnet``): GluonCV's ``EfficientNetRandomCrop``, PIL's bicubic resize, flip, a
  PIL-image colour jitter 0.4 (:class:`PILColorJitter`), then Gluon's lighting noise on the float image;

then ToTensor and the same ImageNet normalisation as evaluation.
"""
import random

import mxnet as mx
import numpy as np
from mxnet.gluon import Block
from mxnet.gluon.data.vision import transforms
from PIL import Image, ImageEnhance

from .autoaugment import AutoAugment
from .efficientnet_augment import PIPELINES, train_pipeline
from .eval_protocol import MEAN, STD

__all__ = ['train_transform', 'check_crop', 'PILColorJitter']

_ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)


def check_crop(input_size, min_random_area):
    """Raise a one-line ``ValueError`` unless the random-resized crop's settings are valid."""
    if input_size < 1:
        raise ValueError('input_size must be positive, got %r' % (input_size,))
    if not 0 < min_random_area <= 1:
        raise ValueError('min_random_area must be in (0, 1], got %r' % (min_random_area,))


class _Call(Block):
    """A function as a step of a Gluon ``Compose``."""

    def __init__(self, function, name):
        super(_Call, self).__init__()
        self.function = function
        self.label = name

    def forward(self, x):  # pylint: disable=arguments-differ
        return self.function(x)

    def __repr__(self):
        return self.label


class PILColorJitter(Block):
    """torchvision's ``ColorJitter(b, c, s)`` on PIL images: PIL's brightness, contrast and colour enhancers
    with factors uniform in ``[max(0, 1 - x), 1 + x]``, in a random order (Python's ``random``)."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4):
        super(PILColorJitter, self).__init__()
        self.ranges = (brightness, contrast, saturation)

    def forward(self, img):  # pylint: disable=arguments-differ
        steps = [(enhancer, random.uniform(max(0.0, 1 - x), 1 + x))
                 for enhancer, x in zip(_ENHANCERS, self.ranges) if x > 0]
        random.shuffle(steps)
        for enhancer, factor in steps:
            img = enhancer(img).enhance(factor)
        return img


def _to_pil(x):
    return Image.fromarray(x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x))


def _efficientnet_steps(input_size, random_mirror, jitter):
    # GluonCV's crop (its class, drawing from Python's random), PIL's bicubic resize, flip and colour.
    from gluoncv.utils.transforms import EfficientNetRandomCrop  # pylint: disable=import-outside-toplevel
    steps = [_Call(_to_pil, 'ToPIL'), _Call(EfficientNetRandomCrop(input_size), 'EfficientNetRandomCrop'),
             _Call(lambda img: img.resize((input_size, input_size), Image.BICUBIC), 'Resize(bicubic)')]
    if random_mirror:
        steps.append(_Call(lambda img: img.transpose(Image.FLIP_LEFT_RIGHT) if random.random() < 0.5 else img,
                           'RandomHorizontalFlip'))
    if jitter > 0:
        steps.append(PILColorJitter(jitter, jitter, jitter))
    # As the scripts' ToNDArray: a float32 array, so lighting neither clips nor rounds.
    steps.append(_Call(lambda img: mx.nd.array(np.asarray(img), dtype='float32'), 'ToNDArray'))
    return steps


def train_transform(input_size=224, auto_aug=False, min_random_area=0.08, random_mirror=True,
                    jitter=0.4, lighting=0.1, pipeline=None):
    """Build the training transform: HWC uint8 RGB image -> normalised CHW float32 ``input_size`` square.

    Parameters
    ----------
    input_size : int
    auto_aug : bool
        AutoAugment's ImageNet policy first, on the whole image.
    min_random_area : float
        Smallest crop area of the inception pipeline, as a fraction of the image (0.08 in the recipe).
    random_mirror : bool
    jitter, lighting : float
        Brightness/contrast/saturation jitter and AlexNet-style lighting noise (0 disables).
    pipeline : {'inception', 'efficientnet'}, optional
        Default: the recipe's choice, 'efficientnet' from 320 px on.
    """
    check_crop(input_size, min_random_area)
    pipeline = pipeline or train_pipeline(input_size)
    steps = [AutoAugment()] if auto_aug else []
    if pipeline == 'efficientnet':
        steps += _efficientnet_steps(input_size, random_mirror, jitter)
    elif pipeline == 'inception':
        steps.append(transforms.RandomResizedCrop(input_size, scale=(min_random_area, 1.0)))
        if random_mirror:
            steps.append(transforms.RandomFlipLeftRight())
        if jitter > 0:
            steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    else:
        raise ValueError('unknown training pipeline %r (choose from %s)' % (pipeline, ', '.join(PIPELINES)))
    if lighting > 0:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)
