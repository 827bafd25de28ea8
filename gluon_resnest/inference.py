"""The fast inference form of a network, in one call: :func:`optimize`.

::

    net = gluon_resnest.get_model('resnest50', pretrained=True)
    gluon_resnest.optimize(net, batch_size=8, input_size=224)   # in place; returns net
    logits = net(images)                                        # (8, 3, 224, 224) float32, normalised

On a CPU with MXNet's oneDNN (MKLDNN) build, the default ``mxnet`` wheels, this hybridizes with static
memory and applies MXNet's oneDNN graph fusion (``optimize_for(x, backend='MKLDNN')``): every
convolution takes in its BatchNorm (folded into its weights and bias when the graph first runs), its
ReLU and the residual add, and the classifier becomes one oneDNN inner product. The result equals the
plain network up to float32 rounding (tested to 1e-5). On a GPU, on MXNet builds without oneDNN, and
for float16 parameters it hybridizes with static memory and shape only (MXNet's CUDA backend has no
such fusion). ``eval.py``, :func:`gluon_resnest.evaluate` and :func:`gluon_resnest.loading.load_deployed`
(the graphs ``python -m gluon_resnest.export`` writes) run networks in this form.

The fused graph is for inference only: ``net.hybridize()`` (or any ``hybridize`` call, which clears
it) turns the network back into its trainable form.
"""
import json

import mxnet as mx
import numpy as np
from mxnet.gluon.block import HybridBlock, SymbolBlock

from .devices import as_contexts
from .layers.trace import onednn_cpu
from .resnest import check_input_shape

__all__ = ['optimize', 'fusion_available', 'FUSED_OP_PREFIX']

# Operators of oneDNN-fused graphs: they load only on CPU builds of MXNet with oneDNN.
FUSED_OP_PREFIX = '_sg_mkldnn'
LAYOUTS = ('NCHW', 'NHWC')
# Static memory and shapes, and the whole forward pass as one engine segment: the split-attention blocks
# have many small operators, and each segment boundary costs an engine dispatch (measured 5% of
# ResNeSt-50's batch-1 time on 2 cores with MXNet's default segments of 15 operators).
_FLAGS = dict(static_alloc=True, static_shape=True, forward_bulk_size=10000)


def fusion_available(ctx=None):
    """Whether oneDNN graph fusion applies on ``ctx`` (default CPU): a CPU context and an MKLDNN build."""
    return onednn_cpu(as_contexts(ctx)[0])


def optimize(net, batch_size=1, input_size=224, ctx=None, layout='NCHW'):
    """Put ``net`` into its fastest exact inference form, in place, and return it.

    Parameters
    ----------
    net : HybridBlock
        A network of :func:`gluon_resnest.get_model` (or any Gluon HybridBlock) with initialised
        parameters, or an imported graph (``SymbolBlock``). Any previous trace is discarded, including one
        made under ``autograd.record()``.
    batch_size, input_size : int
        The input shape the network will mostly see: (batch_size, 3, input_size, input_size). Other
        shapes still work (MXNet re-plans its memory once per new shape).
    ctx : Context, optional
        Where the network runs; default: where its parameters are.
    layout : {'NCHW', 'NHWC'}
        'NHWC' for exported graphs that take raw (N, H, W, 3) images (``--preprocess``).

    Returns
    -------
    HybridBlock
        ``net`` itself, traced once on zeros of that shape.

    Raises
    ------
    ValueError
        Not a HybridBlock, a size below 1, an unknown layout, or an input the network cannot take.
    """
    if not isinstance(net, HybridBlock):
        raise ValueError('optimize takes a Gluon HybridBlock (e.g. of gluon_resnest.get_model), got %s'
                         % type(net).__name__)
    for name, value in (('batch_size', batch_size), ('input_size', input_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError('optimize: %s must be a positive integer, got %r' % (name, value))
    if layout not in LAYOUTS:
        raise ValueError('optimize: layout must be one of %s, got %r' % (', '.join(LAYOUTS), layout))
    params_ctx, dtype = _params_context_dtype(net)
    ctx = as_contexts(ctx)[0] if ctx is not None else params_ctx
    shape = ((batch_size, 3, input_size, input_size) if layout == 'NCHW'
             else (batch_size, input_size, input_size, 3))
    if layout == 'NCHW' and getattr(net, 'output_stride', None):
        check_input_shape(shape, net.output_stride)  # before partitioning, which fails less clearly
    x = mx.nd.zeros(shape, ctx=ctx, dtype=dtype)
    # A trace is made in inference mode even when the caller is recording gradients.
    with mx.autograd.pause(train_mode=False):
        if fusion_available(ctx) and _fusable(net):
            net.optimize_for(x, backend='MKLDNN', clear=True, **_FLAGS)
        else:
            net.hybridize(**_FLAGS)
        net(x).wait_to_read()
    return net


def _params_context_dtype(net):
    """Where the parameters are and the input's float type: (context, dtype name).

    The input takes the float type that holds most parameter values: a network cast to float16 keeps
    its BatchNorm parameters in float32 (MXNet needs them so), whichever layer comes first.
    """
    ctx, counts = None, {}
    for param in net.collect_params().values():
        if np.dtype(param.dtype).kind == 'f':
            name = np.dtype(param.dtype).name
            size = int(np.prod([d for d in param.shape if d > 0])) if param.shape else 1
            counts[name] = counts.get(name, 0) + size
        if ctx is None:
            try:
                ctx = param.list_ctx()[0]
            except RuntimeError:  # deferred initialisation: the context is not known yet
                pass
    dtype = max(counts, key=counts.get) if counts else 'float32'
    return ctx if ctx is not None else mx.cpu(), dtype


def _fusable(net):
    """float32 parameters, and not already a fused or quantized graph (an INT8 export)."""
    if any(np.dtype(p.dtype).kind == 'f' and np.dtype(p.dtype) != np.float32
           for p in net.collect_params().values()):
        return False
    if isinstance(net, SymbolBlock):
        nodes = json.loads(net._cached_graph[1].tojson())['nodes']  # pylint: disable=protected-access
        return not any(n['op'].startswith(FUSED_OP_PREFIX) or 'quantize' in n['op'] for n in nodes)
    return True
