"""The inference form of a trained radix-2 split attention: the same function in fewer graph operators.

For one cardinal group and radix 2 (every ResNeSt-14 to -269 block), the attention branch is rewritten
with new weights derived from the trained ones:

- the radix sum of the pooled splits goes into the first attention convolution: ``fc1(g0 + g1)`` is
  ``fc1'([g0; g1])`` with ``fc1'``'s weight the trained one repeated over both splits' channels;
- the softmax over two splits is a sigmoid of their logits' difference, ``softmax(z0, z1)_0 =
  sigmoid(z0 - z1)``: the second attention convolution ``fc2'`` computes ``z0 - z1`` and ``z1 - z0``
  (weight and bias rows subtracted), followed by one sigmoid;
- the weights then multiply the whole split map at once, and the two halves are summed.

Per block, 6 operators fewer than :class:`SplitAttentionConv`'s inference graph (the pooled splits'
``split`` and ``add_n``, the softmax's two reshapes, the weights' ``split``, and one of the two
``broadcast_mul``; the softmax becomes a sigmoid). In a oneDNN INT8 graph, where these operators stay
fp32, a ``dequantize`` and a ``quantize_v2`` per block go with them: the ResNeSt-50 INT8 graph runs 227
operators instead of 355. ``gluon_resnest.export`` quantizes this form (``--format int8``).
The result equals the trained block's up to float rounding.
"""
from contextlib import contextmanager

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .dropblock import clear_cached_graphs
from .split_attention import SplitAttentionConv

__all__ = ['SplitAttentionInference', 'attention_inference_form']


def _weights(param):
    return param.list_data()[0].as_in_context(mx.cpu())


class SplitAttentionInference(HybridBlock):
    """Inference-only form of a trained radix-2, one-group :class:`SplitAttentionConv` (see the module).

    Shares the trained block's split convolution and normalisations; holds derived ``fc1`` and ``fc2``
    (on the CPU). Offers the trained block's ``conv`` and ``pooled_forward`` to the bottleneck.
    """

    def __init__(self, trained):
        if not supports(trained):
            raise ValueError('the inference form needs radix 2 and one cardinal group, got radix=%d groups=%d'
                             % (trained.radix, trained.cardinality))
        super(SplitAttentionInference, self).__init__(prefix=trained.prefix + 'inference_')
        channels = trained.channels
        self.conv = trained.conv
        self.bn = trained.bn if trained.use_bn else None
        self.relu = trained.relu
        self.bn1 = trained.bn1 if trained.use_bn else None
        self.relu1 = trained.relu1
        w1, w2, b2 = _weights(trained.fc1.weight), _weights(trained.fc2.weight), _weights(trained.fc2.bias)
        with self.name_scope():
            self.fc1 = nn.Conv2D(w1.shape[0], 1, in_channels=2 * channels)
            self.fc2 = nn.Conv2D(2 * channels, 1, in_channels=w1.shape[0])
        self.fc1.initialize(ctx=mx.cpu())
        self.fc2.initialize(ctx=mx.cpu())
        self.fc1.weight.set_data(mx.nd.concat(w1, w1, dim=1))
        self.fc1.bias.set_data(_weights(trained.fc1.bias))
        diff, diff_bias = w2[:channels] - w2[channels:], b2[:channels] - b2[channels:]
        self.fc2.weight.set_data(mx.nd.concat(diff, -diff, dim=0))
        self.fc2.bias.set_data(mx.nd.concat(diff_bias, -diff_bias, dim=0))

    def hybrid_forward(self, F, x):
        return self._forward(F, x, None)

    def pooled_forward(self, F, x, pool):
        """``pool(self(x))`` with the splits pooled before they are weighted, as
        :meth:`SplitAttentionConv.pooled_forward`."""
        with self.name_scope():
            return self._forward(F, x, pool)

    def _forward(self, F, x, pool):
        x = self.conv(x)
        x = self.relu(self.bn(x) if self.bn is not None else x)
        gap = self.fc1(F.Pooling(x, kernel=(1, 1), pool_type='avg', global_pool=True))
        atten = self.relu1(self.bn1(gap) if self.bn1 is not None else gap)
        weights = F.sigmoid(self.fc2(atten))
        if pool is not None:
            x = pool(x)
        return F.add_n(*F.split(F.broadcast_mul(x, weights), num_outputs=2, axis=1))


def supports(block):
    """Whether ``block`` (a :class:`SplitAttentionConv`) has an inference form: radix 2, one group."""
    return block.radix == 2 and block.cardinality == 1


def _split_attentions(block):
    """(parent, attribute name, block) of every :class:`SplitAttentionConv` under ``block``."""
    for name, child in list(block._children.items()):  # pylint: disable=protected-access
        if isinstance(child, SplitAttentionConv):
            yield block, name, child
        else:
            yield from _split_attentions(child)


def _put(parent, name, child):
    # Gluon refuses to change a registered child's type through setattr: replace the entry itself.
    parent._children[name] = child  # pylint: disable=protected-access
    object.__setattr__(parent, name, child)


@contextmanager
def attention_inference_form(net):
    """Within the block, every radix-2, one-group split attention of ``net`` runs in its inference form
    (:class:`SplitAttentionInference`); the trained blocks are back afterwards. Yields the number of
    blocks replaced. ``net`` must be initialised; its cached graph is rebuilt on the next call, in and
    after the block."""
    swapped = [(parent, name, block) for parent, name, block in _split_attentions(net) if supports(block)]
    try:
        for parent, name, block in swapped:
            _put(parent, name, SplitAttentionInference(block))
        clear_cached_graphs(net)
        yield len(swapped)
    finally:
        for parent, name, block in swapped:
            _put(parent, name, block)
        clear_cached_graphs(net)
