"""gluon_resnest.optimize, the default inference path: the same logits as the plain network.

Every optimized form (the fused network, an exported graph reloaded by ``load_deployed``, the network
``evaluate`` runs) is compared with the network run eagerly, and with GluonCV's own ResNeSt class as an
independent implementation. Tolerance: 1e-5 absolute on logits of magnitude ~1, float32 rounding
(folding BatchNorm into the convolution weights reorders the arithmetic).
"""
import json

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.resnest import resnest14 as gluoncv_resnest14

import gluon_resnest
from gluon_resnest import EvalConfig, inference
from gluon_resnest.classification import evaluation
from gluon_resnest.data.eval_protocol import MEAN, STD
from gluon_resnest.export import export_mxnet
from gluon_resnest.export.common import random_input
from gluon_resnest.inference import FUSED_OP_PREFIX, fusion_available
from gluon_resnest.loading import load_deployed

from conftest import randomize_batchnorm

ATOL = 1e-5
needs_fusion = pytest.mark.skipif(not fusion_available(), reason='MXNet build without oneDNN')


def _randomized(classes=1000, **kwargs):
    """resnest14 with random weights and BatchNorm statistics (so that folding them is exercised)."""
    return randomize_batchnorm(gluon_resnest.get_model('resnest14', classes=classes, **kwargs))


def _ops(block):
    graph = block._cached_graph[1]  # pylint: disable=protected-access
    return [node['op'] for node in json.loads(graph.tojson())['nodes']]


def _eager(net, x):
    net.hybridize(active=False)
    return net(x).asnumpy()


def _batch(shape=(2, 3, 64, 64), seed=1):
    return mx.nd.array(np.random.RandomState(seed).standard_normal(shape).astype('float32'))


@needs_fusion
def test_optimized_network_equals_the_plain_network():
    net = _randomized(dropblock_prob=0.1)  # DropBlock on: a training trace has random ops
    x = _batch()
    expected = _eager(net, x)
    assert np.abs(expected).max() > 0.1
    net.hybridize()
    with mx.autograd.record():  # a training graph traced first must not be what optimize keeps
        net(x)
    assert gluon_resnest.optimize(net, batch_size=2, input_size=64) is net
    ops = _ops(net)
    convs = sum(1 for block in _blocks(net) if isinstance(block, mx.gluon.nn.Conv2D))
    assert ops.count(FUSED_OP_PREFIX + '_conv') == convs == 27  # every convolution fused
    assert not {'BatchNorm', 'Convolution', 'Dropout'} & set(ops)
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=0, atol=ATOL)
    other = _batch((3, 3, 32, 48), seed=2)  # another shape than the one optimized for
    fused = net(other).asnumpy()
    np.testing.assert_allclose(fused, _eager(net, other), rtol=0, atol=ATOL)


def _blocks(net):
    found = []
    net.apply(found.append)
    return found


@needs_fusion
def test_optimized_network_equals_gluoncv_class(tmp_path):
    ours = _randomized()
    path = str(tmp_path / 'r14.params')
    ours.save_parameters(path)
    reference = gluoncv_resnest14()
    reference.load_parameters(path)
    x = _batch()
    gluon_resnest.optimize(ours, batch_size=2, input_size=64)
    np.testing.assert_allclose(ours(x).asnumpy(), reference(x).asnumpy(), rtol=0, atol=ATOL)


def test_without_fusion_it_hybridizes_with_static_memory(monkeypatch):
    # The GPU path, and CPU builds of MXNet without oneDNN.
    monkeypatch.setattr(inference, 'fusion_available', lambda ctx=None: False)
    net = _randomized()
    x = _batch()
    expected = _eager(net, x)
    gluon_resnest.optimize(net, batch_size=2, input_size=64)
    assert not any(op.startswith(FUSED_OP_PREFIX) for op in _ops(net))
    assert dict(net._flags)['static_alloc'] and dict(net._flags)['static_shape']  # pylint: disable=protected-access
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=0, atol=ATOL)


