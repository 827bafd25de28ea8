"""gluon_resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon, in the GluonCV style."""
# First, before anything loads MXNet: the project's command-line tools set their compute threads here,
# since `python -m gluon_resnest.X` and the scripts import this package before the tool's own code.
from .threads import configure_command_line as _configure_threads
_configure_threads()
# Then, still before anything loads MXNet: a one-line error if no MXNet build is installed, the numpy names
# MXNet and GluonCV need, and MXNet loaded without the optional imports that would cost every command
# about 2 s of start-up (gluon_resnest_compat.import_mxnet, DEFERRED_IMPORTS).
import gluon_resnest_compat  # noqa: E402
gluon_resnest_compat.check_mxnet()
gluon_resnest_compat.import_mxnet()
from .classification.config import EvalConfig, TrainConfig  # noqa: E402
from .config import ExportConfig  # noqa: E402  (after the thread count is set)
from .classification.evaluation import evaluate  # noqa: E402
from .inference import optimize  # noqa: E402
from .layers import SplitAttentionConv  # noqa: E402
from .model_zoo import get_model, list_models
from .resnest import ResNeSt
# GluonCV integration: importing the package installs our networks into GluonCV (idempotent).
from .gluoncv import register as register_gluoncv, unregister as unregister_gluoncv

__version__ = '0.1.0'

__all__ = ['get_model', 'list_models', 'ResNeSt', 'SplitAttentionConv', '__version__',
           'register_gluoncv', 'unregister_gluoncv', 'evaluate', 'optimize', 'EvalConfig', 'TrainConfig', 'ExportConfig']

register_gluoncv()
