"""Split attention against a naive per-cardinal-group, per-radix reference."""
import itertools

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from gluon_resnest.layers import RadixSoftmax, SplitAttentionConv, trace_mode

CASES = list(itertools.product([1, 2, 4], [1, 2, 4], [1, 2], [1, 2]))


def _randomize_bn(block):
    for name, param in block.collect_params().items():
        if name.endswith(('running_var', 'gamma')):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, param.shape))
        elif name.endswith(('running_mean', 'beta', 'bias')):
            param.set_data(mx.nd.random.normal(0, 0.2, param.shape))


def _params(block):
    return {name: p.data().asnumpy() for name, p in block._collect_params_with_prefix().items()}


def _bn(x, p, prefix, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = p[prefix + '.gamma'] / np.sqrt(p[prefix + '.running_var'] + eps)
    return (x - p[prefix + '.running_mean'].reshape(shape)) * scale.reshape(shape) \
        + p[prefix + '.beta'].reshape(shape)


def naive_split_attention(x, p, channels, radix, card, strides, dilation):
    """Loop over every conv group, cardinal group and split, as the paper's figure draws it."""
    groups = radix * card
    weight = p['conv.weight']
    in_per_group = x.shape[1] // groups
    out_per_group = channels // card
    conv = []
    for g in range(groups):
        xg = mx.nd.array(x[:, g * in_per_group:(g + 1) * in_per_group])
        wg = mx.nd.array(weight[g * out_per_group:(g + 1) * out_per_group])
        conv.append(mx.nd.Convolution(xg, wg, kernel=(3, 3), stride=(strides, strides),
                                      dilate=(dilation, dilation), pad=(dilation, dilation),
                                      num_filter=out_per_group, no_bias=True).asnumpy())
    y = np.maximum(_bn(np.concatenate(conv, axis=1), p, 'bn'), 0)
    # radix-major layout: split r holds channels [r * channels, (r + 1) * channels)
    splits = [y[:, r * channels:(r + 1) * channels] for r in range(radix)]
    gap = sum(s.mean(axis=(2, 3)) for s in splits)  # (N, channels)
    inter = p['fc1.weight'].shape[0]
    out = np.zeros_like(splits[0])
    for k in range(card):
        cols = slice(k * out_per_group, (k + 1) * out_per_group)
        rows1 = slice(k * inter // card, (k + 1) * inter // card)
        h = gap[:, cols] @ p['fc1.weight'][rows1, :, 0, 0].T + p['fc1.bias'][rows1]
        h = np.maximum(_bn(h, {key: v[rows1] if key.startswith('bn1') else v
                               for key, v in p.items()}, 'bn1'), 0)
        rows2 = slice(k * radix * out_per_group, (k + 1) * radix * out_per_group)
        logits = h @ p['fc2.weight'][rows2, :, 0, 0].T + p['fc2.bias'][rows2]
        logits = logits.reshape(x.shape[0], radix, out_per_group)  # group k: (radix, width)
        if radix == 1:
            att = 1 / (1 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            att = e / e.sum(axis=1, keepdims=True)
        for r in range(radix):
            out[:, cols] += att[:, r, :, None, None] * splits[r][:, cols]
    return out


@pytest.mark.parametrize('radix,card,strides,dilation', CASES)
def test_split_attention_matches_naive_reference(radix, card, strides, dilation):
    channels, in_channels = 8 * card, 4 * radix * card
    block = SplitAttentionConv(channels, strides=strides, dilation=dilation, groups=card,
                               radix=radix, in_channels=in_channels)
    block.initialize(mx.init.Xavier())
    _randomize_bn(block)
    x = np.random.uniform(-1, 1, (2, in_channels, 9, 9)).astype('float32')
    expected = naive_split_attention(x, _params(block), channels, radix, card, strides, dilation)
    out = block(mx.nd.array(x)).asnumpy()
    assert out.shape == (2, channels, (9 - 1) // strides + 1, (9 - 1) // strides + 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    block.hybridize()
    np.testing.assert_allclose(block(mx.nd.array(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('radix,card', [(2, 1), (4, 2), (2, 4)])
def test_radix_softmax_sums_to_one_over_radix(radix, card):
    width = 3
    logits = mx.nd.random.normal(shape=(2, radix * card * width, 1, 1))
    att = RadixSoftmax(radix, card)(logits).asnumpy().reshape(2, radix, card * width)
    np.testing.assert_allclose(att.sum(axis=1), 1.0, rtol=1e-6)
    # cardinal group 0, split 1, channel 0 reads logit index 0 * radix * width + 1 * width + 0
    expected = np.exp(logits.asnumpy()[0, [r * width for r in range(radix)], 0, 0])
    assert att[0, 1, 0] == pytest.approx(expected[1] / expected.sum(), rel=1e-6)


def test_radix_one_is_sigmoid():
    logits = mx.nd.array([[[[0.0]], [[2.0]]]])
    att = RadixSoftmax(1, 1)(logits).asnumpy().ravel()
    np.testing.assert_allclose(att, [0.5, 1 / (1 + np.exp(-2.0))], rtol=1e-6)


@pytest.mark.parametrize('kwargs,message', [
    (dict(channels=10, groups=4), 'divisible'),
    (dict(channels=8, radix=0), 'radix'),
])
def test_bad_split_attention_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitAttentionConv(in_channels=8, **kwargs)


@pytest.mark.parametrize('radix,card', [(1, 1), (2, 1), (4, 2)])
def test_training_and_inference_graphs_agree_in_values_and_gradients(radix, card):
    """Graphs that may train pool and weight the splits with other ops than inference graphs (their
    backward passes are faster); both must compute the reference and the same gradients."""
    channels, in_channels = 8 * card, 4 * radix * card
    # Running statistics in both modes, so that only the op choice differs between the two graphs.
    block = SplitAttentionConv(channels, groups=card, radix=radix, in_channels=in_channels,
                               norm_kwargs={'use_global_stats': True})
    block.initialize(mx.init.Xavier())
    _randomize_bn(block)
    x = np.random.uniform(-1, 1, (2, in_channels, 9, 9)).astype('float32')
    head = mx.nd.array(np.random.uniform(-1, 1, (2, channels, 9, 9)))
    expected = naive_split_attention(x, _params(block), channels, radix, card, 1, 1)
    forms = {}
    for training, pooling_op in ((True, '_contrib_AdaptiveAvgPooling2D'), (False, '"Pooling"')):
        with trace_mode(training):
            block.hybridize()
            data = mx.nd.array(x)
            data.attach_grad()
            with mx.autograd.record(train_mode=training):
                out = block(data)
                loss = (out * head).sum()
            loss.backward()
        graph = block._cached_graph[1].tojson()
        assert pooling_op in graph
        if training and radix > 1:
            # convex_radix_sum: radix - 1 products of difference maps, no broadcast weight map kept
            assert 'broadcast_like' not in graph
            assert graph.count('"op": "broadcast_mul"') == radix - 1
        np.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-5, atol=1e-5)
        forms[training] = (data.grad.asnumpy(), block.conv.weight.grad().asnumpy(),
                           block.fc1.weight.grad().asnumpy(), block.fc2.weight.grad().asnumpy())
    for trained, inferred in zip(forms[True], forms[False]):
        assert np.abs(trained).max() > 0
        np.testing.assert_allclose(trained, inferred, rtol=1e-4, atol=1e-5)


class _Pooled(HybridBlock):
    """pool(block(x)), through SplitAttentionConv.pooled_forward or (reference) op by op."""

    def __init__(self, block, pool, first):
        super(_Pooled, self).__init__()
        self.block, self.pool, self.first = block, pool, first

    def hybrid_forward(self, F, x):
        if self.first:
            return self.block.pooled_forward(F, x, self.pool)
        return self.pool(self.block(x))


@pytest.mark.parametrize('radix,card', [(1, 1), (2, 1), (4, 2)])
@pytest.mark.parametrize('training', [True, False])
def test_pooling_the_splits_first_equals_pooling_the_output(radix, card, training):
    channels, in_channels = 8 * card, 4 * radix * card
    block = SplitAttentionConv(channels, groups=card, radix=radix, in_channels=in_channels,
                               norm_kwargs={'use_global_stats': True})
    block.initialize(mx.init.Xavier())
    _randomize_bn(block)
    pool = nn.AvgPool2D(3, 2, padding=1)
    x = np.random.uniform(-1, 1, (2, in_channels, 9, 9)).astype('float32')
    head = mx.nd.array(np.random.uniform(-1, 1, (2, channels, 5, 5)))
    results = []
    for first in (True, False):
        net = _Pooled(block, pool, first)
        if first:
            net.hybridize()
        data = mx.nd.array(x)
        data.attach_grad()
        with trace_mode(training, fuse_norm_relu=training):
            with mx.autograd.record(train_mode=training):
                out = net(data)
                loss = (out * head).sum()
            loss.backward()
        results.append((out.asnumpy(), data.grad.asnumpy(), block.conv.weight.grad().asnumpy(),
                        block.fc1.weight.grad().asnumpy()))
    for pooled_first, reference in zip(*results):
        assert np.abs(reference).max() > 0
        np.testing.assert_allclose(pooled_first, reference, rtol=1e-4, atol=1e-5)


def test_bottleneck_pools_the_splits_first_unless_dropblock_may_drop_in_between():
    from gluon_resnest.resnest import Bottleneck
    plain = Bottleneck(8, 32, strides=2, avd=True)
    dropping = Bottleneck(8, 32, strides=2, avd=True, dropblock_prob=0.1)
    not_strided = Bottleneck(8, 32, strides=1, dilation=2, avd=True)
    avd_first = Bottleneck(8, 32, strides=2, avd=True, avd_first=True)
    for F, training in ((mx.sym, True), (mx.sym, False), (mx.sym, None)):
        with trace_mode(training):
            assert plain._pool_splits_first(F)
            assert dropping._pool_splits_first(F) == (training is False)
            assert not not_strided._pool_splits_first(F)
            assert not avd_first._pool_splits_first(F)
    dropping.dropblock2.drop_prob = 0.0
    assert dropping._pool_splits_first(mx.sym)
