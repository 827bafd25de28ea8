"""Assemble a training run from parsed ``train_imagenet.py`` arguments: data, network, trainer, resume."""
import os

import mxnet as mx
from mxnet import gluon

from ..model_zoo import VARIANTS, get_model
from .checkpoint import checkpoint_files, latest_checkpoint
from .data import data_backend, load_datasets, recordio_train_loader, train_loader, val_loader
from .distributed import setup_distributed
from .loop import Run, seed_everything
from .monitor import History, setup_logger
from .recipe import apply_no_wd, build_lr_scheduler, dropblock_ramp

__all__ = ['build_run', 'contexts']


def contexts(gpus):
    """``--gpus '0,1'`` -> [gpu(0), gpu(1)]; empty -> [cpu()]."""
    ids = [g.strip() for g in (gpus or '').split(',') if g.strip()]
    if not ids:
        return [mx.cpu()]
    try:
        ctx = [mx.gpu(int(i)) for i in ids]
    except ValueError as err:
        raise ValueError('--gpus must be comma-separated integers, got %r' % (gpus,)) from err
    if max(int(i) for i in ids) >= mx.context.num_gpus():
        raise ValueError('--gpus %s asks for GPUs this machine (MXNet %s) does not have (%d found)'
                         % (gpus, mx.__version__, mx.context.num_gpus()))
    return ctx


def _classes(args, train_set):
    found = getattr(train_set, 'num_classes', None)
    if args.classes and found and args.classes != found:
        raise ValueError('--classes %d but %s has %d class folders' % (args.classes, args.data_dir, found))
    return args.classes or found or 1000


def _network(args, classes, ctx):
    table = VARIANTS[args.model]
    dropblock = table.get('dropblock_prob', 0.0) if args.dropblock_prob is None else args.dropblock_prob
    final_drop = table.get('final_drop', 0.0) if args.final_drop is None else args.final_drop
    # Built with the final DropBlock probability; the ramp sets each epoch's own value before it runs.
    net = get_model(args.model, classes=classes, last_gamma=args.last_gamma, dropblock_prob=dropblock,
                    final_drop=final_drop)
    # float16 is AMP: weights stay float32 and AMP runs the ops that are safe in float16 (amp.init() ran before this).
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    net.hybridize(static_alloc=True)
    return net, dropblock


def _trainer(args, run, iters_per_epoch):
    devices = run.dist.num_workers * len(run.ctx)
    # --lr is per device (as the recipe's per-GPU table): the peak rate scales with the device count.
    scheduler = build_lr_scheduler(args.lr_mode, args.lr * devices, args.num_epochs, iters_per_epoch,
                                   args.warmup_epochs, args.warmup_lr, args.lr_decay,
                                   [int(e) for e in args.lr_decay_epoch.split(',') if e.strip()])
    params = {'wd': args.wd, 'momentum': args.momentum, 'lr_scheduler': scheduler}
    if args.no_wd:
        apply_no_wd(run.net)
    trainer = run.dist.make_trainer(run.net, 'nag', params)
    if run.amp is not None:
        run.amp.init_trainer(trainer)
    return trainer, scheduler


def _resume_source(args, log):
    """What to resume from: a dict with params, states (paths or ''), epoch, batch, json; None: fresh start."""
    if args.resume:
        record = latest_checkpoint(args.save_dir, args.model, log)
        if record is None:
            log.warning('--resume: no complete checkpoint of %s in %s; starting from scratch',
                        args.model, args.save_dir)
        return record
    if args.resume_params or args.resume_states:
        for path in (args.resume_params, args.resume_states):
            if path and not os.path.isfile(path):
                raise FileNotFoundError('resume file not found: %s' % path)
        return {'params': args.resume_params, 'states': args.resume_states, 'epoch': args.resume_epoch,
                'batch': 0, 'json': None}
    # A fresh start would overwrite an earlier run's checkpoints of the same names.
    earlier = checkpoint_files(args.save_dir, args.model, 'params')
    if earlier:
        raise ValueError('%s already holds checkpoints of %s (%s): pass --resume to continue that run, '
                         'or choose another --save-dir' % (args.save_dir, args.model,
                                                            os.path.basename(earlier[-1])))
    return None


def _resume_states(run, source):
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
    run.last_checkpoint = source['json']
    run.log.info('resuming from %s at epoch %d batch %d (update %d, lr %.5g)',
                 source['json'] or source['params'] or source['states'], run.start_epoch, run.start_batch,
                 optimizer.num_update, run.trainer.learning_rate)


