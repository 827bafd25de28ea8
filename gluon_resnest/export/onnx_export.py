"""ONNX export at a fixed opset, checked with ``onnx.checker`` and run in onnxruntime.

mxnet 1.9's exporter stamps the newest opset onnx knows (19 for onnx 1.14), which onnxruntime rejects
(``Reshape(19)``); it reads that number from ``onnx.defs.onnx_opset_version`` at call time, so the
export pins it for the duration. The exporter reads ``onnx.mapping``, which onnx releases after 1.14
lack: gluon_resnest_compat restores its two tables first. The numerical check runs onnxruntime in this
process when it imports here (numpy >= 1.24.2), else :mod:`ort_run` in another interpreter (a venv
beside an older numpy).
"""
import importlib.util
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from unittest import mock

import numpy as np

import gluon_resnest_compat
from ..layers import without_random_ops
from ..procs import preexec_die_with_this_process
from ..results import ExportResult
from .common import (ExportCheckError, compare_outputs, deploy_block, input_shape, output_dir,
                     random_input)
from .mxnet_export import eager_output, trace_clean

__all__ = ['ONNX_OPSET', 'ORT_PYTHON_ENV', 'clean_graph', 'export_onnx', 'ort_python', 'ort_runner', 'ort_call',
           'run_onnxruntime']

ONNX_OPSET = 13
ONNX_ATOL = 1e-4
# Environment variable naming a Python interpreter that can import onnxruntime.
ORT_PYTHON_ENV = 'GLUON_RESNEST_ORT_PYTHON'
_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ort_run.py')
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ort_python():
    """Interpreter for the onnxruntime check: ``$GLUON_RESNEST_ORT_PYTHON``, else this one when it
    imports onnxruntime, else ``<repo>/.venv-ort``.

    Returns None when none of them exists.
    """
    path = os.environ.get(ORT_PYTHON_ENV)
    if not path and importlib.util.find_spec('onnxruntime') is not None:
        return sys.executable
    path = path or os.path.join(_REPO, '.venv-ort', 'bin', 'python')
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


@contextmanager
def _exporter_patches(version):
    """Pin the opset, and store float weights as raw bytes instead of per-value protobuf fields.

    mxnet's exporter passes every weight to ``onnx.helper.make_tensor`` as a Python list; with the pure-
    Python protobuf onnx 1.14 runs on here, appending millions of floats one by one takes ~3 s per
    million. ``numpy_helper.from_array`` writes the same values as ``raw_data`` (a standard encoding).
    """
    import onnx.defs  # pylint: disable=import-outside-toplevel
    from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel
    make_tensor = helper.make_tensor

    def fast_make_tensor(name, data_type, dims, vals, raw=False):
        if not raw and data_type == TensorProto.FLOAT and isinstance(vals, list) and len(vals) > 64:
            return numpy_helper.from_array(np.asarray(vals, np.float32).reshape(dims), name)
        return make_tensor(name, data_type, dims, vals, raw)

    with mock.patch.object(onnx.defs, 'onnx_opset_version', lambda: version), \
            mock.patch.object(helper, 'make_tensor', fast_make_tensor):
        yield


def _export_file(sym_file, params_file, onnx_file, shape, dtype, dynamic):
    import onnx  # pylint: disable=import-outside-toplevel
    gluon_resnest_compat.restore_onnx_mapping()
    import mxnet.onnx  # pylint: disable=import-outside-toplevel
    dynamic_shapes = [(None,) + tuple(shape[1:])] if dynamic else None
    with _exporter_patches(ONNX_OPSET):
        mxnet.onnx.export_model(sym_file, params_file, in_shapes=[shape], in_types=[dtype],
                                onnx_file_path=onnx_file, dynamic=dynamic,
                                dynamic_input_shapes=dynamic_shapes)
    model = onnx.load(onnx_file)
    if any(clean_graph(model)):
        onnx.save(model, onnx_file)
    onnx.checker.check_model(model)
    inputs = [i.name for i in model.graph.input]
    if inputs != ['data']:
        raise ExportCheckError('%s has graph inputs %s, expected only "data"'
                               % (onnx_file, ', '.join(inputs[:5])))
    opsets = [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')]
    if opsets != [ONNX_OPSET]:
        raise ExportCheckError('%s has opset %s, expected %d' % (onnx_file, opsets, ONNX_OPSET))


def clean_graph(model):
    """Keep only the real inputs as graph inputs, and only the used initializers; return what went.

    mxnet's exporter lists every parameter as a graph input too. onnxruntime then treats them as
    values a caller may override: it warns once per tensor and skips constant folding (BatchNorm into
    convolutions, among others), which makes ResNeSt-50 run 1.4-1.9x slower. Since IR version 4 an
    initializer need not be an input, so the parameters stay in the file as constants. The exporter
    also leaves a few constants no node reads (axes of ops it rewrote), which onnxruntime warns about.

    Returns
    -------
    tuple of int
        Number of graph inputs and of initializers removed.
    """
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    inits = [init for init in graph.initializer if init.name in used]
    removed = (len(graph.input) - len(inputs), len(graph.initializer) - len(inits))
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return removed


def ort_runner(python=None):
    """Where onnxruntime runs: None for this process (it imports here, and ``python`` is None or this
    interpreter), else an interpreter that has it (``python``, default :func:`ort_python`).

    Raises RuntimeError with a one-line reason when there is neither.
    """
    if python in (None, sys.executable) and importlib.util.find_spec('onnxruntime') is not None:
        return None
    python = python or ort_python()
    if python is None:
        raise RuntimeError('onnxruntime is not importable here and no onnxruntime interpreter was '
                           'found: run scripts/setup.d/40-onnxruntime.sh or set %s (--format onnx: or pass '
                           '--no-runtime-check)' % ORT_PYTHON_ENV)
    return python


def _first_line(text, default):
    return (text.strip().splitlines() or [default])[0]


def ort_call(argv, what, python=None):
    """Run ``ort_run.py ARGV`` where onnxruntime is (:func:`ort_runner`): in this process or in a
    subprocess. A failure raises RuntimeError naming ``what`` with onnxruntime's reason."""
    python = ort_runner(python)
    if python is None:
        from . import ort_run  # pylint: disable=import-outside-toplevel
        try:
            ort_run.main(argv)
        except ort_run.errors() as err:
            reason = _first_line(str(err), type(err).__name__)
            raise RuntimeError('onnxruntime (in this process) failed on %s: %s' % (what, reason)) from err
        return
    proc = subprocess.run([python, _RUNNER] + list(argv), capture_output=True, text=True, timeout=3600,
                          check=False, preexec_fn=preexec_die_with_this_process())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ['exit status %d' % proc.returncode])[-1]
        raise RuntimeError('onnxruntime (%s) failed on %s: %s' % (python, what, last))


