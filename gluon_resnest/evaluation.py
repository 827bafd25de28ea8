"""Accuracy and speed of a classifier: the measurement both the trainer's validation and eval.py use.

Accuracies are returned as **fractions** in [0, 1] (``top1=0.8104`` is 81.04 %); eval.py prints percent.
"""
import contextlib
import io
import json
import os
import time
import warnings

import mxnet as mx
import numpy as np

from .model_zoo import get_model
from .pretrained import load_weights

__all__ = ['evaluate', 'benchmark', 'count_parameters', 'classes_in_params', 'load_network',
           'load_deployed', 'probe_layout', 'is_quantized']


# BN statistics, and the constants of preprocessing folded into exported graphs (GluonCV's export_block
# names them init_mean/init_scale, gluon_resnest.export preprocess_mean/preprocess_std).
_NOT_LEARNED = ('running_mean', 'running_var', 'moving_mean', 'moving_var', '_init_mean', '_init_scale',
                'preprocess_mean', 'preprocess_std')


def _as_contexts(ctx):
    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def _metrics(num_classes):
    """Top-1 and top-k metrics; k = min(5, classes) since top-5 of a <= 5-class problem is trivially 1."""
    top1 = mx.metric.Accuracy()
    k = min(5, num_classes)
    # TopKAccuracy refuses k = 1: with a single class top-k is top-1.
    topk = mx.metric.TopKAccuracy(top_k=k) if k > 1 else mx.metric.Accuracy()
    return top1, topk


def evaluate(net, loader, ctx=None, dtype='float32', progress=None):
    """Top-1/top-5 accuracy and throughput of ``net`` over ``loader``.

    Parameters
    ----------
    net : Block
        Any network mapping an (N, C, H, W) batch to (N, classes) scores (Gluon net or SymbolBlock).
    loader : iterable of (data, label)
        E.g. :func:`gluon_resnest.data.make_loader` with :class:`~gluon_resnest.data.EvalTransform`.
    ctx : Context or list of Context, default cpu()
        Each batch is split across the contexts (uneven splits allowed).
    dtype : str, default 'float32'
        Input dtype; the net must already be cast to it (``net.cast('float16')``).
    progress : callable, optional
        Called with the number of images of each batch as it is done (e.g. ``tqdm.update``).

    Returns
    -------
    dict
        ``top1``, ``top5`` (fractions in [0, 1]; top-5 is top-min(5, classes)), ``num_images`` and
        ``images_per_sec`` (end to end, data loading included; see :func:`benchmark` for the net alone).
    """
    ctx = _as_contexts(ctx)
    top1 = topk = None
    num_images = 0
    start = time.time()
    for data, label in loader:
        # A last batch smaller than the number of devices goes to the first few only.
        devices = ctx[:data.shape[0]]
        datas = mx.gluon.utils.split_and_load(data.astype(dtype, copy=False), devices, even_split=False)
        labels = mx.gluon.utils.split_and_load(label, devices, even_split=False)
        outputs = [net(x) for x in datas]
        if top1 is None:
            top1, topk = _metrics(outputs[0].shape[1])
        if label.size and label.max().asscalar() >= outputs[0].shape[1]:
            # RecordIO does not say its class count up front; a label out of range means a wrong model.
            raise ValueError('the data has label %d but the network outputs %d classes'
                             % (label.max().asscalar(), outputs[0].shape[1]))
        outputs = [out.astype('float32', copy=False) for out in outputs]
        top1.update(labels, outputs)
        topk.update(labels, outputs)
        num_images += data.shape[0]
        if progress is not None:
            progress(data.shape[0])
    mx.nd.waitall()
    elapsed = time.time() - start
    if not num_images:
        raise ValueError('the data loader yielded no images')
    return {'top1': top1.get()[1], 'top5': topk.get()[1], 'num_images': num_images,
            'images_per_sec': num_images / elapsed if elapsed > 0 else float('inf')}


