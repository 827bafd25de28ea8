"""Cascade R-CNN and Cascade Mask R-CNN with FPN on ResNeSt, in GluonCV's style.

The networks are registered in GluonCV's model zoo by ``import gluon_resnest`` under
``cascade_rcnn_fpn[_syncbn]_resnest{14,50,101,200}_{coco,voc,custom}`` and
``cascade_mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``; ``python -m
gluon_resnest.detection.train`` trains and evaluates them (and Faster R-CNN for comparison);
``python -m gluon_resnest.detection.shapes`` writes a small offline detection dataset.

From Python: ``fit(DetectionConfig(...))`` trains and ``evaluate(DetectionConfig(...))`` evaluates a
checkpoint, both returning a :class:`DetectionResult` (see :mod:`.train`).
"""
from ..config import DetectionConfig
from .cascade import STAGE_BOX_STDS, STAGE_IOU_THRESHS, CascadeHead, CascadeRCNN, get_cascade_rcnn
from .cascade_mask import CascadeMaskRCNN, get_cascade_mask_rcnn
from .limits import DetectionLimits
from .sampler import AspectRatioBatchSampler, image_orientations
from .zoo import (cascade_mask_rcnn_fpn, cascade_rcnn_fpn, custom_cascade_mask_rcnn_fpn,
                  custom_cascade_rcnn_fpn, get_model, zoo_entries)

__all__ = ['CascadeRCNN', 'CascadeHead', 'get_cascade_rcnn', 'cascade_rcnn_fpn',
           'CascadeMaskRCNN', 'get_cascade_mask_rcnn', 'cascade_mask_rcnn_fpn',
           'custom_cascade_mask_rcnn_fpn',
           'custom_cascade_rcnn_fpn', 'get_model', 'zoo_entries', 'STAGE_IOU_THRESHS', 'STAGE_BOX_STDS',
           'DetectionLimits', 'AspectRatioBatchSampler', 'image_orientations', 'DetectionConfig', 'fit',
           'evaluate', 'DetectionResult']

# Loaded on first use: importing .train here would make ``python -m gluon_resnest.detection.train`` find it
# already imported (runpy warns, and the command would run a second copy of the module).
_FROM_TRAIN = ('fit', 'evaluate', 'DetectionResult')


def __getattr__(name):
    if name in _FROM_TRAIN:
        from . import train  # pylint: disable=import-outside-toplevel
        return getattr(train, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
