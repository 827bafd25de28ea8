"""gluon_resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon, in the GluonCV style."""
from .config import EvalConfig, ExportConfig, TrainConfig
from .evaluation import evaluate
from .layers import SplitAttentionConv
from .model_zoo import get_model, list_models
from .resnest import ResNeSt
# GluonCV integration: importing the package installs our networks into GluonCV (idempotent).
from .gluoncv import register as register_gluoncv, unregister as unregister_gluoncv

__version__ = '0.1.0'

__all__ = ['get_model', 'list_models', 'ResNeSt', 'SplitAttentionConv', '__version__',
           'register_gluoncv', 'unregister_gluoncv', 'evaluate', 'EvalConfig', 'TrainConfig', 'ExportConfig']

register_gluoncv()
