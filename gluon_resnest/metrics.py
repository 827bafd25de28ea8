"""Measuring a classifier: top-k accuracy over a loader, timed inference, parameter count.

Used by the trainer's validation, :func:`gluon_resnest.evaluate` and the benchmarks. Accuracies are
**fractions** in [0, 1] (``top1=0.8104`` is 81.04 %).
"""
import time

import mxnet as mx
import numpy as np

from .devices import as_contexts

__all__ = ['accuracy', 'topk_metrics', 'benchmark', 'time_calls', 'median_rate', 'batch_seconds', 'count_parameters']

clock = time.perf_counter  # pylint: disable=invalid-name


# BN statistics, and the constants of preprocessing folded into exported graphs (GluonCV's export_block
# names them init_mean/init_scale, gluon_resnest.export preprocess_mean/preprocess_std).
_NOT_LEARNED = ('running_mean', 'running_var', 'moving_mean', 'moving_var', '_init_mean', '_init_scale',
                'preprocess_mean', 'preprocess_std')


def topk_metrics(num_classes):
    """Top-1 and top-k metrics; k = min(5, classes) since top-5 of a <= 5-class problem is trivially 1."""
    top1 = mx.metric.Accuracy()
    k = min(5, num_classes)
    # TopKAccuracy refuses k = 1: with a single class top-k is top-1.
    topk = mx.metric.TopKAccuracy(top_k=k) if k > 1 else mx.metric.Accuracy()
    return top1, topk


def accuracy(net, loader, ctx=None, dtype='float32', progress=None):
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
    ctx = as_contexts(ctx)
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
            top1, topk = topk_metrics(outputs[0].shape[1])
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
    ctx = as_contexts(ctx)[0]
    shape = (batch_size, 3, crop, crop) if layout == 'NCHW' else (batch_size, crop, crop, 3)
    data = mx.nd.random.uniform(shape=shape, ctx=ctx).astype(dtype)
    times = time_calls(lambda: net(data).wait_to_read(), warmup, iters)
    return {'images_per_sec': batch_size / float(np.median(times)), 'batch_size': batch_size,
            'iters': iters, 'crop': crop}


def time_calls(func, warmup, iters):
    """Seconds of each of ``iters`` calls of ``func()``, after ``warmup`` untimed ones.

    ``func`` must return only when its work is done (``wait_to_read``/``waitall``). The clock is
    ``gluon_resnest.metrics.clock`` (``time.perf_counter``).
    """
    for _ in range(warmup):
        func()
    times = []
    for _ in range(iters):
        start = clock()
        func()
        times.append(clock() - start)
    return times


def median_rate(step, items, warmup, runs, iters):
    """Median items/s of ``step()`` over ``runs`` timings of ``iters`` calls each, after ``warmup`` calls.

    Each timing ends with ``mx.nd.waitall()``, so asynchronous work is counted; ``items`` is what one
    call processes (its batch size).
    """
    for _ in range(warmup):
        step()
    return float(np.median([items * iters / batch_seconds(step, iters) for _ in range(runs)]))


def batch_seconds(step, iters):
    """Wall seconds of ``iters`` consecutive ``step()`` calls, MXNet's asynchronous work included.

    Pending work is finished before the clock starts and waited for before it stops (``mx.nd.waitall``),
    so timings of several implementations can be interleaved one call of this at a time.
    """
    mx.nd.waitall()
    start = clock()
    for _ in range(iters):
        step()
    mx.nd.waitall()
    return clock() - start


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


