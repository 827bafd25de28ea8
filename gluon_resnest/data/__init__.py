"""Data pipeline shared by training, evaluation and INT8 calibration.

- :mod:`.datasets`: ImageNet folder and RecordIO datasets returning (HWC uint8 image, int label), and
  :func:`make_loader` (a ``gluon.data.DataLoader`` with ``-j`` workers).
- :mod:`.opencv_augment`: the recipe's training augmentation with OpenCV on encoded images (the training
  loader's), each image's random draws from (seed, epoch, index).
- :mod:`.shared_batches`: the loaders' worker processes, writing batches in place into a few reused
  shared-memory buffers.
- :mod:`.eval_loader`: the evaluation loader of ``eval.py`` and the trainer's validation (every image
  once, in order, through :class:`EvalTransform`).
- :mod:`.recordio`: training batches through MXNet's C++ RecordIO pipeline.
- :mod:`.eval_protocol`: the ResNeSt evaluation protocol (:class:`EvalTransform`; each model's crop is
  :func:`gluon_resnest.pretrained.eval_crop`) and
  the ImageNet :data:`MEAN`/:data:`STD` the training transforms normalise with too.
"""
from .datasets import (IMAGE_EXTENSIONS, ImageFolder, ImageRecord, make_loader, open_dataset, pack_record,
                       resolve_split_dir)
from .eval_protocol import (BICUBIC_FROM, DEFAULT_CROP, DEFAULT_CROP_RATIO, MEAN, STD, EvalTransform,
                            crop_box, normalize)

__all__ = ['ImageFolder', 'ImageRecord', 'open_dataset', 'make_loader', 'pack_record', 'resolve_split_dir',
           'IMAGE_EXTENSIONS',
           'MEAN', 'STD', 'DEFAULT_CROP', 'DEFAULT_CROP_RATIO', 'BICUBIC_FROM', 'EvalTransform',
           'crop_box', 'normalize']
