"""Train and evaluate Faster, Mask, Cascade and Cascade Mask R-CNN with FPN on ResNeSt, on the training engine.

``python -m gluon_resnest.detection.train --network resnest50 --dataset coco --norm-layer syncbn
--gpus 0,1,2,3 ...`` takes the flag names of GluonCV's ``train_faster_rcnn.py`` where they apply (its
per-dataset defaults too, and ``--lr`` as given), and ``--detector cascade_rcnn|faster_rcnn`` or,
with masks (``gluon_resnest.detection.masks``), ``cascade_mask_rcnn|mask_rcnn``.
``--config FILE|NAME`` reads a recipe (``gluon_resnest/recipes/detection/``) whose values are the
defaults that flags override. Datasets: ``voc`` (VOC07+12 trainval, VOC07 test, VOC07
mAP), ``coco`` (train2017 / val2017, COCO mAP) and ``shapes`` (the offline dataset of
``python -m gluon_resnest.detection.shapes``; VOC07 mAP). Held-out mAP is reported at every IoU of
``--val-iou`` (VOC style; default 0.5 and 0.7).

The command is parse -> :class:`~gluon_resnest.config.DetectionConfig` -> :func:`fit` (or :func:`evaluate`
with ``--eval-only``) -> report. Training runs on :func:`gluon_resnest.train.loop.train` with
:class:`DetectionTask`, as classification does: checkpoints ``{save-prefix}-{epochs done:04d}`` written
atomically and SHA-1 checked, ``--resume`` from the latest complete one, a checkpoint on Ctrl-C, the watchdog,
``TrainingDiverged``, per-step seeding, ``--kv-store`` (Horovod too) and BatchNorm statistics averaged over
workers.
"""
import argparse
import contextlib
import copy
import dataclasses
import io
import os
import sys

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .. import cli
from ..config import (DETECTION_DATASET_DEFAULTS, DetectionConfig, KV_STORES, number_list_type)
from ..procs import children_die_with_this_process
from ..results import DetectionResult
from ..train.build import resume_source, resume_states, worker_contexts
from ..train.data import ShardedShuffleSampler
from ..train.distributed import setup_distributed
from ..train.loop import Run, Task, seed_everything, validation_network
from ..train.loop import train as run_training
from ..train.monitor import History, setup_logger
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

__all__ = ['parse_args', 'main', 'fit', 'evaluate', 'DetectionConfig', 'DetectionResult', 'DetectionTask',
           'build_detector', 'load_datasets', 'evaluate_network', 'val_loader', 'ValTransform',
           'VOCEvaluation', 'COCOEvaluation', 'load_detector', 'device_shards', 'DATASET_DEFAULTS']

DETECTORS = dict({'cascade_rcnn': cascade_rcnn_fpn, 'faster_rcnn': faster_rcnn_fpn}, **MASK_DETECTORS)
DATASET_DEFAULTS = DETECTION_DATASET_DEFAULTS
INTS, FLOATS = number_list_type('ints'), number_list_type('floats')


