"""Model-zoo names of every detector of the package, and the Cascade (Mask) R-CNN factories.

The names follow GluonCV's: ``{faster_rcnn,cascade_rcnn}_fpn_syncbn_{backbone}_{dataset}``
(SyncBatchNorm everywhere, 4-conv + 1-fc box heads) and
``{faster_rcnn,cascade_rcnn}_fpn_{backbone}_{dataset}`` (frozen BatchNorm statistics, 2-fc box
heads), ``dataset`` 'coco', 'voc' or 'custom'; and
``{mask_rcnn,cascade_mask_rcnn}_fpn_syncbn_{backbone}_{coco,custom}``. The GluonCV integration
(:mod:`gluon_resnest.gluoncv.registry`) installs :func:`zoo_entries` in GluonCV's model zoo.
"""
from functools import partial

from .cascade import get_cascade_rcnn
from .cascade_mask import get_cascade_mask_rcnn
from .fpn import (DETECTION_DATASETS, MASK_RECIPE, box_head, build_custom, build_fpn_detector,
                  trained_norm)
from .rcnn import custom_faster_rcnn_fpn, custom_mask_rcnn_fpn, faster_rcnn_fpn, mask_rcnn_fpn

__all__ = ['cascade_rcnn_fpn', 'custom_cascade_rcnn_fpn', 'cascade_mask_rcnn_fpn',
           'custom_cascade_mask_rcnn_fpn', 'fpn_zoo_entries', 'zoo_entries', 'get_model',
           'FASTER_RCNN_BACKBONES', 'MASK_RCNN_BACKBONES', 'CASCADE_BACKBONES',
           'CASCADE_MASK_BACKBONES']

# The paper publishes transfer results for these backbones; GluonCV uses the same names.
FASTER_RCNN_BACKBONES = ('resnest50', 'resnest101', 'resnest269')
MASK_RCNN_BACKBONES = ('resnest50', 'resnest101')
# resnest14 trains in minutes on a CPU (docs/detection.md's shapes dataset); the rest as the paper.
CASCADE_BACKBONES = ('resnest14', 'resnest50', 'resnest101', 'resnest200')
CASCADE_MASK_BACKBONES = ('resnest50', 'resnest101')
NORM_TAGS = ((True, 'fpn_syncbn'), (False, 'fpn'))
SYNCBN_ONLY = ((True, 'fpn_syncbn'),)


def fpn_zoo_entries(kind, backbones, factory, custom_factory, norms=NORM_TAGS,
                    datasets=DETECTION_DATASETS):
    """Model-zoo names as GluonCV spells its R-CNNs, each with its factory.

    ``{kind}_{fpn_syncbn|fpn}_{backbone}_{dataset}`` -> ``factory(backbone, dataset, syncbn=...)`` and
    ``{kind}_{...}_{backbone}_custom`` -> ``custom_factory(backbone=..., syncbn=...)``, for every backbone,
    ``(syncbn, tag)`` pair of ``norms`` and dataset of ``datasets``.

    Returns
    -------
    dict
        Name -> factory.
    """
    entries = {}
    for backbone in backbones:
        for syncbn, tag in norms:
            for dataset in datasets:
                entries['%s_%s_%s_%s' % (kind, tag, backbone, dataset)] = partial(
                    factory, backbone, dataset, syncbn=syncbn)
            entries['%s_%s_%s_custom' % (kind, tag, backbone)] = partial(
                custom_factory, backbone=backbone, syncbn=syncbn)
    return entries


def _stage_recipe(syncbn, num_devices, kwargs):
    """The recipe's box heads of stages 2 and 3, built only when ``kwargs`` gives none."""
    # The first stage's box head is FasterRCNN's own box_features; later stages get fresh copies.
    if 'stage_box_features' in kwargs:
        return {}
    return dict(stage_box_features=[box_head(syncbn, num_devices) for _ in range(2)])


