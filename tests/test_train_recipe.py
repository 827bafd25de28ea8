"""Each switch of the training recipe changes what it should (no training runs here)."""
import math
import random

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.data.autoaugment import IMAGENET_POLICY, OPS, AutoAugment, apply_op
from gluon_resnest.data.train_transforms import train_transform
from gluon_resnest.layers import DropBlock
from gluon_resnest.classification.task import dropblock_ramp, mixup_active, mixup_batch, smooth_labels
from gluon_resnest.engine.sampler import ShardedShuffleSampler
from gluon_resnest.engine.schedules import apply_no_wd, build_lr_scheduler


@pytest.mark.parametrize('update, expected', [
    (0, 0.01),                                    # warmup starts at --warmup-lr
    (100, 0.01 + (0.4 - 0.01) * 100 / 199),       # linear warmup over 2 epochs x 100 updates
    (199, 0.4),                                   # peak at the end of the warmup
    (200, 0.4),                                   # cosine starts at the peak
    (200 + 399, 0.4 * (1 + math.cos(math.pi * 399 / 799)) / 2),
    (999, 0.0),                                   # and ends at 0
])
def test_warmup_cosine_values(update, expected):
    sched = build_lr_scheduler('cosine', 0.4, num_epochs=10, iters_per_epoch=100, warmup_epochs=2, warmup_lr=0.01)
    assert sched(update) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize('update, expected', [(250, 0.1), (399, 0.1), (400, 0.01), (600, 0.001), (999, 0.001)])
def test_step_mode_decays_at_epochs(update, expected):
    sched = build_lr_scheduler('step', 0.1, 10, 100, warmup_epochs=2, lr_decay=0.1, lr_decay_epoch=[4, 6])
    assert sched(update) == pytest.approx(expected)


def test_poly_mode_is_quadratic():
    sched = build_lr_scheduler('poly', 0.1, 10, 10, power=2.0)
    assert sched(0) == pytest.approx(0.1)
    assert sched(50) == pytest.approx(0.1 * (1 - 50 / 99.0) ** 2)


@pytest.mark.parametrize('kwargs, message', [
    (dict(lr_mode='exp'), 'unknown lr_mode'),
    (dict(warmup_epochs=10), r'warmup_epochs must be in \[0, num_epochs\)'),
    (dict(iters_per_epoch=0), 'at least one batch'),
])
def test_lr_scheduler_rejects(kwargs, message):
    base = dict(lr_mode='cosine', base_lr=0.1, num_epochs=10, iters_per_epoch=5)
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_lr_scheduler(**base)


def test_one_update_schedule_does_not_divide_by_zero():
    sched = build_lr_scheduler('cosine', 0.1, 2, 1, warmup_epochs=1, warmup_lr=0.05)
    assert [sched(0), sched(1)] == [pytest.approx(0.05), pytest.approx(0.1)]


def test_no_wd_groups():
    net = get_model('resnest14', classes=10)
    names = apply_no_wd(net)
    params = net.collect_params()
    decayed = [n for n, p in params.items() if p.wd_mult == 1.0]
    assert names and all(n.endswith(('_bias', '_gamma', '_beta')) for n in names)
    assert all(n.endswith(('_weight', '_running_mean', '_running_var')) for n in decayed)
    assert params['resnest_dense0_bias'].wd_mult == 0.0
    assert params['resnest_dense0_weight'].wd_mult == 1.0


def test_no_wd_leaves_bias_undecayed_in_an_update():
    net = mx.gluon.nn.Dense(1, in_units=1)
    net.initialize(mx.init.One())
    net.bias.set_data(mx.nd.ones(1))  # Dense's own initializer set it to 0
    apply_no_wd(net)
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0, 'wd': 0.5})
    with mx.autograd.record():
        loss = net(mx.nd.zeros((1, 1))) * 0
    loss.backward()
    trainer.step(1)
    assert net.weight.data().asscalar() == pytest.approx(0.5)  # decayed: 1 - 1.0 * 0.5 * 1
    assert net.bias.data().asscalar() == pytest.approx(1.0)    # not decayed


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


def test_autoaugment_policy_is_the_papers_25_pairs():
    assert len(IMAGENET_POLICY) == 25
    assert all(len(sub) == 2 and all(op in OPS for op, _, _ in sub) for sub in IMAGENET_POLICY)


@pytest.mark.parametrize('op', sorted(OPS))
def test_autoaugment_ops_give_valid_images(op):
    from PIL import Image
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (24, 30, 3)).astype(np.uint8))
    out = np.asarray(apply_op(img, op, 9, random.Random(0)))
    assert out.shape == (24, 30, 3) and out.dtype == np.uint8
    if op not in ('Equalize', 'AutoContrast'):  # these can be near-identity on uniform noise
        assert np.abs(out.astype(int) - np.asarray(img, dtype=int)).sum() > 0, op


@pytest.mark.parametrize('op', ['Posterize', 'Solarize', 'Rotate', 'ShearX', 'Color'])
def test_autoaugment_magnitude_zero_is_identity(op):
    from PIL import Image
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (16, 16, 3)).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(apply_op(img, op, 0, random.Random(0))), np.asarray(img))


def test_autoaugment_block_on_ndarray_is_seeded():
    img = mx.nd.array(np.random.RandomState(0).randint(0, 256, (20, 20, 3)), dtype='uint8')
    outs = [AutoAugment(rng=random.Random(5))(img).asnumpy() for _ in range(2)]
    assert outs[0].dtype == np.uint8 and outs[0].shape == (20, 20, 3)
    np.testing.assert_array_equal(outs[0], outs[1])
    with pytest.raises(ValueError, match='bad AutoAugment policy'):
        AutoAugment(policy=((('Blur', 0.5, 3),),))


@pytest.mark.parametrize('auto_aug', [False, True])
def test_train_transform_output(auto_aug):
    img = mx.nd.array(np.random.RandomState(0).randint(0, 256, (50, 60, 3)), dtype='uint8')
    out = train_transform(32, auto_aug=auto_aug)(img)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert -3 < float(out.min().asscalar()) < float(out.max().asscalar()) < 3  # normalised


def test_sharded_sampler_partitions_and_resumes():
    shards = [ShardedShuffleSampler(23, 3, num_parts=2, part_index=r, seed=7) for r in range(2)]
    for s in shards:
        s.set_epoch(4)
    orders = [list(s) for s in shards]
    assert [len(o) for o in orders] == [9, 9]          # 23 // (2 * 3) = 3 batches of 3 each
    assert not set(orders[0]) & set(orders[1])
    resumed = ShardedShuffleSampler(23, 3, 2, 0, seed=7)
    resumed.set_epoch(4, start_batch=2)
    assert list(resumed) == orders[0][6:] and len(resumed) == 3
    shards[0].set_epoch(5)
    assert list(shards[0]) != orders[0]                # a new permutation each epoch
