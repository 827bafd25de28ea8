"""GluonCV model-zoo registration and the ``python -m gluon_resnest.gluoncv`` runner."""
import os
import subprocess
import sys
import textwrap

import gluoncv
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import deeplabv3 as gcv_deeplab
from gluoncv.model_zoo import get_model as gcv_get_model
from gluoncv.model_zoo import model_zoo as gcv_zoo
from gluoncv.model_zoo import resnest as gcv_resnest
from gluoncv.model_zoo import segbase
from gluoncv.model_zoo.rcnn import rcnn as gcv_rcnn
from gluoncv.model_zoo.rcnn.faster_rcnn import doublehead_rcnn as gcv_doublehead_module
from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn as gcv_faster_module
from gluoncv.model_zoo.rcnn.faster_rcnn import predefined_models as gcv_faster
from gluoncv.model_zoo.rcnn.mask_rcnn import mask_rcnn as gcv_mask_module

import gluon_resnest
from gluon_resnest import detection, gluoncv as plugin
from gluon_resnest.detection import CascadeMaskRCNN, CascadeRCNN
from gluon_resnest.gluoncv.__main__ import main as run_main, parse_args as run_parse_args, run_script
from gluon_resnest.model_zoo import VARIANTS
from gluon_resnest.resnest import Bottleneck, ResNeSt

