"""Train and evaluate Cascade R-CNN (or Faster R-CNN) with FPN on ResNeSt.

``python -m gluon_resnest.detection.train --network resnest50 --dataset coco --norm-layer syncbn
--gpus 0,1,2,3 ...`` takes the flag names of GluonCV's ``train_faster_rcnn.py`` where they apply (its
per-dataset defaults too, and ``--lr`` as given), and ``--detector cascade_rcnn|faster_rcnn`` or,
with masks (``gluon_resnest.detection.masks``), ``cascade_mask_rcnn|mask_rcnn``.
``--config FILE|NAME`` reads a recipe (``gluon_resnest/recipes/detection/``) whose values are the
defaults that flags override. Datasets: ``voc`` (VOC07+12 trainval, VOC07 test, VOC07
mAP), ``coco`` (train2017 / val2017, COCO mAP) and ``shapes`` (the offline dataset of
``python -m gluon_resnest.detection.shapes``; VOC07 mAP). Held-out mAP is reported at every IoU of
``--val-iou`` (VOC style; default 0.5 and 0.7). Every epoch writes ``{save-prefix}_{epoch:04d}.params``
/ ``.states`` / ``.json`` atomically; ``--resume`` continues from one.
"""
import argparse
import contextlib
import copy
import io
import os
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .. import cli
from ..model_zoo import model_key
from ..procs import children_die_with_this_process
from ..train.build import contexts
from ..train.checkpoint import save_checkpoint
from ..train.data import ShardedShuffleSampler
from ..train.distributed import setup_distributed
from ..train.monitor import ProgressBar, setup_logger
from ..train.recipe import apply_no_wd, build_lr_scheduler
from .cascade import STAGE_IOU_THRESHS
from .fpn import box_head
from .limits import DetectionLimits
from .loss import DetectionLoss
from .masks import MASK_DETECTORS, load_instance_datasets, train_pipeline
from .pooling import cpu_region_limit
from .rcnn import faster_rcnn_fpn
from .sampler import AspectRatioBatchSampler, image_orientations
from .zoo import cascade_rcnn_fpn

__all__ = ['parse_args', 'main', 'build_detector', 'load_datasets', 'evaluate', 'val_loader',
           'ValTransform', 'VOCEvaluation', 'COCOEvaluation', 'load_detector', 'device_shards',
           'DATASET_DEFAULTS']

# BatchNorm's running statistics (Gluon's names, and those of blocks built from symbols).
BATCHNORM_STATISTICS = ('running_mean', 'running_var', 'moving_mean', 'moving_var')
DETECTORS = dict({'cascade_rcnn': cascade_rcnn_fpn, 'faster_rcnn': faster_rcnn_fpn}, **MASK_DETECTORS)


# GluonCV's train_faster_rcnn.py fills the flags left out per dataset; shapes trains like VOC.
DATASET_DEFAULTS = {
    'voc': dict(epochs=20, lr=0.001, lr_decay_epoch=(14, 20), lr_warmup=-1, wd=5e-4),
    'coco': dict(epochs=26, lr=0.00125, lr_decay_epoch=(17, 23), lr_warmup=1000, wd=1e-4),
}
DATASET_DEFAULTS['shapes'] = DATASET_DEFAULTS['voc']


def _number_list(item, kind):
    def parse(text):
        return tuple(item(v) for v in str(text).split(',') if v.strip())
    parse.__name__, parse.kind = '%s list' % item.__name__, kind  # argparse's and recipes' names
    return parse


INTS, FLOATS = _number_list(int, 'ints'), _number_list(float, 'floats')


