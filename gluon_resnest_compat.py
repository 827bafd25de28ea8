"""The names MXNet 1.9.1 and GluonCV 0.10.5.post0 take from numpy and onnx that later releases removed.

Both are final releases: they import ``numpy.bool`` and the other aliases numpy 1.24 dropped, bind at
import a dozen functions numpy 2 dropped, and MXNet's ONNX exporter reads ``onnx.mapping``, gone after
onnx 1.14. :func:`restore` puts back exactly the names they use (each with who uses it, below), and only
those missing: on a numpy that still has a name, nothing changes. It must run before the first
``import mxnet`` of the process, since MXNet binds several of them at import:

- ``import gluon_resnest`` runs it first thing;
- the ``gluon_resnest_compat.pth`` file installed beside the package calls :func:`install_hook` at
  interpreter start, which runs it when ``mxnet`` or ``gluoncv`` is first imported, so a script that
  imports ``mxnet`` before ``gluon_resnest`` works too (without the .pth file, e.g. ``python -S`` or a
  checkout on ``PYTHONPATH``: ``import gluon_resnest`` before ``mxnet``).

A top-level module that imports only the standard library (numpy when it restores): the .pth file loads
it at every interpreter start, without ``gluon_resnest/__init__.py``, which loads MXNet.
"""
import builtins
import math
import sys
import warnings

__all__ = ['DEFERRED_IMPORTS', 'NUMPY_NAMES', 'ONNX_MAPPING_NAMES', 'check_mxnet', 'import_mxnet', 'install_hook',
           'onnx_mapping_tables', 'restore', 'restore_onnx_mapping']


def _financial(name):
    """A stand-in for a financial function numpy 2 removed (the numpy_financial package has them)."""
    def removed(*args, **kwargs):
        raise NotImplementedError('numpy.%s is gone from numpy (numpy_financial.%s has it); mxnet.numpy.%s '
                                  'is its stand-in' % (name, name, name))
    removed.__name__ = name
    return removed


def _compat():
    import types  # pylint: disable=import-outside-toplevel
    module = types.ModuleType('numpy.compat', 'The name of numpy.compat MXNet reads (gluon_resnest_compat).')
    module.basestring = str
    return module


def _in1d(ar1, ar2, assume_unique=False, invert=False, **kwargs):
    import numpy  # pylint: disable=import-outside-toplevel
    return numpy.isin(ar1, ar2, assume_unique=assume_unique, invert=invert, **kwargs).ravel()


def _msort(a):
    import numpy  # pylint: disable=import-outside-toplevel
    return numpy.sort(a, axis=0)


