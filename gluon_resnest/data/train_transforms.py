"""The training-time image transform of the ResNeSt recipe as Gluon transforms on decoded images.

The trainer uses the same steps in OpenCV on encoded images (:mod:`.opencv_augment`, 2-6x faster); this
Gluon form is for a user's own ``DataLoader`` of decoded images. The validation transform is
``EvalTransform``.

Random-resized crop to ``input_size``, horizontal flip, optional AutoAugment (ImageNet policy), colour
jitter 0.4 and PCA lighting noise 0.1 (as GluonCV's and the official scripts), then ToTensor and the same
ImageNet normalisation as evaluation.
"""
from mxnet.gluon.data.vision import transforms

from .autoaugment import AutoAugment
from .eval_protocol import MEAN, STD

__all__ = ['train_transform', 'check_crop']


def check_crop(input_size, min_random_area):
    """Raise a one-line ``ValueError`` unless the random-resized crop's settings are valid."""
    if input_size < 1:
        raise ValueError('input_size must be positive, got %r' % (input_size,))
    if not 0 < min_random_area <= 1:
        raise ValueError('min_random_area must be in (0, 1], got %r' % (min_random_area,))


def train_transform(input_size=224, auto_aug=False, min_random_area=0.08, random_mirror=True,
                    jitter=0.4, lighting=0.1):
    """Build the training transform: HWC uint8 RGB image -> normalised CHW float32 ``input_size`` square.

    Parameters
    ----------
    input_size : int
    auto_aug : bool
        Insert AutoAugment's ImageNet policy after the crop and flip.
    min_random_area : float
        Smallest crop area, as a fraction of the image (0.08 in the recipe).
    random_mirror : bool
    jitter, lighting : float
        Brightness/contrast/saturation jitter and AlexNet-style lighting noise (0 disables).
    """
    check_crop(input_size, min_random_area)
    steps = [transforms.RandomResizedCrop(input_size, scale=(min_random_area, 1.0))]
    if random_mirror:
        steps.append(transforms.RandomFlipLeftRight())
    if auto_aug:
        steps.append(AutoAugment())
    if jitter > 0:
        steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if lighting > 0:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)