def _parser():
    p = argparse.ArgumentParser(description='Train Cascade (Mask) R-CNN or Faster / Mask R-CNN FPN '
                                            'on ResNeSt.',
                                formatter_class=cli.HelpFormatter)
    cli.add_config(p, 'detection')
    p.add_argument('--detector', default='cascade_rcnn',
                   help='cascade_rcnn, faster_rcnn, or with masks (--dataset coco or shapes) '
                        'cascade_mask_rcnn or mask_rcnn')
    p.add_argument('--network', '--backbone', dest='network', default='resnest50',
                   help='backbone: one of gluon_resnest.list_models(); under horovodrun write --backbone '
                        '(horovodrun takes --network for its own --network-interface)')
    p.add_argument('--dataset', default='voc', help='voc, coco or shapes')
    p.add_argument('--dataset-root', default=None,
                   help='dataset folder (default: ~/.mxnet/datasets/{voc,coco})')
    p.add_argument('--norm-layer', default=None,
                   help="'syncbn': SyncBatchNorm recipe; 'bn': the same recipe with BatchNorm on "
                        "each device's batch (one device, e.g. CPU); default: frozen BatchNorm")
    p.add_argument('--gpus', default='', help="e.g. '0,1'; empty: CPU")
    p.add_argument('--horovod', action='store_true',
                   help='data parallel over the processes horovodrun starts: each trains on its share of '
                        'the images, on the GPU of its local rank (with --gpus) or the CPU')
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per step over all devices (default: 2 per device); a device with more '
                        'than one image gets images of one orientation (landscape or portrait)')
    _schedule_flags(p)
    _network_flags(p)
    p.add_argument('--val-iou', type=FLOATS, default='0.5,0.7', help='IoU thresholds of the VOC-style mAP')
    p.add_argument('--val-interval', type=int, default=1, help='epochs between evaluations')
    p.add_argument('--eval-only', action='store_true', help='evaluate --resume and exit')
    p.add_argument('--save-prefix', default='', help='checkpoint and log prefix')
    p.add_argument('--log-interval', type=int, default=20, help='batches between log lines')
    p.add_argument('--num-workers', type=int, default=0, help='data loader processes')
    p.add_argument('--seed', type=int, default=233, help='random seed')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def _per_dataset(key):
    """Help text naming GluonCV's per-dataset defaults of ``key``."""
    shown = [DATASET_DEFAULTS[name][key] for name in ('voc', 'coco')]
    shown = [','.join(map(str, v)) if isinstance(v, tuple) else str(v) for v in shown]
    return ' (default: GluonCV\'s for the dataset: VOC and shapes %s, COCO %s)' % tuple(shown)


def _schedule_flags(p):
    default = _per_dataset
    p.add_argument('--epochs', type=int, default=None, help='training epochs' + default('epochs'))
    p.add_argument('--start-epoch', type=int, default=0, help='first epoch (with --resume)')
    p.add_argument('--resume', default='', help='.params checkpoint to start from')
    p.add_argument('--lr', type=float, default=None, help='learning rate of the whole step, taken as '
                   'given as GluonCV does (scale it with --batch-size yourself)' + default('lr'))
    p.add_argument('--lr-mode', default='step', help="'step' (GluonCV's) or 'cosine'")
    p.add_argument('--lr-decay', type=float, default=0.1, help='step decay factor')
    p.add_argument('--lr-decay-epoch', type=INTS, default=None,
                   help='epochs of the step decays' + default('lr_decay_epoch'))
    p.add_argument('--lr-warmup', type=int, default=None,
                   help='warmup iterations, <= 0: none' + default('lr_warmup'))
    p.add_argument('--lr-warmup-factor', type=float, default=1. / 3., help='warmup start factor')
    p.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    p.add_argument('--wd', type=float, default=None, help='weight decay' + default('wd'))
    p.add_argument('--no-wd-norm', action='store_true',
                   help="no weight decay on normalisation layers' gamma and beta (detectron2's "
                        "WEIGHT_DECAY_NORM 0; GluonCV decays them)")


def _network_flags(p):
    p.add_argument('--no-pretrained-base', action='store_true',
                   help='do not load the ImageNet backbone weights')
    p.add_argument('--short', type=INTS, default=None,
                   help="image short side; 'LO,HI': a random short side in [LO, HI] per training image "
                        "(detectron2's 'range' sampling); three or more sides 'S1,S2,S3,...': one of "
                        "them per training image (its 'choice' sampling); the largest at evaluation "
                        "(default: recipe)")
    p.add_argument('--max-size', type=int, default=None, help='image long side limit')
    p.add_argument('--box-head', default='recipe',
                   help="'recipe': the network's own box heads (4 conv + 1 fc with syncbn, else "
                        "2 fc of 1024); '2fc': two fully connected layers of --box-head-units")
    p.add_argument('--box-head-units', type=int, default=1024, help="units of the '2fc' box head")
    p.add_argument('--fpn-channels', type=int, default=None,
                   help="channels of the FPN's outputs and the RPN head (recipe: 256)")
    p.add_argument('--num-sample', type=int, default=None, help='R-CNN samples per image')
    p.add_argument('--rpn-train-post-nms', type=int, default=None, help='proposals kept in training')
    p.add_argument('--rpn-test-post-nms', type=int, default=None, help='proposals kept at test')
    p.add_argument('--rpn-smoothl1-rho', type=float, default=1. / 9.,
                   help='RPN box loss: smooth L1 turning linear at rho (GluonCV\'s); 0: L1 (detectron2\'s)')
    p.add_argument('--rcnn-smoothl1-rho', type=float, default=1.,
                   help='R-CNN box loss: smooth L1 turning linear at rho (GluonCV\'s); 0: L1 (detectron2\'s)')
    p.add_argument('--test-score-thresh', type=float, default=0.,
                   help="evaluation keeps detections scored at least this (GluonCV's 0: all; "
                        "detectron2's 0.05)")
    p.add_argument('--post-nms', type=int, default=-1,
                   help="evaluation keeps at most this many detections per image, the best "
                        "(GluonCV's -1: all; detectron2's 100)")


