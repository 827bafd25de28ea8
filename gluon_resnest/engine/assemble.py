"""Assembling a training run, the same for every task: distributed set-up, folders, logger, devices, resume,
seeding, the evaluation copy, trainer and schedule; the task (:class:`~gluon_resnest.engine.loop.Task`)
builds its data, network and optimizer settings in between.

``fit(config, task)`` = ``task.result(train(assemble(config, task)))``.
"""
import os

from ..devices import contexts
from .checkpoint import check_states, checkpoint_files, latest_checkpoint
from .distributed import setup_distributed
from .loop import Run, seed_everything, train
from .monitor import setup_logger

__all__ = ['assemble', 'start', 'fit', 'make_trainer', 'worker_contexts', 'resume_source', 'resume_states']


def worker_contexts(gpus, dist):
    """This worker's devices: ``gpus`` (empty: the CPU); under Horovod with GPUs, one per process, the one
    of its local rank (as the official recipe runs)."""
    if dist.kv_store == 'horovod' and gpus:
        return contexts([dist.local_rank])
    return contexts(gpus)


def resume_source(config, save_dir, name, log, is_root):
    """What to resume from: a dict with params, states (paths or ''), epoch, batch, json; None: fresh start.

    ``config.resume``: the latest complete checkpoint ``{save_dir}/{name}-NNNN``; ``resume_params`` (and
    ``resume_states`` where the config has it) at ``resume_epoch``; otherwise a fresh start, refused where
    it would overwrite checkpoints of the same name (except for an evaluation, which writes none).
    """
    if config.resume:
        # Only the writer (rank 0) clears interrupted writes: other workers may share the folder.
        record = latest_checkpoint(save_dir, name, log, clean=is_root)
        if record is None:
            log.warning('resume: no complete checkpoint of %s in %s; starting from scratch', name, save_dir)
        return record
    states = getattr(config, 'resume_states', '')
    if config.resume_params or states:
        for path in (config.resume_params, states):
            if path and not os.path.isfile(path):
                raise FileNotFoundError('resume file not found: %s' % path)
        return {'params': config.resume_params, 'states': states, 'epoch': config.resume_epoch,
                'batch': 0, 'json': None}
    # A fresh start would overwrite an earlier run's checkpoints of the same names.
    earlier = checkpoint_files(save_dir, name, 'params')
    if earlier and not getattr(config, 'eval_only', False):
        raise ValueError('%s already holds checkpoints of %s (%s): resume (--resume) continues that run, '
                         'or choose another save_dir' % (save_dir, name, os.path.basename(earlier[-1])))
    return None


def resume_states(run, source):
    """Load trainer states; the schedule follows the current flags at the saved update count."""
    optimizer = run.trainer.optimizer
    if source['states']:
        check_states(source['states'], run.trainer._params)  # pylint: disable=protected-access
        run.trainer.load_states(source['states'])
        optimizer = run.trainer.optimizer
        # The pickled optimizer carries the old scheduler object; use the one built from these flags.
        optimizer.lr_scheduler = run.scheduler
    else:
        # Weights only (GluonCV's --resume-params/--resume-epoch): put the schedule at the epoch resumed.
        optimizer.begin_num_update = optimizer.num_update = \
            source['epoch'] * run.sampler.batches_per_epoch + source['batch']
    run.start_epoch, run.start_batch = source['epoch'], source['batch']
    run.start_totals = source.get('epoch_totals')
    run.last_checkpoint = source['json']
    run.log.info('resuming from %s at epoch %d batch %d (update %d, lr %.5g)',
                 source['json'] or source['params'] or source['states'], run.start_epoch, run.start_batch,
                 optimizer.num_update, run.trainer.learning_rate)


def _amp(enabled):
    if not enabled:
        return None
    from mxnet.contrib import amp  # pylint: disable=import-outside-toplevel
    amp.init()  # must run before the network is built
    return amp


def start(config, task, need_checkpoint=False):
    """The part of a run every job of ``task`` shares, training or evaluating a checkpoint.

    Returns
    -------
    (Run, dict or None)
        The run (config resolved, dist, devices, logger, folders; no data or network yet) and what to resume
        from (:func:`resume_source`); with ``need_checkpoint``, a missing checkpoint is a FileNotFoundError.
    """
    config = task.check(config)
    dist = setup_distributed(config.kv_store)
    save_dir, name, log_path = task.place(config)
    if dist.is_root:
        os.makedirs(save_dir, exist_ok=True)
    log = setup_logger(log_path, dist.is_root)
    ctx = worker_contexts(config.gpus, dist)
    config = task.resolve(config, len(ctx) * dist.num_workers, dist.num_workers)
    run = Run(config=config, dist=dist, ctx=ctx, log=log, save_dir=save_dir, name=name, task=task,
              amp=_amp(task.mixed_precision(config)))
    source = resume_source(config, save_dir, name, log, dist.is_root)
    if need_checkpoint and not (source and source['params']):
        raise FileNotFoundError('no complete checkpoint %s-NNNN.json in %s to evaluate' % (name, save_dir))
    return run, source


def make_trainer(run):
    """(trainer, schedule) of ``run.task``'s optimizer settings for ``run.net`` (``run.sampler`` gives the
    batches per epoch)."""
    optimizer, options, schedule, params = run.task.optimizer(run)
    trainer = run.dist.make_trainer(run.net, optimizer, dict(options, lr_scheduler=schedule), params=params)
    if run.amp is not None:
        run.amp.init_trainer(trainer)
    return trainer, schedule


def assemble(config, task):
    """The :class:`~gluon_resnest.engine.loop.Run` of ``config`` for ``task``, ready for
    :func:`~gluon_resnest.engine.loop.train` (resumed where the config says).

    Raises one-line ``ValueError``/``FileNotFoundError``/``ImportError``/``TypeError`` for bad data,
    settings or setup.
    """
    run, source = start(config, task)
    task.prepare(run, source)
    seed_everything(run.config.seed, 0, 0, 0)  # the same initial weights on every rank and every run
    run.net = task.network(run, source)
    # Validation runs its own copy (see loop.validation_network).
    run.eval_net = task.network(run, evaluation=True) if task.validates(run) else None
    task.attach(run)
    run.trainer, run.scheduler = make_trainer(run)
    if source:
        resume_states(run, source)
    run.history = task.history(run)
    run.history.load(run.start_epoch)
    task.describe(run)
    return run


def fit(config, task):
    """Train ``config`` with ``task``; returns ``task.result`` of the finished run."""
    return task.result(train(assemble(config, task)))