def _parser():
    p = cli.ArgumentParser(description='Train Cascade (Mask) R-CNN or Faster / Mask R-CNN FPN on ResNeSt.',
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
    # Before --kv-store: recipes take the kind of the last option of a name (cli.parser_kinds).
    p.add_argument('--horovod', dest='kv_store', action='store_const', const='horovod',
                   default=argparse.SUPPRESS, help="GluonCV's spelling of --kv-store horovod")
    p.add_argument('--kv-store', default='device',
                   help='gradient aggregation, as train_imagenet.py: %s; horovod: data parallel over the '
                        'processes horovodrun starts, each on its share of the images, on the GPU of its '
                        'local rank (with --gpus) or the CPU' % ', '.join(KV_STORES))
    p.add_argument('--step-timeout', type=float, default=30.0,
                   help='dist_sync/dist_device_sync: stop a worker (exit status 124) after this many seconds '
                        'without progress, as train_imagenet.py; 0: never')
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per step over all devices (default: 2 per device); a device with more '
                        'than one image gets images of one orientation (landscape or portrait)')
    _schedule_flags(p)
    _network_flags(p)
    p.add_argument('--val-iou', type=FLOATS, default='0.5,0.7', help='IoU thresholds of the VOC-style mAP')
    p.add_argument('--val-interval', type=int, default=1, help='epochs between evaluations')
    p.add_argument('--eval-only', action='store_true',
                   help='evaluate the --resume checkpoint (or --resume-params) and exit')
    p.add_argument('--save-prefix', default='',
                   help='checkpoints {prefix}-{epochs done:04d}.params/.states/.json, {prefix}_train.log and '
                        '{prefix}_history.json (default: {detector}_fpn_{network}_{dataset})')
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
    p.add_argument('--resume', action='store_true',
                   help='continue from the latest complete checkpoint of --save-prefix (weights, optimizer '
                        'state and position, even mid-epoch); without one, start from scratch')
    p.add_argument('--resume-params', default='', help='.params file to start from (weights only)')
    p.add_argument('--resume-epoch', '--start-epoch', dest='resume_epoch', type=int, default=0,
                   help='epochs --resume-params has done: the schedule continues from there')
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
    """The :class:`~gluon_resnest.config.DetectionConfig` of a command line (GluonCV's
    ``train_faster_rcnn.py`` names where they apply).

    ``--config FILE|NAME`` sets the defaults (flags override it); what neither sets takes GluonCV's
    default for the ``--dataset`` (:data:`DATASET_DEFAULTS`). Bad usage exits with one line naming the
    flag (and the recipe file if the value came from it), status 2.
    """
    parser = _parser()
    args, recipe = cli.parse_with_recipe(parser, argv, 'detection', cli.parser_kinds(parser))
    return cli.build_config(parser, DetectionConfig, args, recipe)


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


def _datasets(config):
    """(train, val, classes) of ``config``: instances (boxes and polygons) for a mask detector."""
    if config.detector in MASK_DETECTORS:
        return load_instance_datasets(config.dataset, _dataset_root(config.dataset, config.dataset_root))
    return load_datasets(config.dataset, config.dataset_root)


def _check_boxes(dataset):
    """R-CNN training needs a box in every image; VOC-layout labels are cheap to read."""
    for index, (_, image_id) in enumerate(dataset._items):  # pylint: disable=protected-access
        if len(dataset._load_label(index)) == 0:  # pylint: disable=protected-access
            raise ValueError('image %s has no boxes (no <object> in its annotation); remove it from '
                             'the split file or annotate it' % image_id)