def parse_args(argv=None):
    """Command-line options (GluonCV's ``train_faster_rcnn.py`` names where they apply).

    ``--config FILE|NAME`` sets the defaults (flags override it); what neither sets takes GluonCV's
    default for the ``--dataset`` (:data:`DATASET_DEFAULTS`). A bad recipe exits with one line.
    """
    parser = _parser()
    args, _ = cli.parse_with_recipe(parser, argv, 'detection', cli.parser_kinds(parser))
    for key, value in DATASET_DEFAULTS.get(args.dataset, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _check(args):
    if args.detector not in DETECTORS:
        raise ValueError('unknown --detector %r; valid: %s' % (args.detector, ', '.join(DETECTORS)))
    model_key(args.network, 'network')
    if args.dataset not in ('voc', 'coco', 'shapes'):
        raise ValueError('unknown --dataset %r; valid: voc, coco, shapes' % (args.dataset,))
    if args.detector in MASK_DETECTORS and args.dataset == 'voc':
        raise ValueError('--detector %s trains masks: it needs instance annotations, --dataset coco '
                         'or shapes' % args.detector)
    if args.norm_layer not in (None, 'syncbn', 'bn'):
        raise ValueError("--norm-layer must be 'syncbn', 'bn' or left out, got %r"
                         % (args.norm_layer,))
    if args.lr_mode not in ('step', 'cosine'):
        raise ValueError("--lr-mode must be 'step' or 'cosine', got %r" % (args.lr_mode,))
    if args.box_head not in ('recipe', '2fc'):
        raise ValueError("--box-head must be 'recipe' or '2fc', got %r" % (args.box_head,))
    for flag in ('box_head_units', 'fpn_channels'):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError('--%s must be positive, got %d'
                             % (flag.replace('_', '-'), getattr(args, flag)))
    _check_recipe_values(args)
    if args.resume and not os.path.isfile(args.resume):
        raise FileNotFoundError('--resume checkpoint %s does not exist' % args.resume)
    if args.eval_only and not args.resume:
        raise ValueError('--eval-only needs --resume CHECKPOINT.params')


def _check_recipe_values(args):
    rules = [
        (args.short is not None and not (args.short and min(args.short) >= 1
                                         and (len(args.short) != 2 or args.short[0] <= args.short[1])),
         "--short takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more sides >= 1, got %s"
         % (args.short,)),
        (min(args.rpn_smoothl1_rho, args.rcnn_smoothl1_rho) < 0,
         '--rpn-smoothl1-rho and --rcnn-smoothl1-rho must be >= 0'),
        (not 0 <= args.test_score_thresh < 1, '--test-score-thresh must be in [0, 1), got %s'
         % args.test_score_thresh),
        (args.post_nms == 0 or args.post_nms < -1, '--post-nms must be -1 (all) or positive, got %d'
         % args.post_nms),
        (args.lr <= 0, '--lr must be positive, got %s' % args.lr),
        (args.epochs < 1, '--epochs must be >= 1, got %d' % args.epochs),
    ]
    for failed, message in rules:
        if failed:
            raise ValueError(message)


def load_datasets(name, root=None):
    """(train, val, classes) of 'voc', 'coco' or 'shapes' under ``root``.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        A training image has no boxes.
    """
    from gluoncv import data as gdata  # pylint: disable=import-outside-toplevel
    from .shapes import ShapesDetection  # pylint: disable=import-outside-toplevel
    root = _dataset_root(name, root)
    if name == 'coco':
        train = gdata.COCODetection(root, splits='instances_train2017', use_crowd=False)
        val = gdata.COCODetection(root, splits='instances_val2017', skip_empty=False)
        return train, val, val.classes
    if name == 'voc':
        train = gdata.VOCDetection(root, splits=[(2007, 'trainval'), (2012, 'trainval')])
        val = gdata.VOCDetection(root, splits=[(2007, 'test')])
    else:
        train = ShapesDetection(root, splits=[(2007, 'train')])
        val = ShapesDetection(root, splits=[(2007, 'val')])
    _check_boxes(train)
    return train, val, val.classes


def _dataset_root(name, root):
    """``root`` (default ``~/.mxnet/datasets/{name}``), which must exist."""
    root = os.path.expanduser(root or os.path.join('~', '.mxnet', 'datasets', name))
    if not os.path.isdir(root):
        raise FileNotFoundError('dataset folder %s does not exist' % root)
    return root


def _check_boxes(dataset):
    """R-CNN training needs a box in every image; VOC-layout labels are cheap to read."""
    for index, (_, image_id) in enumerate(dataset._items):  # pylint: disable=protected-access
        if len(dataset._load_label(index)) == 0:  # pylint: disable=protected-access
            raise ValueError('image %s has no boxes (no <object> in its annotation); remove it from '
                             'the split file or annotate it' % image_id)


def build_detector(args, classes, num_devices, num_workers=1):
    """The network ``args`` describe, with its training-size options.

    ``num_devices`` are this process's; ``--batch-size`` is shared by ``num_workers`` such processes.
    """
    overrides = {key: getattr(args, key) for key in
                 ('max_size', 'num_sample', 'rpn_train_post_nms', 'rpn_test_post_nms')
                 if getattr(args, key) is not None}
    if args.short is not None:  # (LO, HI): a range, three or more: a choice (train_pipeline)
        overrides['short'] = args.short[0] if len(args.short) == 1 else tuple(args.short)
    if args.fpn_channels is not None:
        overrides.update(fpn_channels=args.fpn_channels, rpn_channel=args.fpn_channels)
    if args.rpn_train_post_nms is not None:
        overrides['rpn_train_pre_nms'] = max(3 * args.rpn_train_post_nms, 300)
    if args.rpn_test_post_nms is not None:
        overrides['rpn_test_pre_nms'] = max(3 * args.rpn_test_post_nms, 300)
    if args.box_head == '2fc':
        # Every stage of a cascade gets its own head of the same kind.
        stages = len(STAGE_IOU_THRESHS) if args.detector == 'cascade_rcnn' else 1
        heads = [box_head(False, num_devices, args.box_head_units)
                 for _ in range(stages)]
        overrides['box_features'] = heads[0]
        if len(heads) > 1:
            overrides['stage_box_features'] = heads[1:]
    per_device = args.batch_size // (num_devices * num_workers)
    dataset = args.dataset if args.dataset in ('voc', 'coco') else 'custom'
    return DETECTORS[args.detector](
        args.network.lower(), dataset, classes=classes,
        syncbn={'syncbn': True, 'bn': 'bn'}.get(args.norm_layer, False),
        pretrained_base=not args.no_pretrained_base, num_devices=num_devices,
        per_device_batch_size=per_device, **overrides)


def load_detector(net, path, ctx):
    """Load a checkpoint strictly; a different class count is a one-line ValueError."""
    saved = mx.nd.load(path)
    key = 'class_predictor.weight'
    if key in saved and saved[key].shape[0] != net.num_class + 1:
        raise ValueError('checkpoint %s has %d classes, the network has %d'
                         % (path, saved[key].shape[0] - 1, net.num_class))
    net.load_parameters(path, ctx=ctx)


def _loaders(net, train, val, args, num_devices, dist):
    batch_size, num_workers = args.batch_size // dist.num_workers, args.num_workers
    order, sampler = _train_order(train, batch_size, num_devices, dist, args.seed)
    transform, batchify = train_pipeline(net, num_devices)
    with children_die_with_this_process():  # each loader's multiprocessing.Pool forks its workers here
        train_loader = gluon.data.DataLoader(train.transform(transform), num_workers=num_workers,
                                             batchify_fn=batchify, **order)
    if val is None:
        return train_loader, sampler, None
    return train_loader, sampler, val_loader(net, val, num_devices, num_workers)


def _train_order(train, batch_size, num_devices, dist, seed):
    """DataLoader arguments of the training order and its sampler (None: the loader shuffles).

    With several images per device, each batch holds images of one orientation
    (:class:`AspectRatioBatchSampler`); with several workers, each trains on its own share, the
    same number of batches.
    """
    if batch_size > num_devices:
        sampler = AspectRatioBatchSampler(image_orientations(train), batch_size, dist.num_workers,
                                          dist.rank, seed)
        if len(sampler) < 1:
            raise ValueError('%d training images give no batch of %d images of one orientation on each '
                             'of %d workers' % (len(train), batch_size, dist.num_workers))
        return dict(batch_sampler=sampler), sampler
    if dist.num_workers > 1:
        sampler = ShardedShuffleSampler(len(train), batch_size, dist.num_workers, dist.rank, seed)
        if sampler.batches_per_epoch < 1:
            raise ValueError('%d training images are fewer than one batch of %d on each of %d workers'
                             % (len(train), batch_size, dist.num_workers))
        return dict(batch_size=batch_size, last_batch='discard', sampler=sampler), sampler
    return dict(batch_size=batch_size, shuffle=True, last_batch='rollover'), None


def val_loader(net, val, num_devices, num_workers=0):
    """Held-out loader for :func:`evaluate`: one image per device, resized to the net's test
    short side (the largest of a multi-scale ``net.short``), with its original size."""
    from gluoncv.data.batchify import Append, Tuple  # pylint: disable=import-outside-toplevel
    short = max(net.short) if isinstance(net.short, (tuple, list)) else net.short
    with children_die_with_this_process():  # the loader's multiprocessing.Pool forks its workers here
        return gluon.data.DataLoader(
            val.transform(ValTransform(short, net.max_size)), num_devices, shuffle=False,
            last_batch='keep', num_workers=num_workers,
            batchify_fn=Tuple(*[Append() for _ in range(3)]))


# IoU thresholds of COCO's mAP; the VOC-style mAP is also averaged over them.
COCO_IOUS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))
MAP_UNIT = 'fraction (0-1)'


