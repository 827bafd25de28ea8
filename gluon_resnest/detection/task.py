"""Detection as a task of the training engine: Cascade R-CNN (or Faster R-CNN, with masks Cascade Mask R-CNN
or Mask R-CNN) with FPN on ResNeSt.

:class:`DetectionTask` builds the detector, its loaders and evaluators and the SGD settings; training runs on
:func:`gluon_resnest.engine.loop.train`, as classification does: checkpoints ``{save-prefix}-{epochs
done:04d}`` written atomically and SHA-1 checked, ``--resume`` from the latest complete one, a checkpoint on
Ctrl-C, the watchdog, ``TrainingDiverged``, per-step seeding, ``--kv-store`` (Horovod too) and BatchNorm
statistics averaged over workers. :func:`fit` trains, :func:`evaluate` measures a checkpoint.
"""
import dataclasses
import os

import mxnet as mx
import numpy as np
from mxnet import autograd

from .config import DetectionConfig
from ..engine.assemble import assemble, start
from ..engine.assemble import fit as run_task
from ..engine.loop import Task, seed_everything, validation_batches, validation_network
from ..engine.monitor import History
from ..engine.schedules import apply_no_wd, build_lr_scheduler
from ..results import DetectionResult
from .class_ap import collect_class_aps, format_class_aps
from .data import device_shards, load_datasets, train_loaders, val_loader
from .datasets import check_classes, log_skipped
from .evaluation import MAP_KEYS, MAP_UNIT, evaluate_network, evaluators
from .fpn import box_head
from .postprocess import DetectionLimits
from .loss import DetectionLoss
from .pooling import cpu_region_limit
from .registry import detector
from .transfer import detector_source, load_weights, start_from_detector

__all__ = ['DetectionTask', 'build_detector', 'load_detector', 'build_run', 'fit', 'evaluate']


