"""Deployment export: MXNet symbol, ONNX and INT8 artifacts compute what the network computes."""
import json
import os
import re
import subprocess
import sys
from collections import namedtuple

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.export import (ExportCheckError, ExportConfig, export, export_int8, export_mxnet, export_onnx,
                                  export_onnx_int8)
from gluon_resnest.export import __main__ as cli
from gluon_resnest.export import mxnet_export, onnx_export, onnx_int8
from gluon_resnest.export.int8_export import calibration_images
from gluon_resnest.export.mxnet_export import MXNET_ATOL

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
Batch = namedtuple('Batch', ['data'])


def _net(name, **kwargs):
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier())
    return net


def _random_batch(batch=2, size=SIZE, seed=1):
    return mx.nd.array(np.random.RandomState(seed).standard_normal((batch, 3, size, size)))


def _ops(symbol_file):
    with open(symbol_file) as f:
        return {node['op'] for node in json.load(f)['nodes']}


def _imports(prefix):
    return mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')


# --- MXNet symbol -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('recorded', [False, True], ids=['fresh', 'hybridized-under-record'])
@pytest.mark.parametrize('name', ['resnest14', 'resnest50_fast_4s1x64d', 'resnest50'])
def test_mxnet_export_equals_network(tmp_path, name, recorded):
    # resnest14 is built with DropBlock on too, so every case has random ops a naive export would keep.
    net = _net(name, dropblock_prob=0.1)
    x = _random_batch()
    expected = net(x).asnumpy()  # eager inference: what the network computes
    if recorded:
        # GluonCV's pitfall: a graph first traced while recording keeps its DropBlock ops.
        net.hybridize()
        with mx.autograd.record():
            net(x)
        net.export(str(tmp_path / 'naive'))
        naive = _ops(str(tmp_path / 'naive-symbol.json'))
        assert '_random_uniform_like' in naive  # DropBlock's seeds in a graph traced for training
    result = export_mxnet(net, str(tmp_path / 'out'), name, input_size=SIZE, batch_size=2)
    ops = _ops(result.file('-symbol.json'))
    assert 'Dropout' not in ops and not any(op.startswith('_random') for op in ops)
    actual = _imports(str(tmp_path / 'out' / name))(x).asnumpy()
    assert np.abs(actual - expected).max() < 1e-5
    assert result.max_abs_diff < 1e-5
    # The caller's network keeps its training behaviour.
    assert net.layer3[0].dropblock1.drop_prob == 0.1
    assert sorted(os.listdir(str(tmp_path / 'out'))) == [name + '-0000.params', name + '-symbol.json']


def test_mxnet_export_loads_in_module_api(tmp_path):
    net = _net('resnest14')
    x = _random_batch()
    expected = net(x).asnumpy()
    export_mxnet(net, str(tmp_path), 'r14', input_size=SIZE, batch_size=2)
    sym, arg_params, aux_params = mx.model.load_checkpoint(str(tmp_path / 'r14'), 0)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[('data', x.shape)], for_training=False)
    mod.set_params(arg_params, aux_params)
    mod.forward(Batch([x]), is_train=False)
    assert np.abs(mod.get_outputs()[0].asnumpy() - expected).max() < 1e-5