def cascade_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                     pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Cascade R-CNN with FPN on one of our ResNeSt backbones.

    Arguments as :func:`gluon_resnest.detection.faster_rcnn_fpn` (backbone, dataset and ``classes``,
    recipe, ImageNet backbone, SyncBatchNorm devices), except ``pretrained``: a ``.params`` file of
    this detector, since no Cascade R-CNN weights are published. ``**kwargs`` go to
    :class:`~gluon_resnest.detection.CascadeRCNN` / ``FasterRCNN`` (``short``, ``num_sample``,
    ``stage_loss_weights``, ...) and override the recipe.

    Returns
    -------
    CascadeRCNN
    """
    recipe = _stage_recipe(syncbn, num_devices, kwargs)
    return build_fpn_detector(get_cascade_rcnn, backbone, dataset, classes, syncbn, pretrained,
                              pretrained_base, num_devices, recipe, kwargs)


def cascade_mask_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                          pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Cascade Mask R-CNN with FPN on one of our backbones (the paper's instance segmentation).

    :func:`cascade_rcnn_fpn` plus the mask head of :func:`gluon_resnest.detection.mask_rcnn_fpn`
    (4 convs, 256 channels) pooling 14x14 and predicting 28x28 masks (SyncBatchNorm in the SyncBN
    recipe). Arguments as :func:`cascade_rcnn_fpn`.

    Returns
    -------
    CascadeMaskRCNN
    """
    recipe = dict(MASK_RECIPE, **_stage_recipe(syncbn, num_devices, kwargs))
    if syncbn:
        layer, norm_kwargs = trained_norm(syncbn, num_devices)
        recipe.update(norm_layer=layer, norm_kwargs=norm_kwargs)
    return build_fpn_detector(get_cascade_mask_rcnn, backbone, dataset, classes, syncbn, pretrained,
                              pretrained_base, num_devices, recipe, kwargs)


def custom_cascade_rcnn_fpn(classes=None, backbone='resnest50', syncbn=True, pretrained_base=True,
                            num_devices=0, **kwargs):
    """Cascade R-CNN FPN on our backbone for your own ``classes`` (list of str); else as
    :func:`cascade_rcnn_fpn`."""
    return build_custom(cascade_rcnn_fpn, classes, backbone, syncbn, pretrained_base, num_devices,
                        kwargs)


def custom_cascade_mask_rcnn_fpn(classes=None, backbone='resnest50', syncbn=True,
                                 pretrained_base=True, num_devices=0, **kwargs):
    """Cascade Mask R-CNN FPN for your own ``classes``; else as :func:`cascade_mask_rcnn_fpn`."""
    return build_custom(cascade_mask_rcnn_fpn, classes, backbone, syncbn, pretrained_base,
                        num_devices, kwargs)


def zoo_entries():
    """Model-zoo name -> factory for every detector of the package.

    ``faster_rcnn_fpn[_syncbn]_resnest{50,101,269}_{coco,voc,custom}``,
    ``mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``,
    ``cascade_rcnn_fpn[_syncbn]_resnest{14,50,101,200}_{coco,voc,custom}`` and
    ``cascade_mask_rcnn_fpn_syncbn_resnest{50,101}_{coco,custom}``.
    """
    entries = fpn_zoo_entries('faster_rcnn', FASTER_RCNN_BACKBONES, faster_rcnn_fpn,
                              custom_faster_rcnn_fpn)
    entries.update(fpn_zoo_entries('mask_rcnn', MASK_RCNN_BACKBONES, mask_rcnn_fpn,
                                   custom_mask_rcnn_fpn, norms=SYNCBN_ONLY, datasets=('coco',)))
    entries.update(fpn_zoo_entries('cascade_rcnn', CASCADE_BACKBONES, cascade_rcnn_fpn,
                                   custom_cascade_rcnn_fpn))
    entries.update(fpn_zoo_entries('cascade_mask_rcnn', CASCADE_MASK_BACKBONES,
                                   cascade_mask_rcnn_fpn, custom_cascade_mask_rcnn_fpn,
                                   norms=SYNCBN_ONLY, datasets=('coco',)))
    return entries


def get_model(name, **kwargs):
    """A detector by its model-zoo name (as ``gluoncv.model_zoo.get_model`` after
    ``import gluon_resnest``), e.g. ``get_model('cascade_rcnn_fpn_syncbn_resnest50_coco')``."""
    entries = zoo_entries()
    key = str(name).lower()
    if key not in entries:
        raise ValueError('unknown network %r; valid names: %s' % (name, ', '.join(sorted(entries))))
    return entries[key](**kwargs)
