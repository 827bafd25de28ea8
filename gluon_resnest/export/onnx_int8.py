"""INT8 ONNX for onnxruntime (and TensorRT) users: ``--format onnx-int8``.

The project's fp32 ONNX export, quantized by onnxruntime's own static quantizer (``quantize_static``
after ``quant_pre_process``; QDQ format, QUInt8 activations, QInt8 weights) on the user's calibration
images with the project's calibration settings (``calib_mode``, ``granularity``: the flags of
``--format int8``). The file is checked in onnxruntime: its graph (weights stored as INT8 initializers,
``data`` the only input) and its top-1 agreement with the fp32 network on the calibration images and on
held-out images of the same data. A failed check leaves no file. The batch dimension is free (the
calibration batch and any other run the same file).
"""
import os

import numpy as np

from ..layers import without_random_ops
from ..results import ExportResult
from .common import ExportCheckError, deploy_block, output_dir
from .int8_export import predict, require_agreement
from .mxnet_export import trace_clean
from .onnx_export import export_onnx, ort_call, run_onnxruntime

__all__ = ['export_onnx_int8', 'check_int8_graph']

# Operators whose weights (second input) must be stored as INT8 initializers.
WEIGHTED_OPS = ('Conv', 'Gemm', 'MatMul')


def check_int8_graph(onnx_file):
    """Raise :class:`ExportCheckError` unless ``onnx_file`` is a QDQ INT8 graph: ``data`` its only input,
    and every Conv/Gemm/MatMul weight an INT8 initializer behind a ``DequantizeLinear``.

    Returns the number of INT8 weight initializers.
    """
    import onnx  # pylint: disable=import-outside-toplevel
    graph = onnx.load(onnx_file).graph
    inputs = [i.name for i in graph.input]
    if inputs != ['data']:
        raise ExportCheckError('%s has graph inputs %s, expected only "data"' % (onnx_file, ', '.join(inputs[:5])))
    inits = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    weights = 0
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        source = producers.get(node.input[1])
        init = inits.get(source.input[0]) if source is not None and source.op_type == 'DequantizeLinear' else None
        if init is None or init.data_type != onnx.TensorProto.INT8:
            raise ExportCheckError('%s: the weight of %s node %s is not an INT8 initializer'
                                   % (onnx_file, node.op_type, node.name))
        weights += 1
    if not weights:
        raise ExportCheckError('%s has no quantized convolution or dense layer' % onnx_file)
    return weights


def _batches(images, batch_size):
    return [images[i:i + batch_size] for i in range(0, len(images), batch_size)]


def _ort_top1(onnx_file, images, batch_size):
    """onnxruntime's top-1 classes of ``images`` (numpy), fed in batches of ``batch_size``."""
    outputs = run_onnxruntime(onnx_file, _batches(images, batch_size))
    return np.concatenate(outputs).argmax(axis=1)


def export_onnx_int8(net, out_dir, name, images, held_out=None, batch_size=1, preprocess=False,
                     calib_mode='naive', granularity='tensor-wise', min_agreement=0.0):
    """Export ``net`` as a QDQ INT8 ONNX file calibrated on ``images``, and check it in onnxruntime.

    Parameters
    ----------
    net : ResNeSt
        Initialised fp32 network.
    out_dir, name : str
        Writes ``out_dir/name`` (``.onnx`` appended if missing).
    images, held_out : NDArray
        Calibration images as the graph takes them (:func:`~.int8_export.calibration_images`), and
        images of the same data not among them (may be None or empty).
    batch_size : int
        Calibration batch (the file's batch dimension is free).
    preprocess : bool
        The graph takes raw uint8 (N, H, W, 3) images.
    calib_mode : {'naive', 'entropy'}
        Activation ranges from min/max, or onnxruntime's entropy (KL) calibration.
    granularity : {'tensor-wise', 'channel-wise'}
        One weight scale per tensor or per output channel.
    min_agreement : float
        Fail when INT8 and fp32 top-1 agree on fewer than this fraction of the calibration images or
        of the held-out images.

    Returns
    -------
    ExportResult
        ``files`` (the .onnx file), ``agreement`` and ``held_out_agreement`` (None without held-out
        images); ``max_abs_diff`` and ``tolerance`` are None (INT8 is checked by its top-1).
    """
    name = name if name.endswith('.onnx') else name + '.onnx'
    held_out = held_out if held_out is not None and len(held_out) else None
    block = deploy_block(net, preprocess)
    was_hybridized = net._active  # pylint: disable=protected-access
    with without_random_ops(net):
        trace_clean(block, images[:batch_size])
        fp32 = [predict(block, x, batch_size).argmax(axis=1) for x in (images, held_out) if x is not None]
    block.hybridize(active=False)
    net.hybridize(active=was_hybridized)
    arrays = [x.asnumpy() for x in (images, held_out) if x is not None]
    with output_dir(out_dir) as (tmp, _):
        fp32_file = export_onnx(net, tmp, 'fp32.onnx', input_size=images.shape[2 if not preprocess else 1],
                                batch_size=batch_size, preprocess=preprocess, dynamic=True,
                                runtime_check=False).files[0]
        calib = os.path.join(tmp, 'calibration.npy')
        np.save(calib, arrays[0])
        os.makedirs(os.path.join(tmp, 'final'))
        int8_file = os.path.join(tmp, 'final', name)
        ort_call(['--quantize', fp32_file, int8_file, calib, str(batch_size), calib_mode, granularity],
                 fp32_file)
        check_int8_graph(int8_file)
        agreements = [require_agreement(want, _ort_top1(int8_file, x, batch_size), min_agreement, what)
                      for want, x, what in zip(fp32, arrays, ('calibration', 'held-out'))]
        final = os.path.join(os.path.abspath(out_dir), name)
        os.replace(int8_file, final)
    return ExportResult('onnx-int8', (final,), None, None, agreements[0],
                        agreements[1] if len(agreements) > 1 else None)
