"""Faster-RCNN and Mask-RCNN with FPN on our ResNeSt, built from GluonCV's public pieces.

GluonCV's ``faster_rcnn_fpn_syncbn_resnest*_coco`` import GluonCV's own ResNeSt inside the function, so
there is nothing to swap: these factories rebuild the same networks from ``get_faster_rcnn`` /
``get_mask_rcnn`` and ``FPNFeatureExpander`` around our backbone, and the registry installs them under
GluonCV's names. The FPN taps come from tracing the backbone (:func:`fpn_tap_names`), never from a table.
Parameter and symbol names equal GluonCV's, so its published detection checkpoints load.

Two recipes, as GluonCV names them:

- ``fpn_syncbn``: SyncBatchNorm in the backbone, the FPN and a 4-conv + 1-fc box head (GluonCV's
  ``faster_rcnn_fpn_syncbn_resnest50_coco``: the paper's setting).
- ``fpn`` (BatchNorm): frozen BatchNorm statistics in the backbone, no normalisation in the FPN, a
  2-fc box head (GluonCV's ``faster_rcnn_fpn_resnet50_v1b_coco``).

DropBlock is always off, as in GluonCV's detection networks.

On CPU, MXNet 1.9.1's ``ROIAlign`` leaves the output of a region whose batch index is -1 unwritten,
and GluonCV's FPN pooling marks the regions of the other pyramid levels exactly that way, so their
"zeros" are whatever the memory pool held (RCNN losses of 1e30 after a few networks in one process;
GluonCV's own ResNet detectors too). The networks built here pool each region on its own level, as
GluonCV does, and replace the other levels' unwritten results by zeros (:func:`pyramid_roi_feats`),
which is what the GPU kernel gives.
"""
import types
from functools import partial

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from ..model_zoo import VARIANTS, get_model, model_key
from ..resnest import stage_output_names

__all__ = ['faster_rcnn_fpn', 'custom_faster_rcnn_fpn', 'mask_rcnn_fpn', 'custom_mask_rcnn_fpn',
           'custom_rcnn_fpn', 'detection_backbone', 'fpn_tap_names', 'pyramid_roi_feats',
           'use_safe_roi_pooling', 'cpu_region_limit', 'DETECTION_DATASETS', 'fpn_zoo_entries']

DETECTION_DATASETS = ('coco', 'voc')
NORM_TAGS = ((True, 'fpn_syncbn'), (False, 'fpn'))


