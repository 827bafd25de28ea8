"""Hybridized MXNet symbol export (``PREFIX-symbol.json`` + ``PREFIX-0000.params``) with self-check."""
import os

import numpy as np

from ..inference import fusion_available, optimize
from ..layers import without_random_ops
from ..results import ExportResult
from .common import (ExportCheckError, compare_outputs, deploy_block, input_shape, load_symbol_block,
                     output_dir, random_input, random_ops_in)

__all__ = ['export_mxnet', 'check_mxnet', 'trace_clean', 'eager_output']

MXNET_ATOL = 1e-5


def trace_clean(block, x):
    """Hybridize ``block`` and trace it on ``x`` with no random ops; return its output.

    Call inside :func:`~gluon_resnest.layers.without_random_ops`. A graph traced earlier (even under
    ``autograd.record()``) is discarded first, so the new one is a pure inference graph.
    """
    block.hybridize(static_alloc=False, static_shape=False)
    return block(x)


def eager_output(block, x):
    """Output of ``block`` run eagerly (not hybridized): what the network itself computes."""
    block.hybridize(active=False)
    try:
        return block(x).asnumpy()
    finally:
        block.hybridize(active=True)


def export_mxnet(net, out_dir, prefix, input_size=224, batch_size=1, preprocess=False, check=True):
    """Export ``net`` as an MXNet inference graph and check the files reproduce the network.

    Parameters
    ----------
    net : ResNeSt
        Initialised network (any state: hybridized or not, traced under ``autograd.record()`` or not).
    out_dir : str
        Output folder (created if needed).
    prefix : str
        File name prefix: writes ``PREFIX-symbol.json`` and ``PREFIX-0000.params``.
    input_size, batch_size : int
        Shape of the tracing / check input.
    preprocess : bool
        Fold mean/std normalisation and HWC->CHW into the graph: it then takes raw (N, H, W, 3) images.
    check : bool
        Reload with ``SymbolBlock.imports`` and compare with the network on a random input.

    Returns
    -------
    ExportResult
        ``files`` (symbol and params), ``max_abs_diff`` (None without ``check``) and its ``tolerance``.
    """
    was_hybridized = net._active  # pylint: disable=protected-access
    block = deploy_block(net, preprocess)
    x = random_input(input_shape(batch_size, input_size, preprocess), preprocess)
    with without_random_ops(net):
        expected = eager_output(block, x) if check else None
        with output_dir(out_dir) as (tmp, publish):
            trace_clean(block, x)
            block.export(os.path.join(tmp, prefix), epoch=0)
            diff = (check_mxnet(os.path.join(tmp, prefix), x, expected, MXNET_ATOL,
                                'NHWC' if preprocess else 'NCHW') if check else None)
            paths = publish()
    # Leave the caller's network as it was (its DropBlock rates are restored by now).
    block.hybridize(active=False)
    net.hybridize(active=was_hybridized)
    return ExportResult('mxnet', tuple(paths), diff, MXNET_ATOL)


def check_mxnet(prefix, x, expected, atol=MXNET_ATOL, layout='NCHW'):
    """Reload ``PREFIX-*`` and compare its output on ``x`` with ``expected``; return the max diff.

    ``layout`` is that of ``x``: 'NHWC' for graphs with folded preprocessing.

    Also rejects graphs that still contain random or training-only operators. Where oneDNN fusion
    applies (a CPU build with MKLDNN), the reloaded graph is also compared after
    :func:`gluon_resnest.optimize`, the form :func:`gluon_resnest.loading.load_deployed` runs, to
    ``atol`` times the largest absolute logit (at least 1); the returned difference is the portable
    graph's.
    """
    with open(prefix + '-symbol.json') as f:
        bad_ops = random_ops_in(f.read())
    if bad_ops:
        raise ExportCheckError('exported graph %s-symbol.json contains random ops: %s'
                               % (prefix, ', '.join(bad_ops)))
    loaded = load_symbol_block(prefix)
    diff = compare_outputs(expected, loaded(x).asnumpy(), atol, 'MXNet symbol %s' % prefix)
    if fusion_available():
        size = x.shape[1] if layout == 'NHWC' else x.shape[2]
        fused = optimize(load_symbol_block(prefix), x.shape[0], size, layout=layout)
        # Folded BatchNorm rounds differently: the tolerance is relative to the largest logit.
        compare_outputs(expected, fused(x).asnumpy(), atol * max(1.0, float(np.abs(expected).max())),
                        'oneDNN-fused MXNet symbol %s' % prefix)
    return diff