class ValTransform(object):
    """GluonCV's ``FasterRCNNDefaultValTransform`` that also returns the original (height, width).

    Returns ``(image, label, size)``: the image resized as GluonCV's, the label with boxes in the
    resized image's coordinates (as GluonCV's), and ``size`` (2,) the image's original height and
    width, from which :func:`evaluate` scales each axis back exactly (GluonCV's ``im_scale`` is
    the height's ratio only).
    """

    def __init__(self, short, max_size):
        # pylint: disable=import-outside-toplevel
        from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
        self._transform = FasterRCNNDefaultValTransform(short, max_size)

    def __call__(self, src, label):
        img, bbox, _ = self._transform(src, label)
        return img, bbox, mx.nd.array(src.shape[:2])


class VOCEvaluation(object):
    """VOC07 11-point mAP (GluonCV's ``VOC07MApMetric``), as a fraction (0-1).

    Results ``mAP@{iou}`` for every IoU of ``ious`` and ``mAP@0.5:0.95``, the VOC07 mAP averaged
    over IoU 0.5, 0.55, ..., 0.95 (VOC-style AP at COCO's thresholds; not COCO's 101-point AP).
    """

    def __init__(self, classes, ious):
        from gluoncv.utils.metrics import VOC07MApMetric  # pylint: disable=import-outside-toplevel
        self._ious = [round(float(iou), 2) for iou in ious]
        self._metrics = {iou: VOC07MApMetric(iou_thresh=iou, class_names=classes)
                         for iou in set(self._ious) | set(COCO_IOUS)}

    def reset(self):
        """Forget every image seen."""
        for metric in self._metrics.values():
            metric.reset()

    def update(self, det, gt):
        """One image: ``det`` and ``gt`` as :func:`evaluate` makes them (original coordinates)."""
        for metric in self._metrics.values():
            metric.update(det['boxes'], det['ids'], det['scores'], gt['boxes'], gt['ids'],
                          gt['difficults'])

    def results(self):
        """{name: mAP} over the images seen."""
        values = {iou: float(metric.get()[1][-1]) for iou, metric in self._metrics.items()}
        out = {'mAP@%g' % iou: values[iou] for iou in self._ious}
        out['mAP@0.5:0.95'] = float(np.mean([values[iou] for iou in COCO_IOUS]))
        return out