def run_onnxruntime(onnx_file, inputs, python=None):
    """Run ``onnx_file`` on each array of ``inputs`` in onnxruntime; return the outputs.

    In this process when :func:`ort_runner` says so, else through :func:`ort_call` in a subprocess.
    Raises RuntimeError with a one-line reason when onnxruntime is nowhere or fails.
    """
    python = ort_runner(python)
    if python is None:
        from . import ort_run  # pylint: disable=import-outside-toplevel
        try:
            return ort_run.run_arrays(onnx_file, list(inputs))
        except ort_run.errors() as err:
            reason = _first_line(str(err), type(err).__name__)
            raise RuntimeError('onnxruntime (in this process) failed on %s: %s' % (onnx_file, reason)) from err
    with tempfile.TemporaryDirectory(prefix='.ort-', dir=os.path.dirname(os.path.abspath(onnx_file))) as tmp:
        paths = _save_inputs(inputs, tmp)
        out = os.path.join(tmp, 'out.npz')
        ort_call([onnx_file, out] + paths, onnx_file, python)
        with np.load(out) as saved:
            return [saved['arr_%d' % i] for i in range(len(paths))]


def _save_inputs(inputs, folder):
    paths = []
    for index, array in enumerate(inputs):
        path = os.path.join(folder, 'input%d.npy' % index)
        np.save(path, array)
        paths.append(path)
    return paths


def export_onnx(net, out_dir, name, input_size=224, batch_size=1, preprocess=False, dynamic=False,
                check=True, runtime_check=True):
    """Export ``net`` to ONNX (opset 13) and check it computes what the network computes.

    Parameters
    ----------
    net : ResNeSt
        Initialised network.
    out_dir, name : str
        Writes ``out_dir/name`` (``.onnx`` appended if missing).
    input_size, batch_size : int
        Input shape; with ``dynamic`` the batch axis is left free.
    preprocess : bool
        Take raw uint8 (N, H, W, 3) images (mean/std and HWC->CHW inside the graph).
    dynamic : bool
        Free batch dimension (checked at ``batch_size`` and ``batch_size + 1``).
    check : bool
        Run ``onnx.checker``; with ``runtime_check`` also compare onnxruntime's output with the
        network's (max abs diff < 1e-4 times the largest output magnitude, at least 1).

    Returns
    -------
    ExportResult
        ``files`` (the .onnx file), ``max_abs_diff`` and the ``tolerance`` it was held to (both None
        without the runtime check).
    """
    name = name if name.endswith('.onnx') else name + '.onnx'
    shape = input_shape(batch_size, input_size, preprocess)
    block = deploy_block(net, preprocess)
    xs = [random_input(shape, preprocess)]
    if dynamic:
        xs.append(random_input((batch_size + 1,) + shape[1:], preprocess, seed=1))
    was_hybridized = net._active  # pylint: disable=protected-access
    with without_random_ops(net):
        expected = [eager_output(block, x) for x in xs] if check and runtime_check else None
        with output_dir(out_dir) as (tmp, publish):
            trace_clean(block, xs[0])
            block.export(os.path.join(tmp, 'graph'), epoch=0)
            os.makedirs(os.path.join(tmp, 'final'))
            onnx_file = os.path.join(tmp, 'final', name)
            _export_file(os.path.join(tmp, 'graph-symbol.json'),
                         os.path.join(tmp, 'graph-0000.params'), onnx_file, shape,
                         'uint8' if preprocess else 'float32', dynamic)
            diff = tol = None
            if expected is not None:
                actual = run_onnxruntime(onnx_file, [x.asnumpy() for x in xs])
                # onnxruntime folds BatchNorm into the convolutions: float32 rounds differently,
                # by amounts in proportion to the values, so the tolerance scales with the logits.
                tol = ONNX_ATOL * max([1.0] + [float(np.abs(e).max()) for e in expected])
                diff = max(compare_outputs(e, a, tol, 'onnxruntime on %s' % name)
                           for e, a in zip(expected, actual))
            final = os.path.join(os.path.abspath(out_dir), name)
            os.replace(onnx_file, final)
    block.hybridize(active=False)
    net.hybridize(active=was_hybridized)
    return ExportResult('onnx', (final,), diff, tol)
