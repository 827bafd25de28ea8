"""The FPN R-CNN recipes on our ResNeSt, shared by every detector of the package.

GluonCV's ``faster_rcnn_fpn_syncbn_resnest*_coco`` import GluonCV's own ResNeSt inside the function, so
there is nothing to swap: the detectors rebuild the same networks from GluonCV's getters and
``FPNFeatureExpander`` around our backbone (:func:`build_fpn_detector`). The FPN taps come from tracing
the backbone (:func:`fpn_tap_names`), never from a table. Parameter and symbol names equal GluonCV's,
so its published detection checkpoints load.

Two recipes, as GluonCV names them:

- ``fpn_syncbn``: SyncBatchNorm in the backbone, the FPN and a 4-conv + 1-fc box head (GluonCV's
  ``faster_rcnn_fpn_syncbn_resnest50_coco``: the paper's setting).
- ``fpn`` (BatchNorm): frozen BatchNorm statistics in the backbone, no normalisation in the FPN, a
  2-fc box head (GluonCV's ``faster_rcnn_fpn_resnet50_v1b_coco``).

DropBlock is always off, as in GluonCV's detection networks.
"""
import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from gluoncv import data as gdata
from gluoncv.nn.feature import FPNFeatureExpander

from ..model_zoo import get_model, model_key
from ..resnest import stage_output_names
from .pooling import use_safe_roi_pooling

__all__ = ['ZOO_DATASETS', 'MASK_RECIPE', 'check_backbone', 'detection_backbone', 'trained_norm',
           'fpn_tap_names', 'fpn_features', 'box_head', 'halving_pool', 'build_fpn_detector',
           'build_custom']

# The datasets the published detection model-zoo names are for (``..._coco``, ``..._voc``).
ZOO_DATASETS = ('coco', 'voc')

# Shared by both recipes: GluonCV's FPN Faster-RCNN settings for COCO.
_COMMON = dict(max_size=1333, min_stage=2, max_stage=6, nms_thresh=0.5, nms_topk=-1, post_nms=-1,
               roi_mode='align', roi_size=(7, 7), strides=(4, 8, 16, 32, 64), base_size=16,
               scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2), alloc_size=(384, 384),
               rpn_nms_thresh=0.7, rpn_train_pre_nms=12000, rpn_train_post_nms=2000,
               rpn_test_pre_nms=6000, rpn_test_post_nms=1000, rpn_min_size=1, num_sample=512,
               pos_iou_thresh=0.5, pos_ratio=0.25, max_num_gt=100, fpn_channels=256)
_SYNCBN = dict(short=(640, 800), rpn_channel=256, clip=4.14)
_FROZEN_BN = dict(short=800, rpn_channel=1024, clip=4.14)
# The mask head of GluonCV's FPN Mask-RCNNs (4 convs, 256 channels; masks twice the pooled size).
MASK_RECIPE = dict(mask_channels=256, rcnn_max_dets=1000, target_roi_scale=2, num_fcn_convs=4,
                   clip=4.42)

# Frozen BatchNorm trains only these (GluonCV's FPN ResNet recipe); SyncBN trains all but statistics.
_FROZEN_TRAIN_PATTERNS = '|'.join(['.*dense', '.*rpn', '.*mask', '.*down(2|3|4)_conv',
                                   '.*layers(2|3|4)_conv', 'P'])
_SYNCBN_TRAIN_PATTERNS = '(?!.*moving)'


def check_backbone(backbone):
    """The lower-case name of one of our networks; ValueError naming the valid ones otherwise."""
    return model_key(backbone, 'ResNeSt backbone')


def _dataset_classes(dataset, classes):
    if classes is not None:
        if len(classes) < 1:
            raise ValueError('classes must name at least one foreground class')
        return list(classes)
    if dataset == 'coco':
        return gdata.COCODetection.CLASSES
    if dataset == 'voc':
        return gdata.VOCDetection.CLASSES
    raise ValueError('dataset %r has no built-in classes (known: %s); pass classes=[...]'
                     % (dataset, ', '.join(ZOO_DATASETS)))


def detection_backbone(name, syncbn=True, pretrained_base=True, num_devices=0, root=None):
    """Our ResNeSt set up for detection: output stride 32, DropBlock off.

    Parameters
    ----------
    name : str
        One of :func:`gluon_resnest.list_models`.
    syncbn : bool or 'bn', default True
        True: SyncBatchNorm that trains; ``'bn'``: BatchNorms that train on each device's own batch
        statistics; False: ordinary BatchNorms using their running statistics (frozen), as
        GluonCV's non-sync FPN recipe does.
    pretrained_base : bool or str, default True
        The published ImageNet weights (True) or a ``.params`` file.
    num_devices : int, default 0
        Devices SyncBatchNorm synchronises over (0: all).
    root : str, optional
        Where published weights are kept.

    Returns
    -------
    gluon_resnest.ResNeSt
    """
    if syncbn:
        layer, kwargs = trained_norm(syncbn, num_devices)
        norm = dict(norm_layer=layer, use_global_stats=False, norm_kwargs=kwargs)
    else:
        norm = dict(norm_layer=nn.BatchNorm, use_global_stats=True)
    return get_model(check_backbone(name), pretrained=pretrained_base, root=root, dilated=False,
                     dropblock_prob=0.0, **norm)


