"""Split attention (radix / cardinal groups), the core block of ResNeSt.

The convolution produces ``radix`` feature-map groups ("splits") per cardinal group, laid out radix-major
along the channel axis: channels ``[r * channels, (r + 1) * channels)`` hold split ``r``. The splits are
summed, pooled, squeezed through two grouped 1x1 convolutions and turned into one attention weight per
split and channel (softmax over the radix axis; sigmoid when radix is 1). The output is the attention-
weighted sum of the splits.

Speed: GluonCV sums the splits with a 5-D ``sum`` over the radix axis, which is by far the slowest op of
the whole network on CPU (58% of ResNeSt-50's time in MXNet's profiler). Here the splits are separated with one
``split`` along the channel axis and summed with ``add_n``, and the global pooling runs before the radix
sum (on the small pooled tensor). Graphs that may train (see ``trace.graph_mode``) pool with
``AdaptiveAvgPooling2D``, whose backward pass is far cheaper on CPU than that of the global ``Pooling``
inference graphs use, and weight the splits with ``convex_radix_sum``; CPU training graphs (see
``trace.fuses_norm_relu``) run each BatchNorm and its ReLU as one operator and multiply by broadcast
weights there. All forms are the same arithmetic as GluonCV's graph up to float rounding.
Only reshape codes 0 and -1 and positive swap axes are used, so the block exports to ONNX.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .trace import fuses_norm_relu, graph_mode, norm_relu

__all__ = ['RadixSoftmax', 'SplitAttentionConv']


def radix_sum(F, x, radix):
    """Sum the ``radix`` channel groups of ``x`` (N, radix*C, ...) into (N, C, ...)."""
    if radix == 1:
        return x
    return F.add_n(*F.split(x, num_outputs=radix, axis=1))


def weighted_radix_sum(F, x, weights, radix):
    """Sum over the ``radix`` channel groups of ``x`` (N, radix*C, H, W), each times its ``weights``
    group (N, radix*C, 1, 1): the same products and additions as ``radix_sum(broadcast_mul(x, weights))``.

    Splitting first keeps the feature map in oneDNN's blocked layout until the split: MXNet 1.9 runs
    ``broadcast_mul`` on plain NCHW only, and a product of the whole map made ``split`` convert it to
    the blocked layout and back, two more full-map reorders per block.
    """
    if radix == 1:
        return F.broadcast_mul(x, weights)
    splits = F.split(x, num_outputs=radix, axis=1)
    parts = F.split(weights, num_outputs=radix, axis=1)
    return F.add_n(*[F.broadcast_mul(splits[r], parts[r]) for r in range(radix)])


def convex_radix_sum(F, x, weights, radix, broadcast=False):
    """``weighted_radix_sum`` for weights that sum to one over the radix axis (a softmax), the form
    training graphs use: with the last split ``x_R`` as base, ``x_R + sum_{r<R} w_r (x_r - x_R)``.

    The backward pass then keeps ``radix - 1`` difference maps of C channels (half the split
    convolution's output at radix 2), where a product of all splits with their broadcast weights keeps
    the broadcast weights, a map of radix*C channels: 104 MiB less for a ResNeSt-50 training step at
    batch 8, as fast with 2 threads (1.4% of a step slower with 1). The gradient reaching the softmax
    is the same: its outputs' gradients differ by a constant across the radix axis, which a softmax's
    backward pass removes.

    ``broadcast``: multiply by the weights broadcast to the difference map's shape (``broadcast_like``)
    instead of ``broadcast_mul``; CPU training graphs do. ``broadcast_mul``'s backward pass reduces over
    H and W in one MXNet kernel that indexes every element through both operands' shapes; the
    elementwise product's backward is two elementwise products and the reduce of one map. A ResNeSt-50
    training step at batch 8 on 2 cores was 5% faster. (``batch_dot`` of the weights and the flattened
    map was as fast on 2 cores, but MXNet runs it on one thread, which would not scale with cores.)
    """
    if radix < 2:
        raise ValueError('convex_radix_sum needs radix >= 2 (softmax weights), got radix=%d' % radix)
    splits = F.split(x, num_outputs=radix, axis=1)
    parts = F.split(weights, num_outputs=radix, axis=1)
    base = splits[radix - 1]
    if broadcast:
        terms = [(splits[r] - base) * F.broadcast_like(parts[r], base) for r in range(radix - 1)]
    else:
        terms = [F.broadcast_mul(splits[r] - base, parts[r]) for r in range(radix - 1)]
    return base + terms[0] if radix == 2 else F.add_n(base, *terms)


class RadixSoftmax(HybridBlock):
    """Attention weights over the radix axis.

    Takes the logits of the second attention convolution, shape (N, radix * channels, 1, 1), grouped
    cardinal-major as that grouped convolution writes them, and returns weights of the same shape in the
    radix-major layout of the split feature maps: a softmax over the radix axis, or a sigmoid when
    ``radix`` is 1.

    Parameters
    ----------
    radix : int
        Number of splits per cardinal group.
    cardinality : int
        Number of cardinal groups.
    """

    def __init__(self, radix, cardinality, **kwargs):
        super(RadixSoftmax, self).__init__(**kwargs)
        if radix < 1 or cardinality < 1:
            raise ValueError('radix and cardinality must be >= 1, got radix=%d cardinality=%d'
                             % (radix, cardinality))
        self.radix = radix
        self.cardinality = cardinality

    def hybrid_forward(self, F, x):
        if self.radix == 1:
            return F.sigmoid(x)
        if self.cardinality == 1:
            # One cardinal group is already radix-major: no transpose (one op less per block, which
            # counts at batch 1, where every small op costs a parallel-region start).
            x = F.softmax(F.reshape(x, (0, self.radix, -1)), axis=1)
        else:
            x = F.reshape(x, (0, self.cardinality, self.radix, -1))
            x = F.softmax(F.swapaxes(x, 1, 2), axis=1)
        return F.reshape(x, (0, -1, 1, 1))


class SplitAttentionConv(HybridBlock):
    """Split-attention convolution (Zhang et al., "ResNeSt: Split-Attention Networks", 2020).

    Parameters
    ----------
    channels : int
        Output channels (the group width of the bottleneck).
    kernel_size : int, default 3
        Kernel of the split convolution.
    strides : int, default 1
    padding : int or None, default None
        Defaults to ``dilation * (kernel_size // 2)`` ("same" padding).
    dilation : int, default 1
    groups : int, default 1
        Cardinality: number of cardinal groups.
    radix : int, default 2
        Number of splits per cardinal group; 1 gives SE-like sigmoid attention.
    in_channels : int, default 0
        Input channels (0: inferred).
    reduction_factor : int, default 4
        The attention bottleneck has ``max(channels * radix // reduction_factor, min_inter_channels)``
        channels. GluonCV's ``r=2`` halves ``channels * radix / 2``: the same as 4 here.
    min_inter_channels : int, default 32
    norm_layer : Block class or None, default BatchNorm
    norm_kwargs : dict or None
    drop_ratio : float, default 0
        Dropout inside the attention branch (training only).
    """

    def __init__(self, channels, kernel_size=3, strides=1, padding=None, dilation=1, groups=1,
                 radix=2, in_channels=0, reduction_factor=4, min_inter_channels=32,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, drop_ratio=0, **kwargs):
        super(SplitAttentionConv, self).__init__(**kwargs)
        if radix < 1 or groups < 1:
            raise ValueError('radix and groups must be >= 1, got radix=%d groups=%d' % (radix, groups))
        if channels % groups:
            raise ValueError('channels (%d) must be divisible by groups (%d)' % (channels, groups))
        norm_kwargs = norm_kwargs or {}
        if padding is None:
            padding = dilation * (kernel_size // 2)
        inter_channels = max(channels * radix // reduction_factor, min_inter_channels)
        self.radix = radix
        self.cardinality = groups
        self.channels = channels
        # Creation order and attribute names are API: parameter paths (conv2.fc1.bias) and the per-stage
        # name counters (relu, conv, batchnorm) must equal GluonCV's for its weights and detection taps.
        self.conv = nn.Conv2D(channels * radix, kernel_size, strides, padding, dilation,
                              groups=groups * radix, use_bias=False, in_channels=in_channels)
        self.use_bn = norm_layer is not None
        if self.use_bn:
            self.bn = norm_layer(in_channels=channels * radix, **norm_kwargs)
        self.relu = nn.Activation('relu')
        self.fc1 = nn.Conv2D(inter_channels, 1, in_channels=channels, groups=groups)
        if self.use_bn:
            self.bn1 = norm_layer(in_channels=inter_channels, **norm_kwargs)
        self.relu1 = nn.Activation('relu')
        self.drop = nn.Dropout(drop_ratio) if drop_ratio > 0 else None
        self.fc2 = nn.Conv2D(channels * radix, 1, in_channels=inter_channels, groups=groups)
        self.rsoftmax = RadixSoftmax(radix, groups)

    def hybrid_forward(self, F, x):
        return self._forward(F, x, None)

    def pooled_forward(self, F, x, pool):
        """``pool(self(x))`` for a pooling that is linear per channel (an average pooling, as the
        bottleneck's strided ``avd`` pooling), with the splits pooled before they are weighted.

        The attention still pools the full map; only the weighting of the splits (split, products,
        sum, and their layout conversions) runs at the pooled resolution, a quarter of the elements at
        stride 2, and the pooling reads the convolution's oneDNN-blocked output. Per-channel weights
        commute with a linear pooling, so the result is the same up to float rounding. ResNeSt-50's
        three strided ``avd`` blocks hold over a third of its split-weighting work: inference 4-5%
        faster at batch 1 and 8 on 2 cores.
        """
        with self.name_scope():
            return self._forward(F, x, pool)

    def _forward(self, F, x, pool):
        x = self.conv(x)
        x = norm_relu(F, self.bn, self.relu, x, (self.conv,)) if self.use_bn else self.relu(x)
        # Two forms of the same arithmetic: MXNet's global Pooling and broadcast_mul are the fastest
        # forward ops, but the pooling's backward pass is slow on CPU (it alone took over half of a
        # ResNeSt-50 training step), so graphs that may train use the adaptive pooling and weight the
        # splits as convex_radix_sum does (less memory kept for backward).
        inference = graph_mode(F) is False
        if inference:
            gap = F.Pooling(x, kernel=(1, 1), pool_type='avg', global_pool=True)
        else:
            gap = F.contrib.AdaptiveAvgPooling2D(x, output_size=1)
        gap = radix_sum(F, gap, self.radix)
        gap = self.fc1(gap)
        atten = (norm_relu(F, self.bn1, self.relu1, gap, (self.fc1, self.fc2)) if self.use_bn
                 else self.relu1(gap))
        if self.drop is not None:
            atten = self.drop(atten)
        atten = self.rsoftmax(self.fc2(atten))
        if pool is not None:
            x = pool(x)
        if inference:
            return weighted_radix_sum(F, x, atten, self.radix)
        if self.radix > 1:
            return convex_radix_sum(F, x, atten, self.radix, broadcast=fuses_norm_relu(F))
        # Sigmoid attention: an elementwise product with the broadcast weights, whose backward pass is
        # cheaper on CPU than that of broadcast_mul.
        return x * F.broadcast_like(atten, x)
