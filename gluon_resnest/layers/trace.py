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
"""
import functools
import threading
from contextlib import contextmanager

import mxnet as mx
from mxnet.gluon import nn

__all__ = ['trace_mode', 'graph_mode', 'fuses_norm_relu', 'norm_relu', 'onednn_cpu']

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


def norm_relu(F, norm, relu, x):
    """``relu(norm(x))``; one ``BatchNormWithReLU`` operator where :func:`fuses_norm_relu` and ``norm``
    is Gluon's own ``BatchNorm`` (other normalisations, SyncBatchNorm included, keep the pair).

    Gluon's ``BatchNorm`` switches to that operator through its ``fuse_relu`` attribute (what
    ``nn.BatchNormReLU`` sets); it is set only while this call traces the layer.
    """
    if not (fuses_norm_relu(F) and type(norm).hybrid_forward is nn.BatchNorm.hybrid_forward
            and not norm.fuse_relu):
        return relu(norm(x))
    norm.fuse_relu = True
    try:
        return norm(x)
    finally:
        norm.fuse_relu = False
