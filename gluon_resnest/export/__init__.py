"""Deployment export of ResNeSt networks: MXNet symbol, ONNX and INT8, each checked numerically.

From Python: ``export(ExportConfig(model='resnest50', pretrained=True, out='deploy', format='onnx'))``.

Command line: ``gluon-resnest-export --model resnest50 --params-file F --out DIR --format mxnet|onnx|int8|onnx-int8``
(or ``python -m gluon_resnest.export``). Converter of the official PyTorch checkpoints:
``gluon-resnest-convert-torch`` (see :mod:`.torch_convert`).
"""
from ..config import ExportConfig
from .api import export
from .common import ExportCheckError, Preprocess, load_symbol_block
from .int8_export import calibration_images, export_int8
from .mxnet_export import export_mxnet
from .onnx_export import ONNX_OPSET, ORT_PYTHON_ENV, export_onnx, run_onnxruntime
from .onnx_int8 import export_onnx_int8

__all__ = ['ExportConfig', 'export', 'ExportCheckError', 'Preprocess', 'load_symbol_block',
           'export_mxnet', 'export_onnx', 'export_int8', 'export_onnx_int8', 'calibration_images',
           'run_onnxruntime', 'ONNX_OPSET', 'ORT_PYTHON_ENV']
