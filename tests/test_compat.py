"""gluon_resnest_compat: the numpy and onnx names MXNet 1.9.1 and GluonCV 0.10.5.post0 use, restored.

Checked against the installed mxnet and gluoncv sources: every restored name is one they read (in the
files the table names), and every name they read that this numpy lacks is restored.
"""
import ast
import functools
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import gluon_resnest_compat as compat

pytestmark = pytest.mark.smoke  # the restore is what differs between interpreters

SITE = os.path.dirname(importlib.util.find_spec('mxnet').submodule_search_locations[0])


def _sources(path):
    """The .py files at ``path`` (a file, or a folder searched recursively)."""
    if path.endswith('.py'):
        return [path]
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names if name.endswith('.py')]


def _text(files):
    return '\n'.join(open(path, encoding='utf-8').read() for path in files)


@functools.lru_cache(maxsize=None)
def numpy_reads(path):
    """Attribute names the code of file ``path`` reads from its numpy imports (``import numpy as np``;
    strings and comments aside: mxnet's docstrings also call mxnet.numpy `np`), and the names in its
    _NUMPY_ARRAY_*_LIST tables (mxnet/numpy_dispatch_protocol.py reads each from numpy with getattr)."""
    with open(path, encoding='utf-8') as source, warnings.catch_warnings():
        warnings.simplefilter('ignore', SyntaxWarning)  # invalid escapes in their docstrings
        tree = ast.parse(source.read())
    aliases = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == 'numpy'}
    reads = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id in aliases}
    return reads | {element.value for node in tree.body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)
                    and re.fullmatch(r'_NUMPY_ARRAY_\w+_LIST', target.id) and isinstance(node.value, ast.List)
                    for element in node.value.elts
                    if isinstance(element, ast.Constant) and '.' not in element.value}


def _users(who):
    """The files and folders of mxnet/ and gluoncv/ that a table comment names."""
    return re.findall(r'\b((?:mxnet|gluoncv)/[\w/]+(?:\.py)?)', who)


@pytest.mark.parametrize('name', sorted(compat.NUMPY_NAMES))
def test_each_restored_name_is_present_and_read_where_the_table_says(name):
    assert hasattr(np, name)  # conftest imported gluon_resnest
    users = _users(compat.NUMPY_NAMES[name][1])
    assert users, 'the comment of %s names no file' % name
    for user in users:
        files = _sources(os.path.join(SITE, user))
        assert files, user
        assert any(name in numpy_reads(path) for path in files), '%s does not read numpy.%s' % (user, name)


def test_every_name_mxnet_and_gluoncv_read_that_numpy_lacks_is_restored():
    """On this interpreter's numpy, without the restore (a fresh process that imports only numpy)."""
    read = set()
    for package in ('mxnet', 'gluoncv'):
        for path in _sources(os.path.join(SITE, package)):
            read |= numpy_reads(path)
    code = 'import json, sys, numpy; print(json.dumps([n for n in sys.argv[1:] if not hasattr(numpy, n)]))'
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c', code] + sorted(read), capture_output=True,
                          text=True, timeout=300, check=True)
    missing = set(json.loads(proc.stdout))
    assert missing <= set(compat.NUMPY_NAMES), sorted(missing - set(compat.NUMPY_NAMES))


def _bare_numpy():
    """A module with only the numpy functions the restore builds on (a numpy that lost every name)."""
    bare = types.ModuleType('bare_numpy')
    bare.all, bare.any, bare.isin, bare.prod, bare.round, bare.sort = np.all, np.any, np.isin, np.prod, np.round, np.sort
    bare.trapezoid = getattr(np, 'trapezoid', None) or np.trapz
    return bare


def test_restore_gives_the_values_numpy_had():
    bare = _bare_numpy()
    assert compat.restore(bare) == list(compat.NUMPY_NAMES)
    assert (bare.bool, bare.int, bare.float) == (bool, int, float)
    assert bare.compat.basestring is str
    assert bare.Inf == bare.PINF == math.inf and bare.NINF == -math.inf
    assert math.copysign(1, bare.PZERO) == 1 and math.copysign(1, bare.NZERO) == -1 and bare.NZERO == 0
    assert math.isnan(bare.NaN) and math.isnan(bare.NAN)
    assert (bare.alltrue, bare.sometrue, bare.product, bare.round_) == (np.all, np.any, np.prod, np.round)
    a, b = np.array([[3, 1], [2, 5]]), np.array([1, 5, 7])
    np.testing.assert_array_equal(bare.in1d(a, b), [False, True, False, True])
    np.testing.assert_array_equal(bare.in1d(a, b, invert=True), [True, False, True, False])
    np.testing.assert_array_equal(bare.msort(a), [[2, 1], [3, 5]])
    assert bare.trapz([1.0, 2.0, 3.0]) == 4.0
    with pytest.raises(NotImplementedError, match='numpy_financial.npv'):
        bare.npv(0.1, [1, 2])
    assert compat.restore(bare) == []


def test_restore_changes_nothing_numpy_has():
    full = types.ModuleType('full_numpy')
    values = {name: object() for name in compat.NUMPY_NAMES}
    full.__dict__.update(values)
    assert compat.restore(full) == []
    assert {name: getattr(full, name) for name in values} == values


