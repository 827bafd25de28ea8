"""The optimizer's schedule and weight-decay groups, shared by every task.

Each one is a small function of plain arguments so a test can check it against hand-computed numbers.
"""
from gluoncv.utils import LRScheduler, LRSequential

__all__ = ['build_lr_scheduler', 'apply_no_wd']


def build_lr_scheduler(lr_mode, base_lr, num_epochs, iters_per_epoch, warmup_epochs=0, warmup_lr=0.0,
                       lr_decay=0.1, lr_decay_epoch=(30, 60, 90), power=2.0):
    """Linear warmup followed by ``lr_mode`` (cosine, step or poly), indexed by the optimizer's update count.

    The paper's schedule is ``cosine`` with 5 warmup epochs; step epochs count from the start of training
    (as in GluonCV's script), so the warmup epochs are subtracted from them.

    Parameters
    ----------
    lr_mode : str
        'cosine', 'step' or 'poly'.
    base_lr : float
        Peak learning rate, reached at the end of the warmup (already scaled for the number of workers).
    num_epochs, iters_per_epoch : int
    warmup_epochs : int
    warmup_lr : float
        Learning rate at the first update of the warmup.
    lr_decay : float
        Factor of the step mode.
    lr_decay_epoch : sequence of int
        Epochs where the step mode multiplies the rate by ``lr_decay``.
    power : float
        Exponent of the poly mode.

    Returns
    -------
    gluoncv.utils.LRSequential
    """
    if lr_mode not in ('cosine', 'step', 'poly'):
        raise ValueError('unknown lr_mode %r (choose cosine, step or poly)' % (lr_mode,))
    if iters_per_epoch < 1:
        raise ValueError('an epoch must have at least one batch, got iters_per_epoch=%r' % (iters_per_epoch,))
    if not 0 <= warmup_epochs < num_epochs:
        raise ValueError('warmup_epochs must be in [0, num_epochs), got %r with %r epochs'
                         % (warmup_epochs, num_epochs))
    steps = [e - warmup_epochs for e in lr_decay_epoch if e > warmup_epochs]
    # GluonCV's LRSequential needs a non-empty warmup segment; a 0-epoch warmup gets 0 iterations
    # (LRScheduler with niters=0 is never selected, LRSequential moves past it at update 0).
    warmup_iters = warmup_epochs * iters_per_epoch
    main_iters = (num_epochs - warmup_epochs) * iters_per_epoch
    # GluonCV's linear/cosine/poly divide by (niters - 1): a 1-iteration segment is a constant.
    schedulers = [LRScheduler('linear' if warmup_iters > 1 else 'constant', base_lr=warmup_lr,
                              target_lr=base_lr, niters=warmup_iters)]
    schedulers.append(LRScheduler(lr_mode if main_iters > 1 else 'constant', base_lr=base_lr, target_lr=0,
                                  niters=main_iters, step_iter=[s * iters_per_epoch for s in steps],
                                  step_factor=lr_decay, power=power))
    return LRSequential(schedulers)


_NORM_SUFFIXES = ('_beta', '_gamma', '.beta', '.gamma')
_BIAS_SUFFIXES = ('_bias', '.bias')


def apply_no_wd(net, biases=True):
    """Set ``wd_mult = 0`` on every BatchNorm gamma/beta of ``net`` and, with ``biases``, every bias.

    With ``biases`` this is the ImageNet recipe's ``--no-wd`` (GluonCV's); without, detectron2's
    ``SOLVER.WEIGHT_DECAY_NORM: 0`` (normalisation layers only), the detection recipes' ``--no-wd-norm``.

    Returns
    -------
    list of str
        Names of the parameters that are no longer decayed.
    """
    suffixes = _NORM_SUFFIXES + (_BIAS_SUFFIXES if biases else ())
    names = []
    for name, param in net.collect_params().items():
        if name.endswith(suffixes):
            param.wd_mult = 0.0
            names.append(name)
    return names
