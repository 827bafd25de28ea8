"""Faster-RCNN and Mask-RCNN with FPN on our ResNeSt, built from GluonCV's public pieces.

The factories build GluonCV's own networks (``get_faster_rcnn`` / ``get_mask_rcnn``) with the recipes
of :mod:`gluon_resnest.detection.fpn` around our backbone; the GluonCV integration installs them
under GluonCV's model-zoo names (:mod:`gluon_resnest.detection.zoo`). :func:`custom_rcnn_fpn` is the
drop-in for GluonCV's own ``custom_rcnn_fpn``, so its ``custom_faster_rcnn_fpn`` /
``custom_mask_rcnn_fpn`` accept our names.
"""
import mxnet as mx
from mxnet.gluon import nn

from gluoncv.model_zoo.rcnn import rcnn as gluoncv_rcnn
from gluoncv.model_zoo.rcnn.faster_rcnn import get_faster_rcnn
from gluoncv.model_zoo.rcnn.mask_rcnn import get_mask_rcnn

from ..model_zoo import VARIANTS, get_model
from .fpn import (MASK_RECIPE, box_head, build_custom, build_fpn_detector, fpn_features,
                  halving_pool, trained_norm)

__all__ = ['faster_rcnn_fpn', 'custom_faster_rcnn_fpn', 'mask_rcnn_fpn', 'custom_mask_rcnn_fpn',
           'custom_rcnn_fpn', 'MASK_ROI_SIZE']

# GluonCV's FPN Mask R-CNNs on ResNet-50/101 pool regions at 14x14 (the box head average-pools them
# to 7x7) and predict masks of twice that size.
MASK_ROI_SIZE = (14, 14)