def _data_threads(args, source, log):
    """``-j`` for this run; a mid-epoch resume on the C++ path keeps the checkpoint's (its batches depend on it)."""
    if not (source and source['batch'] and args.data_backend == 'recordio'):
        return args.num_data_workers
    saved = source.get('args', {})  # the flags of the run that wrote the checkpoint
    threads = args.num_data_workers
    if saved.get('data_backend', 'recordio') != 'recordio':
        log.warning('the checkpoint was trained with --data-backend %s: the rest of epoch %d follows the C++ '
                    'pipeline\'s order, so some of its images may be seen twice or not at all',
                    saved['data_backend'], source['epoch'] + 1)
    elif saved.get('num_data_workers', threads) != threads:
        threads = saved['num_data_workers']
        log.info('using the checkpoint\'s -j %d (not %d) so that epoch %d continues with the same batches',
                 threads, args.num_data_workers, source['epoch'] + 1)
    log.info('RecordIO: decoding the first %d batches of epoch %d again and dropping them (the C++ reader '
             'cannot seek), so the rest of the epoch gets the images and augmentation of an uninterrupted run',
             source['batch'], source['epoch'] + 1)
    return threads


def _amp(args):
    if args.dtype != 'float16':
        return None
    from mxnet.contrib import amp  # pylint: disable=import-outside-toplevel
    amp.init()  # must run before the network is built
    return amp


def build_run(args):
    """Everything :func:`gluon_resnest.train.train` needs, from parsed arguments.

    Raises one-line ``ValueError``/``FileNotFoundError``/``ImportError`` for bad data, flags or setup.
    """
    dist = setup_distributed(args.kv_store)
    if dist.is_root:
        os.makedirs(args.save_dir, exist_ok=True)
    log_path = args.logging_file and os.path.join(args.save_dir, args.logging_file)
    log = setup_logger(log_path, dist.is_root)
    ctx = contexts(args.gpus)
    if dist.kv_store == 'horovod' and args.gpus:
        # One GPU per Horovod process, as the official recipe runs: the one of its local rank.
        ctx = contexts(str(dist.local_rank))
    run = Run(args=args, dist=dist, ctx=ctx, log=log, save_dir=args.save_dir, amp=_amp(args))
    source = _resume_source(args, log)
    train_set, val_set = load_datasets(args)
    run.classes = _classes(args, train_set)
    args.data_backend, reason = data_backend(args)  # resolved, so checkpoints record the path used
    log.info(reason)
    per_worker = argparse_copy(args, batch_size=args.batch_size * len(ctx),
                               num_data_workers=_data_threads(args, source, log))
    if args.data_backend == 'recordio':
        run.loader, run.sampler = recordio_train_loader(per_worker, dist, run.classes)
    else:
        run.loader, run.sampler = train_loader(train_set, per_worker, dist)
    run.val_loader = val_loader(val_set, per_worker, dist) if val_set is not None else None
    seed_everything(args.seed, 0, 0, 0)  # the same initial weights on every rank and every run
    run.net, dropblock = _network(args, run.classes, ctx)
    run.dropblock = dropblock_ramp(run.net, dropblock, args.num_epochs)
    if source and source['params']:
        run.net.load_parameters(source['params'], ctx=ctx)
    run.trainer, run.scheduler = _trainer(args, run, run.sampler.batches_per_epoch)
    if source:
        _resume_states(run, source)
    run.sparse_loss = gluon.loss.SoftmaxCrossEntropyLoss()
    run.dense_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    top_k = min(5, run.classes)  # as evaluate(): top-5 of a <= 5-class problem is top-"all"
    run.metrics = mx.metric.CompositeEvalMetric(
        [mx.metric.Accuracy(), mx.metric.TopKAccuracy(top_k) if top_k > 1 else mx.metric.Accuracy()])
    run.history = History(args.save_dir, enabled=dist.is_root)
    run.history.load(run.start_epoch)
    log.info('%s: %d train / %s val images, %d classes, %d worker(s) x %d device(s), %d batches per epoch',
             args.model, len(train_set), len(val_set) if val_set is not None else 'no', run.classes,
             dist.num_workers, len(ctx), run.sampler.batches_per_epoch)
    return run


def argparse_copy(args, **changes):
    """A copy of an argparse Namespace with some values changed."""
    copy = type(args)(**vars(args))
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy
