"""The training engine: per-step seeding, NaN guard, Ctrl-C checkpoint, watchdog, worker sync, checkpoints.

A :class:`Run` holds everything one training run needs (built by :func:`~gluon_resnest.engine.assemble.assemble`
from a config and a task); :func:`train` drives it from its start position to ``config.num_epochs``. What
differs between tasks is ``run.task``: a :class:`Task` builds the task's parts of a run (data, network,
optimizer) and gives the training step, the running metrics of an epoch and the end of an epoch (validation,
its metric names and the log line). The tasks are :class:`gluon_resnest.classification.task.ClassificationTask`
and :class:`gluon_resnest.detection.task.DetectionTask`.
"""
import contextlib
import dataclasses
import math
import signal
import time
from typing import Any, Callable, List, Optional

import mxnet as mx
import numpy as np

from .checkpoint import checkpoint_prefix, save_checkpoint
from .monitor import History, ProgressBar
from .watchdog import Watchdog

__all__ = ['Run', 'Task', 'Hooks', 'hooks_installed', 'TrainingDiverged', 'TrainingInterrupted', 'train',
           'seed_everything', 'validation_batches', 'validation_network']


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training after a checkpoint was written."""


@dataclasses.dataclass
class Hooks:
    """Where code steps into a run's loop: lists of callables, called in order (none by default).

    ``epoch`` counts from 0; ``batch`` counts from the start of its epoch, also in a resumed run. A hook that
    raises stops the run as the same exception would from the loop itself (a Ctrl-C it sends is handled as
    a user's). Each run calls its own ``run.hooks`` and those of :func:`hooks_installed`.

    Attributes
    ----------
    before_epoch : list of callable
        ``f(run, epoch)`` before an epoch's (or a resumed epoch's) first batch.
    before_step : list of callable
        ``f(run, epoch, batch)`` before a training step, after its seeding.
    after_step : list of callable
        ``f(run, epoch, batch, loss)`` after it (``loss``: the step's mean loss, a float).
    validation_batch : list of callable
        ``f(run)`` before each validation batch is evaluated (:func:`validation_batches`).
    before_save : list of callable
        ``f(run, prefix)`` on the rank that writes checkpoints, before ``prefix``'s files are written.
    after_epoch : list of callable
        ``f(run, epoch, record)`` after an epoch's history record (and checkpoint, if one is due).
    watchdog : list of callable
        ``f(run)`` before the first epoch, returning a :class:`~gluon_resnest.engine.watchdog.Watchdog` to
        arm instead of the engine's (which is armed only under a dist kvstore), or None to keep it; the
        last one that returns a watchdog wins.
    """

    before_epoch: List[Callable] = dataclasses.field(default_factory=list)
    before_step: List[Callable] = dataclasses.field(default_factory=list)
    after_step: List[Callable] = dataclasses.field(default_factory=list)
    validation_batch: List[Callable] = dataclasses.field(default_factory=list)
    before_save: List[Callable] = dataclasses.field(default_factory=list)
    after_epoch: List[Callable] = dataclasses.field(default_factory=list)
    watchdog: List[Callable] = dataclasses.field(default_factory=list)


_INSTALLED: List[Hooks] = []


@contextlib.contextmanager
def hooks_installed(hooks):
    """Inside the ``with`` block every run also calls ``hooks`` (for runs a command's ``main`` builds,
    which the caller never holds)."""
    _INSTALLED.append(hooks)
    try:
        yield hooks
    finally:
        _INSTALLED.remove(hooks)


def _hooks(run, kind):
    """The ``kind`` hooks of ``run`` and of the installed :class:`Hooks`, in calling order."""
    return [hook for hooks in [run.hooks] + list(_INSTALLED) for hook in getattr(hooks, kind)]


def _call(run, kind, *args):
    """Call the ``kind`` hooks of ``run`` and the installed ones."""
    for hook in _hooks(run, kind):
        hook(run, *args)


@dataclasses.dataclass
class Run:  # pylint: disable=too-many-instance-attributes
    """The state of one training run (see :func:`~gluon_resnest.engine.assemble.assemble`).

    ``config`` is the task's config (``num_epochs``, ``seed``, ``log_interval``, ``eval_frequency``,
    ``save_frequency``, ``progress``, ``step_timeout``, ``kv_store``, ``gpus`` and the resume fields);
    checkpoints are ``{save_dir}/{name}-{epoch:04d}...``.
    """

    config: Any
    dist: Any  # gluon_resnest.engine.distributed.Distributed
    ctx: List[Any]
    log: Any  # logging.Logger
    save_dir: str
    name: str
    task: 'Task'
    amp: Any = None  # mxnet.contrib.amp under float16
    classes: Any = None  # a class count (classification) or the class names (detection)
    checkpoint_meta: dict = dataclasses.field(default_factory=dict)  # what every checkpoint record names
    net: Any = None
    eval_net: Any = None  # a copy of net's structure to validate with (validation_network)
    loader: Any = None
    sampler: Any = None  # batches_per_epoch, set_epoch(epoch, start_batch)
    val_loader: Any = None
    trainer: Any = None
    scheduler: Any = None
    history: Any = None  # gluon_resnest.engine.monitor.History
    dropblock: Any = None  # a DropBlock ramp: dropblock(epoch) sets and returns the epoch's probability
    net_draws_random: bool = True  # the training graph has DropBlock or Dropout
    start_epoch: int = 0
    start_batch: int = 0
    start_totals: Optional[dict] = None  # running totals of a mid-epoch checkpoint's epoch
    last_checkpoint: Optional[str] = None
    watchdog: Watchdog = dataclasses.field(default_factory=lambda: Watchdog(0))  # train() sets the run's own
    hooks: Hooks = dataclasses.field(default_factory=Hooks)


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


class Task:
    """What a task adds to the engine: its parts of a run (called by ``assemble`` in this order) and its
    training step and epoch metrics (called by :func:`train`); every method but the first three takes the
    :class:`Run`."""

    def check(self, config):
        """``config`` if it is this task's config type; raises TypeError otherwise."""
        raise NotImplementedError

    def place(self, config):
        """(save_dir, checkpoint name, log file path or '') of a run of ``config``."""
        raise NotImplementedError

    def resolve(self, config, num_devices, num_workers):
        """``config`` with the defaults that depend on the devices (``num_devices`` over ``num_workers``
        workers) resolved."""
        return config

    def mixed_precision(self, config):
        """Whether the run trains under AMP (float16)."""
        return False

    def prepare(self, run, source):
        """Data sets, classes, checkpoint meta and loaders that need no network (``source``: what
        ``resume_source`` found, or None)."""
        raise NotImplementedError

    def network(self, run, source=None, evaluation=False):
        """The network (with ``source``'s weights); ``evaluation``: the copy validation runs."""
        raise NotImplementedError

    def validates(self, run):
        """Whether this worker validates (and so needs the evaluation copy)."""
        return run.val_loader is not None

    def attach(self, run):
        """What needs the network: loaders, losses, metrics, evaluators."""

    def optimizer(self, run):
        """(optimizer name, options without the schedule, schedule, trained parameters or None: all)."""
        raise NotImplementedError

    def history(self, run):
        """The run's :class:`~gluon_resnest.engine.monitor.History` (rank 0 writes it)."""
        return History(run.save_dir, enabled=run.dist.is_root)

    def describe(self, run):
        """Log the run's one-line summary."""

    def result(self, run):
        """What :func:`~gluon_resnest.engine.assemble.fit` returns for the finished run."""
        raise NotImplementedError

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
            _call(run, 'before_step', epoch, batch)
            loss = run.task.step(run, epoch, data, label)
            _call(run, 'after_step', epoch, batch, loss)
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


def validation_batches(run):
    """The batches of ``run.val_loader``, each after a watchdog beat and the ``validation_batch`` hooks."""
    for item in run.watchdog.iterate(run.val_loader, 'validation batch'):
        _call(run, 'validation_batch')
        yield item


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
        _call(run, 'before_save', prefix)
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
    _call(run, 'after_epoch', epoch, record)
    return record


def _watchdog(run):
    """Stops this worker when a dist kvstore call waits too long (Horovod ends a job with a dead rank itself),
    unless a ``watchdog`` hook gives another."""
    chosen = None
    for hook in _hooks(run, 'watchdog'):
        chosen = hook(run) or chosen
    if chosen is not None:
        return chosen
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
            _call(run, 'before_epoch', epoch)
            loss, speed = _train_epoch(run, epoch, start_batch, sigint)
            stop = _stop_requested(run, sigint)  # Ctrl-C during the last batch: stop at the epoch's end
            _end_epoch(run, epoch, loss, speed, force_save=stop)
            if stop:
                raise TrainingInterrupted('interrupted after epoch %d; checkpoint %s'
                                          % (epoch + 1, run.last_checkpoint))
    return run