def _run(code):
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_numpy_alone_restores_nothing():
    """The .pth file's hook waits for mxnet or gluoncv: other programs in the venv see numpy as it is."""
    before, after, package_loaded = _run(
        'import json, sys, numpy, gluon_resnest_compat as c\n'
        'has = lambda: sorted(n for n in c.NUMPY_NAMES if hasattr(numpy, n))\n'
        'before = has()\nimport mxnet\n'
        'print(json.dumps([before, has(), "gluon_resnest" in sys.modules]))')
    assert ('float' in before) == (tuple(int(p) for p in np.__version__.split('.')[:2]) < (1, 24))
    assert after == sorted(compat.NUMPY_NAMES)
    assert not package_loaded


def test_script_that_imports_mxnet_first_runs_mxnet_and_gluoncv():
    """No `import gluon_resnest`: the .pth file installed with the package restores the names."""
    result = _run(
        'import mxnet as mx\n'
        'import json, sys, numpy\n'
        'from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator\n'
        'gen = RPNAnchorGenerator(stride=16, base_size=16, ratios=(0.5, 1, 2), scales=(2, 4), alloc_size=(4, 4))\n'
        'x = mx.np.array([1.0, -2.0, 3.0])\n'
        'print(json.dumps([gen.anchors.shape, x[x > 0].tolist(), "gluon_resnest" in sys.modules]))')
    assert result == [[1, 1, 4, 4, 24], [1.0, 3.0], False]


def test_onnx_mapping_tables_are_onnx_1_14s():
    """The restored tables against onnx's own, where onnx still has them (onnx <= 1.14)."""
    onnx = pytest.importorskip('onnx')
    try:
        from onnx import mapping  # pylint: disable=import-outside-toplevel
    except ImportError:
        pytest.skip('onnx %s has no onnx.mapping to compare with' % onnx.__version__)
    if getattr(mapping, '__doc__', '') and 'gluon_resnest_compat' in mapping.__doc__:
        pytest.skip('onnx.mapping here is the restored one')
    to_onnx, to_numpy = compat.onnx_mapping_tables(onnx.TensorProto)
    assert to_onnx == {dtype: mapping.NP_TYPE_TO_TENSOR_TYPE[dtype] for dtype in to_onnx}
    assert to_numpy == {code: mapping.TENSOR_TYPE_TO_NP_TYPE[code] for code in to_numpy}
    assert set(to_onnx) == set(mapping.NP_TYPE_TO_TENSOR_TYPE)


@pytest.mark.parametrize('name', compat.ONNX_MAPPING_NAMES)
def test_each_onnx_mapping_name_is_read_by_mxnets_exporter(name):
    assert name in re.findall(r'\bmapping\.(\w+)', _text(_sources(os.path.join(SITE, 'mxnet', 'onnx'))))


def test_onnx_mapping_is_present_before_export():
    onnx = pytest.importorskip('onnx')
    compat.restore_onnx_mapping()
    from onnx import mapping  # pylint: disable=import-outside-toplevel
    assert mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype('float32')] == onnx.TensorProto.FLOAT
    assert mapping.TENSOR_TYPE_TO_NP_TYPE[onnx.TensorProto.INT64] == np.dtype('int64')


def test_missing_mxnet_is_one_line_naming_both_ways_to_install_it():
    proc = subprocess.run([sys.executable, '-c', 'import sys; sys.modules["mxnet"] = None; import gluon_resnest'],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: gluon_resnest needs MXNet 1.9.1, which is not installed: ')
    assert 'mxnet-cu112==1.9.1' in last
    assert ('--no-deps mxnet==1.9.1' if sys.version_info >= (3, 13) else 'gluon_resnest[cpu]') in last


@pytest.mark.parametrize('name', sorted(compat.DEFERRED_IMPORTS))
def test_each_deferred_import_is_one_mxnet_makes_where_the_table_says(name):
    where, _ = compat.DEFERRED_IMPORTS[name]
    with open(os.path.join(SITE, where), encoding='utf-8') as source:
        tree = ast.parse(source.read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {'%s.%s' % (node.module, alias.name) for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    assert any(full == name or full.startswith(name + '.') for full in imported), sorted(imported)


def test_gluon_resnest_loads_mxnet_without_the_deferred_imports_and_they_work_after():
    result = _run(
        'import json, sys\n'
        'import gluon_resnest_compat, gluon_resnest, mxnet as mx\n'
        'held = sorted(name for name in gluon_resnest_compat.DEFERRED_IMPORTS if name in sys.modules)\n'
        'import sklearn.base, scipy.stats\n'
        'print(json.dumps([held, issubclass(mx.model.FeedForward, sklearn.base.BaseEstimator),\n'
        '                  mx.contrib.quantization.stats.entropy is scipy.stats.entropy,\n'
        '                  round(float(mx.contrib.quantization.stats.entropy([0.5, 0.5], [0.9, 0.1])), 6)]))')
    assert result == [[], False, True, round(math.log(0.5 / 0.9) / 2 + math.log(0.5 / 0.1) / 2, 6)]


def test_modules_imported_before_gluon_resnest_stay_as_mxnet_binds_them():
    result = _run(
        'import json, sklearn.base, scipy.stats\n'
        'import gluon_resnest, mxnet as mx\n'
        'print(json.dumps([issubclass(mx.model.FeedForward, sklearn.base.BaseEstimator),\n'
        '                  mx.contrib.quantization.stats is scipy.stats]))')
    assert result == [True, True]
