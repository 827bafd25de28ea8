"""GluonCV integration: GluonCV's model zoo and segmentation networks on our ResNeSt.

``import gluon_resnest`` calls :func:`register`, after which GluonCV's own tools use our networks:

- ``gluoncv.model_zoo.get_model('resnest50', pretrained=True)`` (and the 7 fast models);
- ``get_segmentation_model(model='deeplab'|'fcn'|'psp', backbone=NAME)`` for any of our 13 names, and
  ``deeplab_resnest{50,101,200,269}_ade``;
- the detectors of :mod:`gluon_resnest.detection` under GluonCV's names
  (``faster_rcnn_fpn[_syncbn]_resnest{50,101,269}_{coco,voc,custom}``,
  ``mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}`` and the cascades);
- GluonCV's ``custom_faster_rcnn_fpn`` / ``custom_mask_rcnn_fpn`` with any of our names as
  ``base_network_name``.

:func:`unregister` restores GluonCV's own entries. ``python -m gluon_resnest.gluoncv SCRIPT.py ARGS...``
runs one of GluonCV's scripts unchanged with our networks registered.
"""
from .registry import (classifier, is_registered, register, registered_names, unregister,
                       zoo_entries)
from .segmentation import deeplab_ade, get_backbone, our_backbones, segmentation_backbone

__all__ = ['register', 'unregister', 'is_registered', 'registered_names', 'zoo_entries',
           'get_backbone', 'segmentation_backbone', 'our_backbones', 'deeplab_ade', 'classifier']
