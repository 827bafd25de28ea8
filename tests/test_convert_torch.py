"""Converter of the official PyTorch ResNeSt state dicts to gluon_resnest .params."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.export import torch_convert
from gluon_resnest.pretrained import load_weights

from conftest import to_official_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the official PyTorch package ships (resnest.torch: resnest.py and ablation.py).
OFFICIAL_MODELS = ['resnest50', 'resnest101', 'resnest200', 'resnest269', 'resnest50_fast_1s1x64d',
                   'resnest50_fast_2s1x64d', 'resnest50_fast_4s1x64d', 'resnest50_fast_1s2x40d',
                   'resnest50_fast_2s2x40d', 'resnest50_fast_4s2x40d', 'resnest50_fast_1s4x24d']


def _shapes_only(name):
    """Official-named state dict of ``name`` made of zero-stride arrays (no memory per tensor)."""
    params = get_model(name)._collect_params_with_prefix()  # pylint: disable=protected-access
    return to_official_names({k: np.broadcast_to(np.float32(0), p.shape) for k, p in params.items()})


@pytest.mark.parametrize('name', OFFICIAL_MODELS)
def test_official_names_and_shapes_map_onto_every_shipped_model(name):
    state = _shapes_only(name)
    # Spot checks that the synthetic dict really uses the official spelling.
    assert 'layer1.0.conv2.bn0.weight' in state and 'layer1.0.conv2.bn.gamma' not in state
    assert 'conv1.1.running_var' in state and 'bn1.num_batches_tracked' in state
    converted = torch_convert.convert_state_dict(state, name)
    expected = get_model(name)._collect_params_with_prefix()  # pylint: disable=protected-access
    assert sorted(converted) == sorted(expected)
    assert all(converted[k].shape == tuple(p.shape) for k, p in expected.items())


def _random_resnest14(classes=1000):
    net = get_model('resnest14', classes=classes)
    net.initialize(mx.init.Xavier())
    rng = np.random.RandomState(0)
    for key, param in net._collect_params_with_prefix().items():  # pylint: disable=protected-access
        if key.endswith('running_mean'):
            param.set_data(mx.nd.array(rng.uniform(-0.1, 0.1, param.shape)))
        elif key.endswith('running_var'):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2.0, param.shape)))
        elif key.endswith(('gamma', 'beta')):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    return net


def test_npz_round_trip_reproduces_the_network(tmp_path):
    net = _random_resnest14(classes=10)
    by_path = net._collect_params_with_prefix()  # pylint: disable=protected-access
    params = {key: param.data().asnumpy() for key, param in by_path.items()}
    state = {'module.' + k: v for k, v in to_official_names(params).items()}  # DataParallel names
    np.savez(str(tmp_path / 'resnest14.npz'), **state)
    assert torch_convert.main([
        '--model', 'resnest14', '--input', str(tmp_path / 'resnest14.npz'),
        '--output', str(tmp_path / 'resnest14.params')]) == 0
    loaded = get_model('resnest14', classes=10)
    load_weights(loaded, str(tmp_path / 'resnest14.params'))  # strict: every key and shape
    for key, param in loaded._collect_params_with_prefix().items():  # pylint: disable=protected-access
        np.testing.assert_array_equal(param.data().asnumpy(), params[key])
    x = mx.nd.array(np.random.RandomState(1).standard_normal((2, 3, 64, 64)))
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())
    assert sorted(os.listdir(str(tmp_path))) == ['resnest14.npz', 'resnest14.params']


def test_state_dict_of_another_model_is_rejected_without_output(tmp_path):
    np.savez(str(tmp_path / 'r50.npz'), **_shapes_only('resnest50_fast_1s1x64d'))
    with pytest.raises(ValueError, match='does not fit resnest50_fast_2s1x64d'):
        torch_convert.convert_file(str(tmp_path / 'r50.npz'), str(tmp_path / 'x.params'),
                                   'resnest50_fast_2s1x64d')
    assert os.listdir(str(tmp_path)) == ['r50.npz']


def test_cli_reports_bad_input_in_one_line(tmp_path):
    (tmp_path / 'weights.bin').write_bytes(b'xx')
    proc = subprocess.run([sys.executable, '-m', 'gluon_resnest.export.torch_convert', '--model',
                           'resnest50', '--input', str(tmp_path / 'weights.bin'), '--output',
                           str(tmp_path / 'out.params')], capture_output=True, text=True, cwd=REPO,
                          check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith('error: unsupported state dict file')
    assert not (tmp_path / 'out.params').exists()


def test_pth_without_torch_names_the_numpy_route(tmp_path):
    try:
        import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        pytest.skip('torch is installed: the .pth route is available')
    except ImportError:
        pass
    (tmp_path / 'resnest50.pth').write_bytes(b'x')
    with pytest.raises(ValueError, match=r'needs PyTorch .* convert it to \.npz'):
        torch_convert.read_state_dict(str(tmp_path / 'resnest50.pth'))