def build_detector(args, classes, num_devices, num_workers=1):
    """The network a :class:`~gluon_resnest.config.DetectionConfig` ``args`` describes, with its
    training-size options.

    ``num_devices`` are this process's; ``args.batch_size`` (not None) is shared by ``num_workers`` such
    processes.
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
    # The FPN's normalisation layers are symbols named by MXNet's counters: a fresh count names them as a
    # fresh process does, so a checkpoint loads into a network built later in the same process.
    with mx.name.NameManager():
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


def _loaders(net, train_set, val, config, ctx, dist):
    """(training loader, its sampler, held-out loader or None without ``val``)."""
    batch_size = config.batch_size // dist.num_workers
    order, sampler = _train_order(train_set, batch_size, len(ctx), dist, config.seed)
    transform, batchify = train_pipeline(net, len(ctx))
    with children_die_with_this_process():  # each loader's multiprocessing.Pool forks its workers here
        loader = gluon.data.DataLoader(train_set.transform(transform), num_workers=config.num_workers,
                                          batchify_fn=batchify, **order)
    loader = _PositionSeededLoader(loader, sampler, config.seed, dist.rank)
    if val is None:
        return loader, sampler, None
    return loader, sampler, val_loader(net, val, len(ctx), config.num_workers)


class _PositionSeededLoader(object):
    """Seeds NumPy's and Python's generators from the batch's position before each batch is made.

    GluonCV's training transform draws its flips and random short sides from them: a batch then gets the
    same augmentation however the run got there (resumed, or after a validation). With loader processes
    (``--num-workers`` > 0) the transforms draw from the processes' own generators instead.
    """

    def __init__(self, loader, sampler, seed, rank):
        self._loader, self._sampler, self._seed, self._rank = loader, sampler, seed, rank

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        epoch, batch = self._sampler.epoch, self._sampler.start_batch
        batches = iter(self._loader)
        while True:
            seed_everything(self._seed, epoch, batch, self._rank, mxnet=False)
            try:
                item = next(batches)
            except StopIteration:
                return
            yield item
            batch += 1


def _train_order(train_set, batch_size, num_devices, dist, seed):
    """DataLoader arguments of the training order and its resumable sampler.

    With several images per device, each batch holds images of one orientation
    (:class:`AspectRatioBatchSampler`); otherwise a seeded shuffle (:class:`ShardedShuffleSampler`).
    With several workers, each trains on its own share, the same number of batches.
    """
    if batch_size > num_devices:
        sampler = AspectRatioBatchSampler(image_orientations(train_set), batch_size, dist.num_workers,
                                          dist.rank, seed)
        if len(sampler) < 1:
            raise ValueError('%d training images give no batch of %d images of one orientation on each '
                             'of %d workers' % (len(train_set), batch_size, dist.num_workers))
        return dict(batch_sampler=sampler), sampler
    sampler = ShardedShuffleSampler(len(train_set), batch_size, dist.num_workers, dist.rank, seed)
    if sampler.batches_per_epoch < 1:
        raise ValueError('%d training images are fewer than one batch of %d on each of %d workers'
                         % (len(train_set), batch_size, dist.num_workers))
    return dict(batch_size=batch_size, last_batch='discard', sampler=sampler), sampler


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
# Names of the held-out results (VOC-style; COCO box and mask).
MAP_KEYS = ('mAP@', 'bbox_mAP@', 'segm_mAP@')


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
        raise ValueError('mask evaluation needs COCO annotations (--dataset coco)')
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


def evaluate_network(net, loader, metrics, ctx):
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


class DetectionTask(Task):
    """R-CNN training on the engine: the step computes ``loss_fn`` per device; the end of an epoch
    evaluates ``tester`` on rank 0 (the other workers wait) with ``metrics`` (mAP as fractions)."""

    def __init__(self, loss_fn, tester=None, metrics=None):
        self.loss_fn, self.tester, self.metrics = loss_fn, tester, metrics
        self.sums = {}

    def split_batch(self, item):
        """A batch of GluonCV's R-CNN batchify: (images per device, the targets)."""
        return item[0], item[1:]

    def step(self, run, epoch, data, label):
        """Forward/backward on every device and one optimizer step; returns the mean total loss."""
        shards = device_shards((data,) + tuple(label), run.ctx)
        with autograd.record():
            results = [self.loss_fn(run.net, *shard) for shard in shards]
        autograd.backward([r['total'] for r in results])
        run.trainer.step(sum(shard[0].shape[0] for shard in shards) * run.dist.step_scale)
        for name in results[0]:
            if name != 'total':  # the step's loss
                self.sums[name] = self.sums.get(name, 0.) + float(np.mean([r[name].asscalar() for r in results]))
        return float(np.mean([r['total'].asscalar() for r in results]))

    def start_epoch(self, run):
        """Zero the loss sums."""
        self.sums = {}

    def metric_counts(self, run):
        """The running loss sums."""
        return sorted(self.sums.items())

    def set_metric_counts(self, run, counts):
        """Restore :meth:`metric_counts`."""
        self.sums = dict(counts)

    def end_epoch(self, run, epoch, loss, speed, validate):
        """Mean losses of the epoch and, if ``validate``, the held-out mAP (also put in the checkpoints)."""
        steps = max(run.sampler.batches_per_epoch, 1)
        record = {'epoch': epoch, 'loss': loss, 'lr': float(run.trainer.learning_rate),
                  'images_per_sec': speed}
        record.update({name: value / steps for name, value in sorted(self.sums.items())})
        if validate:
            if run.dist.is_root:
                validation_network(run)  # self.tester wraps run.eval_net, now holding the trained weights
                results = evaluate_network(self.tester, run.watchdog.iterate(run.val_loader, 'validation batch'),
                                           self.metrics, run.ctx)
                record.update(results)
                run.checkpoint_meta.update(val=results, val_unit=MAP_UNIT)
            run.dist.barrier()  # the other workers wait for rank 0's evaluation
        run.log.info('[Epoch %d] %s', epoch + 1, ' '.join(
            '%s=%.4f' % (k, v) for k, v in record.items() if k not in ('epoch', 'images_per_sec')))
        return record


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


