"""DropBlock decides train/inference at run time, at any input size, and never leaks into exports."""
from functools import partial

import mxnet as mx
import numpy as np
import pytest
from gluoncv.nn.dropblock import DropBlockScheduler as GluonCVDropBlockScheduler
from gluoncv.nn.dropblock import set_drop_prob as gluoncv_set_drop_prob

import gluon_resnest
from gluon_resnest.layers import (DropBlock, DropBlockScheduler, set_drop_prob, trace_mode,
                                  without_random_ops)


def _block(prob=0.2, hybrid=False):
    block = DropBlock(prob, 3)
    block.initialize()
    if hybrid:
        block.hybridize()
    return block


@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('shape', [(2, 4, 5, 7), (2, 8, 13, 13), (1, 16, 64, 64)])
def test_random_while_training_at_any_size(hybrid, shape):
    block = _block(hybrid=hybrid)
    x = mx.nd.ones(shape)
    with mx.autograd.record():
        first = block(x).asnumpy()
        second = block(x).asnumpy()
    assert first.shape == shape
    assert (first == 0).any() and not np.array_equal(first, second)
    # kept units are rescaled so each sample keeps its expected sum
    kept = first[0][first[0] > 0]
    np.testing.assert_allclose(kept, first[0].size / kept.size, rtol=1e-5)


def test_drop_fraction_and_block_shape():
    block = _block(prob=0.1)
    x = mx.nd.ones((16, 8, 48, 48))
    with mx.autograd.record():
        out = block(x).asnumpy()
    dropped = (out == 0).mean()
    assert 0.07 < dropped < 0.13
    # dropped units come in blocks: an isolated dropped pixel (no dropped 4-neighbour) is impossible
    zero = out == 0
    padded = np.pad(zero, ((0, 0), (0, 0), (1, 1), (1, 1)))
    neighbours = padded[..., :-2, 1:-1] | padded[..., 2:, 1:-1] | padded[..., 1:-1, :-2] | padded[..., 1:-1, 2:]
    assert not (zero & ~neighbours).any()


def _naive_dropblock(x, seeds, block_size):
    """Every seed drops the block_size x block_size square centred on it (clipped at the borders);
    each sample's kept units are scaled by its count of units over its count of kept units."""
    half = block_size // 2
    dropped = np.zeros(x.shape, bool)
    for n, c, i, j in zip(*np.nonzero(seeds)):
        dropped[n, c, max(i - half, 0):i + half + 1, max(j - half, 0):j + half + 1] = True
    kept = ~dropped
    scale = kept[0].size / kept.reshape(len(x), -1).sum(axis=1)
    return x * kept * scale[:, None, None, None]


def _uniform_seeds(x, gamma):
    return mx.nd.random.uniform_like(x).asnumpy() < gamma


def _dropout_seeds(x, gamma):
    return mx.nd.Dropout(mx.nd.ones_like(x), p=gamma, mode='always').asnumpy() == 0


# eager and graphs traced for training draw uniform seeds; graphs of unknown mode the zeros of Dropout
@pytest.mark.parametrize('form,draw', [('eager', _uniform_seeds), ('training graph', _uniform_seeds),
                                       ('unknown-mode graph', _dropout_seeds)])
@pytest.mark.parametrize('block_size', [3, 5])
def test_matches_naive_dropblock_from_the_same_seeds(form, draw, block_size):
    block = DropBlock(0.3, block_size)
    block.initialize()
    if form != 'eager':
        block.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(0.5, 1.5, shape=(3, 4, 11, 9))
    gamma = 0.3 / block_size ** 2
    for seed in (3, 4):
        mx.random.seed(seed)  # draw the seeds again from the same stream
        seeds = draw(x, gamma)
        mx.random.seed(seed)
        with trace_mode(True if form == 'training graph' else None), mx.autograd.record():
            out = block(x).asnumpy()
        assert seeds.any()
        np.testing.assert_allclose(out, _naive_dropblock(x.asnumpy(), seeds, block_size), rtol=1e-5)


