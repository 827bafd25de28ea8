"""DropBlock (Ghiasi et al., 2018) that is right at run time, at any input size, and free at inference.

GluonCV's DropBlock asks ``autograd.is_training()`` inside ``hybrid_forward``, which is answered once, when
the graph is traced: a network first hybridized under ``autograd.record()`` keeps dropping at inference,
and its mask is sized from a fixed ``input_size``. Here:

- Eagerly (not hybridized) the question is asked on every call, which is then correct.
- :class:`~gluon_resnest.resnest.ResNeSt` keeps one traced graph per mode and traces each inside
  :func:`trace_mode`, so its inference graph holds no DropBlock ops at all and its training graph drops
  (the mask is a constant to autograd, so backward only rescales).
- Traced anywhere else (a stage inside another hybridized network, a graph built from symbols) the
  mode is unknown, so the graph decides when it runs: the random seeds come from MXNet's ``Dropout``
  operator applied to a tensor of ones, and ``Dropout`` consults the executor's ``is_train`` flag on every
  call. The same graph drops blocks while training and is the exact identity at inference. Where the
  mode is known to be training, the seeds are uniform draws compared with the seed probability
  (``uniform_like``), which takes half the time and memory.

The mask is built from the input itself, so any input size works. Seeds are drawn at every position with
probability ``drop_prob / block_size**2`` and grown into blocks: a unit is dropped when a seed lies
within ``block_size // 2`` of it (a stride-1 sum pooling of the seeds is non-zero), so about
``drop_prob`` of the units are dropped; the kept ones are rescaled per sample so that the expected
activation is unchanged.

The class derives from ``gluoncv.nn.dropblock.DropBlock`` so that GluonCV's ``set_drop_prob`` and
``DropBlockScheduler`` (which test ``isinstance``), as used by its segmentation and detection code, drive
it too. ``drop_prob`` is read when the graph is traced: re-hybridize after changing it (GluonCV's scheduler
and ours do). With ``drop_prob == 0`` the block adds nothing to the graph.
"""
from contextlib import contextmanager
from functools import partial

from gluoncv.nn.dropblock import DropBlock as _GluonCVDropBlock
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .trace import graph_mode, trace_mode

__all__ = ['DropBlock', 'set_drop_prob', 'DropBlockScheduler', 'without_random_ops', 'clear_cached_graphs']


class DropBlock(_GluonCVDropBlock):
    """DropBlock regularisation for 4-D (N, C, H, W) feature maps.

    Parameters
    ----------
    drop_prob : float
        Fraction of units to drop while training, in [0, 1).
    block_size : int, default 3
        Side of the square blocks; odd.
    """

    def __init__(self, drop_prob=0.0, block_size=3, **kwargs):
        # Skip GluonCV's __init__ (it needs a fixed input size); keep its class for isinstance checks.
        HybridBlock.__init__(self, **kwargs)  # pylint: disable=non-parent-init-called
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError('DropBlock block_size must be a positive odd number, got %r' % (block_size,))
        _check_prob(drop_prob)
        self.drop_prob = drop_prob
        self.block_size = block_size

    def hybrid_forward(self, F, x):
        if self.drop_prob <= 0:
            return x
        mode = graph_mode(F)
        if mode is False:
            return x
        _check_prob(self.drop_prob)
        gamma = min(self.drop_prob / (self.block_size ** 2), 0.999)
        # Both random streams follow mx.random.seed exactly, which resumed training relies on.
        if mode:
            # A graph that only trains: uniform draws, half the time and maps of the Dropout form.
            seeds = F.random.uniform_like(x) < gamma
        else:
            # Unknown mode. Dropout of ones: 0 at a seed with probability gamma while training, all
            # ones at inference (decided when the graph runs).
            seeds = F.Dropout(F.ones_like(x), p=gamma, mode='training') == 0
        half = self.block_size // 2
        # A unit is kept when no seed lies in its block-sized neighbourhood: the count of seeds there
        # (a sum pooling) is 0. Not 1 - max pooling: oneDNN max-pools these plain-layout maps with its
        # slow reference kernel (7x the time of MXNet's own sum pooling, a quarter of a training step).
        mask = F.Pooling(seeds, kernel=(self.block_size, self.block_size), stride=(1, 1),
                         pad=(half, half), pool_type='sum') == 0
        # Kept fraction per sample; global pooling is far faster than a reduce over (C, H, W).
        kept = F.mean(F.Pooling(mask, kernel=(1, 1), pool_type='avg', global_pool=True), axis=1,
                      keepdims=True)
        # The mask is data, not a function of x to differentiate: without BlockGrad, autograd would
        # run the backward of both poolings and of a broadcast division (a slow reduce) every step.
        scale = F.BlockGrad(F.broadcast_div(mask, F.maximum(kept, 1e-6)))
        return x * scale

    def cast(self, dtype):
        HybridBlock.cast(self, dtype)

    def __repr__(self):
        return '%s(drop_prob=%g, block_size=%d)' % (self.__class__.__name__, self.drop_prob,
                                                     self.block_size)