def test_float16_network_is_traced_with_float16_input():
    """A network cast to float16 keeps its BatchNorm parameters in float32; the traced input follows
    the parameters that hold most values (float16), also when a BatchNorm comes first. (MXNet has no
    float16 convolution on CPU, so only the choice is checked here.)"""
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.BatchNorm(in_channels=3), mx.gluon.nn.Conv2D(4, 3, in_channels=3))
    net.initialize(mx.init.Xavier())
    assert inference._params_context_dtype(net) == (mx.cpu(), 'float32')  # pylint: disable=protected-access
    net.cast('float16')
    assert np.dtype(list(net.collect_params().values())[0].dtype) == np.float32  # BatchNorm first
    assert inference._params_context_dtype(net) == (mx.cpu(), 'float16')  # pylint: disable=protected-access


@needs_fusion
@pytest.mark.parametrize('preprocess', [False, True], ids=['nchw', 'raw-images'])
def test_exported_graph_is_portable_and_loads_fused(tmp_path, preprocess):
    net = _randomized(classes=10)
    result = export_mxnet(net, str(tmp_path), 'r14', input_size=32, batch_size=2, preprocess=preprocess)
    assert result.max_abs_diff <= ATOL
    with open(result.file('-symbol.json')) as f:
        assert not any(n['op'].startswith(FUSED_OP_PREFIX) for n in json.load(f)['nodes'])
    block, info = load_deployed(str(tmp_path / 'r14'), 32, batch_size=2)
    assert info['layout'] == ('NHWC' if preprocess else 'NCHW')
    assert any(op.startswith(FUSED_OP_PREFIX) for op in _ops(block))
    x = random_input((2, 32, 32, 3) if preprocess else (2, 3, 32, 32), preprocess, seed=3)
    if preprocess:  # normalised here, independently of the graph's folded preprocessing
        images = (x.asnumpy().astype('float32') / 255 - np.array(MEAN, 'float32')) / np.array(STD, 'float32')
        expected = _eager(net, mx.nd.array(images.transpose(0, 3, 1, 2)))
    else:
        expected = _eager(net, x)
    np.testing.assert_allclose(block(x).asnumpy(), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize('deployed', [False, True], ids=['checkpoint', 'exported'])
def test_evaluate_runs_the_optimized_network(tmp_path, monkeypatch, deployed):
    net = _randomized(classes=10)
    net.save_parameters(str(tmp_path / 'r14.params'))
    export_mxnet(net, str(tmp_path), 'r14', input_size=32, batch_size=2)
    seen = {}

    def spy(block, batch_size, crop, **_):
        seen.update(block=block, batch_size=batch_size, crop=crop)
        return {'images_per_sec': 1.0, 'iters': 1}
    monkeypatch.setattr(evaluation, 'benchmark', spy)
    source = (dict(deploy=True, model_prefix=str(tmp_path / 'r14')) if deployed
              else dict(model='resnest14', params_file=str(tmp_path / 'r14.params')))
    gluon_resnest.evaluate(EvalConfig(input_size=32, batch_size=2, benchmark=True, **source))
    block = seen['block']
    assert any(op.startswith(FUSED_OP_PREFIX) for op in _ops(block)) == fusion_available()
    x = _batch((2, 3, 32, 32))
    np.testing.assert_allclose(block(x).asnumpy(), _eager(net, x), rtol=0, atol=ATOL)


@pytest.mark.parametrize('make, kwargs, message', [
    (lambda: 'resnest14', {}, 'optimize takes a Gluon HybridBlock .* got str'),
    (_randomized, {'batch_size': 0}, 'batch_size must be a positive integer, got 0'),
    (_randomized, {'input_size': 2.5}, 'input_size must be a positive integer, got 2.5'),
    (_randomized, {'layout': 'NWHC'}, "layout must be one of NCHW, NHWC, got 'NWHC'"),
    (_randomized, {'input_size': 16}, 'input 16x16 is too small for this network'),
])
def test_bad_arguments_are_one_line_errors(make, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        gluon_resnest.optimize(make(), **kwargs)
    assert '\n' not in str(err.value)


def test_hybridize_returns_to_the_trainable_form():
    net = _randomized(classes=10)
    x = _batch((2, 3, 32, 32))
    gluon_resnest.optimize(net, batch_size=2, input_size=32)
    net.hybridize()
    with mx.autograd.record():
        loss = net(x).sum()
    loss.backward()
    assert not any(op.startswith(FUSED_OP_PREFIX) for op in _ops(net))
    traced = net.fc.weight.grad().asnumpy()
    net.hybridize(active=False)
    with mx.autograd.record():
        loss = net(x).sum()
    loss.backward()
    np.testing.assert_allclose(traced, net.fc.weight.grad().asnumpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(traced).max() > 0