NAMES = plugin.registered_names()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_gluoncv_resnest(monkeypatch):
    """Make any construction of GluonCV's own ResNeSt fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("GluonCV's own ResNeSt was built")
    monkeypatch.setattr(gcv_resnest, 'ResNeSt', refuse)


def _build(name):
    if name.endswith('_custom'):
        return gcv_get_model(name, classes=['cat', 'dog'], pretrained_base=False)
    if name.startswith(('faster_rcnn', 'mask_rcnn', 'cascade_', 'deeplab')):
        return gcv_get_model(name, pretrained_base=False)
    return gcv_get_model(name)


def test_import_registers_every_name():
    assert plugin.is_registered()
    assert len(NAMES) == 13 + 4 + 18 + 4 + 24 + 4
    assert set(gluon_resnest.list_models()) <= set(NAMES)
    for name in NAMES:
        assert gcv_zoo._models[name].func.__module__.startswith('gluon_resnest.')
    assert set(NAMES) <= set(gcv_zoo.get_model_list())


@pytest.mark.parametrize('name', NAMES)
def test_zoo_name_builds_our_network(name, no_gluoncv_resnest):
    net = _build(name)
    if name in VARIANTS:
        assert isinstance(net, ResNeSt) and net.model_name == name
    elif name.startswith('deeplab'):
        assert isinstance(net, gcv_deeplab.DeepLabV3) and net.nclass == 150
        assert isinstance(net.layer4[0], Bottleneck)
    else:
        expected = next(cls for prefix, cls in (
            ('cascade_mask', CascadeMaskRCNN), ('cascade', CascadeRCNN),
            ('mask', gluoncv.model_zoo.MaskRCNN), ('faster', gluoncv.model_zoo.FasterRCNN))
                        if name.startswith(prefix))
        assert type(net) is expected  # pylint: disable=unidiomatic-typecheck
        classes = {'coco': 80, 'voc': 20, 'custom': 2}[name.rsplit('_', 1)[1]]
        assert len(net.classes) == classes
        prefix = 'resnest_layers4_'
        assert any(key.startswith(prefix) for key in net.features.collect_params())


def test_fast_model_loads_published_file_through_gluoncv_zoo(tmp_root, tmp_path, monkeypatch):
    """``get_model(name, pretrained=True)`` resolves the published file by name and root and loads it."""
    reference = gluon_resnest.get_model('resnest50_fast_1s2x40d')
    reference.initialize(mx.init.Xavier())
    path = str(tmp_path / 'published.params')
    reference.save_parameters(path)
    asked = []
    monkeypatch.setattr(gluon_resnest.model_zoo, 'get_model_file',
                        lambda name, root=None: asked.append((name, root)) or path)
    monkeypatch.setattr(gluon_resnest.model_zoo, '_attach_imagenet_names', lambda net: None)
    net = gcv_get_model('resnest50_fast_1s2x40d', pretrained=True, root=tmp_root)
    assert asked == [('resnest50_fast_1s2x40d', tmp_root)]
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(net(x).asnumpy(), reference(x).asnumpy())


def test_gluoncv_hash_tag_means_the_published_file(monkeypatch):
    with pytest.raises(FileNotFoundError, match='deadbeef'):
        gcv_get_model('resnest26', pretrained='deadbeef')
    asked = []
    monkeypatch.setattr(gluon_resnest.model_zoo, 'load_weights', lambda *args, **kwargs: None)
    monkeypatch.setattr(gluon_resnest.model_zoo, '_attach_imagenet_names', lambda net: None)
    monkeypatch.setattr(gluon_resnest.model_zoo, 'get_model_file',
                        lambda name, root=None: asked.append(name) or 'published.params')
    gcv_get_model('resnest26', pretrained='36459074', input_size=256)
    assert asked == ['resnest26']


def test_gluoncv_resnest_checkpoint_loads_through_zoo(tmp_path):
    theirs = gcv_resnest.resnest14()
    theirs.initialize(mx.init.Xavier())
    path = str(tmp_path / 'resnest14.params')
    theirs.save_parameters(path)
    ours = gcv_get_model('resnest14', pretrained=path)
    x = mx.nd.random.uniform(shape=(2, 3, 96, 96))
    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), atol=1e-5)


def test_unregister_restores_gluoncv_entries():
    try:
        assert plugin.unregister() == NAMES
        assert not plugin.is_registered()
        assert gcv_zoo._models['resnest50'] is gcv_resnest.resnest50
        assert gcv_zoo._models['deeplab_resnest50_ade'] is gcv_deeplab.get_deeplab_resnest50_ade
        assert gcv_zoo._models['faster_rcnn_fpn_syncbn_resnest101_coco'] is \
            gcv_faster.faster_rcnn_fpn_syncbn_resnest101_coco
        for added in ('resnest50_fast_1s1x64d', 'faster_rcnn_fpn_syncbn_resnest50_voc',
                      'mask_rcnn_fpn_syncbn_resnest50_coco'):
            assert added not in gcv_zoo._models
        assert segbase.get_backbone is plugin.get_backbone.gluoncv_original
        for module in (gcv_faster_module, gcv_doublehead_module, gcv_mask_module):
            assert module.custom_rcnn_fpn is gcv_rcnn.custom_rcnn_fpn
        assert type(gcv_get_model('resnest14')) is gcv_resnest.ResNeSt  # pylint: disable=C0123
        assert plugin.unregister() == []
    finally:
        plugin.register()
    assert plugin.is_registered()
    assert isinstance(gcv_get_model('resnest14'), ResNeSt)
    for module in (gcv_faster_module, gcv_doublehead_module, gcv_mask_module):
        assert module.custom_rcnn_fpn is detection.custom_rcnn_fpn


def test_register_twice_is_harmless():
    assert plugin.register() == []
    assert gluon_resnest.register_gluoncv() == []
    try:
        plugin.unregister()
        # One unregister after repeated registration gives GluonCV's own entries back, not ours.
        assert gcv_zoo._models['resnest50'] is gcv_resnest.resnest50
        assert segbase.get_backbone is plugin.get_backbone.gluoncv_original
    finally:
        plugin.register()
    assert segbase.get_backbone is plugin.get_backbone


def test_registration_is_seen_through_earlier_imports():
    """Scripts do ``from gluoncv.model_zoo import get_model`` first; the dict is read at call time."""
    assert isinstance(gcv_get_model('ResNeSt26'), ResNeSt)


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        segbase.get_segmentation_model('deeplab', backbone='resnest51', pretrained_base=False)
    message = str(err.value)
    assert '\n' not in message and 'resnest51' in message
    assert 'resnest14' in message and 'resnest50_fast_1s4x24d' in message and 'resnet101' in message
    with pytest.raises(ValueError, match="unknown ResNeSt backbone 'resnet50_v1b'; valid names: resnest14, resnest26"):
        detection.faster_rcnn_fpn('resnet50_v1b', pretrained_base=False)
    with pytest.raises(ValueError, match="unknown ResNeSt backbone 'resnest51'; valid names"):
        plugin.deeplab_ade('resnest51')


def test_detection_bad_arguments():
    with pytest.raises(ValueError, match='classes'):
        detection.custom_faster_rcnn_fpn([], backbone='resnest14')
    with pytest.raises(ValueError, match="dataset 'kitti' has no built-in classes"):
        detection.faster_rcnn_fpn('resnest14', dataset='kitti', pretrained_base=False)


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


SCRIPT = """\
    import sys
    import gluoncv
    net = gluoncv.model_zoo.get_model('resnest50_fast_4s2x40d')
    print(type(net).__module__, type(net).__name__, __name__, sys.argv)
    if sys.argv[1] == 'fail':
        raise RuntimeError('script failed')
    sys.exit(int(sys.argv[1]))
    """


@pytest.mark.slow
def test_runner_runs_script_with_our_models_and_returns_its_status(tmp_path):
    script = _write(tmp_path / 'tiny.py', SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-m', 'gluon_resnest.gluoncv', script, '3', '--gpus', ''],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert "gluon_resnest.resnest ResNeSt __main__ ['%s', '3', '--gpus', '']" % script in done.stdout


def test_runner_in_process_restores_argv_and_propagates_exit(tmp_path):
    script = _write(tmp_path / 'tiny.py', SCRIPT)
    argv = list(sys.argv)
    assert run_main([script, '3']) == 3  # the script's sys.exit(3)
    assert sys.argv == argv
    with pytest.raises(SystemExit) as status:
        run_script(run_parse_args([script, '0']))
    assert status.value.code == 0
    assert sys.argv == argv
    with pytest.raises(RuntimeError, match='script failed'):
        run_script(run_parse_args([script, 'fail']))
    assert sys.argv == argv


def test_runner_ordinary_end_returns_zero(tmp_path, capsys):
    script = _write(tmp_path / 'ok.py', 'import sys\nprint("args", sys.argv[1:])\n')
    assert run_main([script, '--network', 'resnest50']) == 0
    assert "args ['--network', 'resnest50']" in capsys.readouterr().out


def test_runner_missing_script(tmp_path, capsys):
    assert run_main([str(tmp_path / 'missing.py')]) == 2
    assert capsys.readouterr().err == 'error: script not found: %s\n' % (tmp_path / 'missing.py')