class COCOEvaluation(object):
    """COCO box (and with ``masks`` mask) mAP with pycocotools, as a fraction (0-1).

    Detections are collected by GluonCV's ``COCODetectionMetric`` (boxes; its score threshold
    0.05) and ``COCOInstanceMetric`` (masks pasted into the original image; threshold 0.001), in
    the order of ``sorted(dataset.coco.getImgIds())``, the loader's. Results
    ``{bbox,segm}_mAP@0.5:0.95`` (COCO's AP, ``COCOeval.stats[0]``), ``@0.5`` and ``@0.75``.
    """

    def __init__(self, dataset, prefix, masks=False):
        # pylint: disable=import-outside-toplevel
        from gluoncv.utils.metrics.coco_detection import COCODetectionMetric
        from gluoncv.utils.metrics.coco_instance import COCOInstanceMetric
        self._coco = dataset.coco
        self._boxes = COCODetectionMetric(dataset, prefix + '_eval', cleanup=True)
        self._masks = COCOInstanceMetric(dataset, prefix + '_eval', cleanup=True) if masks else None

    def reset(self):
        """Forget every image seen."""
        for metric in (self._boxes, self._masks):
            if metric is not None:
                metric.reset()

    def update(self, det, gt):
        """One image (``gt`` is the dataset's own, read by pycocotools)."""
        del gt
        self._boxes.update(det['boxes'], det['ids'], det['scores'])
        if self._masks is not None:
            keep = det['keep']
            self._masks.update(det['boxes'][0][keep], det['ids'][0][keep], det['scores'][0][keep],
                               det['masks'])

    def results(self):
        """{name: mAP} over the images seen."""
        out = _coco_map(self._coco, self._boxes._results, 'bbox')  # pylint: disable=W0212
        if self._masks is not None:
            out.update(_coco_map(self._coco, self._masks.get_result_buffer(), 'segm'))
        return out


