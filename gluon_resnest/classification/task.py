"""Image classification as a task of the training engine: the ImageNet recipe's data, network, optimizer,
targets (mixup, label smoothing), DropBlock ramp and top-1/top-5 validation.

Each recipe piece is a small function of plain arguments so a test can check it against hand-computed
numbers; :class:`ClassificationTask` puts them on the engine (:mod:`gluon_resnest.engine`).
"""
import dataclasses
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from .config import TrainConfig
from ..engine.assemble import assemble
from ..engine.assemble import fit as run_task
from ..engine.loop import Task, validation_batches, validation_network
from ..engine.schedules import apply_no_wd, build_lr_scheduler
from ..finetune import start_network
from ..layers import DropBlockScheduler
from ..metrics import accuracy, topk_metrics
from ..model_zoo import VARIANTS, get_model
from ..results import TrainResult
from .data import data_backend, load_datasets, recordio_train_loader, train_loader, val_loader

__all__ = ['ClassificationTask', 'build_run', 'fit', 'smooth_labels', 'mixup_batch', 'mixup_active', 'dropblock_ramp']


def smooth_labels(labels, classes, eta=0.0):
    """One-hot targets with label smoothing: ``1 - eta + eta/classes`` on the label, ``eta/classes`` elsewhere.

    Parameters
    ----------
    labels : NDArray
        (N,) integer class indices.
    classes : int
    eta : float
        Smoothing in [0, 1).

    Returns
    -------
    NDArray
        (N, classes) targets; each row sums to 1.
    """
    off = eta / classes
    return nd.one_hot(labels, classes, on_value=1 - eta + off, off_value=off)


def mixup_batch(data, labels, classes, alpha, eta=0.0, rng=np.random):
    """Mixup (Zhang et al.) of a batch with itself reversed, as GluonCV's training script does.

    Returns
    -------
    (NDArray, NDArray, float)
        Mixed images, mixed (smoothed) soft targets, and the weight ``lam`` of the original order.
    """
    lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
    mixed = lam * data + (1 - lam) * data[::-1]
    targets = smooth_labels(labels, classes, eta)
    return mixed, lam * targets + (1 - lam) * targets[::-1], lam


def mixup_active(epoch, num_epochs, mixup, mixup_off_epoch):
    """Whether mixup is on during 0-based ``epoch``: the recipe switches it off for the last epochs."""
    return bool(mixup) and epoch < num_epochs - mixup_off_epoch


def dropblock_ramp(net, dropblock_prob, num_epochs):
    """A DropBlockScheduler that ramps ``net``'s DropBlock layers linearly from 0 to ``dropblock_prob``.

    Returns None when ``dropblock_prob`` is 0 (the layers stay the identity).
    """
    if dropblock_prob <= 0:
        return None
    return DropBlockScheduler(net, 0.0, dropblock_prob, num_epochs)


def _classes(config, train_set):
    found = getattr(train_set, 'num_classes', None)
    if config.classes and found and config.classes != found:
        raise ValueError('classes %d but %s has %d class folders' % (config.classes, config.data_dir, found))
    return config.classes or found or 1000


def _random_layers(config):
    """(DropBlock probability, final dropout) of ``config``'s network: the flags, else the variant's."""
    table = VARIANTS[config.model]
    dropblock = table.get('dropblock_prob', 0.0) if config.dropblock_prob is None else config.dropblock_prob
    final_drop = table.get('final_drop', 0.0) if config.final_drop is None else config.final_drop
    return dropblock, final_drop


def _data_threads(config, source, log):
    """``-j`` for this run; a mid-epoch resume on the C++ path keeps the checkpoint's (its batches depend on it)."""
    if not (source and source['batch'] and config.data_backend == 'recordio'):
        return config.num_data_workers
    saved = source.get('config', {})  # the settings of the run that wrote the checkpoint
    threads = config.num_data_workers
    if saved.get('data_backend', 'recordio') != 'recordio':
        log.warning('the checkpoint was trained with --data-backend %s: the rest of epoch %d follows the C++ '
                    'pipeline\'s order, so some of its images may be seen twice or not at all',
                    saved['data_backend'], source['epoch'] + 1)
    elif saved.get('num_data_workers', threads) != threads:
        threads = saved['num_data_workers']
        log.info('using the checkpoint\'s -j %d (not %d) so that epoch %d continues with the same batches',
                 threads, config.num_data_workers, source['epoch'] + 1)
    log.info('RecordIO: decoding the first %d batches of epoch %d again and dropping them (the C++ reader '
             'cannot seek), so the rest of the epoch gets the images and augmentation of an uninterrupted run',
             source['batch'], source['epoch'] + 1)
    return threads