def _checkpoint_place(config):
    """(folder, name) of the run's checkpoints ``{save_prefix}-NNNN``."""
    prefix = os.path.abspath(os.path.expanduser(config.save_prefix))
    return os.path.dirname(prefix), os.path.basename(prefix)


def _start(config, need_checkpoint=False):
    """(config with the batch size resolved, dist, ctx, log, checkpoint source or None)."""
    if not isinstance(config, DetectionConfig):
        raise TypeError('expected a DetectionConfig, got %s' % type(config).__name__)
    dist = setup_distributed(config.kv_store)
    save_dir, name = _checkpoint_place(config)
    if dist.is_root:
        os.makedirs(save_dir, exist_ok=True)
    log = setup_logger(os.path.join(save_dir, name + '_train.log'), is_root=dist.is_root)
    ctx = worker_contexts(config.gpus, dist)
    devices = len(ctx) * dist.num_workers
    batch_size = config.batch_size or 2 * devices
    if batch_size % devices:
        raise ValueError('--batch-size %d is not a multiple of the %d devices%s'
                         % (batch_size, devices, ' of all workers' if dist.num_workers > 1 else ''))
    config = dataclasses.replace(config, batch_size=batch_size)
    log.info('config: %s', dataclasses.asdict(config))
    source = resume_source(config, save_dir, name, log, dist.is_root)
    if need_checkpoint and not (source and source['params']):
        raise FileNotFoundError('no complete checkpoint %s-NNNN.json in %s to evaluate' % (name, save_dir))
    return config, dist, ctx, log, source


def _network(config, classes, ctx, dist, source):
    """The detector, initialised alike on every worker (or loaded from ``source``'s weights)."""
    net = build_detector(config, classes, len(ctx), dist.num_workers)
    if any(c.device_type == 'cpu' for c in ctx):
        _check_cpu_regions(net)
    seed_everything(config.seed, 0, 0, 0)  # the same initial weights on every rank and every run
    if source and source['params']:
        load_detector(net, source['params'], ctx)
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize(ctx=ctx)
    net.collect_params().reset_ctx(ctx)
    return net


def _trainer(config, net, iters, dist):
    """SGD over the trained parameters with the warm-up and decay schedule (``--lr`` as given);
    returns (trainer, schedule). Only trained parameters have a gradient: the others (BatchNorm
    statistics, a frozen backbone) are averaged and broadcast over workers after each epoch."""
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    if config.no_wd_norm:
        apply_no_wd(net, biases=False)
    schedule = build_lr_scheduler(
        config.lr_mode, config.lr, config.epochs, iters,
        warmup_epochs=min(max(config.lr_warmup, 0) / float(iters), config.epochs - 1e-3),
        warmup_lr=config.lr * config.lr_warmup_factor, lr_decay=config.lr_decay,
        lr_decay_epoch=list(config.lr_decay_epoch))
    options = {'wd': config.wd, 'momentum': config.momentum, 'lr_scheduler': schedule}
    return dist.make_trainer(net, 'sgd', options, params=net.collect_train_params()), schedule


def build_run(config):
    """The engine's :class:`~gluon_resnest.train.loop.Run` of a detection training ``config``."""
    config, dist, ctx, log, source = _start(config)
    train_set, val, classes = _datasets(config)
    save_dir, name = _checkpoint_place(config)
    run = Run(config=config, dist=dist, ctx=ctx, log=log, save_dir=save_dir, name=name, classes=list(classes),
              net=_network(config, classes, ctx, dist, source))
    run.checkpoint_meta = {'model': name, 'detector': config.detector, 'network': config.network,
                           'classes': list(classes)}
    run.net.hybridize(static_alloc=False)  # training's graph; evaluation runs a copy (loop.validation_network)
    run.eval_net = _network(config, classes, ctx, dist, None) if dist.is_root else None
    # Rank 0 alone evaluates; the other workers build no held-out loader (an empty one: they wait).
    run.loader, run.sampler, held_out = _loaders(run.net, train_set, val if dist.is_root else None, config,
                                                 ctx, dist)
    run.val_loader = held_out if dist.is_root else ()
    metrics = _metrics(config.dataset, val, classes, config.val_iou, os.path.join(save_dir, name),
                       masks=hasattr(run.net, 'mask')) if dist.is_root else None
    run.task = DetectionTask(DetectionLoss(config.rpn_smoothl1_rho, config.rcnn_smoothl1_rho),
                             DetectionLimits(run.eval_net, config.test_score_thresh, config.post_nms)
                             if dist.is_root else None, metrics)
    run.trainer, run.scheduler = _trainer(config, run.net, run.sampler.batches_per_epoch, dist)
    if source:
        resume_states(run, source)
    run.history = History(save_dir, enabled=dist.is_root, name=name + '_history', plot=False)
    run.history.load(run.start_epoch)
    log.info('%s on %s: %d train / %d held-out images, %d classes, devices %s%s, %d batches per epoch',
             config.detector, config.network, len(train_set), len(val), len(classes), ctx,
             ' on each of %d workers' % dist.num_workers if dist.num_workers > 1 else '',
             run.sampler.batches_per_epoch)
    return run


