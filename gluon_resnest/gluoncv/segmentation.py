"""Our ResNeSt as the backbone of GluonCV's segmentation networks (DeepLabV3, FCN, PSPNet, ...).

GluonCV's ``SegBaseModel`` builds its backbone by calling the module-level function
``gluoncv.model_zoo.segbase.get_backbone`` and copies ``conv1, bn1, relu, maxpool, layer1..layer4`` off
the result. Replacing that one function (see :mod:`gluon_resnest.gluoncv.registry`) makes every GluonCV
segmentation network build on our ResNeSt, for all of our 13 backbones, without touching GluonCV's code.
"""
from contextlib import contextmanager

from gluoncv.model_zoo import segbase

from ..model_zoo import VARIANTS, get_model, model_key

__all__ = ['get_backbone', 'segmentation_backbone', 'our_backbones', 'deeplab_ade', 'backbone_names']

# GluonCV's own get_backbone; if this module is reloaded after registration, find the original again.
_GLUONCV_GET_BACKBONE = getattr(segbase.get_backbone, 'gluoncv_original', segbase.get_backbone)

# The non-ResNeSt names GluonCV 0.10.5's get_backbone accepts (its table is local to the function).
_GLUONCV_BACKBONES = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')


def backbone_names():
    """Every backbone name :func:`get_backbone` accepts: GluonCV's ResNets and our 13 ResNeSts."""
    return list(_GLUONCV_BACKBONES) + list(VARIANTS)


def segmentation_backbone(name, pretrained=False, dilated=True, ctx=None, root=None, **kwargs):
    """One of our ResNeSts configured as GluonCV's segmentation networks expect.

    Dilated (output stride 8) by default and with DropBlock off: GluonCV's segmentation networks never
    train with it. ``norm_layer``/``norm_kwargs`` (e.g. SyncBatchNorm) pass through.

    Parameters
    ----------
    name : str
        One of :func:`gluon_resnest.list_models`.
    pretrained : bool or str, default False
        Load the published ImageNet weights (True) or a ``.params`` file (str).
    dilated : bool, default True
    ctx, root
        As :func:`gluon_resnest.get_model`.
    **kwargs
        Any :class:`~gluon_resnest.ResNeSt` argument.

    Returns
    -------
    ResNeSt
    """
    kwargs.setdefault('dropblock_prob', 0.0)
    return get_model(name, pretrained=pretrained, ctx=ctx, root=root, dilated=dilated, **kwargs)


def get_backbone(name, **kwargs):
    """Drop-in replacement of ``gluoncv.model_zoo.segbase.get_backbone``.

    Our ResNeSt for any of our 13 names; GluonCV's own network for its ResNet names.

    Raises
    ------
    ValueError
        For any other name, listing the valid ones.
    """
    key = str(name).lower()
    if key in VARIANTS:
        return segmentation_backbone(key, **kwargs)
    if key in _GLUONCV_BACKBONES:
        return _GLUONCV_GET_BACKBONE(key, **kwargs)
    raise ValueError('unknown segmentation backbone %r; valid backbones: %s'
                     % (name, ', '.join(backbone_names())))


get_backbone.gluoncv_original = _GLUONCV_GET_BACKBONE


@contextmanager
def our_backbones():
    """Within this context GluonCV's segmentation networks build on our backbones, registered or not."""
    previous = segbase.get_backbone
    segbase.get_backbone = get_backbone
    try:
        yield
    finally:
        segbase.get_backbone = previous


def deeplab_ade(backbone, **kwargs):
    """GluonCV's DeepLabV3 for ADE20K (150 classes) on one of our backbones.

    The zoo names ``deeplab_resnest{50,101,200,269}_ade`` call this; ``pretrained=True`` loads
    GluonCV's published DeepLabV3 weights, whose names our networks share.

    Parameters
    ----------
    backbone : str
        One of :func:`gluon_resnest.list_models`.
    **kwargs
        Arguments of ``gluoncv.model_zoo.get_deeplab`` (``pretrained``, ``pretrained_base``,
        ``norm_layer``, ``norm_kwargs``, ``aux``, ``crop_size``, ``ctx``, ``root``, ...).
    """
    from gluoncv.model_zoo.deeplabv3 import get_deeplab  # pylint: disable=import-outside-toplevel
    _check_ours(backbone)
    with our_backbones():
        return get_deeplab('ade20k', backbone, **kwargs)


def _check_ours(backbone):
    model_key(backbone, 'ResNeSt backbone')
