"""Cascade R-CNN and Cascade Mask R-CNN with FPN on ResNeSt, in GluonCV's style.

The networks are registered in GluonCV's model zoo by ``import gluon_resnest`` under
``cascade_rcnn_fpn[_syncbn]_resnest{14,50,101,200}_{coco,voc,custom}`` and
``cascade_mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``; ``python -m
gluon_resnest.detection.train`` trains and evaluates them (and Faster R-CNN for comparison);
``python -m gluon_resnest.detection.shapes`` writes a small offline detection dataset.
"""
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
           'DetectionLimits', 'AspectRatioBatchSampler', 'image_orientations']
