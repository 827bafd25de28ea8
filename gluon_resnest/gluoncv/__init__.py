"""GluonCV integration: GluonCV's model zoo, segmentation and detection networks on our ResNeSt.

``import gluon_resnest`` calls :func:`register`, after which GluonCV's own tools use our networks:

- ``gluoncv.model_zoo.get_model('resnest50', pretrained=True)`` (and the 7 fast models);
- ``get_segmentation_model(model='deeplab'|'fcn'|'psp', backbone=NAME)`` for any of our 13 names, and
  ``deeplab_resnest{50,101,200,269}_ade``;
- ``faster_rcnn_fpn[_syncbn]_resnest{50,101,269}_{coco,voc,custom}`` and
  ``mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``;
- GluonCV's ``custom_faster_rcnn_fpn`` / ``custom_mask_rcnn_fpn`` with any of our names as
  ``base_network_name``.

:func:`unregister` restores GluonCV's own entries. ``python -m gluon_resnest.gluoncv SCRIPT.py ARGS...``
runs one of GluonCV's scripts unchanged with our networks registered.
"""
from .detection import (cpu_region_limit, custom_faster_rcnn_fpn, custom_mask_rcnn_fpn,
                        custom_rcnn_fpn, detection_backbone, faster_rcnn_fpn, fpn_tap_names,
                        mask_rcnn_fpn, pyramid_roi_feats, use_safe_roi_pooling)
from .registry import (classifier, is_registered, register, registered_names, unregister,
                       zoo_entries)
from .segmentation import deeplab_ade, get_backbone, our_backbones, segmentation_backbone

__all__ = ['register', 'unregister', 'is_registered', 'registered_names', 'zoo_entries',
           'get_backbone', 'segmentation_backbone', 'our_backbones', 'deeplab_ade',
           'faster_rcnn_fpn', 'mask_rcnn_fpn', 'custom_faster_rcnn_fpn', 'custom_mask_rcnn_fpn',
           'custom_rcnn_fpn', 'detection_backbone', 'fpn_tap_names', 'classifier',
           'pyramid_roi_feats', 'use_safe_roi_pooling', 'cpu_region_limit']
