"""What a graph being traced will run for, and the layer forms that follow from it.

A hybridized block is traced once into a symbolic graph, so a layer cannot ask at run time whether it
trains. :class:`~gluon_resnest.resnest.ResNeSt` keeps one traced graph per kind of run and declares the
kind with :func:`trace_mode` while tracing; layers read it with :func:`graph_mode` and
:func:`fuses_norm_relu`. Graphs traced anywhere else (a stage inside another hybridized network) see
"unknown" and take the forms that are right in every mode.

Training graphs for a CPU context on MXNet's oneDNN build (the default ``mxnet`` wheels) run each
BatchNorm and the ReLU after it as one operator (``contrib.BatchNormWithReLU``): the backward pass then
keeps a bit mask instead of the BatchNorm's output, one feature map less per pair (135 MiB of a
ResNeSt-50 training step at batch 8). MXNet has that operator on CPU only, so GPU graphs keep the pair.

A pair is fused only where its convolutions have whole 16-channel blocks in every group
(:func:`channel_blocks_agree`). MXNet 1.9 builds the fused operator's backward pass from the layouts its
two arrays happen to have: the BatchNorm's input (as the convolution before it wrote it) and the
gradient (as the backward pass of what follows wrote it); it converts only a plain one. oneDNN's
backward kernels must reproduce the forward kernel's ReLU mask, and none takes two different channel
blockings: creating the primitive then fails ("could not create a primitive descriptor iterator"), and
a plain input with a blocked gradient runs a backward kernel over a mask another kernel wrote (wrong
gradients). oneDNN's AVX-512 convolutions write 16-channel blocks where a group's input and output
channels are multiples of 16, and 8- or 4-channel blocks or the plain layout otherwise; its AVX2 and
SSE4.1 kernels block by 8. With multiples of 16 everywhere, both sides of a pair have the same blocking
on every instruction set; elsewhere the pair stays two operators (MXNet's BatchNorm backward pass takes
any two layouts).
"""
import functools
import threading
from contextlib import contextmanager

import mxnet as mx
from mxnet.gluon import nn

__all__ = ['trace_mode', 'graph_mode', 'fuses_norm_relu', 'norm_relu', 'onednn_cpu', 'channel_blocks_agree']

# Channels per block of oneDNN's widest (AVX-512) layout; its AVX2 and SSE4.1 blocks of 8 divide it.
CHANNEL_BLOCK = 16

_TRACE = threading.local()


@contextmanager
def trace_mode(training, fuse_norm_relu=False):
    """Declare that graphs traced inside run only for training (True) or only for inference (False);
    ``fuse_norm_relu``: a training graph for a CPU oneDNN context (see :func:`norm_relu`)."""
    previous = getattr(_TRACE, 'training', None), getattr(_TRACE, 'fuse_norm_relu', False)
    _TRACE.training, _TRACE.fuse_norm_relu = training, bool(training and fuse_norm_relu)
    try:
        yield
    finally:
        _TRACE.training, _TRACE.fuse_norm_relu = previous


@functools.lru_cache(maxsize=None)
def _onednn_build():
    return mx.runtime.Features().is_enabled('MKLDNN')


def onednn_cpu(ctx):
    """Whether ``ctx`` is a CPU context of MXNet's oneDNN (MKLDNN) build, where its fused operators run."""
    return ctx.device_type == 'cpu' and _onednn_build()


def graph_mode(F):
    """Whether the graph being built runs for training: True, False, or None when it is not known.

    Eagerly (``F`` is ``mx.nd``) this is ``autograd.is_training()`` of the current call; while tracing it
    is what :func:`trace_mode` declared, None outside it (the graph may run in either mode).
    """
    if F is mx.nd:
        return mx.autograd.is_training()
    return getattr(_TRACE, 'training', None)


def fuses_norm_relu(F):
    """Whether the graph being traced is a CPU oneDNN training graph (never eagerly)."""
    return F is not mx.nd and getattr(_TRACE, 'fuse_norm_relu', False)


def channel_blocks_agree(convs):
    """Whether every convolution in ``convs`` (Gluon ``Conv2D`` blocks with known input channels) has
    input and output channels per group that are multiples of :data:`CHANNEL_BLOCK` (an ungrouped one
    with 1 or 3 input channels, an image, by its output alone): then oneDNN gives their feature maps and
    gradients one channel blocking, whatever the instruction set."""
    for conv in convs:
        out_channels, in_per_group = conv.weight.shape[:2]
        groups = conv._kwargs['num_group']  # pylint: disable=protected-access
        if groups == 1 and in_per_group in (1, 3):
            # an image: oneDNN's first-convolution kernels read it plain and block their output
            in_per_group = CHANNEL_BLOCK
        out_per_group = out_channels // groups
        if not in_per_group or in_per_group % CHANNEL_BLOCK or out_per_group % CHANNEL_BLOCK:
            return False
    return True


def norm_relu(F, norm, relu, x, convs=()):
    """``relu(norm(x))``; one ``BatchNormWithReLU`` operator where :func:`fuses_norm_relu`, ``norm``
    is Gluon's own ``BatchNorm`` (other normalisations, SyncBatchNorm included, keep the pair) and
    :func:`channel_blocks_agree` for ``convs``, the convolutions that write the pair's input and read
    its output (see the module's docstring).

    Gluon's ``BatchNorm`` switches to that operator through its ``fuse_relu`` attribute (what
    ``nn.BatchNormReLU`` sets); it is set only while this call traces the layer.
    """
    if not (fuses_norm_relu(F) and type(norm).hybrid_forward is nn.BatchNorm.hybrid_forward
            and not norm.fuse_relu and channel_blocks_agree(convs)):
        return relu(norm(x))
    norm.fuse_relu = True
    try:
        return norm(x)
    finally:
        norm.fuse_relu = False
