"""The training engine: per-step seeding, NaN guard, Ctrl-C checkpoint, watchdog, worker sync, checkpoints.

A :class:`Run` holds everything one training run needs (built by :func:`gluon_resnest.train.build_run` for
classification, by :func:`gluon_resnest.detection.fit` for detection); :func:`train` drives it from its start
position to ``config.num_epochs``. What differs between tasks is ``run.task``: a :class:`Task` gives the
training step, the running metrics of an epoch and the end of an epoch (validation, its metric names and the
log line). :class:`ClassificationTask` is the recipe's (mixup, label smoothing, top-1/top-5).
"""
import dataclasses
import math
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..metrics import accuracy
from .checkpoint import checkpoint_prefix, save_checkpoint
from .monitor import ProgressBar
from .recipe import mixup_active, mixup_batch, smooth_labels
from .watchdog import Watchdog

__all__ = ['Run', 'Task', 'ClassificationTask', 'TrainingDiverged', 'TrainingInterrupted', 'train',
           'seed_everything']


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training after a checkpoint was written."""


class Run(object):  # pylint: disable=too-many-instance-attributes,too-few-public-methods
    """The state of one training run (a plain record; see ``build_run``)."""

    def __init__(self, **fields):
        self.start_epoch = 0
        self.start_batch = 0
        self.start_totals = None  # running totals of a mid-epoch checkpoint's epoch
        self.last_checkpoint = None
        self.history = None
        self.dropblock = None
        self.eval_net = None
        self.net_draws_random = True  # the training graph has DropBlock or Dropout
        self.amp = None
        self.watchdog = Watchdog(0)  # disabled; train() sets the run's own
        self.task = ClassificationTask()
        self.name = None  # checkpoints are {save_dir}/{name}-{epoch:04d}...
        self.checkpoint_meta = {}  # what every checkpoint record of the run names (model, classes, ...)
        self.__dict__.update(fields)


def seed_everything(seed, epoch, batch, rank, mxnet=True):
    """Seed MXNet (unless ``mxnet`` is False), NumPy and Python RNGs from (seed, epoch, batch, rank).

    The loop seeds before every training step, so a step's random draws (mixup, DropBlock, Dropout)
    depend on its position alone: a run resumed anywhere, even mid-epoch, draws what an uninterrupted
    one does, whatever ran in between (validation, checkpoints, logging). Augmentation has its own
    per-image streams (see :mod:`.data`).
    """
    state = np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(3)
    if mxnet:
        mx.random.seed(int(state[0] % (1 << 31)))
    np.random.seed(int(state[1]))
    import random  # pylint: disable=import-outside-toplevel
    random.seed(int(state[2]))


def _seed_step(run, epoch, batch, start_batch):
    # MXNet's seeding resets every generator state of its samplers (3.5-15 ms on the 2-core test machine,
    # 1-4% of a resnest14 step at 32 px, batch 16): only where the training graph draws from them
    # (DropBlock, Dropout), and at each epoch's first batch.
    draws = run.net_draws_random or batch == start_batch
    seed_everything(run.config.seed, epoch, batch, run.dist.rank, mxnet=draws)


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


class Task(object):
    """What a training task adds to the engine; every method takes the :class:`Run`."""

    def split_batch(self, item):
        """(data, label) of one item of ``run.loader``."""
        raise NotImplementedError

    def step(self, run, epoch, data, label):
        """One optimizer step on a batch; returns its mean loss (a Python float)."""
        raise NotImplementedError

    def start_epoch(self, run):
        """Start an epoch (its running training metrics)."""

    def metric_counts(self, run):
        """The running training metrics' counts, kept by a mid-epoch checkpoint (JSON-serialisable)."""
        return []

    def set_metric_counts(self, run, counts):
        """Restore what :meth:`metric_counts` returned."""

    def end_epoch(self, run, epoch, loss, speed, validate):
        """The epoch's history record (validated on the held-out set if ``validate``); logs it."""
        raise NotImplementedError