def benchmark(net, batch_size, crop, ctx=None, dtype='float32', warmup=5, iters=20, layout='NCHW'):
    """Median images/s of ``net`` on synthetic input, after ``warmup`` untimed batches.

    Parameters
    ----------
    net : Block
    batch_size, crop : int
        Input batch is (batch_size, 3, crop, crop) (or NHWC with ``layout='NHWC'``), uniform noise.
    ctx : Context, default cpu()
        Only the first context is used: this measures one device.
    warmup, iters : int
        Untimed then timed batches; each timed batch is synchronised (``waitall``) before the clock stops.

    Returns
    -------
    dict
        ``images_per_sec`` (median over the timed batches), ``batch_size``, ``iters``, ``crop``.
    """
    if iters < 1 or warmup < 0:
        raise ValueError('benchmark needs iters >= 1 and warmup >= 0, got %d and %d' % (iters, warmup))
    ctx = _as_contexts(ctx)[0]
    shape = (batch_size, 3, crop, crop) if layout == 'NCHW' else (batch_size, crop, crop, 3)
    data = mx.nd.random.uniform(shape=shape, ctx=ctx).astype(dtype)
    for _ in range(warmup):
        net(data).wait_to_read()
    times = []
    for _ in range(iters):
        start = time.time()
        net(data).wait_to_read()
        times.append(time.time() - start)
    return {'images_per_sec': batch_size / float(np.median(times)), 'batch_size': batch_size,
            'iters': iters, 'crop': crop}


def count_parameters(net):
    """Learned parameters of ``net`` (weights, biases, BN gamma/beta; not BN running statistics).

    This is how the published parameter counts are made (resnest50: 27.48M). The mean/std constants of
    preprocessing folded into an exported graph (GluonCV's ``export_block``, our exporter) are not counted.
    """
    total = 0
    for name, param in net.collect_params().items():
        if name.endswith(_NOT_LEARNED):
            continue
        shape = param.shape
        if shape is None or 0 in shape:
            # SymbolBlock.imports loads the data but leaves the declared shape unset.
            try:
                shape = param.list_data()[0].shape
            except (mx.gluon.parameter.DeferredInitializationError, RuntimeError) as err:
                raise ValueError('parameter %s has unknown shape %s: run the network once or load '
                                 'weights before counting' % (name, param.shape)) from err
        total += int(np.prod(shape))
    return total


def classes_in_params(path):
    """Number of classes of the classifier saved in a ``.params`` file (None if it has no ``fc``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('params file not found: %s' % path)
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise ValueError('%s is not an MXNet .params file: %s'
                         % (path, str(err).strip().splitlines()[-1])) from err
    if not isinstance(loaded, dict):
        raise ValueError('%s holds no named parameters' % path)
    for key, value in loaded.items():
        # save_parameters() keys by path ('fc.weight'); the older save_params() by name ('..._dense0_weight').
        if key.split(':', 1)[-1] == 'fc.weight' or key.endswith('dense0_weight'):
            return int(value.shape[0])
    return None


def load_network(name, params_file=None, pretrained=False, classes=None, root=None, ctx=None):
    """A published network, with weights from ``params_file`` or the published store, ready to evaluate.

    Parameters
    ----------
    name : str
        One of :func:`gluon_resnest.list_models`.
    params_file : str, optional
        A checkpoint (``net.save_parameters``, e.g. from train_imagenet.py).
    pretrained : bool
        Load the published ImageNet weights instead.
    classes : int, optional
        Classifier size; default: what ``params_file`` holds, else 1000. A different count in the file
        raises ``ValueError`` naming both.
    root : str, optional
        Folder of published weights.
    ctx : Context or list of Context
        Where the weights go. Without weights the network is initialised randomly (speed only).
    """
    ctx = _as_contexts(ctx)
    file_classes = classes_in_params(params_file) if params_file else None
    if classes is not None and file_classes is not None and classes != file_classes:
        raise ValueError('params file %s has a %d-class classifier but %d classes were asked for '
                         '(drop --classes or pass --classes %d)'
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


def load_deployed(prefix, crop, epoch=0, ctx=None):
    """Load an exported model (``PREFIX-symbol.json`` + ``PREFIX-%04d.params``) as a SymbolBlock.

    Returns
    -------
    (SymbolBlock, dict)
        The block, and ``layout`` ('NCHW', or 'NHWC' for graphs taking raw 0..255 images), ``classes``,
        ``quantized`` (INT8 operators present).
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
    layout, classes = probe_layout(symbol, inputs[0], crop)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "input type unknown" until the first call
        block = mx.gluon.SymbolBlock.imports(sym_file, inputs, params_file, ctx=_as_contexts(ctx))
    return block, {'layout': layout, 'classes': classes, 'quantized': is_quantized(symbol)}
