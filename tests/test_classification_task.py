"""gluon_resnest.classification.task: label smoothing, mixup and the DropBlock ramp of the training recipe."""
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.classification.task import dropblock_ramp, mixup_active, mixup_batch, smooth_labels
from gluon_resnest.layers import DropBlock


def test_label_smoothing_targets():
    targets = smooth_labels(mx.nd.array([0, 2]), 4, eta=0.1).asnumpy()
    np.testing.assert_allclose(targets, [[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025]],
                               rtol=1e-6)
    np.testing.assert_allclose(smooth_labels(mx.nd.array([1]), 3).asnumpy(), [[0, 1, 0]])


def test_mixup_mixes_images_and_targets():
    data = mx.nd.array(np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4))
    labels = mx.nd.array([0, 1])
    mixed, targets, lam = mixup_batch(data, labels, 2, alpha=0.2, eta=0.0, rng=np.random.RandomState(1))
    assert 0 < lam < 1
    np.testing.assert_allclose(mixed.asnumpy()[0], lam * data.asnumpy()[0] + (1 - lam) * data.asnumpy()[1],
                               rtol=1e-5)
    np.testing.assert_allclose(targets.asnumpy(), [[lam, 1 - lam], [1 - lam, lam]], rtol=1e-5)


@pytest.mark.parametrize('epoch, expected', [(0, True), (7, True), (8, False), (9, False)])
def test_mixup_switched_off_for_last_epochs(epoch, expected):
    assert mixup_active(epoch, num_epochs=10, mixup=True, mixup_off_epoch=2) is expected


def test_mixup_flag_off_is_never_active():
    assert not mixup_active(0, 10, mixup=False, mixup_off_epoch=0)


def test_dropblock_ramp_sets_each_epochs_probability():
    net = get_model('resnest14', classes=10, dropblock_prob=0.1)
    ramp = dropblock_ramp(net, 0.1, num_epochs=10)
    assert ramp.prob(0) == pytest.approx(0.01) and ramp.prob(9) == pytest.approx(0.1)
    assert ramp(4) == pytest.approx(0.05)
    probs = []
    net.apply(lambda b: probs.append(b.drop_prob) if isinstance(b, DropBlock) else None)
    assert probs and all(p == pytest.approx(0.05) for p in probs)
    assert dropblock_ramp(net, 0.0, 10) is None