def _normalise_reference(images):
    """Independent numpy version of the folded preprocessing: (x/255 - mean)/std, HWC -> CHW."""
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    chw = ((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    return mx.nd.array(chw)


def test_preprocess_graph_takes_raw_uint8_images(tmp_path):
    net = _net('resnest14')
    images = np.random.RandomState(3).randint(0, 256, size=(2, SIZE, SIZE, 3)).astype(np.uint8)
    expected = net(_normalise_reference(images)).asnumpy()
    export_mxnet(net, str(tmp_path), 'pre', input_size=SIZE, batch_size=2, preprocess=True)
    deployed = _imports(str(tmp_path / 'pre'))
    actual = deployed(mx.nd.array(images, dtype='uint8')).asnumpy()
    assert np.abs(actual - expected).max() < 1e-4
    # The same graph accepts the 0..255 values as float too.
    as_float = deployed(mx.nd.array(images.astype(np.float32))).asnumpy()
    assert np.abs(as_float - actual).max() < 1e-6


# --- ONNX ---------------------------------------------------------------------------------------------

def _ort_python_or_skip():
    """An interpreter with onnxruntime (this one when it has it); skips the test where none has."""
    try:
        return onnx_export.ort_runner() or sys.executable
    except RuntimeError as err:
        pytest.skip(str(err))


# onnxruntime prints this once per parameter when a parameter is also a graph input.
INITIALIZER_AS_INPUT = 'appears in graph inputs and will not be treated as constant'


def _ort_load_log(python, onnx_file):
    """What onnxruntime logs at warning severity while loading ``onnx_file``."""
    code = ('import sys, onnxruntime as ort; ort.set_default_logger_severity(2); '
            'ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])')
    proc = subprocess.run([python, '-c', code, onnx_file], capture_output=True, text=True,
                          timeout=300, check=True)
    return proc.stdout + proc.stderr


def _assert_clean_graph(model, onnx_file, net, python, tmp_path):
    """Only ``data`` is a graph input, every parameter an initializer, and onnxruntime loads it
    without a warning; the same graph with its parameters as inputs too (as mxnet's exporter writes
    it) does warn, so the log is really captured."""
    assert [i.name for i in model.graph.input] == ['data']
    assert set(net.collect_params().keys()) <= {init.name for init in model.graph.initializer}
    assert '[W:onnxruntime' not in _ort_load_log(python, onnx_file)
    import onnx  # pylint: disable=import-outside-toplevel
    as_exported = onnx.ModelProto()
    as_exported.CopyFrom(model)
    as_exported.graph.input.extend(onnx.helper.make_tensor_value_info(init.name, init.data_type,
                                                                      init.dims)
                                   for init in model.graph.initializer)
    onnx.save(as_exported, str(tmp_path / 'as_exported.onnx'))
    assert _ort_load_log(python, str(tmp_path / 'as_exported.onnx')).count(INITIALIZER_AS_INPUT) \
        == len(model.graph.initializer)


@pytest.mark.slow
@pytest.mark.parametrize('dynamic', [pytest.param(False, marks=pytest.mark.smoke), True],
                         ids=['static', 'dynamic-batch'])
def test_onnx_export_runs_equal_in_onnxruntime(tmp_path, dynamic):
    import onnx  # pylint: disable=import-outside-toplevel
    python = _ort_python_or_skip()
    net = _net('resnest14', dropblock_prob=0.1)
    x = _random_batch(batch=2)
    result = export_onnx(net, str(tmp_path / 'out'), 'r14', input_size=SIZE, batch_size=2,
                         dynamic=dynamic)
    model = onnx.load(result.file('.onnx'))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [13]
    assert not {n.op_type for n in model.graph.node} & {'Dropout', 'RandomUniform', 'RandomNormal',
                                                        'RandomUniformLike', 'Bernoulli'}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value if d.HasField('dim_value') else None for d in dims] \
        == [None if dynamic else 2, 3, SIZE, SIZE]
    inputs = [x.asnumpy()] + ([_random_batch(batch=3, seed=2).asnumpy()] if dynamic else [])
    outputs = onnx_export.run_onnxruntime(result.file('.onnx'), inputs, python=python)
    for array, output in zip(inputs, outputs):
        assert np.abs(output - net(mx.nd.array(array)).asnumpy()).max() < 1e-4
    assert os.listdir(str(tmp_path / 'out')) == ['r14.onnx']
    _assert_clean_graph(model, result.file('.onnx'), net, python, tmp_path)


@pytest.mark.slow
def test_onnx_preprocess_graph_takes_uint8_images(tmp_path):
    import onnx  # pylint: disable=import-outside-toplevel
    python = _ort_python_or_skip()
    net = _net('resnest14')
    images = np.random.RandomState(4).randint(0, 256, size=(1, SIZE, SIZE, 3)).astype(np.uint8)
    result = export_onnx(net, str(tmp_path / 'out'), 'pre', input_size=SIZE, preprocess=True)
    output, = onnx_export.run_onnxruntime(result.file('.onnx'), [images], python=python)
    assert np.abs(output - net(_normalise_reference(images)).asnumpy()).max() < 1e-4
    model = onnx.load(result.file('.onnx'))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    _assert_clean_graph(model, result.file('.onnx'), net, python, tmp_path)


def test_clean_graph_keeps_parameters_as_initializers_only():
    from onnx import TensorProto, checker, helper, numpy_helper  # pylint: disable=import-outside-toplevel
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), 'w')
    unused = numpy_helper.from_array(np.zeros(1, np.int64), 'unused_axes')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['data', 'w'], ['out'])], 'g',
        [helper.make_tensor_value_info('data', TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info('w', TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 2])], [weight, unused])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    assert onnx_export.clean_graph(model) == (1, 1)
    assert [i.name for i in model.graph.input] == ['data']
    assert [init.name for init in model.graph.initializer] == ['w']
    checker.check_model(model)
    assert onnx_export.clean_graph(model) == (0, 0)


