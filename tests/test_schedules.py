"""gluon_resnest.engine.schedules: the learning-rate schedules' values and which parameters skip weight decay."""
import math

import mxnet as mx
import pytest

from gluon_resnest import get_model
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