class ClassificationTask(Task):
    """Image classification with the recipe's targets (mixup, label smoothing); top-1/top-5."""

    def split_batch(self, item):
        """A loader item is (images, labels)."""
        return item

    def step(self, run, epoch, data, label):
        """One optimizer step on a batch; returns the mean loss (a Python float)."""
        return _classification_step(run, epoch, data, label)

    def start_epoch(self, run):
        """Reset the top-1/top-5 training metrics."""
        run.metrics.reset()

    def metric_counts(self, run):
        """The train metrics' sums and counts."""
        return [[m.sum_metric, m.num_inst, m.global_sum_metric, m.global_num_inst] for m in run.metrics.metrics]

    def set_metric_counts(self, run, counts):
        """Restore :meth:`metric_counts`."""
        for metric, values in zip(run.metrics.metrics, counts):
            metric.sum_metric, metric.num_inst, metric.global_sum_metric, metric.global_num_inst = values

    def end_epoch(self, run, epoch, loss, speed, validate):
        """Train top-1/top-5 (mean over workers), validation top-1/top-5 if ``validate``."""
        top1, top5 = (float(v) for v in run.dist.allreduce_sum(
            [float(run.metrics.get()[1][0]), float(run.metrics.get()[1][1])], 'train_metrics'))
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


def _train_step(run, epoch, data, label):
    """One optimizer step of the run's task; returns the mean loss (a Python float)."""
    return run.task.step(run, epoch, data, label)


def _classification_step(run, epoch, data, label):
    """One classification step on a batch; returns the mean loss (a Python float)."""
    data, target, hard = _targets(run, epoch, data, label)
    datas = gluon.utils.split_and_load(data, run.ctx, even_split=False)  # float32 also under AMP
    targets = gluon.utils.split_and_load(target, run.ctx, even_split=False)
    loss_fn = run.sparse_loss if target.ndim == 1 else run.dense_loss
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
    run.metrics.update(gluon.utils.split_and_load(hard, run.ctx, even_split=False), outputs)
    return loss


class _SigintFlag(object):
    """Turn the first Ctrl-C into a flag checked between batches (a step is never cut in half)."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):  # pylint: disable=unused-argument
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _check_finite(run, loss, epoch, batch):
    if not math.isfinite(loss):
        raise TrainingDiverged('loss is %s at epoch %d batch %d (lr %.5g); stopped without saving, last good '
                               'checkpoint: %s' % (loss, epoch + 1, batch + 1, run.trainer.learning_rate,
                                                   run.last_checkpoint or 'none'))


def _epoch_totals(run, loss_sum, steps):
    """What a mid-epoch checkpoint keeps of its epoch's running totals: the loss sum over its ``steps``
    batches and the train metrics' counts, so that a resumed epoch logs the totals of an uninterrupted one.

    None with several workers: rank 0 writes the checkpoint and its metrics count its own batches only
    (a resumed epoch then reports the batches trained after the resume).
    """
    if run.dist.num_workers > 1:
        return None
    return {'loss_sum': loss_sum, 'steps': steps, 'metrics': run.task.metric_counts(run)}


def _restore_totals(run, totals):
    """(loss sum, steps) of a resumed epoch's first batches (:func:`_epoch_totals`); (0, 0) if none."""
    if not totals:
        return 0.0, 0
    run.task.set_metric_counts(run, totals['metrics'])
    return totals['loss_sum'], totals['steps']