def build_detector(args, classes, num_devices, num_workers=1):
    """The network a :class:`~gluon_resnest.detection.config.DetectionConfig` ``args`` describes, with its
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
    spec = detector(args.detector)
    per_device = args.batch_size // (num_devices * num_workers)
    dataset = args.dataset if args.dataset in ('voc', 'coco') else 'custom'
    # MXNet's counters name the FPN's normalisation symbols and the 2-fc heads' layers (dense0, ...): a fresh
    # count names them as a fresh process does, so that a checkpoint loads into a network built later in
    # the same process, and its trainer states too (gluon.Trainer orders parameters by name: dense10 sorts
    # before dense9).
    with mx.name.NameManager():
        if args.box_head == '2fc':  # every stage (of a cascade) its own head of the same kind
            heads = [box_head(False, num_devices, args.box_head_units) for _ in range(spec.stages)]
            overrides['box_features'] = heads[0]
            if spec.cascade:
                overrides['stage_box_features'] = heads[1:]
        return spec.builder(
            args.network.lower(), dataset, classes=classes,
            syncbn={'syncbn': True, 'bn': 'bn'}.get(args.norm_layer, False),
            pretrained_base=not args.no_pretrained_base, num_devices=num_devices,
            per_device_batch_size=per_device, **overrides)


def load_detector(net, path, ctx):
    """Load a checkpoint strictly (less the training-target constants it may hold:
    :func:`~gluon_resnest.detection.transfer.load_weights`); a different class count is a one-line
    ValueError."""
    saved = mx.nd.load(path)
    key = 'class_predictor.weight'
    if key in saved and saved[key].shape[0] != net.num_class + 1:
        raise ValueError('checkpoint %s has %d classes, the network has %d'
                         % (path, saved[key].shape[0] - 1, net.num_class))
    load_weights(net, path, ctx, 'checkpoint %s' % path)


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


def _network(config, classes, ctx, dist, source, start_from=None):
    """The detector, initialised alike on every worker (or loaded from ``source``'s weights, or started
    from ``start_from``, the (.params, classes) of ``--pretrained-detector``, when not resuming)."""
    if start_from and not (source and source['params']):
        seed_everything(config.seed, 0, 0, 0)  # the new class rows alike on every rank and every run
        net, _ = start_from_detector(lambda names: build_detector(config, names, len(ctx), dist.num_workers),
                                     start_from[0], start_from[1], list(classes), ctx)
    else:
        net = build_detector(config, classes, len(ctx), dist.num_workers)
        seed_everything(config.seed, 0, 0, 0)  # the same initial weights on every rank and every run
        if source and source['params']:
            load_detector(net, source['params'], ctx)
    if any(c.device_type == 'cpu' for c in ctx):
        _check_cpu_regions(net)
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize(ctx=ctx)
    net.collect_params().reset_ctx(ctx)
    return net


class DetectionTask(Task):
    """R-CNN training on the engine: the step computes the detection loss per device; the end of an epoch
    evaluates the evaluation copy on rank 0 (the other workers wait) with the held-out evaluators (mAP as
    fractions). Its state: the data sets, the loss, the tester and evaluators (set by :meth:`attach`) and the
    epoch's running loss sums."""

    def __init__(self):
        self.train_set = self.val_set = self.start_from = None
        self.loss_fn = self.tester = self.metrics = None
        self.sums, self.class_aps, self.skipped = {}, {}, 0

    # ---- assembling a run ----

    def check(self, config):
        """A :class:`~gluon_resnest.detection.config.DetectionConfig`."""
        if not isinstance(config, DetectionConfig):
            raise TypeError('expected a DetectionConfig, got %s' % type(config).__name__)
        return config

    def place(self, config):
        """Checkpoints ``{save_prefix}-NNNN``, the log ``{save_prefix}_train.log``."""
        save_dir, name = _checkpoint_place(config)
        return save_dir, name, os.path.join(save_dir, name + '_train.log')

    def resolve(self, config, num_devices, num_workers):
        """The batch size: 2 per device by default, a multiple of the devices of all workers."""
        batch_size = config.batch_size or 2 * num_devices
        if batch_size % num_devices:
            raise ValueError('--batch-size %d is not a multiple of the %d devices%s'
                             % (batch_size, num_devices, ' of all workers' if num_workers > 1 else ''))
        return dataclasses.replace(config, batch_size=batch_size)

    def prepare(self, run, source):
        """The data sets (instances for a mask detector), classes and checkpoint meta."""
        config = run.config
        run.log.info('config: %s', dataclasses.asdict(config))
        self.start_from = detector_source(config.pretrained_detector, config.pretrained_classes) \
            if config.pretrained_detector else None
        self.train_set, self.val_set, classes = load_datasets(config)
        self.skipped = log_skipped(run.log, self.train_set, self.val_set)
        check_classes(source, classes)
        if self.start_from:
            params, old_classes = self.start_from
            run.log.info('starting from %s (%d classes); rows kept for %s', params, len(old_classes),
                         ', '.join(c for c in classes if c in old_classes) or 'no class')
        run.classes = list(classes)
        run.checkpoint_meta = {'model': run.name, 'detector': config.detector, 'network': config.network,
                               'classes': list(classes)}

    def network(self, run, source=None, evaluation=False):
        """The detector (with ``source``'s weights); the training one hybridized for training's graph."""
        net = _network(run.config, run.classes, run.ctx, run.dist, source,
                       None if evaluation else self.start_from)
        if not evaluation:
            net.hybridize(static_alloc=False)  # training's graph; evaluation runs a copy
        return net

    def validates(self, run):
        """Rank 0 alone evaluates."""
        return run.dist.is_root

    def attach(self, run):
        """The loaders (the other workers build no held-out loader: an empty one, they wait), the loss, and
        on rank 0 the tester and evaluators."""
        config, root = run.config, run.dist.is_root
        run.loader, run.sampler, held_out = train_loaders(run.net, self.train_set, self.val_set if root else None,
                                                          config, run.ctx, run.dist)
        run.val_loader = held_out if root else ()
        self.metrics = evaluators(config.dataset, self.val_set, run.classes, config.val_iou,
                                  os.path.join(run.save_dir, run.name), masks=detector(config.detector).masks) \
            if root else None
        self.loss_fn = DetectionLoss(config.rpn_smoothl1_rho, config.rcnn_smoothl1_rho,
                                     masks=detector(config.detector).masks)
        self.tester = DetectionLimits(run.eval_net, config.test_score_thresh, config.post_nms) if root else None

    def optimizer(self, run):
        """SGD over the trained parameters with the warm-up and decay schedule (``--lr`` as given). Only
        trained parameters have a gradient: the others (BatchNorm statistics, a frozen backbone) are
        averaged and broadcast over workers after each epoch."""
        config, net, iters = run.config, run.net, run.sampler.batches_per_epoch
        net.collect_params().setattr('grad_req', 'null')
        net.collect_train_params().setattr('grad_req', 'write')
        if config.no_wd_norm:
            apply_no_wd(net, biases=False)
        schedule = build_lr_scheduler(
            config.lr_mode, config.lr, config.epochs, iters,
            warmup_epochs=min(max(config.lr_warmup, 0) / float(iters), config.epochs - 1e-3),
            warmup_lr=config.lr * config.lr_warmup_factor, lr_decay=config.lr_decay,
            lr_decay_epoch=list(config.lr_decay_epoch))
        options = {'wd': config.wd, 'momentum': config.momentum}
        return 'sgd', options, schedule, net.collect_train_params()

    def history(self, run):
        """``{save_prefix}_history.json``, no curve."""
        return History(run.save_dir, enabled=run.dist.is_root, name=run.name + '_history', plot=False)

    def describe(self, run):
        """Detector, images, classes, devices and batches per epoch."""
        config, dist = run.config, run.dist
        run.log.info('%s on %s: %d train / %d held-out images, %d classes, devices %s%s, %d batches per epoch',
                     config.detector, config.network, len(self.train_set), len(self.val_set), len(run.classes),
                     run.ctx, ' on each of %d workers' % dist.num_workers if dist.num_workers > 1 else '',
                     run.sampler.batches_per_epoch)

    def result(self, run):
        """The :class:`~gluon_resnest.results.DetectionResult` of the finished run."""
        evaluated = [r for r in run.history.records if any(k.startswith(MAP_KEYS) for k in r)]
        per_epoch = [dict({k: v for k, v in r.items() if k.startswith(MAP_KEYS)}, epoch=r['epoch'] + 1)
                     for r in evaluated]
        final = {k: v for k, v in per_epoch[-1].items() if k != 'epoch'} if per_epoch else {}
        return DetectionResult(final, per_epoch, run.last_checkpoint, run.config.epochs, self.class_aps,
                               self.skipped)

    # ---- training ----

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
                results = evaluate_network(self.tester, validation_batches(run),
                                           self.metrics, run.ctx)
                record.update(results)
                self.class_aps = collect_class_aps(self.metrics)
                run.checkpoint_meta.update(val=results, val_unit=MAP_UNIT, val_per_class=self.class_aps)
            run.dist.barrier()  # the other workers wait for rank 0's evaluation
        run.log.info('[Epoch %d] %s', epoch + 1, ' '.join(
            '%s=%.4f' % (k, v) for k, v in record.items() if k not in ('epoch', 'images_per_sec')))
        for line in format_class_aps(self.class_aps if validate else {}):
            run.log.info('[Epoch %d] %s', epoch + 1, line)
        return record


