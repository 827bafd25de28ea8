"""The ResNeSt network: deep stem, four stages of split-attention bottlenecks, classifier head.

One network class with every option as an argument; the published variants are rows of a table in
:mod:`gluon_resnest.model_zoo`.

Parameter paths and symbol names are API. GluonCV's published ``.params`` load by attribute path
(``layer1.0.conv2.fc1.bias``) and its Faster-RCNN FPN and detection checkpoints key on symbol names
(``resnest_layers1_relu11_fwd``, ``resnest_down1_conv0_weight``). GluonCV opens no name scope inside a
bottleneck, so each stage shares one name counter; the blocks below keep that, and create their children
in GluonCV's order, so every name matches.
"""
import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .layers import DropBlock, SplitAttentionConv, graph_mode, norm_relu, trace_mode
from .layers.trace import onednn_cpu

__all__ = ['Bottleneck', 'ResNeSt', 'stage_output_names']


class Bottleneck(HybridBlock):
    """ResNeSt bottleneck: 1x1 conv, 3x3 split-attention conv, 1x1 conv, residual.

    Parameters
    ----------
    channels : int
        Base width of the stage; the block outputs ``channels * 4``.
    in_channels : int
        Input channels.
    strides : int, default 1
    dilation : int, default 1
        Dilation of the 3x3 convolution.
    downsample : HybridBlock or None
        Projection of the shortcut.
    radix, cardinality, bottleneck_width : int
        Split-attention layout; the group width is ``int(channels * bottleneck_width / 64) * cardinality``.
    avd : bool, default False
        Replace the strided 3x3 convolution by a stride-1 one plus a 3x3 average pool with the stride.
    avd_first : bool, default False
        Put that average pool before the split-attention convolution instead of after it.
    dropblock_prob : float or None, default None
        DropBlock probability; None builds the block without DropBlock layers.
    last_gamma : bool, default False
        Initialise the last BatchNorm's gamma to zero.
    norm_layer, norm_kwargs
        Normalisation layer class and its arguments.
    reduction_factor : int, default 4
        Split-attention bottleneck reduction.
    """
    expansion = 4

    def __init__(self, channels, in_channels, strides=1, dilation=1, downsample=None, radix=2,
                 cardinality=1, bottleneck_width=64, avd=False, avd_first=False, dropblock_prob=None,
                 last_gamma=False, norm_layer=nn.BatchNorm, norm_kwargs=None, reduction_factor=4,
                 **kwargs):
        super(Bottleneck, self).__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        group_width = int(channels * (bottleneck_width / 64.)) * cardinality
        self.avd = avd
        self.avd_first = avd_first
        self.use_dropblock = dropblock_prob is not None
        if self.use_dropblock:
            self.dropblock1 = DropBlock(dropblock_prob, 3)
            self.dropblock2 = DropBlock(dropblock_prob, 3)
            self.dropblock3 = DropBlock(dropblock_prob, 3)
        self.conv1 = nn.Conv2D(group_width, kernel_size=1, use_bias=False, in_channels=in_channels)
        self.bn1 = norm_layer(in_channels=group_width, **norm_kwargs)
        self.relu1 = nn.Activation('relu')
        self.conv2 = SplitAttentionConv(group_width, kernel_size=3, strides=1 if avd else strides,
                                        padding=dilation, dilation=dilation, groups=cardinality,
                                        radix=radix, in_channels=group_width,
                                        reduction_factor=reduction_factor, norm_layer=norm_layer,
                                        norm_kwargs=norm_kwargs)
        self.conv3 = nn.Conv2D(channels * self.expansion, kernel_size=1, use_bias=False,
                               in_channels=group_width)
        gamma_init = {'gamma_initializer': 'zeros'} if last_gamma else {}
        self.bn3 = norm_layer(in_channels=channels * self.expansion, **gamma_init, **norm_kwargs)
        if avd:
            self.avd_layer = nn.AvgPool2D(3, strides, padding=1)
        self.avd_strides = strides if avd else 1
        self.relu3 = nn.Activation('relu')
        self.downsample = downsample

    def hybrid_forward(self, F, x):
        # ReLU before DropBlock: DropBlock scales by a non-negative mask, which commutes with ReLU, and
        # BatchNorm and ReLU stay adjacent (one operator in CPU training graphs).
        out = norm_relu(F, self.bn1, self.relu1, self.conv1(x), (self.conv1, self.conv2.conv))
        if self.use_dropblock:
            out = self.dropblock1(out)
        if self.avd and self.avd_first:
            out = self.avd_layer(out)
        if self._pool_splits_first(F):  # dropblock2, if any, is the identity here
            out = self.conv2.pooled_forward(F, out, self.avd_layer)
        else:
            out = self.conv2(out)
            if self.use_dropblock:
                out = self.dropblock2(out)
            if self.avd and not self.avd_first:
                out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        if self.use_dropblock:
            out = self.dropblock3(out)
        return self.relu3(out + residual)

    def _pool_splits_first(self, F):
        """Whether the strided avd pooling can run on the split convolution's output before the
        splits are weighted (SplitAttentionConv.pooled_forward): when it follows the split attention,
        strides, and no DropBlock (whose mask does not commute with pooling) may drop in between."""
        if not self.avd or self.avd_first or self.avd_strides == 1:
            return False
        return not (self.use_dropblock and self.dropblock2.drop_prob > 0 and graph_mode(F) is not False)


