"""Cascade R-CNN factories on our backbones, with the recipes of the Faster R-CNN integration.

The names follow GluonCV's Faster R-CNN ones: ``cascade_rcnn_fpn_syncbn_{backbone}_{dataset}``
(SyncBatchNorm everywhere, 4-conv + 1-fc box heads) and ``cascade_rcnn_fpn_{backbone}_{dataset}``
(frozen BatchNorm statistics, 2-fc box heads); ``dataset`` is 'coco', 'voc' or 'custom'.
"""
from functools import partial

from ..gluoncv import detection
from .cascade import get_cascade_rcnn

__all__ = ['cascade_rcnn_fpn', 'custom_cascade_rcnn_fpn', 'zoo_entries', 'get_model',
           'CASCADE_BACKBONES']

# resnest14 trains in minutes on a CPU (the README's shapes demo); the rest as the paper.
CASCADE_BACKBONES = ('resnest14', 'resnest50', 'resnest101', 'resnest200')


def cascade_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                     pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Cascade R-CNN with FPN on one of our ResNeSt backbones.

    Parameters
    ----------
    backbone : str, default 'resnest50'
        One of :func:`gluon_resnest.list_models`.
    dataset : str, default 'coco'
        'coco' or 'voc' (their classes), or any name with ``classes`` given.
    classes : list of str, optional
        Foreground class names; default: the dataset's.
    syncbn : bool, default True
        SyncBatchNorm recipe (True) or frozen-BatchNorm recipe (False), as
        :func:`gluon_resnest.gluoncv.faster_rcnn_fpn`.
    pretrained : bool or str, default False
        A ``.params`` file of this detector (no cascade weights are published).
    pretrained_base : bool or str, default True
        Published ImageNet weights (True) or a ``.params`` file (str) for the backbone.
    num_devices : int, default 0
        Devices SyncBatchNorm synchronises over (0: all).
    **kwargs
        :class:`~gluon_resnest.detection.CascadeRCNN` / ``FasterRCNN`` arguments (``short``,
        ``num_sample``, ``stage_loss_weights``, ...); they override the recipe.

    Returns
    -------
    CascadeRCNN
    """
    # The first stage's box head is FasterRCNN's own box_features; later stages get fresh copies.
    recipe = dict(stage_box_features=[detection._box_head(syncbn, num_devices)  # pylint: disable=W0212
                                      for _ in range(2)])
    return detection._build(get_cascade_rcnn, backbone, dataset, classes,  # pylint: disable=W0212
                            syncbn, pretrained, pretrained_base, num_devices, recipe, kwargs)


def custom_cascade_rcnn_fpn(classes=None, backbone='resnest50', syncbn=True, pretrained_base=True,
                            num_devices=0, **kwargs):
    """Cascade R-CNN FPN on our backbone for your own ``classes`` (list of str); else as
    :func:`cascade_rcnn_fpn`."""
    if classes is None or len(classes) < 1:
        raise ValueError('a custom detector needs classes=[...] with at least one class name')
    return cascade_rcnn_fpn(backbone, 'custom', classes, syncbn, pretrained_base=pretrained_base,
                            num_devices=num_devices, **kwargs)


def zoo_entries():
    """Model-zoo name -> factory for every Cascade R-CNN this package provides."""
    entries = {}
    for backbone in CASCADE_BACKBONES:
        for syncbn, tag in ((True, 'fpn_syncbn'), (False, 'fpn')):
            for dataset in detection.DETECTION_DATASETS:
                entries['cascade_rcnn_%s_%s_%s' % (tag, backbone, dataset)] = partial(
                    cascade_rcnn_fpn, backbone, dataset, syncbn=syncbn)
            entries['cascade_rcnn_%s_%s_custom' % (tag, backbone)] = partial(
                custom_cascade_rcnn_fpn, backbone=backbone, syncbn=syncbn)
    return entries


def get_model(name, **kwargs):
    """A Cascade R-CNN by its model-zoo name (as ``gluoncv.model_zoo.get_model`` after
    ``import gluon_resnest``), e.g. ``get_model('cascade_rcnn_fpn_syncbn_resnest50_coco')``."""
    entries = zoo_entries()
    key = str(name).lower()
    if key not in entries:
        raise ValueError('unknown network %r; valid names: %s' % (name, ', '.join(sorted(entries))))
    return entries[key](**kwargs)