@pytest.mark.parametrize('first_call_recorded', [True, False])
def test_identity_at_inference_whatever_order_of_hybridize_and_record(first_call_recorded):
    net = gluon_resnest.get_model('resnest14', dropblock_prob=0.5)
    net.initialize()
    net.hybridize()
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    if first_call_recorded:
        with mx.autograd.record():
            net(x)  # the graph is traced while training
    inference = [net(x).asnumpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    net.hybridize(active=False)
    np.testing.assert_allclose(net(x).asnumpy(), inference[0], rtol=1e-5, atol=1e-6)
    with mx.autograd.record():
        training = net(x).asnumpy()
    assert not np.allclose(training, inference[0])


def test_gluoncv_set_drop_prob_and_scheduler_drive_ours():
    net = gluon_resnest.get_model('resnest14', dropblock_prob=0.1)
    net.apply(partial(gluoncv_set_drop_prob, 0.0))
    assert net.layer3[0].dropblock2.drop_prob == 0.0
    GluonCVDropBlockScheduler(net, 0.0, 0.1, 10)(4)
    assert net.layer4[0].dropblock3.drop_prob == pytest.approx(0.05)


def test_scheduler_ramps_linearly_and_retraces():
    net = gluon_resnest.get_model('resnest14', dropblock_prob=0.0)
    net.initialize()
    net.hybridize()
    x = mx.nd.ones((1, 3, 64, 64))
    net(x)
    scheduler = DropBlockScheduler(net, 0.0, 0.1, num_epochs=4)
    assert [scheduler.prob(e) for e in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    scheduler(1)
    assert net.layer3[0].dropblock1.drop_prob == pytest.approx(0.05)
    assert not net._cached_graph  # the next call traces with the new probability
    with mx.autograd.record():
        net(x)
    assert '_random_uniform_like' in net._cached_graph[1].tojson()


def test_inference_graph_holds_no_dropblock_ops_training_graph_does():
    net = gluon_resnest.get_model('resnest50')
    net.initialize()
    net.hybridize()
    x = mx.nd.ones((1, 3, 64, 64))
    with mx.autograd.record():
        net(x)
    training_graph = net._cached_graph[1].tojson()
    net(x)
    inference_graph = net._cached_graph[1].tojson()
    assert training_graph.count('"_random_uniform_like"') == 3 * (6 + 3)  # three per block of stages 3, 4
    assert '"Dropout"' not in training_graph  # the run-time gated form is for graphs of unknown mode
    assert '"_random_uniform_like"' not in inference_graph and '"Pooling"' in inference_graph
    with mx.autograd.record():
        net(x)
    assert net._cached_graph[1].tojson() == training_graph  # swapped back, not re-traced


def test_stage_traced_inside_another_network_gates_at_run_time():
    net = gluon_resnest.get_model('resnest14', dropblock_prob=0.5)
    net.initialize()
    outer = mx.gluon.nn.HybridSequential()
    outer.add(net.layer3)  # traced by a container that knows nothing of train/eval
    outer.hybridize()
    x = mx.nd.random.uniform(shape=(2, 512, 8, 8))
    with mx.autograd.record():
        first = outer(x).asnumpy()
    assert '"Dropout"' in outer._cached_graph[1].tojson()
    inference = outer(x).asnumpy()
    np.testing.assert_array_equal(inference, outer(x).asnumpy())
    with mx.autograd.record():
        second = outer(x).asnumpy()
    assert not np.allclose(first, second) and not np.allclose(first, inference)


def test_layers_one_and_two_have_no_dropblock():
    net = gluon_resnest.get_model('resnest50')
    assert not hasattr(net.layer1[0], 'dropblock1') and not hasattr(net.layer2[0], 'dropblock1')
    set_drop_prob(0.3, net.layer3[0].dropblock1)
    assert net.layer3[0].dropblock1.drop_prob == 0.3


def test_without_random_ops_removes_them_from_the_graph_and_restores(tmp_path):
    net = gluon_resnest.get_model('resnest200')
    net.initialize()
    net.hybridize()
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    with mx.autograd.record():
        net(x)
    with without_random_ops(net):
        expected = net(x).asnumpy()
        net.export(str(tmp_path / 'net'))
    graph = (tmp_path / 'net-symbol.json').read_text()
    assert 'Dropout' not in graph and 'random' not in graph
    assert net.layer3[0].dropblock1.drop_prob == 0.1 and net.drop._rate == 0.2
    imported = mx.gluon.SymbolBlock.imports(str(tmp_path / 'net-symbol.json'), ['data'],
                                            str(tmp_path / 'net-0000.params'))
    np.testing.assert_allclose(imported(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs,message', [({'drop_prob': 1.0}, 'drop_prob'),
                                            ({'drop_prob': 0.1, 'block_size': 4}, 'odd')])
def test_bad_dropblock_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DropBlock(**kwargs)