def _stage_plan(output_stride):
    """(strides, dilation of the first block, dilation of the others) for each of the four stages.

    Stages stop striding once ``output_stride`` is reached and dilate instead; the first block of a
    dilated stage keeps the previous stage's dilation (as GluonCV and the paper's segmentation nets do).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError('output_stride must be 8, 16 or 32, got %r' % (output_stride,))
    plan, current_stride, dilation = [], 4, 1
    for nominal_stride in (1, 2, 2, 2):
        previous_dilation = dilation
        if current_stride * nominal_stride > output_stride:
            strides, dilation = 1, dilation * nominal_stride
        else:
            strides = nominal_stride
            current_stride *= nominal_stride
        plan.append((strides, previous_dilation, dilation))
    return plan


class ResNeSt(HybridBlock):
    """ResNeSt network (Zhang et al., "ResNeSt: Split-Attention Networks", 2020).

    Parameters
    ----------
    layers : list of 4 int
        Number of bottlenecks in each stage.
    classes : int, default 1000
        Number of classification classes.
    radix : int, default 2
        Splits per cardinal group (1: sigmoid attention).
    cardinality : int, default 1
        Number of cardinal groups.
    bottleneck_width : int, default 64
        Width per cardinal group at the first stage.
    deep_stem : bool, default True
        Three 3x3 convolutions instead of one 7x7 in the stem.
    stem_width : int, default 32
        Width of the deep stem's first two convolutions (the third has twice as many).
    avg_down : bool, default True
        Average-pool then 1x1 conv (instead of a strided 1x1 conv) on projection shortcuts.
    avd : bool, default True
        Average-pool downsampling inside the bottleneck (see :class:`Bottleneck`).
    avd_first : bool, default False
        Place that pool before the split-attention convolution.
    dilated : bool, default False
        Output stride 8 (stages 3 and 4 dilated by 2 and 4), as segmentation expects.
    output_stride : int, default 32
        8, 16 or 32; ``dilated=True`` means 8.
    norm_layer : Block class, default BatchNorm
        E.g. :class:`mxnet.gluon.contrib.nn.SyncBatchNorm`.
    norm_kwargs : dict or None
        Arguments of ``norm_layer``.
    use_global_stats : bool, default False
        BatchNorm uses its running statistics also while training (fine-tuning).
    last_gamma : bool, default False
        Zero-initialise the last BatchNorm gamma of each bottleneck.
    dropblock_prob : float, default 0.0
        DropBlock probability in stages 3 and 4 (their DropBlock layers exist even at 0, so a
        :class:`~gluon_resnest.layers.DropBlockScheduler` can ramp it).
    final_drop : float, default 0.0
        Dropout before the classifier.
    reduction_factor : int, default 4
        Split-attention bottleneck reduction.
    prefix : str, default 'resnest_'
        Symbol name prefix.
    """

    def __init__(self, layers, classes=1000, radix=2, cardinality=1, bottleneck_width=64,
                 deep_stem=True, stem_width=32, avg_down=True, avd=True, avd_first=False,
                 dilated=False, output_stride=None, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 use_global_stats=False, last_gamma=False, dropblock_prob=0.0, final_drop=0.0,
                 reduction_factor=4, prefix='resnest_', params=None):
        super(ResNeSt, self).__init__(prefix=prefix, params=params)
        self.output_stride = _resolve_output_stride(dilated, output_stride)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError('layers must be 4 positive block counts, got %r' % (layers,))
        if classes < 1:
            raise ValueError('classes must be >= 1, got %r' % (classes,))
        norm_kwargs = dict(norm_kwargs or {})
        if use_global_stats:
            norm_kwargs['use_global_stats'] = True
        self.num_classes = classes
        self._block_args = dict(radix=radix, cardinality=cardinality,
                                bottleneck_width=bottleneck_width, avd_first=avd_first,
                                last_gamma=last_gamma, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                                reduction_factor=reduction_factor)
        stem_out = stem_width * 2 if deep_stem else 64
        with self.name_scope():
            self.conv1 = self._make_stem(deep_stem, stem_width, norm_layer, norm_kwargs)
            self.bn1 = norm_layer(in_channels=stem_out, **norm_kwargs)
            self.relu = nn.Activation('relu')
            self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
            in_channels = stem_out
            for index, (strides, first_dilation, dilation) in enumerate(
                    _stage_plan(self.output_stride)):
                channels = 64 * 2 ** index
                stage = self._make_stage(index + 1, channels, layers[index], in_channels, strides,
                                         first_dilation, dilation, avg_down, avd,
                                         dropblock_prob if index >= 2 else None)
                setattr(self, 'layer%d' % (index + 1), stage)
                in_channels = channels * Bottleneck.expansion
            self.avgpool = nn.GlobalAvgPool2D()
            self.flat = nn.Flatten()
            self.drop = nn.Dropout(final_drop) if final_drop > 0 else None
            self.fc = nn.Dense(classes, in_units=in_channels)

    @staticmethod
    def _make_stem(deep_stem, stem_width, norm_layer, norm_kwargs):
        if not deep_stem:
            return nn.Conv2D(64, kernel_size=7, strides=2, padding=3, use_bias=False, in_channels=3)
        # No trailing underscore and no name scope: GluonCV's names (resnest_conv0_weight) need both.
        stem = nn.HybridSequential(prefix='conv1')
        stem.add(nn.Conv2D(stem_width, 3, 2, 1, use_bias=False, in_channels=3),
                 norm_layer(in_channels=stem_width, **norm_kwargs),
                 nn.Activation('relu'),
                 nn.Conv2D(stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                 norm_layer(in_channels=stem_width, **norm_kwargs),
                 nn.Activation('relu'),
                 nn.Conv2D(stem_width * 2, 3, 1, 1, use_bias=False, in_channels=stem_width))
        return stem

    def _make_stage(self, index, channels, blocks, in_channels, strides, first_dilation, dilation,
                    avg_down, avd, dropblock_prob):
        out_channels = channels * Bottleneck.expansion
        norm_layer = self._block_args['norm_layer']
        norm_kwargs = self._block_args['norm_kwargs']
        downsample = None
        if strides != 1 or in_channels != out_channels:
            downsample = nn.HybridSequential(prefix='down%d_' % index)
            with downsample.name_scope():
                if avg_down:
                    downsample.add(nn.AvgPool2D(pool_size=strides, strides=strides, ceil_mode=True,
                                                count_include_pad=False))
                    downsample.add(nn.Conv2D(out_channels, 1, 1, use_bias=False,
                                             in_channels=in_channels))
                else:
                    downsample.add(nn.Conv2D(out_channels, 1, strides, use_bias=False,
                                             in_channels=in_channels))
                downsample.add(norm_layer(in_channels=out_channels, **norm_kwargs))
        stage = nn.HybridSequential(prefix='layers%d_' % index)
        with stage.name_scope():
            stage.add(Bottleneck(channels, in_channels, strides=strides, dilation=first_dilation,
                                 downsample=downsample, dropblock_prob=dropblock_prob,
                                 avd=avd and (strides > 1 or first_dilation != dilation),
                                 **self._block_args))
            for _ in range(1, blocks):
                stage.add(Bottleneck(channels, out_channels, dilation=dilation,
                                     dropblock_prob=dropblock_prob, **self._block_args))
        return stage

    def features(self, F, x):
        """The stem and the four stages: (N, 3, H, W) -> (N, 2048, H/stride, W/stride)."""
        last = self.conv1
        if isinstance(self.conv1, nn.HybridSequential):  # deep stem: conv, BN, ReLU, conv, BN, ReLU, conv
            layers = list(self.conv1)
            for index in range(0, len(layers) - 1, 3):
                conv, norm, relu = layers[index:index + 3]
                x = norm_relu(F, norm, relu, conv(x), (conv, layers[index + 3]))
            last = layers[-1]
        x = self.maxpool(norm_relu(F, self.bn1, self.relu, last(x), (last,)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def hybrid_forward(self, F, x):
        x = self.flat(self.avgpool(self.features(F, x)))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)

    # One traced graph per kind of run: inference, training, and training on a CPU oneDNN context
    # (BatchNorm+ReLU fused, see layers.trace). A graph traced for inference leaves DropBlock out
    # entirely (it is the identity there) instead of carrying run-time-gated random ops; switching
    # train/eval swaps graphs rather than re-tracing. Children traced on their own fall back to the
    # run-time-gated form.
    def forward(self, x, *args):
        if isinstance(x, mx.nd.NDArray):
            check_input_shape(x.shape, self.output_stride)
            if self._active:
                self._select_graph(_graph_kind(x))
        return super(ResNeSt, self).forward(x, *args)

    def _select_graph(self, kind):
        current = getattr(self, '_graph_kind', None)
        if not self._cached_graph or current == kind:
            return
        stash = self.__dict__.setdefault('_graph_stash', {})
        stash[current] = (self._cached_graph, self._cached_op, self._cached_op_args)
        self._cached_graph, self._cached_op, self._cached_op_args = stash.pop(kind, ((), None, []))
        self._graph_kind = kind if self._cached_graph else None

    def _get_graph(self, *args):
        if self._cached_graph:
            return super(ResNeSt, self)._get_graph(*args)
        kind = _graph_kind(args[0])  # cached graphs are built from NDArray calls (forward)
        with trace_mode(*kind):
            graph = super(ResNeSt, self)._get_graph(*args)
        self._graph_kind = kind
        return graph

    def _clear_cached_op(self):
        super(ResNeSt, self)._clear_cached_op()
        self._graph_stash = {}
        self._graph_kind = None


def _graph_kind(x):
    """(training, fuse_norm_relu) of a call on ``x``: see :func:`~gluon_resnest.layers.trace_mode`."""
    training = mx.autograd.is_training()
    return training, training and onednn_cpu(x.context)


def _resolve_output_stride(dilated, output_stride):
    if output_stride is None:
        return 8 if dilated else 32
    if dilated and output_stride != 8:
        raise ValueError('dilated=True means output_stride=8; got output_stride=%r' % (output_stride,))
    return output_stride


def check_input_shape(shape, min_size, channels=3):
    """Raise a one-line ValueError unless ``shape`` is (N, channels, H, W) with H, W >= ``min_size``."""
    if len(shape) != 4:
        raise ValueError('ResNeSt expects a 4-D (N, %d, H, W) batch, got shape %s'
                         % (channels, tuple(shape)))
    if shape[1] != channels:
        raise ValueError('ResNeSt expects %d input channels (N, %d, H, W), got shape %s'
                         % (channels, channels, tuple(shape)))
    if min(shape[2:]) < min_size:
        raise ValueError('input %dx%d is too small for this network: height and width must be >= %d '
                         '(its output stride)' % (shape[2], shape[3], min_size))


def stage_output_names(net):
    """Symbol names of the four stage outputs of ``net``, as GluonCV's FPN taps them.

    Computed by tracing the network on a symbol, e.g. ``['resnest_layers1_relu11_fwd', ...]`` for
    resnest50 (the last ReLU of each stage).
    """
    x = mx.sym.var('data')
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    names = []
    for index in range(1, 5):
        x = getattr(net, 'layer%d' % index)(x)
        names.append(x.name)
    return names
