"""The CPU training graph (BatchNorm+ReLU as one oneDNN operator, broadcast product in the split
attention) against the same layers run eagerly, op by op: values, every gradient, running statistics."""
import json
from functools import partial

import mxnet as mx
import numpy as np
import pytest

import gluon_resnest
from gluon_resnest.inference import fusion_available
from gluon_resnest.layers import SplitAttentionConv, set_drop_prob, trace_mode
from gluon_resnest.layers.trace import channel_blocks_agree
from mxnet.gluon import nn

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
    """The same values, gradients and running statistics, up to float32 rounding.

    Gradients are sums over many positions whose order differs between kernels, and the elements that
    cancel (a bias before a BatchNorm has a gradient of zero in exact arithmetic) keep the rounding of
    the largest terms: they are compared to 1e-6 of the block's largest gradient. With oneDNN's SSE4.1
    and AVX kernels ResNeSt-14's stem gradients differ by up to 1.0e-4 where both are 4.8e-2 from a
    float64 run, against 169 for the largest; a ReLU mask read wrongly changes gradients by their size.
    """
    (out_f, dx_f, state_f), (out_e, dx_e, state_e) = fused, eager
    np.testing.assert_allclose(out_f, out_e, rtol=1e-4, atol=1e-5)
    assert np.abs(dx_e).max() > 0
    grads = [dx_e] + [value for name, value in state_e.items() if name.endswith('.grad')]
    atol = max(1e-5, 1e-6 * max(np.abs(value).max() for value in grads))
    np.testing.assert_allclose(dx_f, dx_e, rtol=1e-4, atol=atol)
    assert sorted(state_f) == sorted(state_e)
    for name in state_e:
        np.testing.assert_allclose(state_f[name], state_e[name], rtol=1e-4,
                                   atol=atol if name.endswith('.grad') else 1e-5, err_msg=name)


# (radix, cardinality, channels per cardinal group, input channels per split, BatchNorm+ReLU pairs fused):
# a pair is fused only where the convolutions around it have whole 16-channel blocks in every group
# (layers.channel_blocks_agree); with 8 channels per group oneDNN's AVX-512 kernels cannot run it fused.
@pytest.mark.parametrize('radix,card,width,in_width,fused', [(2, 1, 16, 16, 2), (4, 2, 16, 16, 2),
                                                             (2, 1, 8, 4, 0), (4, 2, 8, 4, 0)])
def test_fused_split_attention_training_graph_equals_eager_layers(radix, card, width, in_width, fused):
    channels, in_channels = width * card, in_width * radix * card
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
            # the BatchNorm+ReLU pairs fused where their channels allow, the weights broadcast for an
            # elementwise product
            assert graph.count('"op": "_contrib_BatchNormWithReLU"') == fused
            assert graph.count('"op": "Activation"') == 2 - fused
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


def test_pairs_fuse_only_where_every_group_has_whole_16_channel_blocks():
    def conv(in_channels, channels, groups=1):
        return nn.Conv2D(channels, 3, groups=groups, in_channels=in_channels)
    assert channel_blocks_agree([conv(32, 64, 2), conv(64, 64, 4), conv(3, 32)])  # 3: the image
    for odd in (conv(80, 80, 2), conv(64, 40), conv(24, 32), conv(3, 24), conv(0, 32)):
        assert not channel_blocks_agree([conv(32, 32), odd])
    # resnest50_fast_1s2x40d: stage 1 has 40 channels per cardinal group, stage 2 80 in its bottleneck
    # and split convolutions but 20 in the attention's
    net = gluon_resnest.get_model('resnest50_fast_1s2x40d', classes=10)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    with mx.autograd.record():
        net(mx.nd.random.uniform(shape=(1, 3, 32, 32)))
    nodes = json.loads(net._cached_graph[1].tojson())['nodes']
    fused = {node['name'] for node in nodes if node['op'] == '_contrib_BatchNormWithReLU'}
    assert {'resnetv1f_batchnorm%d_fwd' % i for i in range(3)} <= fused  # the stem
    assert not any(name.startswith('resnetv1f_layers1_') for name in fused)
    assert {'resnetv1f_layers2_batchnorm0_fwd', 'resnetv1f_layers2_batchnorm1_fwd'} <= fused
    assert 'resnetv1f_layers2_batchnorm2_fwd' not in fused