def _coco_map(coco, detections, kind):
    """COCO AP at IoU 0.5:0.95, 0.5 and 0.75 (all areas, 100 detections) of ``detections``."""
    from pycocotools.cocoeval import COCOeval  # pylint: disable=import-outside-toplevel
    names = ['%s_mAP@%s' % (kind, iou) for iou in ('0.5:0.95', '0.5', '0.75')]
    if not detections:  # pycocotools cannot load an empty result list
        return dict.fromkeys(names, 0.)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_eval = COCOeval(coco, coco.loadRes(copy.deepcopy(detections)), kind)
        coco_eval.evaluate()
        coco_eval.accumulate()
    # (IoU, recall, class, area range 'all', at most 100 detections); -1 where a class has no truth
    precision = coco_eval.eval['precision'][:, :, :, 0, -1]
    values = [precision, precision[:1], precision[5:6]]
    return {name: float(np.mean(p[p > -1])) if (p > -1).any() else 0.
            for name, p in zip(names, values)}


def _metrics(dataset, val, classes, ious, prefix, masks=False):
    if dataset == 'coco' or hasattr(val, 'coco'):  # COCO annotations (the shapes' for masks)
        return [COCOEvaluation(val, prefix, masks)]
    if masks:
        raise ValueError('mask evaluation needs COCO annotations (--dataset coco or shapes)')
    return [VOCEvaluation(classes, ious)]


def _original_coordinates(net_out, data, label, size):
    """Detections clipped to the network's input (as GluonCV's ``validate``) and detections and
    ground truth scaled, axis by axis, from the resized image to the original one."""
    from gluoncv.nn.bbox import BBoxClipToImage  # pylint: disable=import-outside-toplevel
    height, width = [float(v) for v in size.asnumpy().ravel()]
    scale = mx.nd.array([width / data.shape[3], height / data.shape[2]] * 2,
                        ctx=data.context).reshape((1, 1, 4))
    det = dict(ids=net_out[0], scores=net_out[1],
               boxes=mx.nd.broadcast_mul(BBoxClipToImage()(net_out[2], data), scale))
    gt = dict(boxes=mx.nd.broadcast_mul(label.slice_axis(axis=-1, begin=0, end=4), scale),
              ids=label.slice_axis(axis=-1, begin=4, end=5),
              difficults=label.slice_axis(axis=-1, begin=5, end=6) if label.shape[-1] > 5 else None)
    if len(net_out) > 3:  # masks of (MS, MS) in their boxes -> binary masks of the original image
        from gluoncv.data.transforms.mask import fill  # pylint: disable=import-outside-toplevel
        det = {key: value.asnumpy() for key, value in det.items()}
        det['keep'] = np.where((det['ids'][0].ravel() >= 0) & (det['scores'][0].ravel() >= 1e-3))[0]
        det['masks'] = fill(net_out[3][0].asnumpy()[det['keep']], det['boxes'][0][det['keep']],
                            (int(round(width)), int(round(height))))
    return det, gt


