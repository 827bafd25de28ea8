"""The split attention's inference form (gluon_resnest.layers.attention_inference): the trained network's
function in fewer graph operators, and the INT8 export built on it."""
import collections
import json

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.export import export_int8
from gluon_resnest.export.int8_export import quantize
from gluon_resnest.layers import (SplitAttentionConv, SplitAttentionInference, attention_inference_form,
                                  without_random_ops)


def _blocks(block):
    yield block
    for child in block._children.values():  # pylint: disable=protected-access
        yield from _blocks(child)


def _trained_like(name, x, seed=0):
    """``name`` with every BatchNorm's statistics and affine terms and every bias random: attention
    weights far from one half, as in a trained network (a fresh one has zero biases, unit statistics)."""
    net = get_model(name, classes=10)
    net.initialize(mx.init.Xavier())
    net(x)
    rng = np.random.RandomState(seed)
    for pname, param in net.collect_params().items():
        if pname.endswith(('running_mean', 'beta', 'bias')):
            param.set_data(mx.nd.array(rng.normal(0, 0.5, param.shape)))
        elif pname.endswith(('running_var', 'gamma')):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2.0, param.shape)))
    return net


@pytest.mark.parametrize('hybridize', [False, True], ids=['eager', 'hybridized'])
def test_inference_form_computes_what_the_trained_network_computes(hybridize):
    # resnest14: a stride-1 block and three strided avd blocks (splits pooled before weighting);
    # non-square images, batch 3.
    x = mx.nd.array(np.random.RandomState(1).standard_normal((3, 3, 40, 56)))
    net = _trained_like('resnest14', x)
    if hybridize:
        net.hybridize()
    trained = net(x).asnumpy()
    names = sorted(net.collect_params().keys())
    with attention_inference_form(net) as replaced:
        assert replaced == 4
        assert sum(isinstance(b, SplitAttentionInference) for b in _blocks(net)) == 4
        assert not any(isinstance(b, SplitAttentionConv) for b in _blocks(net))
        form = net(x).asnumpy()
        if hybridize:
            ops = {node['op'] for node in json.loads(net(mx.sym.var('data')).tojson())['nodes']}
            assert 'sigmoid' in ops and 'softmax' not in ops
    scale = np.abs(trained).max()
    assert scale > 1.0  # logits that differ between images and classes
    np.testing.assert_allclose(form, trained, rtol=1e-5, atol=1e-5 * scale)
    # The trained blocks are back, with their parameters, and compute as before.
    assert sum(isinstance(b, SplitAttentionConv) for b in _blocks(net)) == 4
    assert sorted(net.collect_params().keys()) == names
    np.testing.assert_array_equal(net(x).asnumpy(), trained)


def test_softmax_rows_subtracted_the_right_way_round():
    # One block alone, weights checked against the trained block's own attention: a swapped difference
    # (z1 - z0 for split 0) would weight the splits the other way.
    x = mx.nd.array(np.random.RandomState(2).standard_normal((2, 8, 6, 5)))
    block = SplitAttentionConv(16, in_channels=8, radix=2)
    block.initialize(mx.init.Xavier())
    block(x)
    block.fc2.bias.set_data(mx.nd.array(np.linspace(-3, 3, 32)))
    inference = SplitAttentionInference(block)
    trained = block(x).asnumpy()
    np.testing.assert_allclose(inference(x).asnumpy(), trained, rtol=1e-5, atol=1e-6)
    block.fc2.bias.set_data(mx.nd.array(np.linspace(3, -3, 32)))
    assert np.abs(block(x).asnumpy() - trained).max() > 1e-2


@pytest.mark.parametrize('radix, groups', [(1, 1), (4, 1), (2, 2)])
def test_other_blocks_keep_their_trained_form(radix, groups):
    block = SplitAttentionConv(16, in_channels=16, radix=radix, groups=groups)
    net = mx.gluon.nn.HybridSequential()
    net.add(block)
    net.initialize()
    with attention_inference_form(net) as replaced:
        assert replaced == 0 and net[0] is block
    with pytest.raises(ValueError, match='radix 2 and one cardinal group'):
        SplitAttentionInference(block)


@pytest.mark.slow
def test_int8_export_quantizes_the_inference_form(tmp_path):
    size = 32
    x = mx.nd.array(np.random.RandomState(3).standard_normal((4, 3, size, size)))
    net = _trained_like('resnest14', x)
    result = export_int8(net, str(tmp_path), 'q14', x, batch_size=2)
    with open(result.file('-symbol.json')) as f:
        form = collections.Counter(node['op'] for node in json.load(f)['nodes'] if node['op'] != 'null')
    with without_random_ops(net):
        net.hybridize()
        trained = collections.Counter(
            node['op'] for node in json.loads(quantize(net, x, 2)(mx.sym.var('data')).tojson())['nodes']
            if node['op'] != 'null')
    # Per block, the trained form's INT8 graph has three split, two add_n, two broadcast_mul, two
    # Reshape and a softmax in fp32, with three dequantize and two quantize_v2 around them; the
    # inference form one split, add_n, broadcast_mul and sigmoid, two dequantize and one quantize_v2.
    blocks = 4
    for op, per_block in {'SliceChannel': 2, 'add_n': 1, 'broadcast_mul': 1, 'Reshape': 2, 'softmax': 1,
                          'sigmoid': -1, '_contrib_dequantize': 1, '_contrib_quantize_v2': 1}.items():
        assert trained[op] - form[op] == blocks * per_block, op
    assert form['_sg_mkldnn_conv'] == trained['_sg_mkldnn_conv'] == 27
    assert sum(trained.values()) - sum(form.values()) == 8 * blocks