# name in numpy: (its value when numpy had it, built from numpy; who uses it). "At import" means a
# missing name makes `import mxnet` itself fail.
NUMPY_NAMES = {
    # numpy 1.24 removed these aliases of the builtins (numpy 2 has `bool` again, as numpy.bool_).
    'bool': (lambda np: builtins.bool, 'mxnet/numpy/utils.py at import; mxnet.numpy boolean indexing'),
    'int': (lambda np: builtins.int, 'gluoncv/model_zoo/hrnet.py, gluoncv/data/kitti; mxnet/test_utils.py'),
    'float': (lambda np: builtins.float, 'gluoncv/model_zoo/rcnn/rpn/anchor.py (every R-CNN), '
                                         'gluoncv/utils/metrics/coco_detection.py'),
    # numpy 2 removed these spellings of the constants.
    'Inf': (lambda np: math.inf, 'mxnet/gluon/contrib/estimator/event_handler.py, '
                                 'gluoncv/auto/estimators/utils.py'),
    'NINF': (lambda np: -math.inf, 'mxnet/numpy/utils.py at import'),
    'PINF': (lambda np: math.inf, 'mxnet/numpy/utils.py at import'),
    'PZERO': (lambda np: 0.0, 'mxnet/numpy/utils.py at import'),
    'NZERO': (lambda np: -0.0, 'mxnet/numpy/utils.py at import'),
    'NAN': (lambda np: math.nan, 'mxnet/numpy/utils.py at import'),
    'NaN': (lambda np: math.nan, 'mxnet/numpy/utils.py at import'),
    # numpy 2 removed numpy.compat; mxnet.numpy.pad checks its mode against compat.basestring (str).
    'compat': (lambda np: _compat(), 'mxnet/ndarray/numpy/_op.py, mxnet/symbol/numpy/_symbol.py'),
    # numpy 2 removed these functions. MXNet registers its array-function overrides under these
    # names, read from numpy by string (getattr), at import.
    'product': (lambda np: np.prod, 'mxnet/numpy_dispatch_protocol.py at import'),
    'round_': (lambda np: np.round, 'mxnet/numpy_dispatch_protocol.py at import'),
    'sometrue': (lambda np: np.any, 'mxnet/numpy_dispatch_protocol.py at import'),
    # numpy 2 removed these functions; mxnet.numpy's fallbacks bind them.
    'alltrue': (lambda np: np.all, 'mxnet/numpy/fallback.py at import'),
    'in1d': (lambda np: _in1d, 'mxnet/numpy/fallback.py at import'),
    'msort': (lambda np: _msort, 'mxnet/numpy/fallback.py at import'),
    'trapz': (lambda np: np.trapezoid, 'mxnet/numpy/fallback.py at import'),
    # numpy 2 removed these (numpy_financial has them); mxnet.numpy's fallbacks bind them (stand-ins here).
    'mirr': (lambda np: _financial('mirr'), 'mxnet/numpy/fallback.py at import'),
    'npv': (lambda np: _financial('npv'), 'mxnet/numpy/fallback.py at import'),
    'pmt': (lambda np: _financial('pmt'), 'mxnet/numpy/fallback.py at import'),
    'ppmt': (lambda np: _financial('ppmt'), 'mxnet/numpy/fallback.py at import'),
    'pv': (lambda np: _financial('pv'), 'mxnet/numpy/fallback.py at import'),
    'rate': (lambda np: _financial('rate'), 'mxnet/numpy/fallback.py at import'),
}

# onnx.mapping's two tables that MXNet's exporter (mxnet/onnx/mx2onnx/) reads: numpy dtype <-> the
# TensorProto type code, for the dtypes MXNet has.
ONNX_MAPPING_NAMES = ('NP_TYPE_TO_TENSOR_TYPE', 'TENSOR_TYPE_TO_NP_TYPE')
_ONNX_TYPES = [('float32', 'FLOAT'), ('float64', 'DOUBLE'), ('float16', 'FLOAT16'), ('uint8', 'UINT8'),
               ('int8', 'INT8'), ('uint16', 'UINT16'), ('int16', 'INT16'), ('int32', 'INT32'),
               ('int64', 'INT64'), ('uint32', 'UINT32'), ('uint64', 'UINT64'), ('bool', 'BOOL'),
               ('complex64', 'COMPLEX64'), ('complex128', 'COMPLEX128'), ('object', 'STRING')]


def _has(module, name):
    with warnings.catch_warnings():  # numpy < 1.24 warns when its deprecated aliases are read
        warnings.simplefilter('ignore')
        return hasattr(module, name)


def restore(numpy=None):
    """Add to ``numpy`` (default: the numpy module) each name of :data:`NUMPY_NAMES` it lacks.

    Returns the names added, in table order (none on a second call).
    """
    if numpy is None:
        import numpy  # pylint: disable=import-outside-toplevel,redefined-outer-name
    added = []
    for name, (value, _) in NUMPY_NAMES.items():
        if not _has(numpy, name):
            setattr(numpy, name, value(numpy))
            added.append(name)
    return added


def onnx_mapping_tables(tensor_proto):
    """``(NP_TYPE_TO_TENSOR_TYPE, TENSOR_TYPE_TO_NP_TYPE)`` as onnx.mapping had them, for MXNet's dtypes.

    ``tensor_proto`` is ``onnx.TensorProto`` (its type codes).
    """
    import numpy  # pylint: disable=import-outside-toplevel
    to_onnx = {numpy.dtype(np_name): getattr(tensor_proto, onnx_name) for np_name, onnx_name in _ONNX_TYPES}
    return to_onnx, {code: dtype for dtype, code in to_onnx.items()}