def faster_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                    pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Faster-RCNN with FPN on one of our ResNeSt backbones (GluonCV's network, our backbone).

    Parameters
    ----------
    backbone : str, default 'resnest50'
        One of :func:`gluon_resnest.list_models`.
    dataset : str, default 'coco'
        'coco' or 'voc' (their classes), or any name with ``classes`` given; it also names the
        published checkpoint ``pretrained=True`` loads (``faster_rcnn_fpn_syncbn_{backbone}_{dataset}``).
    classes : list of str, optional
        Foreground class names; default: the dataset's.
    syncbn : bool or 'bn', default True
        SyncBatchNorm recipe (True) or frozen-BatchNorm recipe (False); see the module notes.
        ``'bn'``: the SyncBatchNorm recipe with BatchNorms that train on each device's batch
        statistics (for one device, e.g. a CPU).
    pretrained : bool or str, default False
        Load GluonCV's published detection weights (bool or GluonCV hash tag).
    pretrained_base : bool or str, default True
        Load the published ImageNet weights into the backbone (True) or a ``.params`` file (str);
        ignored when ``pretrained``.
    num_devices : int, default 0
        Devices SyncBatchNorm synchronises over (0: all).
    **kwargs
        Any ``gluoncv.model_zoo.get_faster_rcnn`` / ``FasterRCNN`` argument (``ctx``, ``root``,
        ``per_device_batch_size``, ``short``, ``rpn_test_post_nms``, ``box_features``, ...), or
        ``fpn_channels`` (the FPN's output channels, 256); overrides the recipe.

    Returns
    -------
    gluoncv.model_zoo.FasterRCNN
    """
    return build_fpn_detector(get_faster_rcnn, backbone, dataset, classes, syncbn, pretrained,
                              pretrained_base, num_devices, {}, kwargs)


def mask_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                  pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Mask-RCNN with FPN on one of our ResNeSt backbones (the paper's instance segmentation).

    Same recipe as :func:`faster_rcnn_fpn` plus GluonCV's FPN mask head (4 convs, 256 channels),
    normalised with SyncBatchNorm in the SyncBN recipe. As GluonCV's own FPN Mask R-CNNs
    (``mask_rcnn_fpn_resnet50_v1b_coco``), regions are pooled at 14x14 (``MASK_ROI_SIZE``), the box
    head starts with a 3x3 stride-2 average pooling to 7x7, and masks are 28x28. Arguments as
    :func:`faster_rcnn_fpn`; ``**kwargs`` go to ``gluoncv.model_zoo.get_mask_rcnn`` (a
    ``box_features`` given there receives the 14x14 regions).

    Returns
    -------
    gluoncv.model_zoo.MaskRCNN
    """
    recipe = dict(MASK_RECIPE, roi_size=MASK_ROI_SIZE)
    if 'box_features' not in kwargs:
        recipe['box_features'] = box_head(syncbn, num_devices, halve_input=True)
    if syncbn:
        layer, norm_kwargs = trained_norm(syncbn, num_devices)
        recipe.update(norm_layer=layer, norm_kwargs=norm_kwargs)
    return build_fpn_detector(get_mask_rcnn, backbone, dataset, classes, syncbn, pretrained,
                              pretrained_base, num_devices, recipe, kwargs)


def custom_faster_rcnn_fpn(classes, backbone='resnest50', transfer=None, syncbn=True,
                           pretrained_base=True, num_devices=0, **kwargs):
    """Faster-RCNN FPN on our backbone for your own classes.

    Parameters
    ----------
    classes : list of str
        Foreground class names.
    backbone : str, default 'resnest50'
    transfer : str or None
        None: heads initialised afresh. 'coco' or 'voc': start from that published detector and
        keep the predictors of the classes it shares with ``classes``.
    syncbn, pretrained_base, num_devices, **kwargs
        As :func:`faster_rcnn_fpn`.
    """
    return build_custom(faster_rcnn_fpn, classes, backbone, syncbn, pretrained_base, num_devices,
                        kwargs, transfer)


def custom_mask_rcnn_fpn(classes, backbone='resnest50', transfer=None, syncbn=True,
                         pretrained_base=True, num_devices=0, **kwargs):
    """Mask-RCNN FPN on our backbone for your own classes.

    Arguments as :func:`custom_faster_rcnn_fpn`.
    """
    return build_custom(mask_rcnn_fpn, classes, backbone, syncbn, pretrained_base, num_devices,
                        kwargs, transfer)


# The other names GluonCV 0.10.5's custom_rcnn_fpn accepts (its resnest50/101 become ours).
_GLUONCV_FPN_BACKBONES = ('resnet18_v1b', 'resnet50_v1b', 'resnet101_v1d')


def custom_rcnn_fpn(pretrained_base=True, base_network_name='resnet18_v1b', norm_layer=nn.BatchNorm,
                    norm_kwargs=None, sym_norm_layer=None, sym_norm_kwargs=None, num_fpn_filters=256,
                    num_box_head_conv=4, num_box_head_conv_filters=256,
                    num_box_head_dense_filters=1024):
    """Drop-in replacement of ``gluoncv.model_zoo.rcnn.rcnn.custom_rcnn_fpn``.

    GluonCV's ``custom_faster_rcnn_fpn`` / ``custom_mask_rcnn_fpn`` (and so ``train_faster_rcnn.py
    custom-model``) build their parts with it. For any of our 13 names it returns our backbone behind
    GluonCV's FPN and custom box head, with GluonCV's semantics (``norm_layer`` BatchNorm means frozen
    statistics); GluonCV's ResNet names go to GluonCV's own function.

    Returns
    -------
    (FPNFeatureExpander, None, HybridSequential)
        Features, top features, box features.

    Raises
    ------
    ValueError
        For any other name, listing the valid ones.
    """
    name = str(base_network_name).lower()
    if name in _GLUONCV_FPN_BACKBONES:
        return gluoncv_rcnn.custom_rcnn_fpn(
            pretrained_base, name, norm_layer, norm_kwargs, sym_norm_layer, sym_norm_kwargs,
            num_fpn_filters, num_box_head_conv, num_box_head_conv_filters,
            num_box_head_dense_filters)
    if name not in VARIANTS:
        raise ValueError('unknown base_network_name %r; valid names: %s'
                         % (base_network_name, ', '.join(_GLUONCV_FPN_BACKBONES + tuple(VARIANTS))))
    use_global_stats = norm_layer is nn.BatchNorm
    network = get_model(name, pretrained=pretrained_base, dilated=False, dropblock_prob=0.0,
                        use_global_stats=use_global_stats, norm_layer=norm_layer,
                        norm_kwargs=norm_kwargs)
    features = fpn_features(network, num_fpn_filters, not use_global_stats, sym_norm_layer,
                            sym_norm_kwargs)
    convs = 0 if use_global_stats else num_box_head_conv
    return features, None, _custom_box_head(convs, num_box_head_conv_filters, norm_layer,
                                            norm_kwargs, num_box_head_dense_filters)


def _custom_box_head(num_conv, conv_filters, norm_layer, norm_kwargs, dense_filters):
    """GluonCV's custom box head, layer for layer."""
    head = nn.HybridSequential()
    head.add(halving_pool())
    for _ in range(num_conv):
        head.add(nn.Conv2D(conv_filters, 3, padding=1, use_bias=False),
                 norm_layer(**(norm_kwargs or {})), nn.Activation('relu'))
    head.add(nn.Dense(dense_filters, weight_initializer=mx.init.Normal(0.01)),
             nn.Activation('relu'))
    return head