def _targets(run, epoch, data, label):
    """(input batch, loss target, hard label for the train metric) under the recipe's switches."""
    config = run.config
    if mixup_active(epoch, config.num_epochs, config.mixup, config.mixup_off_epoch):
        data, target, lam = mixup_batch(data, label, run.classes, config.mixup_alpha, config.label_smoothing)
        # The metric counts the label that dominates the mix.
        return data, target, label if lam >= 0.5 else label[::-1]
    if config.label_smoothing > 0:
        return data, smooth_labels(label, run.classes, config.label_smoothing), label
    return data, label, label


class ClassificationTask(Task):
    """Image classification with the recipe's targets (mixup, label smoothing); top-1/top-5.

    Its state is the run's losses and running training metrics (set by :meth:`attach`) and the data sets.
    """

    def __init__(self):
        self.train_set = self.val_set = None
        self.sparse_loss = self.dense_loss = self.metrics = None

    # ---- assembling a run ----

    def check(self, config):
        """A :class:`~gluon_resnest.classification.config.TrainConfig`."""
        if not isinstance(config, TrainConfig):
            raise TypeError('build_run takes a TrainConfig, got %s' % type(config).__name__)
        return config

    def place(self, config):
        """Checkpoints ``{save_dir}/{model}-NNNN``, the log ``{save_dir}/{logging_file}``."""
        return config.save_dir, config.model, config.logging_file and os.path.join(config.save_dir,
                                                                                   config.logging_file)

    def mixed_precision(self, config):
        """float16 is AMP."""
        return config.dtype == 'float16'

    def prepare(self, run, source):
        """Data sets, classes, the data backend (resolved into ``run.config``) and the loaders."""
        config = run.config
        self.train_set, self.val_set = load_datasets(config, resumed=bool(source), is_root=run.dist.is_root)
        run.classes = _classes(config, self.train_set)
        run.checkpoint_meta = {'model': config.model, 'classes': run.classes}
        backend, reason = data_backend(config, source.get('config') if source else None)
        run.log.info(reason)
        # Resolved, so that checkpoints record the path used.
        config = run.config = dataclasses.replace(config, data_backend=backend)
        per_worker = config.batch_size * len(run.ctx)
        if backend == 'recordio':
            run.loader, run.sampler = recordio_train_loader(config, run.dist, run.classes, per_worker,
                                                            _data_threads(config, source, run.log))
        else:
            run.loader, run.sampler = train_loader(self.train_set, config, run.dist, per_worker, run.classes)
        run.val_loader = val_loader(self.val_set, config, run.dist, per_worker) \
            if self.val_set is not None else None

    def network(self, run, source=None, evaluation=False):
        """The config's network, initialised with MSRAPrelu (draws from mx.random), then ``source``'s weights
        or the pretrained ones (:func:`~gluon_resnest.finetune.start_network`, which resolves ``run.config``);
        the evaluation copy with zeros (no random draws: it is overwritten)."""
        config = run.config
        dropblock, final_drop = _random_layers(config)
        # Built with the final DropBlock probability; the ramp sets each epoch's own value before it runs.
        net = get_model(config.model, classes=run.classes, last_gamma=config.last_gamma,
                        dropblock_prob=dropblock, final_drop=final_drop)
        # float16 is AMP: weights stay float32 and AMP runs the ops that are safe in float16.
        net.initialize(mx.init.Zero() if evaluation else mx.init.MSRAPrelu(), ctx=run.ctx)
        net.hybridize(static_alloc=True)
        if not evaluation:
            # Checkpoint, pretrained file or neither; classifier rate and frozen parts (fine-tuning).
            run.config = start_network(net, config, run.classes, run.ctx, source, run.log)
        return net

    def attach(self, run):
        """The DropBlock ramp, the losses (sparse labels, soft targets) and the top-1/top-5 training metrics."""
        run.dropblock = dropblock_ramp(run.net, _random_layers(run.config)[0], run.config.num_epochs)
        run.net_draws_random = any(p > 0 for p in _random_layers(run.config))
        self.sparse_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.dense_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        self.metrics = mx.metric.CompositeEvalMetric(list(topk_metrics(run.classes)))

    def optimizer(self, run):
        """NAG; ``lr`` is per device (as the recipe's per-GPU table): the peak rate scales with the devices."""
        config = run.config
        devices = run.dist.num_workers * len(run.ctx)
        schedule = build_lr_scheduler(config.lr_mode, config.lr * devices, config.num_epochs,
                                      run.sampler.batches_per_epoch, config.warmup_epochs, config.warmup_lr,
                                      config.lr_decay, list(config.lr_decay_epoch))
        if config.no_wd:
            apply_no_wd(run.net)
        return 'nag', {'wd': config.wd, 'momentum': config.momentum}, schedule, None

    def describe(self, run):
        """Images, classes, workers, devices and batches per epoch."""
        run.log.info('%s: %d train / %s val images, %d classes, %d worker(s) x %d device(s), %d batches per '
                     'epoch', run.config.model, len(self.train_set),
                     len(self.val_set) if self.val_set is not None else 'no', run.classes,
                     run.dist.num_workers, len(run.ctx), run.sampler.batches_per_epoch)

    def result(self, run):
        """The :class:`~gluon_resnest.results.TrainResult` of the finished run."""
        records = list(run.history.records)
        validated = [r for r in records if 'val-top1' in r]
        return TrainResult(model=run.config.model, classes=run.classes, save_dir=run.config.save_dir,
                           epochs=run.config.num_epochs, history=records, last_checkpoint=run.last_checkpoint,
                           val_top1=validated[-1]['val-top1'] if validated else None,
                           val_top5=validated[-1]['val-top5'] if validated else None, net=run.net)

    # ---- training ----

    def split_batch(self, item):
        """A loader item is (images, labels)."""
        return item

    def step(self, run, epoch, data, label):
        """One optimizer step on a batch; returns the mean loss (a Python float)."""
        data, target, hard = _targets(run, epoch, data, label)
        datas = gluon.utils.split_and_load(data, run.ctx, even_split=False)  # float32 also under AMP
        targets = gluon.utils.split_and_load(target, run.ctx, even_split=False)
        loss_fn = self.sparse_loss if target.ndim == 1 else self.dense_loss
        with autograd.record():
            outputs = [run.net(x).astype('float32', copy=False) for x in datas]
            losses = [loss_fn(out, t) for out, t in zip(outputs, targets)]
            if run.amp is not None:
                with run.amp.scale_loss(losses, run.trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward(losses)
        run.trainer.step(data.shape[0] * run.dist.step_scale)
        loss = sum(float(l.sum().asscalar()) for l in losses) / data.shape[0]
        self.metrics.update(gluon.utils.split_and_load(hard, run.ctx, even_split=False), outputs)
        return loss

    def start_epoch(self, run):
        """Reset the top-1/top-5 training metrics."""
        self.metrics.reset()

    def metric_counts(self, run):
        """The train metrics' sums and counts."""
        return [[m.sum_metric, m.num_inst, m.global_sum_metric, m.global_num_inst] for m in self.metrics.metrics]

    def set_metric_counts(self, run, counts):
        """Restore :meth:`metric_counts`."""
        for metric, values in zip(self.metrics.metrics, counts):
            metric.sum_metric, metric.num_inst, metric.global_sum_metric, metric.global_num_inst = values

    def end_epoch(self, run, epoch, loss, speed, validate):
        """Train top-1/top-5 (mean over workers), validation top-1/top-5 if ``validate``."""
        top1, top5 = (float(v) for v in run.dist.allreduce_sum(
            [float(self.metrics.get()[1][0]), float(self.metrics.get()[1][1])], 'train_metrics'))
        record = {'epoch': epoch, 'loss': loss, 'lr': float(run.trainer.learning_rate),
                  'train-top1': top1 / run.dist.num_workers, 'train-top5': top5 / run.dist.num_workers,
                  'images_per_sec': speed}
        if validate:
            record['val-top1'], record['val-top5'] = _validate(run)
        run.log.info('[Epoch %d] train: loss %.4f top-1 %.4f top-5 %.4f, %.1f img/s, lr %.5g%s', epoch + 1, loss,
                     record['train-top1'], record['train-top5'], speed, record['lr'],
                     '; val: top-1 %.4f top-5 %.4f' % (record['val-top1'], record['val-top5'])
                     if 'val-top1' in record else '')
        return record


def _validate(run):
    """Top-1/top-5 on the whole validation set (each worker takes a slice; counts are summed)."""
    res = accuracy(validation_network(run), validation_batches(run), run.ctx)
    n = res['num_images']
    correct1, correct5, total = run.dist.allreduce_sum([res['top1'] * n, res['top5'] * n, n], 'val')
    return correct1 / total, correct5 / total


def build_run(config):
    """The :class:`~gluon_resnest.engine.loop.Run` of a :class:`~gluon_resnest.classification.config.TrainConfig`, ready for
    :func:`~gluon_resnest.engine.loop.train`.

    Raises one-line ``ValueError``/``FileNotFoundError``/``ImportError`` for bad data, settings or setup.
    """
    return assemble(config, ClassificationTask())


def fit(config):
    """Train as ``config`` says; returns the finished run's record.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    TrainResult
        ``net`` (the trained network), ``history`` (one dict per epoch: loss, lr, train/val top-1/top-5 as
        fractions, images/s), ``val_top1``/``val_top5`` of the last validation, ``last_checkpoint`` (its
        ``.json`` record). ``build_run`` + ``train`` give the :class:`~gluon_resnest.engine.loop.Run`
        itself (loaders, trainer, start position).

    Raises
    ------
    ValueError, FileNotFoundError, ImportError
        Bad data or setup (one line).
    TrainingDiverged
        NaN/inf loss; the previous checkpoint stays the latest.
    TrainingInterrupted
        Ctrl-C, after a checkpoint of the position reached was written.
    """
    return run_task(config, ClassificationTask())