def _result(run):
    evaluated = [r for r in run.history.records if any(k.startswith(MAP_KEYS) for k in r)]
    per_epoch = [dict({k: v for k, v in r.items() if k.startswith(MAP_KEYS)}, epoch=r['epoch'] + 1)
                 for r in evaluated]
    final = {k: v for k, v in per_epoch[-1].items() if k != 'epoch'} if per_epoch else {}
    return DetectionResult(final, per_epoch, run.last_checkpoint, run.config.epochs)


def fit(config):
    """Train as ``config`` says (continuing the latest checkpoint with ``config.resume``).

    Parameters
    ----------
    config : DetectionConfig

    Returns
    -------
    DetectionResult

    Raises
    ------
    ValueError, FileNotFoundError, ImportError, TrainingDiverged, TrainingInterrupted
        As :func:`gluon_resnest.train.fit` raises them (one line each; a checkpoint stays).
    """
    if config.eval_only:
        return evaluate(config)
    return _result(run_training(build_run(config)))


def evaluate(config):
    """The held-out mAP of the checkpoint ``config`` names: the latest complete one of ``save_prefix``
    (``resume``) or ``resume_params``, with the network, data and evaluation settings of ``config``.

    Returns
    -------
    DetectionResult
        ``mean_ap`` (empty on ranks other than 0), ``checkpoint`` (the ``.json`` record, or None for a
        bare ``.params`` file) and ``epochs`` (its epochs done).
    """
    config, dist, ctx, log, source = _start(config, need_checkpoint=True)
    if not dist.is_root:
        return DetectionResult(epochs=source['epoch'])
    _, val, classes = _datasets(config)
    net = _network(config, classes, ctx, dist, source)
    save_dir, name = _checkpoint_place(config)
    metrics = _metrics(config.dataset, val, classes, config.val_iou, os.path.join(save_dir, name + '_eval'),
                       masks=hasattr(net, 'mask'))
    results = evaluate_network(DetectionLimits(net, config.test_score_thresh, config.post_nms),
                               val_loader(net, val, len(ctx), config.num_workers), metrics, ctx)
    log.info('held-out %s (%s)', ' '.join('%s=%.4f' % kv for kv in sorted(results.items())),
             source['json'] or source['params'])
    return DetectionResult(results, [dict(results, epoch=source['epoch'])], source['json'], source['epoch'])


def _report(result):
    # The printed report shows percent, as every command's (the records and logs keep fractions).
    maps = ' '.join('%s=%.2f%%' % (key, 100 * value) for key, value in sorted(result.mean_ap.items()))
    print('held-out %s after %d epochs; checkpoint %s' % (maps or '(rank 0 evaluates)', result.epochs,
                                                          result.checkpoint or 'none'))


def _run(argv):
    _report(fit(parse_args(argv)))


def main(argv=None):
    """``gluon-resnest-train-detection``: parse -> :class:`DetectionConfig` -> :func:`fit` /
    :func:`evaluate` -> report; returns the exit status (:func:`gluon_resnest.cli.run_command`: 0 done,
    2 bad usage, 1 a failed run such as divergence, 130 Ctrl-C after writing a checkpoint; errors are
    one line on stderr).
    """
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
