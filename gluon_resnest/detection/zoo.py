"""Cascade (Mask) R-CNN factories on our backbones, with the recipes of the Faster R-CNN integration.

The names follow GluonCV's Faster R-CNN ones: ``cascade_rcnn_fpn_syncbn_{backbone}_{dataset}``
(SyncBatchNorm everywhere, 4-conv + 1-fc box heads) and ``cascade_rcnn_fpn_{backbone}_{dataset}``
(frozen BatchNorm statistics, 2-fc box heads); ``dataset`` is 'coco', 'voc' or 'custom'; and
``cascade_mask_rcnn_fpn_syncbn_{backbone}_{coco,custom}``.
"""
# The Faster R-CNN integration's recipe pieces are shared, not copied.
# pylint: disable=protected-access

from ..gluoncv import detection
from .cascade import get_cascade_rcnn
from .cascade_mask import get_cascade_mask_rcnn

__all__ = ['cascade_rcnn_fpn', 'custom_cascade_rcnn_fpn', 'cascade_mask_rcnn_fpn',
           'custom_cascade_mask_rcnn_fpn', 'zoo_entries', 'get_model', 'CASCADE_BACKBONES',
           'CASCADE_MASK_BACKBONES']

# resnest14 trains in minutes on a CPU (the README's shapes demo); the rest as the paper.
CASCADE_BACKBONES = ('resnest14', 'resnest50', 'resnest101', 'resnest200')
CASCADE_MASK_BACKBONES = ('resnest50', 'resnest101')


def _stage_recipe(syncbn, num_devices, kwargs):
    """The recipe's box heads of stages 2 and 3, built only when ``kwargs`` gives none."""
    # The first stage's box head is FasterRCNN's own box_features; later stages get fresh copies.
    if 'stage_box_features' in kwargs:
        return {}
    return dict(stage_box_features=[detection._box_head(syncbn, num_devices) for _ in range(2)])


def cascade_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                     pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Cascade R-CNN with FPN on one of our ResNeSt backbones.

    Arguments as :func:`gluon_resnest.gluoncv.faster_rcnn_fpn` (backbone, dataset and ``classes``,
    recipe, ImageNet backbone, SyncBatchNorm devices), except ``pretrained``: a ``.params`` file of
    this detector, since no Cascade R-CNN weights are published. ``**kwargs`` go to
    :class:`~gluon_resnest.detection.CascadeRCNN` / ``FasterRCNN`` (``short``, ``num_sample``,
    ``stage_loss_weights``, ...) and override the recipe.

    Returns
    -------
    CascadeRCNN
    """
    recipe = _stage_recipe(syncbn, num_devices, kwargs)
    return detection._build(get_cascade_rcnn, backbone, dataset, classes,
                            syncbn, pretrained, pretrained_base, num_devices, recipe, kwargs)


def cascade_mask_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                          pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Cascade Mask R-CNN with FPN on one of our backbones (the paper's instance segmentation).

    :func:`cascade_rcnn_fpn` plus the mask head of :func:`gluon_resnest.gluoncv.mask_rcnn_fpn`
    (4 convs, 256 channels) pooling 14x14 and predicting 28x28 masks (SyncBatchNorm in the SyncBN
    recipe). Arguments as :func:`cascade_rcnn_fpn`.

    Returns
    -------
    CascadeMaskRCNN
    """
    recipe = dict(detection._MASK, **_stage_recipe(syncbn, num_devices, kwargs))
    if syncbn:
        layer, norm_kwargs = detection._trained_norm(syncbn, num_devices)
        recipe.update(norm_layer=layer, norm_kwargs=norm_kwargs)
    return detection._build(get_cascade_mask_rcnn, backbone, dataset,
                            classes, syncbn, pretrained, pretrained_base, num_devices, recipe,
                            kwargs)


def _custom(factory, classes, backbone, syncbn, pretrained_base, num_devices, kwargs):
    if classes is None or len(classes) < 1:
        raise ValueError('a custom detector needs classes=[...] with at least one class name')
    return factory(backbone, 'custom', classes, syncbn, pretrained_base=pretrained_base,
                   num_devices=num_devices, **kwargs)


def custom_cascade_rcnn_fpn(classes=None, backbone='resnest50', syncbn=True, pretrained_base=True,
                            num_devices=0, **kwargs):
    """Cascade R-CNN FPN on our backbone for your own ``classes`` (list of str); else as
    :func:`cascade_rcnn_fpn`."""
    return _custom(cascade_rcnn_fpn, classes, backbone, syncbn, pretrained_base, num_devices,
                   kwargs)


def custom_cascade_mask_rcnn_fpn(classes=None, backbone='resnest50', syncbn=True,
                                 pretrained_base=True, num_devices=0, **kwargs):
    """Cascade Mask R-CNN FPN for your own ``classes``; else as :func:`cascade_mask_rcnn_fpn`."""
    return _custom(cascade_mask_rcnn_fpn, classes, backbone, syncbn, pretrained_base, num_devices,
                   kwargs)


def zoo_entries():
    """Model-zoo name -> factory for every Cascade R-CNN this package provides."""
    entries = detection.fpn_zoo_entries('cascade_rcnn', CASCADE_BACKBONES, cascade_rcnn_fpn,
                                        custom_cascade_rcnn_fpn)
    entries.update(detection.fpn_zoo_entries('cascade_mask_rcnn', CASCADE_MASK_BACKBONES, cascade_mask_rcnn_fpn,
                                             custom_cascade_mask_rcnn_fpn, norms=((True, 'fpn_syncbn'),),
                                             datasets=('coco',)))
    return entries


def get_model(name, **kwargs):
    """A Cascade R-CNN by its model-zoo name (as ``gluoncv.model_zoo.get_model`` after
    ``import gluon_resnest``), e.g. ``get_model('cascade_rcnn_fpn_syncbn_resnest50_coco')``."""
    entries = zoo_entries()
    key = str(name).lower()
    if key not in entries:
        raise ValueError('unknown network %r; valid names: %s' % (name, ', '.join(sorted(entries))))
    return entries[key](**kwargs)
