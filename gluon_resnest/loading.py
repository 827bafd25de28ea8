"""Networks ready to run: a published architecture with weights, or an exported graph.

The one way from a model name plus weights (published, or a ``.params`` file) to a network, which every
command and API uses (evaluation, export, benchmarks), and loading exported ``PREFIX-symbol.json`` +
``PREFIX-%04d.params`` files.
"""
import contextlib
import io
import json
import os
import warnings

import mxnet as mx

from .config import check_weights
from .devices import as_contexts
from .inference import optimize as optimize_network
from .model_zoo import get_model, model_key
from .pretrained import classes_in_params, load_weights

__all__ = ['load_network', 'import_graph', 'load_deployed', 'probe_layout', 'is_quantized']


def load_network(name, params_file=None, pretrained=False, classes=None, root=None, ctx=None, required=False):
    """A published network, with weights from ``params_file`` or the published store, ready to evaluate.

    Parameters
    ----------
    name : str
        One of :func:`gluon_resnest.list_models`.
    params_file : str, optional
        A checkpoint (``net.save_parameters``, e.g. of the trainer).
    pretrained : bool
        Load the published ImageNet weights instead.
    classes : int, optional
        Classifier size; default: what ``params_file`` holds, else 1000. A different count in the file
        raises ``ValueError`` naming both.
    root : str, optional
        Folder of published weights.
    ctx : Context or list of Context
        Where the weights go.
    required : bool
        Whether weights must be given; otherwise a network without weights is initialised randomly
        (speed only). Both, or neither when required, raise ``ConfigError`` (a ``ValueError``).
    """
    check_weights(pretrained, params_file, required)
    ctx = as_contexts(ctx)
    name = model_key(name)
    file_classes = classes_in_params(params_file) if params_file else None
    if classes is not None and file_classes is not None and classes != file_classes:
        raise ValueError('params file %s has a %d-class classifier but %d classes were asked for '
                         '(leave classes unset or set it to %d)'
                         % (params_file, file_classes, classes, file_classes))
    classes = classes or file_classes or 1000
    if pretrained:
        if classes != 1000:
            raise ValueError('published weights have 1000 classes, not %d' % classes)
        net = get_model(name, pretrained=True, root=root, ctx=ctx[0])
        net.collect_params().reset_ctx(ctx)
        return net
    net = get_model(name, classes=classes)
    if params_file:
        try:
            load_weights(net, params_file, ctx=ctx)
        except ValueError as err:
            raise ValueError('%s (is it a checkpoint of another model than %s?)' % (err, name)) from err
    else:
        net.initialize(mx.init.Xavier(), ctx=ctx)
        # Finish deferred initialisation so parameter shapes (and counts) are known.
        net(mx.nd.zeros((1, 3, net.output_stride, net.output_stride), ctx=ctx[0]))
    return net


def _stdout_quiet(func, *args, **kwargs):
    # Symbol.infer_shape prints its arguments to stdout before raising; a failed probe is expected here.
    with contextlib.redirect_stdout(io.StringIO()):
        return func(*args, **kwargs)


def probe_layout(symbol, input_name, crop):
    """'NCHW' or 'NHWC' (a graph with folded preprocessing) and the number of classes ``symbol`` gives.

    Raises ``ValueError`` when neither (1, 3, crop, crop) nor (1, crop, crop, 3) fits the graph.
    """
    errors = []
    for layout, shape in (('NCHW', (1, 3, crop, crop)), ('NHWC', (1, crop, crop, 3))):
        try:
            _, out_shapes, _ = _stdout_quiet(symbol.infer_shape, **{input_name: shape})
        except mx.base.MXNetError as err:
            errors.append(str(err).strip().splitlines()[-1])
            continue
        if out_shapes and out_shapes[0] and len(out_shapes[0]) == 2:
            return layout, int(out_shapes[0][1])
        errors.append('output shape %s is not (N, classes)' % (out_shapes,))
    raise ValueError('the exported graph takes neither (N, 3, %d, %d) nor (N, %d, %d, 3) input: %s'
                     % (crop, crop, crop, crop, errors[-1]))


def is_quantized(symbol):
    """Whether a symbol graph contains INT8 (quantized) operators."""
    nodes = json.loads(symbol.tojson())['nodes']
    return any('quantize' in node['op'] for node in nodes)


def import_graph(prefix, epoch=0, ctx=None):
    """Load ``PREFIX-symbol.json`` + ``PREFIX-%04d.params`` as a SymbolBlock (as users deploy them).

    Returns
    -------
    (SymbolBlock, Symbol, str)
        The block, its graph and the name of its one input.
    """
    sym_file, params_file = '%s-symbol.json' % prefix, '%s-%04d.params' % (prefix, epoch)
    for path in (sym_file, params_file):
        if not os.path.isfile(path):
            raise FileNotFoundError('exported model file not found: %s' % path)
    symbol = mx.sym.load(sym_file)
    params = {key.split(':', 1)[-1] for key in mx.nd.load(params_file)}
    inputs = [arg for arg in symbol.list_arguments() if arg not in params]
    if len(inputs) != 1:
        raise ValueError('%s must have exactly one input besides its parameters, found %s'
                         % (sym_file, inputs or 'none'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "input type unknown" until the first call
        block = mx.gluon.SymbolBlock.imports(sym_file, inputs, params_file, ctx=as_contexts(ctx))
    return block, symbol, inputs[0]


def load_deployed(prefix, crop, epoch=0, ctx=None, batch_size=1, optimize=True):
    """Load an exported model (``PREFIX-symbol.json`` + ``PREFIX-%04d.params``) to run it at ``crop``.

    With ``optimize`` (the default) the block is put into its fast inference form on ``ctx`` by
    :func:`gluon_resnest.optimize` (oneDNN-fused on a CPU with MXNet's oneDNN build; the files themselves
    hold the portable graph, which loads on any MXNet build and device).

    Returns
    -------
    (SymbolBlock, dict)
        The block, and ``layout`` ('NCHW', or 'NHWC' for graphs taking raw 0..255 images), ``classes``,
        ``quantized`` (INT8 operators present).
    """
    block, symbol, input_name = import_graph(prefix, epoch, ctx)
    layout, classes = probe_layout(symbol, input_name, crop)
    if optimize:
        optimize_network(block, batch_size, crop, ctx=as_contexts(ctx)[0], layout=layout)
    return block, {'layout': layout, 'classes': classes, 'quantized': is_quantized(symbol)}
