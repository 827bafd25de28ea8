"""Detection on ResNeSt: Faster R-CNN, Mask R-CNN, Cascade R-CNN and Cascade Mask R-CNN with FPN.

The FPN recipes (:mod:`.fpn`), the region pooling (:mod:`.pooling`), GluonCV's Faster/Mask R-CNN on
our backbones (:mod:`.rcnn`), the cascades (:mod:`.cascade`, :mod:`.cascade_mask`) and every model-zoo
name (:mod:`.zoo`) live here; ``import gluon_resnest`` installs those names in GluonCV's model zoo
(``faster_rcnn_fpn[_syncbn]_resnest{50,101,269}_{coco,voc,custom}``,
``mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``,
``cascade_rcnn_fpn[_syncbn]_resnest{14,50,101,200}_{coco,voc,custom}``,
``cascade_mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``). ``python -m
gluon_resnest.detection.train`` trains and evaluates all four (``--detector``; :mod:`.command`;
the task, its data and evaluation in :mod:`.task`, :mod:`.data`, :mod:`.evaluation`); users' own
VOC-layout folders and COCO-format files are read and checked by :mod:`.datasets`, the AP per class is
:mod:`.class_ap`'s, and a detector trained on other classes is started from by :mod:`.transfer`;
``python -m gluon_resnest.detection.shapes`` writes a small offline detection dataset.

From Python: ``fit(DetectionConfig(...))`` trains and ``evaluate(DetectionConfig(...))`` evaluates a
checkpoint, both returning a :class:`~gluon_resnest.results.DetectionResult`.
"""
from ..config import DetectionConfig
from .cascade import STAGE_BOX_STDS, STAGE_IOU_THRESHS, CascadeHead, CascadeRCNN, get_cascade_rcnn
from .cascade_mask import CascadeMaskRCNN, get_cascade_mask_rcnn
from .fpn import detection_backbone, fpn_tap_names
from .limits import DetectionLimits
from .pooling import cpu_region_limit, pyramid_roi_feats, use_safe_roi_pooling
from .rcnn import (MASK_ROI_SIZE, custom_faster_rcnn_fpn, custom_mask_rcnn_fpn, custom_rcnn_fpn,
                   faster_rcnn_fpn, mask_rcnn_fpn)
from .sampler import AspectRatioBatchSampler, image_orientations
from .zoo import (cascade_mask_rcnn_fpn, cascade_rcnn_fpn, custom_cascade_mask_rcnn_fpn,
                  custom_cascade_rcnn_fpn, get_model, zoo_entries)

__all__ = ['faster_rcnn_fpn', 'custom_faster_rcnn_fpn', 'mask_rcnn_fpn', 'custom_mask_rcnn_fpn',
           'MASK_ROI_SIZE', 'custom_rcnn_fpn', 'detection_backbone', 'fpn_tap_names',
           'pyramid_roi_feats', 'use_safe_roi_pooling', 'cpu_region_limit',
           'CascadeRCNN', 'CascadeHead', 'get_cascade_rcnn', 'cascade_rcnn_fpn',
           'CascadeMaskRCNN', 'get_cascade_mask_rcnn', 'cascade_mask_rcnn_fpn',
           'custom_cascade_mask_rcnn_fpn',
           'custom_cascade_rcnn_fpn', 'get_model', 'zoo_entries', 'STAGE_IOU_THRESHS', 'STAGE_BOX_STDS',
           'DetectionLimits', 'AspectRatioBatchSampler', 'image_orientations', 'DetectionConfig', 'fit',
           'evaluate', 'DetectionResult']

# Loaded on first use: the training task loads the engine and the data pipeline, which the model-zoo names
# do not need.
_FROM_TASK = ('fit', 'evaluate', 'DetectionResult')


def __getattr__(name):
    if name in _FROM_TASK:
        from . import task  # pylint: disable=import-outside-toplevel
        return getattr(task, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
