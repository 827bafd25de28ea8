"""Assemble a training run from a :class:`~gluon_resnest.config.TrainConfig`: data, network, trainer, resume."""
import dataclasses
import os

import mxnet as mx
from mxnet import gluon

from ..config import TrainConfig
from ..devices import contexts
from ..finetune import start_network
from ..metrics import topk_metrics
from ..model_zoo import VARIANTS, get_model
from ..results import TrainResult
from .checkpoint import checkpoint_files, latest_checkpoint
from .data import data_backend, load_datasets, recordio_train_loader, train_loader, val_loader
from .distributed import setup_distributed
from .loop import ClassificationTask, Run, seed_everything, train
from .monitor import History, setup_logger
from .recipe import apply_no_wd, build_lr_scheduler, dropblock_ramp

__all__ = ['fit', 'build_run', 'result_of', 'contexts', 'worker_contexts', 'resume_source', 'resume_states']


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


def _network(config, classes, ctx, init=None):
    """(network, final DropBlock probability); ``init`` default: MSRAPrelu (draws from mx.random)."""
    dropblock, final_drop = _random_layers(config)
    # Built with the final DropBlock probability; the ramp sets each epoch's own value before it runs.
    net = get_model(config.model, classes=classes, last_gamma=config.last_gamma, dropblock_prob=dropblock,
                    final_drop=final_drop)
    # float16 is AMP: weights stay float32 and AMP runs the ops that are safe in float16 (amp.init() ran before this).
    net.initialize(init or mx.init.MSRAPrelu(), ctx=ctx)
    net.hybridize(static_alloc=True)
    return net, dropblock


def _trainer(config, run, iters_per_epoch):
    devices = run.dist.num_workers * len(run.ctx)
    # lr is per device (as the recipe's per-GPU table): the peak rate scales with the device count.
    scheduler = build_lr_scheduler(config.lr_mode, config.lr * devices, config.num_epochs, iters_per_epoch,
                                   config.warmup_epochs, config.warmup_lr, config.lr_decay,
                                   list(config.lr_decay_epoch))
    params = {'wd': config.wd, 'momentum': config.momentum, 'lr_scheduler': scheduler}
    if config.no_wd:
        apply_no_wd(run.net)
    trainer = run.dist.make_trainer(run.net, 'nag', params)
    if run.amp is not None:
        run.amp.init_trainer(trainer)
    return trainer, scheduler


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


def _amp(config):
    if config.dtype != 'float16':
        return None
    from mxnet.contrib import amp  # pylint: disable=import-outside-toplevel
    amp.init()  # must run before the network is built
    return amp


def build_run(config):
    """Everything :func:`gluon_resnest.train.train` needs, from a :class:`~gluon_resnest.config.TrainConfig`.

    Raises one-line ``ValueError``/``FileNotFoundError``/``ImportError`` for bad data, settings or setup.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError('build_run takes a TrainConfig, got %s' % type(config).__name__)
    dist = setup_distributed(config.kv_store)
    if dist.is_root:
        os.makedirs(config.save_dir, exist_ok=True)
    log_path = config.logging_file and os.path.join(config.save_dir, config.logging_file)
    log = setup_logger(log_path, dist.is_root)
    ctx = worker_contexts(config.gpus, dist)
    run = Run(config=config, dist=dist, ctx=ctx, log=log, save_dir=config.save_dir, amp=_amp(config),
              task=ClassificationTask(), name=config.model)
    source = resume_source(config, config.save_dir, config.model, log, dist.is_root)
    train_set, val_set = load_datasets(config, resumed=bool(source), is_root=dist.is_root)
    run.classes = _classes(config, train_set)
    run.checkpoint_meta = {'model': config.model, 'classes': run.classes}
    backend, reason = data_backend(config, source.get('config') if source else None)
    log.info(reason)
    # Resolved, so that checkpoints record the path used.
    config = run.config = dataclasses.replace(config, data_backend=backend)
    per_worker = config.batch_size * len(ctx)
    if backend == 'recordio':
        run.loader, run.sampler = recordio_train_loader(config, dist, run.classes, per_worker,
                                                        _data_threads(config, source, log))
    else:
        run.loader, run.sampler = train_loader(train_set, config, dist, per_worker, run.classes)
    run.val_loader = val_loader(val_set, config, dist, per_worker) if val_set is not None else None
    seed_everything(config.seed, 0, 0, 0)  # the same initial weights on every rank and every run
    run.net, dropblock = _network(config, run.classes, ctx)
    # Validation runs its own copy (see loop.validation_network); zeros: no random draws, it is overwritten.
    run.eval_net = _network(config, run.classes, ctx, init=mx.init.Zero())[0] \
        if run.val_loader is not None else None
    run.dropblock = dropblock_ramp(run.net, dropblock, config.num_epochs)
    run.net_draws_random = any(p > 0 for p in _random_layers(config))
    # Checkpoint, pretrained file or neither; classifier rate and frozen parts (fine-tuning).
    config = run.config = start_network(run.net, config, run.classes, ctx, source, log)
    run.trainer, run.scheduler = _trainer(config, run, run.sampler.batches_per_epoch)
    if source:
        resume_states(run, source)
    run.sparse_loss = gluon.loss.SoftmaxCrossEntropyLoss()
    run.dense_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    run.metrics = mx.metric.CompositeEvalMetric(list(topk_metrics(run.classes)))
    run.history = History(config.save_dir, enabled=dist.is_root)
    run.history.load(run.start_epoch)
    log.info('%s: %d train / %s val images, %d classes, %d worker(s) x %d device(s), %d batches per epoch',
             config.model, len(train_set), len(val_set) if val_set is not None else 'no', run.classes,
             dist.num_workers, len(ctx), run.sampler.batches_per_epoch)
    return run


def result_of(run):
    """The :class:`~gluon_resnest.results.TrainResult` of a finished :class:`~gluon_resnest.train.loop.Run`."""
    records = list(run.history.records)
    validated = [r for r in records if 'val-top1' in r]
    return TrainResult(model=run.config.model, classes=run.classes, save_dir=run.config.save_dir,
                       epochs=run.config.num_epochs, history=records, last_checkpoint=run.last_checkpoint,
                       val_top1=validated[-1]['val-top1'] if validated else None,
                       val_top5=validated[-1]['val-top5'] if validated else None, net=run.net)


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
        ``.json`` record). ``build_run`` + ``train`` give the :class:`~gluon_resnest.train.loop.Run`
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
    return result_of(train(build_run(config)))
