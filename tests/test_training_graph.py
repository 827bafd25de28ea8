"""The CPU training graph (BatchNorm+ReLU as one oneDNN operator, broadcast product in the split
attention) against the same layers run eagerly, op by op: values, every gradient, running statistics."""
from functools import partial

import mxnet as mx
import numpy as np
import pytest

import gluon_resnest
from gluon_resnest.inference import fusion_available
from gluon_resnest.layers import SplitAttentionConv, set_drop_prob, trace_mode

from conftest import randomize_batchnorm

pytestmark = pytest.mark.skipif(not fusion_available(),
                                reason='the fused training graph is for MXNet oneDNN builds')


def _state(block):
    """Every gradient and running statistic, by attribute path (bn.running_mean)."""
    out = {}
    for name, param in block._collect_params_with_prefix().items():
        if param.grad_req != 'null':
            out[name + '.grad'] = param.grad().asnumpy()
        else:
            out[name] = param.data().asnumpy()
    return out


def _step(block, x, head, seed):
    data = mx.nd.array(x)
    data.attach_grad()
    mx.random.seed(seed)
    with mx.autograd.record():
        out = block(data)
        loss = (out * head).sum()
    loss.backward()
    return out.asnumpy(), data.grad.asnumpy(), _state(block)


def _assert_same(fused, eager):
    (out_f, dx_f, state_f), (out_e, dx_e, state_e) = fused, eager
    np.testing.assert_allclose(out_f, out_e, rtol=1e-4, atol=1e-5)
    assert np.abs(dx_e).max() > 0
    np.testing.assert_allclose(dx_f, dx_e, rtol=1e-4, atol=1e-5)
    assert sorted(state_f) == sorted(state_e)
    for name in state_e:
        np.testing.assert_allclose(state_f[name], state_e[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('radix,card', [(2, 1), (4, 2)])
def test_fused_split_attention_training_graph_equals_eager_layers(radix, card):
    channels, in_channels = 8 * card, 4 * radix * card
    x = np.random.RandomState(1).uniform(-1, 1, (3, in_channels, 9, 9)).astype('float32')
    head = mx.nd.array(np.random.RandomState(2).uniform(-1, 1, (3, channels, 9, 9)))
    results = {}
    for form in ('eager', 'fused'):
        mx.random.seed(0)
        block = randomize_batchnorm(SplitAttentionConv(channels, groups=card, radix=radix,
                                                       in_channels=in_channels))
        if form == 'fused':
            block.hybridize()
            with trace_mode(True, fuse_norm_relu=True):
                results[form] = _step(block, x, head, 4)
            graph = block._cached_graph[1].tojson()
            # both BatchNorm+ReLU pairs fused, the weights broadcast for an elementwise product
            assert graph.count('"op": "_contrib_BatchNormWithReLU"') == 2
            assert '"op": "Activation"' not in graph
            assert graph.count('"op": "broadcast_like"') == radix - 1
            assert '"op": "broadcast_mul"' not in graph
        else:
            results[form] = _step(block, x, head, 4)
    # batch statistics (training mode) and the running statistics they update
    assert np.abs(results['eager'][2]['bn.running_mean']).max() > 0
    _assert_same(results['fused'], results['eager'])


@pytest.mark.parametrize('dropblock', [0.0, 0.2])
def test_resnest_cpu_training_graph_equals_eager_network(dropblock):
    """The network's own CPU training graph (fused, DropBlock after the first ReLU) against the
    unhybridized network under the same random seed: the same DropBlock masks, outputs, gradients."""
    x = np.random.RandomState(5).uniform(-1, 1, (2, 3, 64, 64)).astype('float32')
    head = mx.nd.array(np.random.RandomState(6).uniform(-1, 1, (2, 10)))
    results = {}
    for form in ('eager', 'fused'):
        mx.random.seed(0)
        net = gluon_resnest.get_model('resnest14', classes=10)
        net.apply(partial(set_drop_prob, dropblock))
        randomize_batchnorm(net)
        if form == 'fused':
            net.hybridize(static_alloc=True)
        results[form] = _step(net, x, head, 8)
        if form == 'fused':
            graph = net._cached_graph[1].tojson()
            # stem (3), bottleneck 1x1 (4), split convolution and attention (4 x 2) pairs fused; the
            # ReLUs left follow residual additions
            assert graph.count('"op": "_contrib_BatchNormWithReLU"') == 15
            assert graph.count('"op": "Activation"') == 4
            assert graph.count('"op": "_random_uniform_like"') == (3 * 2 if dropblock else 0)
    _assert_same(results['fused'], results['eager'])


def test_inference_and_other_contexts_keep_batchnorm_and_relu():
    net = gluon_resnest.get_model('resnest14', classes=10)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    net(x)
    graph = net._cached_graph[1].tojson()
    assert '_contrib_BatchNormWithReLU' not in graph and '"op": "BatchNorm"' in graph
    with trace_mode(True):  # a training graph not declared for a CPU context
        block = SplitAttentionConv(8, in_channels=8)
        block.initialize()
        block.hybridize()
        with mx.autograd.record():
            block(mx.nd.random.uniform(shape=(1, 8, 5, 5)))
    graph = block._cached_graph[1].tojson()
    assert '_contrib_BatchNormWithReLU' not in graph and '"op": "broadcast_mul"' in graph
