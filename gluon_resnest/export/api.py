"""One call per deployment artifact: what ``python -m gluon_resnest.export`` runs.

::

    from gluon_resnest.export import ExportConfig, export
    result = export(ExportConfig(model='resnest50', pretrained=True, out='deploy', format='onnx'))
    result.files, result.max_abs_diff
"""
from ..config import ExportConfig
from ..loading import load_network
from .int8_export import calibration_images, export_int8
from .mxnet_export import export_mxnet
from .onnx_export import ONNX_OPSET, export_onnx
from .onnx_int8 import export_onnx_int8

__all__ = ['export', 'report']


def export(config):
    """Build the network and export it as ``config`` says, then check the written files.

    Parameters
    ----------
    config : ExportConfig

    Returns
    -------
    ExportResult
        ``files`` (every path written: symbol and params, or the .onnx file), ``max_abs_diff`` between
        the reloaded artifact and the network (None when the onnxruntime comparison is skipped) and its
        ``tolerance``; INT8 adds ``agreement`` (fraction of calibration images whose top-1 equals fp32's),
        and ``onnx-int8`` ``held_out_agreement`` (the same on other images of the calibration data).

    Raises
    ------
    ValueError, FileNotFoundError
        Bad weights or settings; ``ExportCheckError`` when the artifact does not compute what the
        network does (no files are left then).
    """
    if not isinstance(config, ExportConfig):
        raise TypeError('export takes an ExportConfig, got %s' % type(config).__name__)
    net = load_network(config.model, pretrained=config.pretrained, params_file=config.params_file,
                       required=True)
    common = dict(input_size=config.input_size, batch_size=config.batch_size, preprocess=config.preprocess)
    if config.format == 'mxnet':
        return export_mxnet(net, config.out, config.prefix, **common)
    if config.format == 'onnx':
        return export_onnx(net, config.out, config.prefix, dynamic=config.dynamic_batch,
                           runtime_check=not config.no_runtime_check, **common)
    count = config.num_calib_batches * config.batch_size
    if config.format == 'onnx-int8':
        images, held_out = calibration_images(config.calib_data, config.input_size, count, config.preprocess,
                                              held_out=count)
        return export_onnx_int8(net, config.out, config.prefix, images, held_out, batch_size=config.batch_size,
                                preprocess=config.preprocess, calib_mode=config.calib_mode,
                                granularity=config.granularity, min_agreement=config.min_agreement)
    images = calibration_images(config.calib_data, config.input_size, count, config.preprocess)
    return export_int8(net, config.out, config.prefix, images, batch_size=config.batch_size,
                       preprocess=config.preprocess, calib_mode=config.calib_mode,
                       granularity=config.granularity, min_agreement=config.min_agreement)


def report(config, result):
    """Human-readable lines: where the files are and what the self-check found."""
    lines = ['wrote %s' % path for path in result.files]
    shape = ('(N, %d, %d, 3) uint8/float 0..255' if config.preprocess else '(N, 3, %d, %d) normalised')
    lines.append('input "data": %s' % (shape % (config.input_size, config.input_size)))
    if config.format == 'onnx-int8':
        held = ('no held-out images left in the calibration data' if result.held_out_agreement is None
                else '%.1f%% of held-out images' % (100 * result.held_out_agreement))
        lines.append('self-check in onnxruntime: INT8 weights, input "data" only; top-1 agrees with fp32 on %.1f%% '
                     'of the calibration images, %s' % (100 * result.agreement, held))
    elif config.format == 'int8':
        lines.append('self-check: INT8 agrees with fp32 top-1 on %.1f%% of the calibration images; reloaded '
                     'files reproduce it (max |diff| %.3g)' % (100 * result.agreement, result.max_abs_diff))
    elif result.max_abs_diff is None:
        lines.append('self-check: onnx.checker passed at opset %d (onnxruntime comparison skipped)' % ONNX_OPSET)
    else:
        lines.append('self-check: reloaded %s output equals the network\'s (max |diff| %.3g < %g)'
                     % (config.format, result.max_abs_diff, result.tolerance))
    return lines