def fpn_zoo_entries(kind, backbones, factory, custom_factory, norms=NORM_TAGS, datasets=DETECTION_DATASETS):
    """Model-zoo names as GluonCV spells its R-CNNs, each with its factory.

    ``{kind}_{fpn_syncbn|fpn}_{backbone}_{dataset}`` -> ``factory(backbone, dataset, syncbn=...)`` and
    ``{kind}_{...}_{backbone}_custom`` -> ``custom_factory(backbone=..., syncbn=...)``, for every backbone,
    ``(syncbn, tag)`` pair of ``norms`` and dataset of ``datasets``.
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

# Shared by both recipes: GluonCV's FPN Faster-RCNN settings for COCO.
_COMMON = dict(max_size=1333, min_stage=2, max_stage=6, nms_thresh=0.5, nms_topk=-1, post_nms=-1,
               roi_mode='align', roi_size=(7, 7), strides=(4, 8, 16, 32, 64), base_size=16,
               scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2), alloc_size=(384, 384),
               rpn_nms_thresh=0.7, rpn_train_pre_nms=12000, rpn_train_post_nms=2000,
               rpn_test_pre_nms=6000, rpn_test_post_nms=1000, rpn_min_size=1, num_sample=512,
               pos_iou_thresh=0.5, pos_ratio=0.25, max_num_gt=100, fpn_channels=256)
_SYNCBN = dict(short=(640, 800), rpn_channel=256, clip=4.14)
_FROZEN_BN = dict(short=800, rpn_channel=1024, clip=4.14)
# Mask-RCNN adds a mask head; GluonCV's FPN Mask-RCNNs use these.
_MASK = dict(mask_channels=256, rcnn_max_dets=1000, target_roi_scale=2, num_fcn_convs=4, clip=4.42)

# Frozen BatchNorm trains only these (GluonCV's FPN ResNet recipe); SyncBN trains all but statistics.
_FROZEN_TRAIN_PATTERNS = '|'.join(['.*dense', '.*rpn', '.*mask', '.*down(2|3|4)_conv',
                                   '.*layers(2|3|4)_conv', 'P'])
_SYNCBN_TRAIN_PATTERNS = '(?!.*moving)'


def _check_backbone(backbone):
    return model_key(backbone, 'ResNeSt backbone')


def _dataset_classes(dataset, classes):
    if classes is not None:
        if len(classes) < 1:
            raise ValueError('classes must name at least one foreground class')
        return list(classes)
    from gluoncv import data as gdata  # pylint: disable=import-outside-toplevel
    if dataset == 'coco':
        return gdata.COCODetection.CLASSES
    if dataset == 'voc':
        return gdata.VOCDetection.CLASSES
    raise ValueError('dataset %r has no built-in classes (known: %s); pass classes=[...]'
                     % (dataset, ', '.join(DETECTION_DATASETS)))


def detection_backbone(name, syncbn=True, pretrained_base=True, num_devices=0, root=None):
    """Our ResNeSt set up for detection: output stride 32, DropBlock off.

    With ``syncbn`` its BatchNorms are SyncBatchNorm and train (``syncbn='bn'``: BatchNorms that
    train on each device's own batch statistics); otherwise they are ordinary BatchNorms using their
    running statistics (frozen), as GluonCV's non-sync FPN recipe does.
    """
    if syncbn:
        layer, kwargs = _trained_norm(syncbn, num_devices)
        norm = dict(norm_layer=layer, use_global_stats=False, norm_kwargs=kwargs)
    else:
        norm = dict(norm_layer=nn.BatchNorm, use_global_stats=True)
    return get_model(_check_backbone(name), pretrained=pretrained_base, root=root, dilated=False,
                     dropblock_prob=0.0, **norm)


def _trained_norm(syncbn, num_devices):
    """Normalisation layer and arguments of the trained-statistics recipe.

    SyncBatchNorm, or with ``syncbn='bn'`` BatchNorm on each device's batch: on one device the
    same normalisation, with MXNet's oneDNN kernel instead of SyncBatchNorm's generic CPU one.
    """
    if syncbn == 'bn':
        return nn.BatchNorm, {}
    return SyncBatchNorm, {'num_devices': num_devices} if num_devices >= 1 else {}


def fpn_tap_names(network):
    """The four stage outputs FPNFeatureExpander taps, without the network prefix it adds itself.

    E.g. ``['layers1_relu11_fwd', 'layers2_relu15_fwd', 'layers3_relu23_fwd', 'layers4_relu11_fwd']``
    for resnest50 (computed by :func:`gluon_resnest.resnest.stage_output_names`).
    """
    prefix = network.prefix
    names = stage_output_names(network)
    if not all(name.startswith(prefix) for name in names):
        raise ValueError('stage outputs %s do not start with the network prefix %r' % (names, prefix))
    return [name[len(prefix):] for name in names]


def _fpn(network, syncbn, num_devices, num_filters=256):
    from gluoncv.nn.feature import FPNFeatureExpander  # pylint: disable=import-outside-toplevel
    sym_norm = (mx.sym.BatchNorm if syncbn == 'bn' else mx.sym.contrib.SyncBatchNorm) \
        if syncbn else None
    sym_norm_kwargs = {'ndev': num_devices} if syncbn is True and num_devices >= 1 else {}
    return FPNFeatureExpander(
        network=network, outputs=fpn_tap_names(network), num_filters=[num_filters] * 4,
        use_1x1=True, use_upsample=True, use_elewadd=True, use_p6=True, no_bias=bool(syncbn),
        norm_layer=sym_norm, norm_kwargs=sym_norm_kwargs)


def _box_head(syncbn, num_devices, dense_units=1024):
    head = nn.HybridSequential()
    if syncbn:
        layer, kwargs = _trained_norm(syncbn, num_devices)
        for _ in range(4):
            head.add(nn.Conv2D(256, 3, padding=1, use_bias=False), layer(**kwargs),
                     nn.Activation('relu'))
        head.add(nn.Dense(dense_units, weight_initializer=mx.init.Normal(0.01)), nn.Activation('relu'))
    else:
        for _ in range(2):
            head.add(nn.Dense(dense_units, weight_initializer=mx.init.Normal(0.01)),
                     nn.Activation('relu'))
    return head


def pyramid_roi_feats(self, F, features, rpn_rois, roi_size, strides, roi_mode='align',
                      roi_canonical_scale=224.0, sampling_ratio=2, eps=1e-6):
    """FPN region pooling as GluonCV's ``RCNN._pyramid_roi_feats``, without masked regions.

    Each region goes to level ``floor(4 + log2(sqrt(area) / roi_canonical_scale))`` clipped to the
    pooled levels (P6 excluded), as in GluonCV. As in GluonCV, each level pools only its own regions
    (the others get batch index -1, which ROIAlign skips forward and backward: on CPU the region
    pooling's backward is a large share of an R-CNN training step); unlike GluonCV, the skipped
    regions' outputs, which MXNet leaves unwritten, are replaced by zeros before the sum, so no
    output depends on unwritten memory. MXNet 1.9.1's CPU ``ROIAlign`` also writes a zero to
    output element ``n`` (the flat index) for every skipped region ``n``: a skipped region put
    first takes those writes, which stay inside its own output while there are fewer regions than
    channels x pooled height x width (12,544 for FPN's 256 channels at 7x7): see
    :func:`cpu_region_limit`. Called eagerly on CPU with more regions, it raises ValueError.
    """
    if F is mx.nd and features[0].context.device_type == 'cpu':
        limit = cpu_region_limit(features[0].shape[1], roi_size)
        if rpn_rois.shape[0] > limit:
            raise ValueError('%d regions in one FPN pooling call; on CPU at most %d with %d channels '
                             'at %dx%d' % ((rpn_rois.shape[0], limit, features[0].shape[1])
                                           + tuple(roi_size)))
    max_stage = self._max_stage - 1 if self._max_stage > 5 else self._max_stage
    batch_id, x1, y1, x2, y2 = F.split(rpn_rois, axis=-1, num_outputs=5)
    size = F.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
    roi_level = F.floor(4 + F.log2(size / roi_canonical_scale + eps))
    roi_level = F.clip(roi_level, self._min_stage, max_stage)
    skipped = -F.ones_like(F.slice_axis(rpn_rois, axis=0, begin=0, end=1))
    pooled = []
    for index, level in enumerate(range(self._min_stage, max_stage + 1)):
        mine = roi_level == level
        level_rois = F.concat(F.where(mine, batch_id, -F.ones_like(batch_id)), x1, y1, x2, y2,
                              dim=-1)
        level_rois = F.concat(skipped, level_rois, dim=0)
        if roi_mode == 'align':
            feature = F.contrib.ROIAlign(features[index], level_rois, roi_size,
                                         1. / strides[index], sample_ratio=sampling_ratio)
        elif roi_mode == 'pool':
            feature = F.ROIPooling(features[index], level_rois, roi_size, 1. / strides[index])
        else:
            raise ValueError('invalid roi_mode %r; valid: align, pool' % (roi_mode,))
        feature = F.slice_axis(feature, axis=0, begin=1, end=None)
        pooled.append(F.where(F.reshape(mine, (-1,)), feature, F.zeros_like(feature)))
    return F.ElementWiseSum(*pooled)


def cpu_region_limit(channels, roi_size):
    """Most regions one call of :func:`pyramid_roi_feats` pools correctly on CPU: one fewer than
    ``channels`` x pooled height x width (MXNet 1.9.1's CPU ``ROIAlign`` zero-writes for skipped regions
    must land in the first region's output). An R-CNN pools ``num_sample`` x per-device batch regions
    per call while training and ``rpn_test_post_nms`` at inference (one image per call).
    """
    return channels * roi_size[0] * roi_size[1] - 1


def use_safe_roi_pooling(net):
    """Make a GluonCV FPN R-CNN pool regions with :func:`pyramid_roi_feats`; returns ``net``.

    Parameters and outputs are unchanged (on GPU, and on CPU whenever the memory pool held zeros).
    """
    net._pyramid_roi_feats = types.MethodType(pyramid_roi_feats, net)  # pylint: disable=protected-access
    net._clear_cached_op()  # pylint: disable=protected-access
    return net


def _build(getter, backbone, dataset, classes, syncbn, pretrained, pretrained_base, num_devices,
           recipe, kwargs):
    """Shared body of the Faster- and Mask-RCNN factories."""
    key = _check_backbone(backbone)
    classes = _dataset_classes(dataset, classes)
    network = detection_backbone(key, syncbn, False if pretrained else pretrained_base, num_devices,
                                 root=kwargs.get('root'))
    args = dict(_COMMON, **(_SYNCBN if syncbn else _FROZEN_BN))
    args.update(recipe)
    args.update(kwargs)
    if 'box_features' not in args:  # the recipe's head, built only when none is given
        args['box_features'] = _box_head(syncbn, num_devices)
    fpn_channels = args.pop('fpn_channels')  # the FPN's, not an R-CNN argument
    name = '_'.join(['fpn'] + (['bn'] if syncbn == 'bn' else ['syncbn'] if syncbn else []) + [key])
    net = use_safe_roi_pooling(getter(
        name=name, dataset=dataset, pretrained=pretrained,
        features=_fpn(network, syncbn, num_devices, fpn_channels), top_features=None,
        classes=classes,
        train_patterns=_SYNCBN_TRAIN_PATTERNS if syncbn else _FROZEN_TRAIN_PATTERNS, **args))
    net.fpn_channels = fpn_channels  # the pooled features' channels (see cpu_region_limit)
    return net


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
    # pylint: disable=import-outside-toplevel
    from gluoncv.model_zoo.rcnn.faster_rcnn import get_faster_rcnn
    return _build(get_faster_rcnn, backbone, dataset, classes, syncbn, pretrained, pretrained_base,
                  num_devices, {}, kwargs)


def mask_rcnn_fpn(backbone='resnest50', dataset='coco', classes=None, syncbn=True,
                  pretrained=False, pretrained_base=True, num_devices=0, **kwargs):
    """Mask-RCNN with FPN on one of our ResNeSt backbones (the paper's instance segmentation).

    Same recipe as :func:`faster_rcnn_fpn` plus GluonCV's FPN mask head (4 convs, 256 channels, 14x14
    mask targets), normalised with SyncBatchNorm in the SyncBN recipe. Arguments as
    :func:`faster_rcnn_fpn`; ``**kwargs`` go to ``gluoncv.model_zoo.get_mask_rcnn``.

    Returns
    -------
    gluoncv.model_zoo.MaskRCNN
    """
    from gluoncv.model_zoo.rcnn.mask_rcnn import get_mask_rcnn  # pylint: disable=import-outside-toplevel
    recipe = dict(_MASK)
    if syncbn:
        layer, norm_kwargs = _trained_norm(syncbn, num_devices)
        recipe.update(norm_layer=layer, norm_kwargs=norm_kwargs)
    return _build(get_mask_rcnn, backbone, dataset, classes, syncbn, pretrained, pretrained_base,
                  num_devices, recipe, kwargs)


def _custom(factory, classes, backbone, transfer, syncbn, pretrained_base, num_devices, kwargs):
    if classes is None or len(classes) < 1:
        raise ValueError('a custom detector needs classes=[...] with at least one class name')
    if transfer is None:
        return factory(backbone, dataset='custom', classes=classes, syncbn=syncbn,
                       pretrained_base=pretrained_base, num_devices=num_devices, **kwargs)
    net = factory(backbone, dataset=str(transfer), syncbn=syncbn, pretrained=True,
                  num_devices=num_devices, **kwargs)
    net.reset_class(list(classes), reuse_weights=[c for c in classes if c in net.classes])
    return net


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
    return _custom(faster_rcnn_fpn, classes, backbone, transfer, syncbn, pretrained_base,
                   num_devices, kwargs)


def custom_mask_rcnn_fpn(classes, backbone='resnest50', transfer=None, syncbn=True,
                         pretrained_base=True, num_devices=0, **kwargs):
    """Mask-RCNN FPN on our backbone for your own classes.

    Arguments as :func:`custom_faster_rcnn_fpn`.
    """
    return _custom(mask_rcnn_fpn, classes, backbone, transfer, syncbn, pretrained_base, num_devices,
                   kwargs)


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
    from gluoncv.model_zoo.rcnn import rcnn  # pylint: disable=import-outside-toplevel
    name = str(base_network_name).lower()
    if name in _GLUONCV_FPN_BACKBONES:
        return rcnn.custom_rcnn_fpn(pretrained_base, name, norm_layer, norm_kwargs, sym_norm_layer,
                                    sym_norm_kwargs, num_fpn_filters, num_box_head_conv,
                                    num_box_head_conv_filters, num_box_head_dense_filters)
    if name not in VARIANTS:
        raise ValueError('unknown base_network_name %r; valid names: %s'
                         % (base_network_name, ', '.join(_GLUONCV_FPN_BACKBONES + tuple(VARIANTS))))
    use_global_stats = norm_layer is nn.BatchNorm
    network = get_model(name, pretrained=pretrained_base, dilated=False, dropblock_prob=0.0,
                        use_global_stats=use_global_stats, norm_layer=norm_layer,
                        norm_kwargs=norm_kwargs)
    from gluoncv.nn.feature import FPNFeatureExpander  # pylint: disable=import-outside-toplevel
    features = FPNFeatureExpander(
        network=network, outputs=fpn_tap_names(network), num_filters=[num_fpn_filters] * 4,
        use_1x1=True, use_upsample=True, use_elewadd=True, use_p6=True,
        no_bias=not use_global_stats, norm_layer=sym_norm_layer, norm_kwargs=sym_norm_kwargs)
    convs = 0 if use_global_stats else num_box_head_conv
    return features, None, _custom_box_head(convs, num_box_head_conv_filters, norm_layer,
                                            norm_kwargs, num_box_head_dense_filters)


def _custom_box_head(num_conv, conv_filters, norm_layer, norm_kwargs, dense_filters):
    """GluonCV's custom box head, layer for layer."""
    head = nn.HybridSequential()
    head.add(nn.AvgPool2D(pool_size=(3, 3), strides=2, padding=1))
    for _ in range(num_conv):
        head.add(nn.Conv2D(conv_filters, 3, padding=1, use_bias=False),
                 norm_layer(**(norm_kwargs or {})), nn.Activation('relu'))
    head.add(nn.Dense(dense_filters, weight_initializer=mx.init.Normal(0.01)),
             nn.Activation('relu'))
    return head