def test_onnx_export_rejects_a_graph_with_extra_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, 'clean_graph', lambda model: (0, 0))
    with pytest.raises(ExportCheckError, match='has graph inputs data, resnest_'):
        export_onnx(_net('resnest14'), str(tmp_path / 'out'), 'r14', input_size=32,
                    runtime_check=False)
    assert not (tmp_path / 'out').exists()


def test_onnx_runner_failure_is_reported(tmp_path):
    python = _ort_python_or_skip()
    bogus = tmp_path / 'bogus.onnx'
    bogus.write_bytes(b'not an onnx model')
    with pytest.raises(RuntimeError, match='onnxruntime .* failed on'):
        onnx_export.run_onnxruntime(str(bogus), [np.zeros((1, 3, 8, 8), np.float32)], python=python)


# --- INT8 ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def digits_folder(tmp_path_factory):
    """40 scikit-learn digit images (8x8, upscaled, coloured) in an ImageNet-layout folder."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp('digits')
    digits = load_digits()
    for index in range(40):
        gray = np.kron(digits.images[index] * 16, np.ones((10, 10))).clip(0, 255).astype(np.uint8)
        bgr = np.stack([gray // 2, 255 - gray, gray], axis=-1)  # OpenCV writes BGR
        folder = root / str(digits.target[index])
        folder.mkdir(exist_ok=True)
        assert cv2.imwrite(str(folder / ('%03d.png' % index)), bgr)
    return str(root)


def _calibrated_resnest14(images, labels):
    """resnest14 whose BatchNorm statistics come from ``images`` and whose classifier is class means.

    A randomly initialised net gives nearly the same logits for every image, so its top-1 is decided by
    noise; with data statistics and a nearest-class-mean head its predictions depend on the image.
    """
    net = _net('resnest14', classes=10)
    for block in _all_blocks(net):
        if isinstance(block, mx.gluon.nn.BatchNorm):
            block._kwargs['momentum'] = 0.0  # pylint: disable=protected-access
    with mx.autograd.record():
        out = net(images)
    out.backward()  # MXNet updates BatchNorm running statistics in the backward pass
    feats = net.flat(net.avgpool(net.features(mx.nd, images))).asnumpy()
    mean, std = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    protos = np.stack([((feats[labels == k] - mean) / std).mean(axis=0) for k in range(10)]) / std
    net.fc.weight.set_data(mx.nd.array(protos))
    net.fc.bias.set_data(mx.nd.array(-(protos * mean).sum(axis=1)))
    return net


def _all_blocks(block):
    yield block
    for child in block._children.values():  # pylint: disable=protected-access
        yield from _all_blocks(child)


@pytest.mark.slow
def test_int8_agrees_with_fp32_and_reloads(tmp_path, digits_folder):
    from gluon_resnest.data import ImageFolder  # pylint: disable=import-outside-toplevel
    labels = np.array([label for _, label in ImageFolder(digits_folder).items])
    images = calibration_images(digits_folder, SIZE, 40)
    assert images.shape == (40, 3, SIZE, SIZE)
    net = _calibrated_resnest14(images, labels)
    fp32 = net(images).argmax(axis=1).asnumpy()
    assert len(set(fp32.tolist())) >= 5  # the fp32 net really tells images apart
    result = export_int8(net, str(tmp_path), 'q14', images, batch_size=8)
    assert any('quantize' in op for op in _ops(result.file('-symbol.json')))
    assert 'Dropout' not in _ops(result.file('-symbol.json'))
    int8 = _imports(str(tmp_path / 'q14'))(images).argmax(axis=1).asnumpy()
    agreement = float(np.mean(int8 == fp32))
    assert agreement >= 0.8
    assert result.agreement == pytest.approx(agreement)
    # The Module API runs the INT8 files too.
    sym, arg_params, aux_params = mx.model.load_checkpoint(str(tmp_path / 'q14'), 0)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[('data', (8, 3, SIZE, SIZE))], for_training=False)
    mod.set_params(arg_params, aux_params)
    mod.forward(Batch([images[:8]]), is_train=False)
    np.testing.assert_array_equal(mod.get_outputs()[0].argmax(axis=1).asnumpy(), int8[:8])


def test_calibration_images_read_a_record_file_like_the_folder(tmp_path, digits_folder):
    from gluon_resnest.data import ImageFolder, pack_record  # pylint: disable=import-outside-toplevel
    pack_record(ImageFolder(digits_folder), str(tmp_path / 'digits.rec'))
    from_rec = calibration_images(str(tmp_path / 'digits.rec'), 32, 6)
    from_folder = calibration_images(digits_folder, 32, 6)
    assert from_rec.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(from_rec.asnumpy(), from_folder.asnumpy())
    with pytest.raises(ValueError, match='holds 40 images, fewer than the 41'):
        calibration_images(digits_folder, 32, 41)
    with pytest.raises(FileNotFoundError, match='calibration data not found'):
        calibration_images(str(tmp_path / 'missing'), 32, 1)


@pytest.mark.slow
def test_int8_cli_with_preprocess(tmp_path, digits_folder, capsys):
    net = _net('resnest14')
    net.save_parameters(str(tmp_path / 'r14.params'))
    args = (['--model', 'resnest14', '--params-file', str(tmp_path / 'r14.params'),
                           '--out', str(tmp_path / 'out'), '--format', 'int8', '--preprocess',
                           '--input-size', str(SIZE), '--batch-size', '4', '--calib-data',
                           digits_folder, '--num-calib-batches', '2', '--min-agreement', '0',
                           '--granularity', 'channel-wise'])
    assert cli.main(args) == 0
    assert 'self-check: INT8 agrees' in capsys.readouterr().out
    deployed = _imports(str(tmp_path / 'out' / 'resnest14-int8'))
    raw = mx.nd.array(np.random.RandomState(0).randint(0, 256, (1, SIZE, SIZE, 3)), dtype='uint8')
    assert deployed(raw).shape == (1, 1000)


# --- INT8 ONNX for onnxruntime ------------------------------------------------------------------------

def test_calibration_images_hold_out_other_images(digits_folder):
    calib, held = calibration_images(digits_folder, 32, 30, held_out=20)
    assert calib.shape == (30, 3, 32, 32) and held.shape == (10, 3, 32, 32)  # only 10 of 40 are left
    everything = calibration_images(digits_folder, 32, 40).asnumpy().reshape(40, -1)
    calib, held = calib.asnumpy().reshape(30, -1), held.asnumpy().reshape(10, -1)
    # Together they are the whole folder, each image once.
    rows = sorted(map(bytes, np.concatenate([calib, held])))
    assert rows == sorted(map(bytes, everything))
    assert calibration_images(digits_folder, 32, 40, held_out=5)[1] is None


def test_int8_graph_check_rejects_float_weights(tmp_path):
    result = export_onnx(_net('resnest14'), str(tmp_path), 'f32', input_size=32, runtime_check=False)
    with pytest.raises(ExportCheckError, match='weight of Conv node .* is not an INT8 initializer'):
        onnx_int8.check_int8_graph(result.file('.onnx'))


@pytest.mark.slow
def test_onnx_int8_agrees_with_fp32_on_held_out_images(tmp_path, digits_folder):
    _ort_python_or_skip()
    import onnx  # pylint: disable=import-outside-toplevel
    from gluon_resnest.data import ImageFolder  # pylint: disable=import-outside-toplevel
    labels = np.array([label for _, label in ImageFolder(digits_folder).items])
    net = _calibrated_resnest14(calibration_images(digits_folder, SIZE, 40), labels)
    calib, held = calibration_images(digits_folder, SIZE, 16, held_out=24)
    result = export_onnx_int8(net, str(tmp_path), 'q14', calib, held, batch_size=8, calib_mode='entropy',
                              granularity='channel-wise', min_agreement=0.8)
    assert os.listdir(str(tmp_path)) == ['q14.onnx']
    # The file's own top-1 on the held-out images, run here independently of the export's check.
    fp32 = net(held).argmax(axis=1).asnumpy()
    int8 = onnx_export.run_onnxruntime(result.file('.onnx'), [held.asnumpy()])[0].argmax(axis=1)
    assert len(set(fp32.tolist())) >= 5  # the fp32 net tells the held-out images apart
    # Floor: 80% on this 10-class net (measured: 0.9-1.0); the export's figure is the same count.
    assert result.held_out_agreement == pytest.approx(np.mean(fp32 == int8)) and result.held_out_agreement >= 0.8
    assert result.agreement >= 0.8
    graph = onnx.load(result.file('.onnx')).graph
    assert [i.name for i in graph.input] == ['data']
    int8_weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT8}
    layers = [node for node in graph.node if node.op_type in ('Conv', 'Gemm')]
    assert len(layers) == len([n for n in net.collect_params() if n.endswith('weight')])
    # Every convolution and the classifier read their weight from an INT8 initializer through DequantizeLinear.
    dequant = {node.output[0]: node.input[0] for node in graph.node if node.op_type == 'DequantizeLinear'}
    assert all(dequant.get(node.input[1]) in int8_weights for node in layers)


def test_onnx_int8_failed_check_leaves_no_file(tmp_path, digits_folder, monkeypatch):
    _ort_python_or_skip()
    calib, held = calibration_images(digits_folder, 32, 4, held_out=4)
    net = _net('resnest14', classes=10)

    def wrong_top1(onnx_file, images, batch_size):  # an INT8 file that disagrees with fp32 everywhere
        return net(mx.nd.array(images)).argmax(axis=1).asnumpy() + 1
    monkeypatch.setattr(onnx_int8, '_ort_top1', wrong_top1)
    out = tmp_path / 'out'
    with pytest.raises(ExportCheckError, match='agrees with fp32 top-1 on only 0.0% of 4 calibration images'):
        export_onnx_int8(net, str(out), 'q14', calib, held, batch_size=2, min_agreement=0.5)
    assert not out.exists()


@pytest.mark.slow
def test_onnx_int8_cli_with_preprocess(tmp_path, digits_folder, capsys):
    _ort_python_or_skip()
    net = _net('resnest14')
    net.save_parameters(str(tmp_path / 'r14.params'))
    assert cli.main(['--model', 'resnest14', '--params-file', str(tmp_path / 'r14.params'), '--out',
                     str(tmp_path / 'out'), '--format', 'onnx-int8', '--preprocess', '--input-size', '32',
                     '--batch-size', '4', '--calib-data', digits_folder, '--num-calib-batches', '2',
                     '--min-agreement', '0']) == 0
    out = capsys.readouterr().out
    assert re.search(r'self-check in onnxruntime: .* of the calibration images, [0-9.]+% of held-out images', out)
    onnx_file = str(tmp_path / 'out' / 'resnest14-int8.onnx')
    assert os.listdir(str(tmp_path / 'out')) == ['resnest14-int8.onnx']
    onnx_int8.check_int8_graph(onnx_file)
    raw = np.random.RandomState(0).randint(0, 256, (3, 32, 32, 3)).astype(np.uint8)  # free batch axis
    assert onnx_export.run_onnxruntime(onnx_file, [raw])[0].shape == (3, 1000)


# --- command line and bad input -----------------------------------------------------------------------

@pytest.fixture(scope='module')
def r14_params(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('weights') / 'resnest14.params')
    _net('resnest14').save_parameters(path)
    return path


def test_cli_mxnet_export(tmp_path, r14_params, capsys):
    assert 0 == cli.main(['--model', 'resnest14', '--params-file', r14_params, '--out',
                             str(tmp_path), '--input-size', str(SIZE)])
    out = capsys.readouterr().out
    assert 'wrote %s' % (tmp_path / 'resnest14-symbol.json') in out
    assert 'self-check: reloaded mxnet output equals' in out
    assert (tmp_path / 'resnest14-0000.params').exists()


def test_cli_runs_as_module(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'gluon_resnest.export', '--model', 'resnest14',
                           '--pretrained', '--out', str(tmp_path), '--format', 'tflite'],
                          capture_output=True, text=True, cwd=REPO, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith('export: ')]  # threads line
    assert len(lines) == 1 and "invalid choice: 'tflite'" in lines[0] and 'Traceback' not in proc.stderr


@pytest.mark.parametrize('argv, message', [
    (['--format', 'int8'], '--format int8 needs --calib-data'),
    (['--format', 'onnx-int8'], '--format onnx-int8 needs --calib-data'),
    (['--dynamic-batch'], 'apply to --format onnx only'),
    (['--batch-size', '0'], '--batch-size must be >= 1, got 0'),
    (['--input-size', '0'], '--input-size must be >= 1, got 0'),
    (['--model', 'resnest7'], "unknown --model 'resnest7'"),
    (['--pretrained'], 'give exactly one of --pretrained and --params-file'),
    (['--num-calib-batches', 'x'], "argument --num-calib-batches: invalid int value: 'x'"),
])
def test_cli_rejects_bad_combinations(r14_params, tmp_path, capsys, argv, message):
    assert cli.main(['--model', 'resnest14', '--params-file', r14_params, '--out', str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]


def test_cli_without_weights_is_bad_usage(tmp_path, capsys):
    assert cli.main(['--model', 'resnest14', '--out', str(tmp_path)]) == 2
    assert capsys.readouterr().err == 'error: give exactly one of --pretrained and --params-file\n'


def test_cli_flags_map_onto_the_config(tmp_path):
    config = cli.parse_args(['--model', 'resnest14', '--pretrained', '--out', str(tmp_path), '--format', 'int8',
                             '--calib-data', 'cal', '--crop-size', '64', '--batch-size', '4'])
    assert config == ExportConfig(model='resnest14', pretrained=True, out=str(tmp_path), format='int8',
                                  calib_data='cal', input_size=64, batch_size=4)
    assert config.prefix == 'resnest14-int8'
    assert cli.parse_args(['--model', 'resnest101', '--pretrained', '--out', 'o']).input_size == 256


def test_export_api_writes_and_checks(tmp_path, r14_params):
    result = export(ExportConfig(model='resnest14', params_file=r14_params, out=str(tmp_path), input_size=SIZE,
                                 prefix='api'))
    assert result.files == (str(tmp_path / 'api-0000.params'), str(tmp_path / 'api-symbol.json'))
    assert result.file('-symbol.json') == str(tmp_path / 'api-symbol.json')
    assert result.format == 'mxnet' and result.max_abs_diff <= result.tolerance == MXNET_ATOL
    assert result.to_dict() == {'format': 'mxnet', 'files': list(result.files), 'max_abs_diff': result.max_abs_diff,
                                'tolerance': MXNET_ATOL, 'agreement': None,
                                'held_out_agreement': None}
    deployed = _imports(str(tmp_path / 'api'))
    x = mx.nd.array(np.random.RandomState(1).standard_normal((2, 3, SIZE, SIZE)))
    expected = get_model('resnest14', pretrained=r14_params)(x)
    np.testing.assert_allclose(deployed(x).asnumpy(), expected.asnumpy(), atol=1e-4)


def test_missing_onnxruntime_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # not importable here, whatever the venv has
    monkeypatch.setenv(onnx_export.ORT_PYTHON_ENV, str(tmp_path / 'no-such-python'))
    with pytest.raises(RuntimeError, match='no onnxruntime interpreter was found.*%s'
                       % onnx_export.ORT_PYTHON_ENV):
        onnx_export.run_onnxruntime(str(tmp_path / 'model.onnx'), [np.zeros(1, np.float32)])


def test_cli_onnx_without_runtime_check(tmp_path, r14_params, capsys):
    assert 0 == cli.main(['--model', 'resnest14', '--params-file', r14_params, '--out',
                             str(tmp_path), '--format', 'onnx', '--input-size', '32',
                             '--no-runtime-check'])
    assert 'onnx.checker passed at opset 13 (onnxruntime comparison skipped)' in capsys.readouterr().out
    assert os.listdir(str(tmp_path)) == ['resnest14.onnx']


def test_not_a_params_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / 'bad.params').write_bytes(b'definitely not ndarrays')
    assert cli.main(['--model', 'resnest14', '--params-file', str(tmp_path / 'bad.params'),
                                 '--out', str(tmp_path / 'out')]) == 1
    assert re.search('is not an MXNet .params file', capsys.readouterr().err)
    assert not (tmp_path / 'out').exists()


def test_params_of_another_model_fail_cleanly(tmp_path, r14_params, capsys):
    out = tmp_path / 'out'
    assert cli.main(['--model', 'resnest26', '--params-file', r14_params, '--out',
                                 str(out), '--input-size', str(SIZE)]) == 1
    assert re.search('does not fit this network', capsys.readouterr().err)
    assert not out.exists()


def test_unwritable_output_dir_is_a_clear_error(tmp_path, r14_params, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    assert cli.main(['--model', 'resnest14', '--params-file', r14_params, '--out',
                                 str(blocker / 'sub'), '--input-size', str(SIZE)]) == 1
    assert re.search('cannot write to output folder', capsys.readouterr().err)
    assert blocker.read_text() == 'not a folder'


def test_failed_self_check_leaves_no_files(tmp_path, monkeypatch):
    def broken_check(*_):
        raise ExportCheckError('simulated mismatch')
    monkeypatch.setattr(mxnet_export, 'check_mxnet', broken_check)
    out = tmp_path / 'out'
    with pytest.raises(ExportCheckError, match='simulated mismatch'):
        export_mxnet(_net('resnest14'), str(out), 'r14', input_size=SIZE)
    assert not out.exists()
    (tmp_path / 'existing').mkdir()
    with pytest.raises(ExportCheckError):
        export_mxnet(_net('resnest14'), str(tmp_path / 'existing'), 'r14', input_size=SIZE)
    assert os.listdir(str(tmp_path / 'existing')) == []


def test_self_check_detects_a_different_graph(tmp_path):
    net = _net('resnest14')
    x = _random_batch()
    export_mxnet(net, str(tmp_path), 'r14', input_size=SIZE, batch_size=2)
    wrong = net(x).asnumpy() + 1e-3
    with pytest.raises(ExportCheckError, match='differs from the network'):
        mxnet_export.check_mxnet(str(tmp_path / 'r14'), x, wrong)


# --- benchmark smoke test (tiny sizes; the real run is resnest50 at 224 px) ---------------------------

@pytest.mark.slow
def test_bench_deploy_reports_the_deployed_top1(tmp_path, digits_folder):
    _ort_python_or_skip()  # the benchmark times the ONNX file in onnxruntime too
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    try:
        import bench_deploy  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    from gluon_resnest.data import ImageFolder  # pylint: disable=import-outside-toplevel
    labels = np.array([label for _, label in ImageFolder(digits_folder).items])
    images = calibration_images(digits_folder, SIZE, 40)
    net = _calibrated_resnest14(images, labels)
    net.save_parameters(str(tmp_path / 'digits.params'))
    expected_top1 = np.mean(net(images).argmax(axis=1).asnumpy() == labels)  # a fraction, as every record
    results = bench_deploy.main(bench_deploy.parse_args([
        '--model', 'resnest14', '--params-file', str(tmp_path / 'digits.params'), '--input-size',
        str(SIZE), '--batch-sizes', '1', '2', '--batch-size', '4', '--warmup', '1', '--runs', '1',
        '--images', '2', '--calib-data', digits_folder, '--num-calib-batches', '2', '--val-data',
        digits_folder, '--json', str(tmp_path / 'bench.json')]))
    assert results['val_images'] == 40
    assert results['fp32_top1'] == pytest.approx(expected_top1)
    assert results['top1_change'] == pytest.approx(results['int8_top1'] - results['fp32_top1'])
    # The timed INT8 (naive, tensor-wise) is one of the four calibrations measured.
    assert results['int8_naive_tensor_wise_top1'] == pytest.approx(results['int8_top1'])
    for key in ('int8_entropy_channel_wise', 'onnx_int8'):
        assert 0 <= results[key + '_agreement'] <= 1 and 0 <= results[key + '_top1'] <= 1
    peaks = results['peaks']
    assert peaks['int8_gmacs'] == pytest.approx(peaks['fp32_gmacs'] * (4 if peaks['vnni'] else 2))
    for batch in (1, 2):
        rates = {form: results['%s_b%d_img_per_s' % (form, batch)]
                 for form in ('mxnet', 'mxnet-fused', 'int8', 'onnx', 'onnx-int8')}
        assert min(rates.values()) > 0
        assert results['best_fp32_b%d' % batch] == max(bench_deploy.FP32_FORMS, key=rates.get)
        assert results['int8_b%d_vs_onnx_int8' % batch] == pytest.approx(rates['int8'] / rates['onnx-int8'])
        if peaks['fp32_gmacs']:
            assert results['onnx-int8_b%d_peak_fraction' % batch] == pytest.approx(
                rates['onnx-int8'] * results['gmacs'] / peaks['int8_gmacs'])
    assert 'torch_b1_img_per_s' not in results  # no --torch-python given
    rows = bench_deploy.markdown_table(results).splitlines()[2:]
    assert [row.split(' | ')[0] for row in rows] == ['| MXNet symbol (fp32)',
                                                     '| MXNet symbol, oneDNN-fused (fp32)',
                                                     '| MXNet INT8 (oneDNN)', '| ONNX in onnxruntime (fp32)',
                                                     '| ONNX INT8 in onnxruntime (QDQ, per-channel)']
    assert rows[2].endswith('| %+.2f points |' % (100 * results['top1_change']))
    assert rows[3].split(' | ')[1:3] == ['%.1f' % results['onnx_b%d_img_per_s' % b] for b in (1, 2)]
    assert len(bench_deploy.accuracy_table(results).splitlines()) == 2 + 1 + 4 + 1
    with open(str(tmp_path / 'bench.json')) as f:
        assert json.load(f)['int8_b2_speedup'] == pytest.approx(results['int8_b2_speedup'])


def test_cpu_peaks_follow_the_flags(tmp_path):
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    try:
        import bench_deploy  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    for flags, fp32_per_cycle, int8_per_cycle in (('fma avx2', 16, 32), ('fma avx2 avx512f', 32, 64),
                                                  ('fma avx2 avx512f avx512_vnni', 32, 128), ('sse2', 0, 0)):
        info = tmp_path / 'cpuinfo'
        info.write_text('processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu %s\n' % flags)
        peaks = bench_deploy.cpu_peaks(str(info), cores=2)
        assert (peaks['fp32_gmacs'], peaks['int8_gmacs']) == (2 * 2.0 * fp32_per_cycle, 2 * 2.0 * int8_per_cycle)