def _train_epoch(run, epoch, start_batch, sigint):
    """Train one epoch from ``start_batch``; returns (mean loss, images/s) or raises on Ctrl-C/NaN."""
    run.sampler.set_epoch(epoch, start_batch)
    run.task.start_epoch(run)
    total = run.sampler.batches_per_epoch
    bar = ProgressBar(total, epoch, run.config.num_epochs, enabled=run.config.progress if run.dist.is_root
                      else False, initial=start_batch)
    loss_sum, steps = _restore_totals(run, run.start_totals if start_batch else None)
    seen, tic = 0, time.time()
    run.watchdog.beat('training batch')
    try:
        for batch, item in enumerate(run.loader, start=start_batch):
            data, label = run.task.split_batch(item)
            _seed_step(run, epoch, batch, start_batch)
            loss = _train_step(run, epoch, data, label)
            _check_finite(run, loss, epoch, batch)
            loss_sum, steps, seen = loss_sum + loss, steps + 1, seen + _images(data)
            speed = seen * run.dist.num_workers / max(time.time() - tic, 1e-9)
            bar.update(speed, loss, run.trainer.learning_rate)
            if run.config.log_interval and (batch + 1) % run.config.log_interval == 0:
                run.log.info('epoch %d batch %d/%d: %.1f img/s loss %.4f lr %.5g', epoch + 1, batch + 1,
                             total, speed, loss, run.trainer.learning_rate)
            if _stop_requested(run, sigint):
                if batch + 1 == total:
                    break  # the epoch is done: finish it (validation, history) and stop after it
                _save(run, epoch, batch + 1, _epoch_totals(run, loss_sum, steps))
                raise TrainingInterrupted('interrupted at epoch %d batch %d; checkpoint %s'
                                          % (epoch + 1, batch + 1, run.last_checkpoint))
            run.watchdog.beat('training batch')
    finally:
        bar.close()
    return loss_sum / max(steps, 1), seen * run.dist.num_workers / max(time.time() - tic, 1e-9)


def _images(data):
    """Images in a batch: one array, or one array per device."""
    return data.shape[0] if hasattr(data, 'shape') else sum(x.shape[0] for x in data)


def _stop_requested(run, sigint):
    # Workers must stop at the same batch, or the others would wait forever in the next allreduce.
    if run.dist.num_workers == 1:
        return sigint.raised
    return run.dist.allreduce_sum([float(sigint.raised)], 'sigint')[0] > 0


def _sync_workers(run):
    """Make every worker (and device) hold one model: averaged BatchNorm statistics, rank 0's weights.

    Gradients are already averaged, but reductions may round differently on each rank; a broadcast once
    per epoch keeps the weights bit-identical, so any rank's model is the checkpointed one.
    """
    params = list(run.net.collect_params().values())
    run.dist.average_arrays([p.data(run.ctx[0]) for p in params if p.grad_req == 'null'], 'bn_stats')
    run.dist.broadcast_arrays([p.data(run.ctx[0]) for p in params], 'params')
    for p in params:
        # Copy to this worker's other devices; not set_data(), which resets the trainer's kvstore.
        first = p.data(run.ctx[0])
        for arr in p.list_data()[1:]:
            first.copyto(arr)


def validation_network(run):
    """``run.eval_net`` holding a copy of the training weights and BatchNorm statistics, to validate with.

    Validation must not run the training network itself: on a CPU oneDNN build, an inference
    convolution rewrites its weight array into oneDNN's blocked layout in place
    (``MKLDNNDataReorderAsync``), and the next training convolutions queue the switch back
    (``Reorder2DefaultAsync``) from inside their own execution, behind whatever backward and optimizer
    operations the Python thread has pushed by then. Where that switch lands depends on thread timing,
    and so did the rounding of the following updates: the same run gave different weights after
    every validation. A copy keeps the training arrays in the layout training alone gives them.
    """
    # By structural name: a copy built later in the process has other name prefixes. The training network
    # may hold more (constants of a detector's training targets, made by its training transform).
    sources = run.net._collect_params_with_prefix()  # pylint: disable=protected-access
    copies = run.eval_net._collect_params_with_prefix()  # pylint: disable=protected-access
    missing = sorted(set(copies) - set(sources))
    if missing:
        raise RuntimeError('validation network mismatch: the training network has no %s' % ', '.join(missing[:3]))
    for key, copy in copies.items():
        copy.set_data(sources[key].data(run.ctx[0]))  # every device of the copy; workers are in sync here
    return run.eval_net