def evaluate(net, loader, metrics, ctx):
    """Run ``net`` over ``loader`` (:func:`val_loader`'s) and return {name: mAP (0-1)}.

    Detections are clipped to the network's input image, then detections and ground truth are
    scaled to the original image, as GluonCV's ``train_faster_rcnn.py`` validates; a mask network's
    masks (a fourth output, as ``MaskRCNN``'s) are pasted into the original image with GluonCV's
    ``fill``, as ``train_mask_rcnn.py`` does. ``metrics``: :class:`VOCEvaluation` /
    :class:`COCOEvaluation` objects.
    """
    for metric in metrics:
        metric.reset()
    net.hybridize(static_alloc=True)  # inference takes other inputs than training
    for batch in loader:
        for data, label, size in zip(*[[x.as_in_context(c) for x, c in zip(part, ctx)]
                                       for part in batch]):
            det, gt = _original_coordinates(net(data), data, label, size)
            for metric in metrics:
                metric.update(det, gt)
    results = {}
    for metric in metrics:
        results.update(metric.results())
    return results


def device_shards(batch, ctx):
    """One batch of the training loader as one list of inputs per device of ``ctx``."""
    return [[(part[k] if isinstance(part, (list, tuple)) else part).as_in_context(c)
             for part in batch] for k, c in enumerate(ctx)]


def _train_epoch(net, trainer, loader, loss_fn, ctx, epoch, args, log, batch_size):
    losses_sum, count, tic = {}, 0, time.time()
    bar = ProgressBar(len(loader), epoch, args.epochs,
                      enabled=not args.no_progress and sys.stderr.isatty())
    net.hybridize(static_alloc=False)
    for step, batch in enumerate(loader):
        shards = device_shards(batch, ctx)
        with autograd.record():
            results = [loss_fn(net, *shard) for shard in shards]
        autograd.backward([r['total'] for r in results])
        trainer.step(batch_size)
        for name in results[0]:
            if name != 'total':
                value = float(np.mean([r[name].asscalar() for r in results]))
                losses_sum[name] = losses_sum.get(name, 0.) + value
        count += 1
        total = sum(v for v in losses_sum.values()) / count
        if not np.isfinite(total):
            raise RuntimeError('training diverged at epoch %d batch %d (loss %s)'
                               % (epoch, step, total))
        bar.update(batch_size * count / (time.time() - tic), total, trainer.learning_rate)
        if (step + 1) % args.log_interval == 0 or step + 1 == len(loader):
            log.info('[Epoch %d][Batch %d/%d] %.1f img/s lr=%.5f %s', epoch, step + 1, len(loader),
                     batch_size * count / (time.time() - tic), trainer.learning_rate,
                     ' '.join('%s=%.4f' % (k, v / count) for k, v in sorted(losses_sum.items())))
    bar.close()


def _check_cpu_regions(net):
    """FPN region pooling on CPU takes a bounded number of regions per call (cpu_region_limit)."""
    # pylint: disable=protected-access
    limit = cpu_region_limit(net.fpn_channels, net._roi_size)
    channels = '%d FPN channels' % net.fpn_channels
    regions = net._num_sample * net._batch_size
    if regions > limit:
        raise ValueError('--num-sample %d x %d images per device = %d regions per pooling call: on CPU '
                         'at most %d with %s; lower --num-sample or --batch-size, or raise '
                         '--fpn-channels' % (net._num_sample, net._batch_size, regions, limit,
                                             channels))
    if net._rpn_test_post_nms > limit:
        raise ValueError('--rpn-test-post-nms %d regions per pooling call: on CPU at most %d with %s'
                         % (net._rpn_test_post_nms, limit, channels))


def _setup(args, log, dist):
    if args.horovod:  # one device per process
        ctx = [mx.gpu(dist.local_rank)] if args.gpus else [mx.cpu()]
    else:
        ctx = contexts(args.gpus)
    devices = len(ctx) * dist.num_workers
    args.batch_size = args.batch_size or 2 * devices
    if args.batch_size % devices:
        raise ValueError('--batch-size %d is not a multiple of the %d devices%s'
                         % (args.batch_size, devices, ' of all workers' if dist.num_workers > 1 else ''))
    if args.detector in MASK_DETECTORS:  # instances: boxes and polygons
        train, val, classes = load_instance_datasets(args.dataset,
                                                     _dataset_root(args.dataset, args.dataset_root))
    else:
        train, val, classes = load_datasets(args.dataset, args.dataset_root)
    net = build_detector(args, classes, len(ctx), dist.num_workers)
    if any(c.device_type == 'cpu' for c in ctx):
        _check_cpu_regions(net)
    if args.resume:
        load_detector(net, args.resume, ctx)
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize(ctx=ctx)
    net.collect_params().reset_ctx(ctx)
    log.info('%s on %s: %d train / %d held-out images, %d classes, devices %s%s', args.detector,
             args.network, len(train), len(val), len(classes), ctx,
             ' on each of %d Horovod workers' % dist.num_workers if args.horovod else '')
    return ctx, train, val, classes, net


