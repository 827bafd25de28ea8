"""gluon_resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon, in the GluonCV style."""
from .layers import SplitAttentionConv
from .model_zoo import get_model, list_models
from .resnest import ResNeSt

__version__ = '0.1.0'

__all__ = ['get_model', 'list_models', 'ResNeSt', 'SplitAttentionConv', '__version__']