def _validate(run):
    """Top-1/top-5 on the whole validation set (each worker takes a slice; counts are summed)."""
    res = accuracy(validation_network(run), run.watchdog.iterate(run.val_loader, 'validation batch'), run.ctx)
    n = res['num_images']
    correct1, correct5, total = run.dist.allreduce_sum([res['top1'] * n, res['top5'] * n, n], 'val')
    return correct1 / total, correct5 / total


def _save(run, epoch, batch, totals=None):
    """Checkpoint after ``epoch`` complete epochs plus ``batch`` batches (rank 0 writes; all wait);
    ``totals``: the running totals of a mid-epoch checkpoint's epoch (:func:`_epoch_totals`)."""
    run.watchdog.beat('checkpoint')
    prefix = checkpoint_prefix(run.save_dir, run.name, epoch, batch)
    if run.dist.is_root:
        meta = {**run.checkpoint_meta, 'epoch': epoch, 'batch': batch, 'num_update': int(run.trainer.optimizer.num_update),
                'learning_rate': float(run.trainer.learning_rate), 'seed': run.config.seed,
                'iters_per_epoch': run.sampler.batches_per_epoch, 'num_workers': run.dist.num_workers,
                'config': {k: v for k, v in dataclasses.asdict(run.config).items() if _jsonable(v)}}
        if totals is not None:
            meta['epoch_totals'] = totals
        save_checkpoint(prefix, run.net, run.trainer, meta)
        run.log.info('saved checkpoint %s.json', prefix)
    run.dist.barrier()
    run.last_checkpoint = prefix + '.json'  # on every rank: its messages name the run's checkpoint


def _jsonable(value):
    return value is None or isinstance(value, (bool, int, float, str, list, tuple))


def _end_epoch(run, epoch, loss, speed, force_save=False):
    """Synchronise, validate, record history and checkpoint after ``epoch``."""
    config = run.config
    run.watchdog.beat('epoch end')
    _sync_workers(run)
    last = epoch + 1 == config.num_epochs
    validate = run.val_loader is not None and (last or (epoch + 1) % config.eval_frequency == 0)
    record = run.task.end_epoch(run, epoch, loss, speed, validate)
    run.history.add(record)
    if force_save or last or (epoch + 1) % config.save_frequency == 0:
        _save(run, epoch + 1, 0)
    return record


def _watchdog(run):
    """Stops this worker when a dist kvstore call waits too long (Horovod ends a job with a dead rank itself)."""
    dist_kvstore = run.dist.kvstore is not None and 'dist' in run.dist.kvstore.type
    return Watchdog(run.config.step_timeout if dist_kvstore else 0, log=run.log,
                    context=lambda: 'last checkpoint: %s' % (run.last_checkpoint or 'none'))


def train(run):
    """Train from ``run.start_epoch``/``run.start_batch`` to ``run.config.num_epochs``.

    Raises
    ------
    TrainingDiverged
        NaN/inf loss (nothing is saved; the previous checkpoint stays the latest).
    TrainingInterrupted
        Ctrl-C; a checkpoint of the position reached was written first.
    """
    run.watchdog = _watchdog(run)
    with _SigintFlag() as sigint, run.watchdog.start():
        for epoch in range(run.start_epoch, run.config.num_epochs):
            start_batch = run.start_batch if epoch == run.start_epoch else 0
            if run.dropblock is not None:
                run.log.info('epoch %d: DropBlock probability %.4f', epoch + 1, run.dropblock(epoch))
            loss, speed = _train_epoch(run, epoch, start_batch, sigint)
            stop = _stop_requested(run, sigint)  # Ctrl-C during the last batch: stop at the epoch's end
            _end_epoch(run, epoch, loss, speed, force_save=stop)
            if stop:
                raise TrainingInterrupted('interrupted after epoch %d; checkpoint %s'
                                          % (epoch + 1, run.last_checkpoint))
    return run