def _check_prob(drop_prob):
    if not 0 <= drop_prob < 1:
        raise ValueError('DropBlock drop_prob must be in [0, 1), got %r' % (drop_prob,))


def set_drop_prob(drop_prob, block):
    """Set ``drop_prob`` on ``block`` if it is a DropBlock (ours or GluonCV's); use with ``net.apply``."""
    if isinstance(block, _GluonCVDropBlock):
        block.drop_prob = drop_prob


class DropBlockScheduler(object):
    """Ramp every DropBlock's probability linearly from ``start_prob`` to ``end_prob`` over training.

    Call it once per epoch with the 0-based epoch index: after epoch ``e`` of ``num_epochs`` the
    probability is ``start + (end - start) * (e + 1) / num_epochs`` (the paper's linear ramp, as GluonCV's
    scheduler computes it). Cached graphs are dropped (hybridize flags kept) so the new probability takes
    effect at the next call.

    Parameters
    ----------
    net : Block
    start_prob, end_prob : float
    num_epochs : int
    """

    def __init__(self, net, start_prob, end_prob, num_epochs):
        if num_epochs < 1:
            raise ValueError('num_epochs must be >= 1, got %r' % (num_epochs,))
        _check_prob(start_prob)
        _check_prob(end_prob)
        self.net = net
        self.start_prob = start_prob
        self.end_prob = end_prob
        self.num_epochs = num_epochs

    def prob(self, epoch):
        """The drop probability used during 0-based ``epoch``."""
        ratio = min(max((epoch + 1) / float(self.num_epochs), 0.0), 1.0)
        return self.start_prob + (self.end_prob - self.start_prob) * ratio

    def __call__(self, epoch):
        prob = self.prob(epoch)
        self.net.apply(partial(set_drop_prob, prob))
        clear_cached_graphs(self.net)
        return prob


def _clear_cached_graph(block):
    if isinstance(block, HybridBlock):
        block._clear_cached_op()  # pylint: disable=protected-access


def clear_cached_graphs(net):
    """Drop the cached graph of ``net`` and of every block in it: the next call traces again."""
    net.apply(_clear_cached_graph)


@contextmanager
def without_random_ops(net):
    """Within this context ``net`` traces to an inference graph with no DropBlock or Dropout ops at all.

    Both are already the identity at inference; this removes them from the graph itself, which is what
    an exported deployment graph should be. Graphs traced inside are declared inference-only
    (:func:`trace_mode`), also where ``net`` is wrapped in another block, so they take the inference
    form of every layer. Rates are restored (and cached graphs dropped again) on exit.

    Examples
    --------
    >>> with without_random_ops(net):
    ...     net.hybridize()
    ...     net(x)
    ...     net.export('resnest50')
    """
    saved = []

    def _zero(block):
        if isinstance(block, _GluonCVDropBlock):
            saved.append((block, 'drop_prob', block.drop_prob))
            block.drop_prob = 0.0
        elif isinstance(block, nn.Dropout):
            saved.append((block, '_rate', block._rate))  # pylint: disable=protected-access
            block._rate = 0.0  # pylint: disable=protected-access

    net.apply(_zero)
    clear_cached_graphs(net)
    try:
        with trace_mode(False):
            yield net
    finally:
        for block, attr, value in saved:
            setattr(block, attr, value)
        clear_cached_graphs(net)