def main(args=None):
    """Train (or with ``--eval-only`` evaluate) and return the last evaluation's results (under
    Horovod only rank 0 evaluates; the other ranks return an empty dict)."""
    if args is None or isinstance(args, (list, tuple)):
        args = parse_args(args)
    try:
        _check(args)
        return _run(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        sys.exit('error: %s' % err)


def _run(args):
    prefix = args.save_prefix or '_'.join((args.detector, 'fpn', args.network, args.dataset))
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    dist = setup_distributed('horovod' if args.horovod else 'local')
    log = setup_logger(prefix + '_train.log', is_root=dist.is_root)
    log.info('arguments: %s', vars(args))
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    ctx, train, val, classes, net = _setup(args, log, dist)
    # Rank 0 alone evaluates (and writes checkpoints); the other workers build no held-out loader.
    train_loader, sampler, held_out = _loaders(net, train, val if dist.is_root else None, args,
                                                 len(ctx), dist)
    metrics = _metrics(args.dataset, val, classes, args.val_iou, prefix,
                       masks=hasattr(net, 'mask')) if dist.is_root else None
    tester = DetectionLimits(net, args.test_score_thresh, args.post_nms)
    if args.eval_only:
        if not dist.is_root:
            return {}
        results = evaluate(tester, held_out, metrics, ctx)
        log.info('held-out %s', ' '.join('%s=%.4f' % kv for kv in sorted(results.items())))
        return results
    trainer = _trainer(args, net, len(train_loader), dist)
    results, loss_fn = {}, DetectionLoss(args.rpn_smoothl1_rho, args.rcnn_smoothl1_rho)
    for epoch in range(args.start_epoch, args.epochs):
        tic = time.time()
        if sampler is not None:
            sampler.set_epoch(epoch)
        _train_epoch(net, trainer, train_loader, loss_fn, ctx, epoch, args, log,
                     args.batch_size // dist.num_workers)
        # Each worker's BatchNorm saw only its own images: the checkpoint holds their mean.
        dist.average_arrays([arr for name, param in net.collect_params().items()
                             if name.endswith(BATCHNORM_STATISTICS)
                             for arr in param.list_data()], 'batchnorm_statistics')
        meta = dict(epoch=epoch, detector=args.detector, network=args.network,
                    classes=list(classes), seconds=time.time() - tic)
        if dist.is_root:
            if (epoch + 1) % args.val_interval == 0 or epoch + 1 == args.epochs:
                results = evaluate(tester, held_out, metrics, ctx)
                meta['val'], meta['val_unit'] = results, MAP_UNIT
                log.info('[Epoch %d] held-out %s', epoch,
                         ' '.join('%s=%.4f' % kv for kv in sorted(results.items())))
            save_checkpoint('%s_%04d' % (prefix, epoch), net, trainer, meta)
            log.info('[Epoch %d] %.0f s; saved %s_%04d.params', epoch, time.time() - tic, prefix, epoch)
        dist.barrier()  # the other workers wait for rank 0's evaluation and checkpoint
    return results


def _trainer(args, net, iters, dist):
    """SGD over the trained parameters with the warm-up and decay schedule (``--lr`` as given)."""
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    if args.no_wd_norm:
        apply_no_wd(net, biases=False)
    schedule = build_lr_scheduler(
        args.lr_mode, args.lr, args.epochs, iters,
        warmup_epochs=min(max(args.lr_warmup, 0) / float(iters), args.epochs - 1e-3),
        warmup_lr=args.lr * args.lr_warmup_factor, lr_decay=args.lr_decay,
        lr_decay_epoch=list(args.lr_decay_epoch))
    options = {'wd': args.wd, 'momentum': args.momentum, 'lr_scheduler': schedule}
    if args.horovod:
        trainer = dist.make_trainer(net, 'sgd', options, params=net.collect_train_params())
    else:
        trainer = gluon.Trainer(net.collect_train_params(), 'sgd', options)
    states = os.path.splitext(args.resume)[0] + '.states' if args.resume else ''
    if os.path.isfile(states):  # the optimizer's update count carries the schedule on
        trainer.load_states(states)
    return trainer

if __name__ == '__main__':
    main()