def trained_norm(syncbn, num_devices):
    """Normalisation layer and arguments of the trained-statistics recipe.

    SyncBatchNorm, or with ``syncbn='bn'`` BatchNorm on each device's batch: on one device the
    same normalisation, with MXNet's oneDNN kernel instead of SyncBatchNorm's generic CPU one.

    Returns
    -------
    (type, dict)
        The Gluon layer class and its keyword arguments.
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


def fpn_features(network, num_filters=256, no_bias=False, norm_layer=None, norm_kwargs=None):
    """GluonCV's FPN (P2-P6) on the stage outputs of ``network``, as its FPN R-CNNs build it.

    ``norm_layer`` is a symbol operator (e.g. ``mx.sym.contrib.SyncBatchNorm``) or None.
    """
    return FPNFeatureExpander(
        network=network, outputs=fpn_tap_names(network), num_filters=[num_filters] * 4,
        use_1x1=True, use_upsample=True, use_elewadd=True, use_p6=True, no_bias=no_bias,
        norm_layer=norm_layer, norm_kwargs=norm_kwargs or {})


def _recipe_fpn(network, syncbn, num_devices, num_filters):
    sym_norm = (mx.sym.BatchNorm if syncbn == 'bn' else mx.sym.contrib.SyncBatchNorm) \
        if syncbn else None
    sym_norm_kwargs = {'ndev': num_devices} if syncbn is True and num_devices >= 1 else {}
    return fpn_features(network, num_filters, bool(syncbn), sym_norm, sym_norm_kwargs)


def halving_pool():
    """GluonCV's 3x3 stride-2 average pooling that takes 14x14 regions to the box heads' 7x7."""
    return nn.AvgPool2D(pool_size=(3, 3), strides=2, padding=1)


def box_head(syncbn, num_devices, dense_units=1024, halve_input=False):
    """The recipe's box head: 4 convs + 1 fc with trained normalisation, else 2 fc.

    Parameters
    ----------
    syncbn : bool or 'bn'
        The recipe (see :func:`detection_backbone`).
    num_devices : int
        Devices SyncBatchNorm synchronises over (0: all).
    dense_units : int, default 1024
        Units of the fully connected layers.
    halve_input : bool, default False
        Start with :func:`halving_pool`, for regions pooled at 14x14 (GluonCV's FPN Mask R-CNNs).
    """
    head = nn.HybridSequential()
    if halve_input:
        head.add(halving_pool())
    if syncbn:
        layer, kwargs = trained_norm(syncbn, num_devices)
        for _ in range(4):
            head.add(nn.Conv2D(256, 3, padding=1, use_bias=False), layer(**kwargs),
                     nn.Activation('relu'))
        head.add(nn.Dense(dense_units, weight_initializer=mx.init.Normal(0.01)), nn.Activation('relu'))
    else:
        for _ in range(2):
            head.add(nn.Dense(dense_units, weight_initializer=mx.init.Normal(0.01)),
                     nn.Activation('relu'))
    return head


def build_fpn_detector(getter, backbone, dataset, classes, syncbn, pretrained, pretrained_base,
                       num_devices, recipe, kwargs):
    """An FPN R-CNN of the recipe on our backbone, built by a GluonCV-style ``getter``.

    Parameters
    ----------
    getter : callable
        ``get_faster_rcnn``-like: ``getter(name=, dataset=, pretrained=, features=, ...)``.
    backbone, dataset, classes, syncbn, pretrained, pretrained_base, num_devices
        As :func:`gluon_resnest.detection.faster_rcnn_fpn`.
    recipe : dict
        The detector's own settings, over the shared FPN recipe.
    kwargs : dict
        The caller's overrides, over ``recipe`` (``fpn_channels`` sets the FPN's channels).

    Returns
    -------
    The getter's network, pooling regions with :func:`~gluon_resnest.detection.pyramid_roi_feats`,
    with ``fpn_channels`` set.
    """
    key = check_backbone(backbone)
    classes = _dataset_classes(dataset, classes)
    network = detection_backbone(key, syncbn, False if pretrained else pretrained_base, num_devices,
                                 root=kwargs.get('root'))
    args = dict(_COMMON, **(_SYNCBN if syncbn else _FROZEN_BN))
    args.update(recipe)
    args.update(kwargs)
    if 'box_features' not in args:  # the recipe's head, built only when none is given
        args['box_features'] = box_head(syncbn, num_devices)
    fpn_channels = args.pop('fpn_channels')  # the FPN's, not an R-CNN argument
    name = '_'.join(['fpn'] + (['bn'] if syncbn == 'bn' else ['syncbn'] if syncbn else []) + [key])
    net = use_safe_roi_pooling(getter(
        name=name, dataset=dataset, pretrained=pretrained,
        features=_recipe_fpn(network, syncbn, num_devices, fpn_channels), top_features=None,
        classes=classes,
        train_patterns=_SYNCBN_TRAIN_PATTERNS if syncbn else _FROZEN_TRAIN_PATTERNS, **args))
    net.fpn_channels = fpn_channels  # the pooled features' channels (see cpu_region_limit)
    return net


def build_custom(factory, classes, backbone, syncbn, pretrained_base, num_devices, kwargs,
                 transfer=None):
    """``factory`` for your own ``classes``: fresh heads, or with ``transfer`` ('coco', 'voc') the
    published detector of that dataset keeping the predictors of the classes it shares."""
    if classes is None or len(classes) < 1:
        raise ValueError('a custom detector needs classes=[...] with at least one class name')
    if transfer is None:
        return factory(backbone, dataset='custom', classes=classes, syncbn=syncbn,
                       pretrained_base=pretrained_base, num_devices=num_devices, **kwargs)
    net = factory(backbone, dataset=str(transfer), syncbn=syncbn, pretrained=True,
                  num_devices=num_devices, **kwargs)
    net.reset_class(list(classes), reuse_weights=[c for c in classes if c in net.classes])
    return net
