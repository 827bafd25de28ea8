"""INT8 post-training quantization with oneDNN (``mxnet.contrib.quantization``), calibrated on images.

The quantized graph is written as ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` with input ``data``,
so ``eval.py --quantized`` (``SymbolBlock.imports``) and ``mx.mod.Module`` load it like the fp32 export.
"""
import logging
import os
import sys
from contextlib import contextmanager

import mxnet as mx
import numpy as np

from ..config import CALIB_MODES, GRANULARITIES
from ..data import EvalTransform, open_dataset
from ..layers import attention_inference_form, without_random_ops
from ..results import ExportResult
from .common import ExportCheckError, compare_outputs, deploy_block, load_symbol_block, output_dir
from .mxnet_export import MXNET_ATOL, trace_clean

__all__ = ['CALIB_MODES', 'GRANULARITIES', 'calibration_images', 'quantize', 'export_int8', 'predict',
           'require_agreement']


def calibration_images(path, input_size, num_images, preprocess=False, held_out=0):
    """``num_images`` images of an ImageNet-layout folder or ``.rec``, prepared as the model sees them.

    Images are spread evenly over the dataset (a folder lists class by class) and go through the
    evaluation transform: normalised (N, 3, S, S) float32, or (N, S, S, 3) uint8 crops with
    ``preprocess`` (the graph normalises). Returns an NDArray; with ``held_out`` > 0, a pair: the
    calibration images and up to ``held_out`` other images of the dataset (spread evenly over the
    images not picked for calibration; fewer, or none, when the dataset has fewer left).
    """
    dataset = open_dataset(path, 'calibration data')
    if num_images < 1:
        raise ValueError('need at least one calibration image, got %d' % num_images)
    if len(dataset) < num_images:
        raise ValueError('%s holds %d images, fewer than the %d calibration images asked for'
                         % (path, len(dataset), num_images))
    transform = EvalTransform(input_size, normalize=not preprocess)
    picks = np.linspace(0, len(dataset) - 1, num_images).round().astype(int)
    images = mx.nd.stack(*[transform(dataset[int(i)][0]) for i in picks])
    if held_out < 1:
        return images
    rest = np.setdiff1d(np.arange(len(dataset)), picks)
    rest = rest[np.linspace(0, len(rest) - 1, min(held_out, len(rest))).round().astype(int)] if len(rest) else rest
    others = [transform(dataset[int(i)][0]) for i in rest]
    return images, (mx.nd.stack(*others) if others else None)


@contextmanager
def _native_logs_silenced():
    """Send the C++ library's stderr to /dev/null: calibration logs one line per quantized layer.

    Errors still surface as Python exceptions (MXNetError carries the message).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quantize(block, images, batch_size, calib_mode='naive', granularity='tensor-wise', logger=None):
    """Quantize ``block`` (fp32, inference graph) to INT8, calibrating on ``images``.

    Returns the quantized SymbolBlock. ``calib_mode``: 'naive' (min/max) or 'entropy' (KL);
    ``granularity``: one weight scale per tensor or per output channel.
    """
    if calib_mode not in CALIB_MODES:
        raise ValueError('unknown calibration mode %r; valid: %s' % (calib_mode, ', '.join(CALIB_MODES)))
    if granularity not in GRANULARITIES:
        raise ValueError('unknown quantization granularity %r; valid: %s'
                         % (granularity, ', '.join(GRANULARITIES)))
    calib = mx.io.NDArrayIter(images, batch_size=batch_size, data_name='data')
    with _native_logs_silenced():
        return mx.contrib.quantization.quantize_net_v2(
            block, quantized_dtype='auto', quantize_granularity=granularity, calib_mode=calib_mode,
            calib_data=calib, num_calib_examples=images.shape[0], ctx=mx.cpu(), logger=logger)


def predict(block, images, batch_size):
    """``block``'s outputs on ``images`` in batches of ``batch_size``, as one numpy array."""
    outs = [block(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return mx.nd.concat(*outs, dim=0).asnumpy()


def require_agreement(fp32_top1, int8_top1, min_agreement, what):
    """The fraction of images where the INT8 top-1 equals fp32's; raises :class:`ExportCheckError` below
    ``min_agreement``. ``what`` names the images ('calibration', 'held-out')."""
    agreement = float(np.mean(np.asarray(fp32_top1) == np.asarray(int8_top1)))
    if agreement < min_agreement:
        raise ExportCheckError('INT8 model agrees with fp32 top-1 on only %.1f%% of %d %s images (required '
                               '%.1f%%)' % (100 * agreement, len(int8_top1), what, 100 * min_agreement))
    return agreement


def export_int8(net, out_dir, prefix, images, batch_size=1, preprocess=False, calib_mode='naive',
                granularity='tensor-wise', min_agreement=0.0, check=True):
    """Quantize ``net`` to INT8 on calibration ``images``, export it, and check the files.

    Parameters
    ----------
    net : ResNeSt
        Initialised fp32 network.
    out_dir, prefix : str
        Writes ``out_dir/PREFIX-symbol.json`` and ``out_dir/PREFIX-0000.params``.
    images : NDArray
        Calibration images as the graph takes them (see :func:`calibration_images`).
    batch_size : int
        Calibration and check batch size.
    preprocess : bool
        The graph takes raw uint8 (N, H, W, 3) images.
    calib_mode : {'naive', 'entropy'}
    granularity : {'tensor-wise', 'channel-wise'}
    min_agreement : float
        Fail when fewer than this fraction of the images get the fp32 network's top-1 class.
    check : bool
        Reload the files and require the reloaded graph to reproduce the quantized network.

    Returns
    -------
    ExportResult
        ``files`` (symbol and params), ``agreement`` (INT8 vs fp32 top-1 on ``images``, a fraction),
        ``max_abs_diff`` (reloaded vs in-memory INT8; None without ``check``) and its ``tolerance``.
    """
    block = deploy_block(net, preprocess)
    was_hybridized = net._active  # pylint: disable=protected-access
    with without_random_ops(net):
        trace_clean(block, images[:batch_size])
        fp32 = predict(block, images, batch_size)
        # The network's split attentions quantize in their inference form: fewer fp32 operators
        # between the INT8 convolutions (gluon_resnest.layers.attention_inference).
        with attention_inference_form(net):
            trace_clean(block, images[:batch_size])
            qnet = quantize(block, images, batch_size, calib_mode, granularity,
                            logger=logging.getLogger('gluon_resnest.export'))
    qnet.hybridize(static_alloc=True, static_shape=True)
    int8 = predict(qnet, images, batch_size)
    agreement = require_agreement(fp32.argmax(axis=1), int8.argmax(axis=1), min_agreement, 'calibration')
    with output_dir(out_dir) as (tmp, publish):
        qnet.export(os.path.join(tmp, prefix), epoch=0)
        diff = None
        if check:
            reloaded = load_symbol_block(os.path.join(tmp, prefix))
            diff = compare_outputs(int8, predict(reloaded, images, batch_size), MXNET_ATOL,
                                   'INT8 symbol %s' % prefix)
        paths = publish()
    block.hybridize(active=False)
    net.hybridize(active=was_hybridized)
    return ExportResult('int8', tuple(paths), diff, MXNET_ATOL, agreement)