def restore_onnx_mapping():
    """Give onnx an ``onnx.mapping`` module with the tables MXNet's exporter reads, if it has none.

    Returns True when it was added, False when onnx has its own (onnx <= 1.14).
    """
    import importlib  # pylint: disable=import-outside-toplevel
    import types  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
    try:
        importlib.import_module('onnx.mapping')
        return False
    except ModuleNotFoundError:
        pass
    mapping = types.ModuleType('onnx.mapping', 'The onnx.mapping tables MXNet 1.9.1 reads (gluon_resnest_compat).')
    mapping.NP_TYPE_TO_TENSOR_TYPE, mapping.TENSOR_TYPE_TO_NP_TYPE = onnx_mapping_tables(onnx.TensorProto)
    sys.modules['onnx.mapping'] = mapping
    onnx.mapping = mapping
    return True


def check_mxnet():
    """Raise ImportError with a one-line message naming both ways to install MXNet when it is missing."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    if importlib.util.find_spec('mxnet') is not None:
        return
    cpu = ('pip install --no-deps mxnet==1.9.1 requests "graphviz<0.9"' if sys.version_info >= (3, 13)
           else 'pip install "gluon_resnest[cpu]"')
    raise ImportError('gluon_resnest needs MXNet 1.9.1, which is not installed: %s for the CPU build, or the '
                      'GPU build for your CUDA, e.g. pip install mxnet-cu112==1.9.1 (docs/install.md)' % cpu)


# Optional imports of ``import mxnet`` that nothing uses at import and that cost about 2 s of the 5 s it
# takes (2 vCPUs, scikit-learn 1.9 and scipy 1.x installed): name: (where MXNet imports it; what changes).
DEFERRED_IMPORTS = {
    'sklearn': ('mxnet/model.py', 'the legacy mx.model.FeedForward (deprecated since MXNet 1.0) subclasses '
                                  'object instead of scikit-learn\'s BaseEstimator'),
    'scipy.stats': ('mxnet/contrib/quantization.py', 'nothing: its entropy calibration computes on MXNet\'s own '
                                                     'operator and only checks that scipy.stats imports; the '
                                                     'module is bound there and imported at first use'),
}


class _ImportedAtFirstUse:  # pylint: disable=too-few-public-methods
    """A module imported when one of its attributes is first read."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import importlib  # pylint: disable=import-outside-toplevel
        return getattr(importlib.import_module(self._name), attr)


def import_mxnet():
    """``import mxnet`` without the optional imports of :data:`DEFERRED_IMPORTS`; returns the module.

    :func:`restore` first, then each of them that is not imported yet is held back while MXNet loads (an
    ImportError to MXNet's ``try``), then released, so that later imports of it work as usual; scipy.stats,
    when installed, is bound in ``mxnet.contrib.quantization`` and imported at first use. When MXNet is
    already imported, only the restore. ``import gluon_resnest`` calls this before anything else loads MXNet.
    """
    restore()
    if 'mxnet' in sys.modules:
        return sys.modules['mxnet']
    import importlib.util  # pylint: disable=import-outside-toplevel
    held = [name for name in DEFERRED_IMPORTS if name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # `import name` raises ImportError
    try:
        import mxnet  # pylint: disable=import-outside-toplevel
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    quantization = sys.modules.get('mxnet.contrib.quantization')
    if quantization is not None and getattr(quantization, 'stats', None) is None \
            and importlib.util.find_spec('scipy') is not None:
        quantization.stats = _ImportedAtFirstUse('scipy.stats')
    return mxnet


class _RestoreBeforeMXNet:
    """An import hook that runs :func:`restore` when mxnet or gluoncv is first imported, then steps aside."""

    names = ('mxnet', 'gluoncv')

    def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
        if fullname in self.names:
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
            restore()
        return None  # the regular finders import the module


def install_hook():
    """Run :func:`restore` before the first import of mxnet or gluoncv (the .pth file calls this)."""
    if 'mxnet' in sys.modules or 'gluoncv' in sys.modules:
        restore()
    elif not any(isinstance(finder, _RestoreBeforeMXNet) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RestoreBeforeMXNet())
