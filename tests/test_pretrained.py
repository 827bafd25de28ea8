"""Resolving and loading weights, offline: local files, the store layout, sha1 checks, bad files."""
import hashlib
import os

import mxnet as mx
import numpy as np
import pytest

import gluon_resnest
from gluon_resnest import pretrained
from gluon_resnest.pretrained import PUBLISHED, Published


@pytest.fixture
def saved_resnest14(tmp_path):
    net = gluon_resnest.get_model('resnest14')
    net.initialize(mx.init.Xavier())
    path = str(tmp_path / 'resnest14-local.params')
    net.save_parameters(path)
    return net, path


def _sha1(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


def test_published_table_covers_every_model():
    assert sorted(PUBLISHED) == sorted(gluon_resnest.list_models())


def test_urls_follow_the_two_stores(monkeypatch):
    monkeypatch.delenv('MXNET_GLUON_REPO', raising=False)
    assert pretrained.weight_url('resnest50') == ('https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/'
                                                  'gluon/models/resnest50-bcfefe1d.zip')
    assert pretrained.weight_url('resnest50_fast_4s2x40d').endswith(
        '/weights_step2/resnest50_fast_4s2x40d-b24d5157.zip')
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://mirror.local/repo')
    assert pretrained.weight_url('resnest14') == 'http://mirror.local/repo/gluon/models/resnest14-7e0b0cae.zip'


def test_default_root_follows_mxnet_home(monkeypatch):
    monkeypatch.setenv('MXNET_HOME', '/data/mx')
    assert pretrained.default_root() == os.path.join('/data/mx', 'models')


def test_pretrained_path_loads_local_file(saved_resnest14):
    reference, path = saved_resnest14
    net = gluon_resnest.get_model('resnest14', pretrained=path)
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(net(x).asnumpy(), reference(x).asnumpy())
    assert len(net.classes) == 1000 and net.synset[0].startswith('n01440764')


def test_store_file_with_right_sha1_is_used(saved_resnest14, tmp_root, monkeypatch):
    reference, path = saved_resnest14
    digest = _sha1(path)
    monkeypatch.setitem(PUBLISHED, 'resnest14', Published(digest, 'gluoncv', 224, 75.75))
    stored = os.path.join(tmp_root, 'resnest14-%s.params' % digest[:8])
    os.rename(path, stored)
    net = gluon_resnest.get_model('resnest14', pretrained=True, root=tmp_root)
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(net(x).asnumpy(), reference(x).asnumpy())


def test_store_file_with_wrong_sha1_is_an_error_naming_it(saved_resnest14, tmp_root):
    _, path = saved_resnest14
    stored = os.path.join(tmp_root, 'resnest14-7e0b0cae.params')
    os.rename(path, stored)
    with pytest.raises(ValueError, match='resnest14-7e0b0cae.params has sha1 [0-9a-f]{40}, expected 7e0b0cae'):
        gluon_resnest.get_model('resnest14', pretrained=True, root=tmp_root)
    assert os.path.exists(stored)  # the user's file is never overwritten


def test_other_class_count_keeps_backbone_and_fresh_classifier(saved_resnest14):
    reference, path = saved_resnest14
    net = gluon_resnest.get_model('resnest14', pretrained=path, classes=5)
    np.testing.assert_array_equal(net.layer4[0].conv3.weight.data().asnumpy(),
                                  reference.layer4[0].conv3.weight.data().asnumpy())
    assert net.fc.weight.shape == (5, 2048)
    assert net(mx.nd.ones((1, 3, 64, 64))).shape == (1, 5)


def test_params_of_another_model_name_the_mismatch(saved_resnest14):
    _, path = saved_resnest14
    with pytest.raises(ValueError, match=r'does not fit this network: missing layer1\.1\.'):
        gluon_resnest.get_model('resnest26', pretrained=path)


def test_params_with_extra_keys_name_them(tmp_path):
    net = gluon_resnest.get_model('resnest26')
    net.initialize()
    path = str(tmp_path / 'r26.params')
    net.save_parameters(path)
    with pytest.raises(ValueError, match=r'missing none; unexpected layer1\.1\.'):
        gluon_resnest.get_model('resnest14', pretrained=path)


def test_shape_mismatch_is_named(tmp_path):
    net = gluon_resnest.get_model('resnest14', radix=4)
    net.initialize()
    path = str(tmp_path / 'r14x4.params')
    net.save_parameters(path)
    with pytest.raises(ValueError, match='has shape'):
        gluon_resnest.get_model('resnest14', pretrained=path)


@pytest.mark.parametrize('content,message', [(None, 'not found'), (b'garbage', 'not an MXNet .params')])
def test_missing_or_corrupt_file(tmp_path, content, message):
    path = tmp_path / 'weights.params'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        gluon_resnest.get_model('resnest14', pretrained=str(path))


def test_no_weights_for_unknown_name(tmp_root):
    with pytest.raises(ValueError, match='no published weights'):
        pretrained.get_model_file('resnet50', root=tmp_root)


def test_legacy_files_keyed_by_symbol_name_load(saved_resnest14, tmp_path):
    reference, _ = saved_resnest14
    path = str(tmp_path / 'legacy.params')
    reference.collect_params().save(path)  # keys like resnest_conv0_weight
    assert 'resnest_conv0_weight' in mx.nd.load(path)
    net = gluon_resnest.get_model('resnest14', pretrained=path)
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(net(x).asnumpy(), reference(x).asnumpy())


def test_checkpoint_with_own_class_count_loads_its_classifier(tmp_path):
    net = gluon_resnest.get_model('resnest14', classes=10)
    net.initialize(mx.init.Xavier())
    path = str(tmp_path / 'finetuned.params')
    net.save_parameters(path)
    loaded = gluon_resnest.get_model('resnest14', classes=10, pretrained=path)
    np.testing.assert_array_equal(loaded.fc.weight.data().asnumpy(), net.fc.weight.data().asnumpy())
    with pytest.raises(ValueError, match=r'fc\.weight has shape \(10, 2048\) in the file'):
        gluon_resnest.get_model('resnest14', classes=5, pretrained=path)