def build_run(config):
    """The engine's :class:`~gluon_resnest.engine.loop.Run` of a detection training ``config``."""
    return assemble(config, DetectionTask())


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
        As :func:`gluon_resnest.classification.task.fit` raises them (one line each; a checkpoint stays).
    """
    if config.eval_only:
        return evaluate(config)
    return run_task(config, DetectionTask())


def evaluate(config):
    """The held-out mAP of the checkpoint ``config`` names: the latest complete one of ``save_prefix``
    (``resume``) or ``resume_params``, with the network, data and evaluation settings of ``config``.

    Returns
    -------
    DetectionResult
        ``mean_ap`` (empty on ranks other than 0), ``checkpoint`` (the ``.json`` record, or None for a
        bare ``.params`` file) and ``epochs`` (its epochs done).
    """
    task = DetectionTask()
    run, source = start(config, task, need_checkpoint=True)
    if not run.dist.is_root:
        return DetectionResult(epochs=source['epoch'])
    config = run.config
    run.log.info('config: %s', dataclasses.asdict(config))
    train_set, val, classes = load_datasets(config)
    skipped = log_skipped(run.log, train_set, val)
    check_classes(source, classes)
    net = _network(config, classes, run.ctx, run.dist, source)
    metrics = evaluators(config.dataset, val, classes, config.val_iou,
                         os.path.join(run.save_dir, run.name + '_eval'), masks=detector(config.detector).masks)
    results = evaluate_network(DetectionLimits(net, config.test_score_thresh, config.post_nms),
                               val_loader(net, val, len(run.ctx), config.num_workers), metrics, run.ctx)
    run.log.info('held-out %s (%s)', ' '.join('%s=%.4f' % kv for kv in sorted(results.items())),
                 source['json'] or source['params'])
    return DetectionResult(results, [dict(results, epoch=source['epoch'])], source['json'], source['epoch'],
                           collect_class_aps(metrics), skipped)
