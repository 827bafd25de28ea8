"""gluon_resnest.resnest against GluonCV's independent ResNeSt class: same weights, names and outputs."""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.resnest import Bottleneck as GluonCVBottleneck
from gluoncv.model_zoo.resnest import ResNeSt as GluonCVResNeSt

import gluon_resnest
from gluon_resnest.model_zoo import VARIANTS
from gluon_resnest.resnest import stage_output_names

from conftest import randomize_batchnorm

# The smoke set (.ci/run, other interpreters) compares the smallest network and one with radix 4 and
# two cardinal groups.
COMPARED = [pytest.param('resnest14', marks=pytest.mark.smoke), 'resnest26', 'resnest50',
            pytest.param('resnest101', marks=pytest.mark.slow), 'resnest50_fast_1s2x40d', 'resnest50_fast_2s1x64d',
            pytest.param('resnest50_fast_4s2x40d', marks=pytest.mark.smoke)]


def gluoncv_net(name, **kwargs):
    """GluonCV's own class, built with the published hyper-parameters of ``name``."""
    config = dict(VARIANTS[name])
    layers = config.pop('layers')
    prefix = config.pop('prefix', 'resnest_')
    config.update(kwargs)
    return GluonCVResNeSt(GluonCVBottleneck, layers, deep_stem=True, avg_down=True, avd=True,
                          use_splat=True, name_prefix=prefix, **config)


@pytest.fixture
def saved_gluoncv(tmp_path):
    def make(name, **kwargs):
        reference = randomize_batchnorm(gluoncv_net(name, **kwargs))
        path = str(tmp_path / ('%s.params' % name))
        reference.save_parameters(path)
        return reference, path
    return make


@pytest.mark.parametrize('name', COMPARED)
def test_gluoncv_weights_load_strictly_and_agree(name, saved_gluoncv):
    reference, path = saved_gluoncv(name)
    ours = gluon_resnest.get_model(name, pretrained=path)
    x = mx.nd.random.uniform(shape=(2, 3, 96, 96))
    expected = reference(x).asnumpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours(x).asnumpy(), expected, rtol=0, atol=1e-5)
    ours.hybridize(static_alloc=True)
    reference.hybridize()
    np.testing.assert_allclose(ours(x).asnumpy(), reference(x).asnumpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize('kwargs', [{'dilated': True}, {'dilation': 2}])
def test_dilated_networks_agree_with_gluoncv(kwargs, saved_gluoncv):
    reference, path = saved_gluoncv('resnest14', **kwargs)
    ours = gluon_resnest.get_model('resnest14', pretrained=path,
                                   output_stride=8 if 'dilated' in kwargs else 16)
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_allclose(ours.features(mx.nd, x).asnumpy(),
                               _gluoncv_features(reference, x).asnumpy(), rtol=0, atol=1e-5)


def _gluoncv_features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@pytest.mark.parametrize('name', ['resnest200', 'resnest269'])
def test_large_models_have_gluoncv_parameter_names_and_shapes(name):
    ours = gluon_resnest.get_model(name)._collect_params_with_prefix()
    theirs = gluoncv_net(name)._collect_params_with_prefix()
    assert sorted(ours) == sorted(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize('name', ['resnest50', 'resnest101', 'resnest50_fast_4s1x64d'])
def test_symbol_names_match_gluoncv(name):
    ours = gluon_resnest.get_model(name)(mx.sym.var('data'))
    theirs = gluoncv_net(name)(mx.sym.var('data'))
    assert ours.list_arguments() == theirs.list_arguments()
    assert ours.list_auxiliary_states() == theirs.list_auxiliary_states()
    relus = {n for n in theirs.get_internals().list_outputs() if 'relu' in n}
    assert relus <= set(ours.get_internals().list_outputs())


@pytest.mark.parametrize('name,expected', [
    ('resnest50', ['resnest_layers1_relu11_fwd', 'resnest_layers2_relu15_fwd',
                   'resnest_layers3_relu23_fwd', 'resnest_layers4_relu11_fwd']),
    ('resnest101', ['resnest_layers1_relu11_fwd', 'resnest_layers2_relu15_fwd',
                    'resnest_layers3_relu91_fwd', 'resnest_layers4_relu11_fwd']),
])
def test_stage_output_names_are_gluoncv_fpn_taps(name, expected):
    assert stage_output_names(gluon_resnest.get_model(name)) == expected


def test_fast_1s1x64d_size_agrees_with_gluoncv():
    from gluon_resnest.summary import count_params
    ours = count_params(gluon_resnest.get_model('resnest50_fast_1s1x64d'))
    assert ours == count_params(gluoncv_net('resnest50_fast_1s1x64d'))
    assert round(ours / 1e6, 2) == 26.22
