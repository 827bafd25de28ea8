"""One training step of every published network, hybridized as the trainer runs it, with the CPU training
graph (BatchNorm+ReLU fused where the layers allow it) and without fusion (the graph GPUs train with):
finite gradients for every parameter, the same gradients in both forms, and an update that moves the
weights.

tests/test_isa.py runs this file in a subprocess under each oneDNN instruction-set level the CPU offers
(DNNL_MAX_CPU_ISA): oneDNN picks its kernels, and with them the layouts of the feature maps and their
gradients, by that level. A plain ``pytest tests`` does not collect it (its name does not start with
``test_``); ``pytest tests/isa_training_steps.py`` runs it at the CPU's own level.
"""
import gluon_resnest  # first: it loads MXNet (gluon_resnest_compat.import_mxnet)
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import resnest
from gluon_resnest.inference import fusion_available

pytestmark = pytest.mark.skipif(not fusion_available(),
                                reason='the fused training graph is for MXNet oneDNN builds')

SIZE, BATCH = 32, 2


def _train_step(name):
    """Gradients, the op counts of the traced graph and the weights moved by one SGD update."""
    mx.random.seed(0)
    net = gluon_resnest.get_model(name, classes=10, dropblock_prob=0.0)
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize(static_alloc=True)
    params = net.collect_params()
    before = {key: param.data().asnumpy() for key, param in params.items()}
    trainer = mx.gluon.Trainer(params, 'sgd', {'learning_rate': 0.1})
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (BATCH, 3, SIZE, SIZE)))
    label = mx.nd.array([1, 7])
    with mx.autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), label)
    loss.backward()
    grads = {key: param.grad().asnumpy() for key, param in params.items() if param.grad_req != 'null'}
    trainer.step(BATCH)
    moved = [key for key in grads if not np.array_equal(params[key].data().asnumpy(), before[key])]
    graph = net._cached_graph[1].tojson()  # pylint: disable=protected-access
    ops = {op: graph.count('"op": "%s"' % op) for op in ('_contrib_BatchNormWithReLU', 'BatchNorm')}
    return grads, ops, moved


@pytest.mark.parametrize('name', gluon_resnest.list_models())
def test_training_step_fused_and_unfused(name, monkeypatch):
    fused, fused_ops, fused_moved = _train_step(name)
    # without fusion: the training graph of a context that has no fused operator
    monkeypatch.setattr(resnest, 'onednn_cpu', lambda ctx: False)
    plain, plain_ops, plain_moved = _train_step(name)
    assert fused_ops['_contrib_BatchNormWithReLU'] >= 3 and plain_ops['_contrib_BatchNormWithReLU'] == 0
    assert sum(fused_ops.values()) == plain_ops['BatchNorm']
    assert sorted(fused) == sorted(plain)
    for key in plain:
        assert np.isfinite(fused[key]).all() and np.isfinite(plain[key]).all(), key
    # The same arithmetic in other kernels: a ReLU mask read wrongly changes gradients by their own size.
    flat_fused = np.concatenate([fused[key].ravel() for key in sorted(plain)])
    flat_plain = np.concatenate([plain[key].ravel() for key in sorted(plain)])
    assert np.abs(flat_plain).max() > 0
    assert np.linalg.norm(flat_fused - flat_plain) <= 1e-3 * np.linalg.norm(flat_plain)
    weights = [key for key in plain if key.endswith('weight') and np.abs(plain[key]).max() > 0]
    assert weights and set(weights) <= set(fused_moved) and set(weights) <= set(plain_moved)
