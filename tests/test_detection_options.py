"""The detection command's CPU options (light box head, per-device BatchNorm, cosine schedule) and
the FPN region pooling they rely on."""
import json
import os
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluon_resnest.detection import CascadeRCNN, shapes, train
from gluon_resnest.detection.pooling import cpu_region_limit, pyramid_roi_feats

from conftest import REPO, command_error

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import profile_detection  # noqa: E402  pylint: disable=wrong-import-position


class _Levels(object):
    """The two attributes FPN region pooling reads off an R-CNN: pool P2..P5 (P6 is skipped)."""
    _min_stage, _max_stage = 2, 6


def _pyramid_case(num_rois=300):
    """Features of 2 images on P2..P5 and regions spread over the four levels and both images."""
    rng = np.random.RandomState(3)
    features = [mx.nd.array(rng.uniform(size=(2, 8, 40 >> k, 48 >> k))) for k in range(4)]
    levels = rng.randint(2, 6, size=num_rois)
    side = 224.0 * 2.0 ** (levels - 4) * rng.uniform(1.1, 1.8, size=num_rois)
    corner = rng.uniform(0, 60, size=(num_rois, 2))
    rois = np.hstack([rng.randint(0, 2, size=(num_rois, 1)), corner, corner + side[:, None] - 1])
    return features, mx.nd.array(rois), levels


def test_fpn_pooling_pools_and_backpropagates_each_region_on_its_own_level():
    """Forward and gradient equal ROIAlign run level by level on that level's regions only.

    More regions than MXNet's CPU ROIAlign zero-writes fit below the first region's output, with
    the memory pool full of 1e30: a wrong element or gradient would show.
    """
    features, rois, levels = _pyramid_case()
    head_grad = mx.nd.array(np.random.RandomState(4).normal(size=(len(levels), 8, 7, 7)))
    want_out = np.zeros(head_grad.shape, np.float32)
    want_grads = []
    for feature, stride, level in zip(features, (4, 8, 16, 32), (2, 3, 4, 5)):
        index = mx.nd.array(np.flatnonzero(levels == level))
        feature = feature.copy()
        feature.attach_grad()
        with autograd.record():
            out = mx.nd.contrib.ROIAlign(feature, rois.take(index), (7, 7), 1. / stride,
                                         sample_ratio=2)
        out.backward(head_grad.take(index))
        want_out[levels == level] = out.asnumpy()
        want_grads.append(feature.grad.asnumpy())
    for feature in features:
        feature.attach_grad()
    for _ in range(2):
        for _ in range(4):
            junk = mx.nd.full(head_grad.shape, 1e30)
            junk.wait_to_read()
            del junk
        with autograd.record():
            got = pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
        got.backward(head_grad)
        np.testing.assert_allclose(got.asnumpy(), want_out, rtol=1e-5, atol=1e-6)
        for feature, want in zip(features, want_grads):
            np.testing.assert_allclose(feature.grad.asnumpy(), want, rtol=1e-4, atol=1e-5)


def _level_by_level(features, rois, levels):
    out = np.zeros((len(levels), features[0].shape[1], 7, 7), np.float32)
    for feature, stride, level in zip(features, (4, 8, 16, 32), (2, 3, 4, 5)):
        index = mx.nd.array(np.flatnonzero(levels == level))
        out[levels == level] = mx.nd.contrib.ROIAlign(feature, rois.take(index), (7, 7), 1. / stride,
                                                      sample_ratio=2).asnumpy()
    return out


def test_cpu_region_limit_is_where_fpn_pooling_stops_being_exact():
    """8 channels at 7x7 hold 392 output elements per region: 391 regions pool exactly; past the
    limit the graph form (which cannot check the count) loses elements to ROIAlign's zero-writes,
    and the eager form refuses with a one-line error."""
    limit = cpu_region_limit(8, (7, 7))
    assert limit == 391
    features, rois, levels = _pyramid_case(limit)
    got = pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
    np.testing.assert_allclose(got.asnumpy(), _level_by_level(features, rois, levels),
                               rtol=1e-5, atol=1e-6)
    features, rois, levels = _pyramid_case(3 * limit)
    with pytest.raises(ValueError, match=r'^1173 regions in one FPN pooling call; on CPU at most 391 '
                                         r'with 8 channels at 7x7$'):
        pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
    names = ['p%d' % k for k in range(4)]
    graph = pyramid_roi_feats(_Levels(), mx.sym, [mx.sym.var(n) for n in names], mx.sym.var('rois'),
                              (7, 7), (4, 8, 16, 32))
    inputs = dict(zip(names, features), rois=rois)
    got = graph.eval(ctx=mx.cpu(), **inputs)[0].asnumpy()
    want = _level_by_level(features, rois, levels)
    lost = (got == 0) & (want > 0)  # positive features: zeros only where a region leaves the map
    assert lost.sum() > 0
    np.testing.assert_allclose(got[~lost], want[~lost], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    shapes.write_shapes(root, num_train=4, num_val=2, size=96)
    return root


def _args(root, *extra):
    return train.parse_args(
        ['--network', 'resnest14', '--dataset', 'shapes', '--dataset-root', root,
         '--no-pretrained-base', '--short', '96', '--max-size', '96', '--num-sample', '16',
         '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20', '--batch-size', '2'] + list(extra))


def _ops(net):
    graph = json.loads(mx.sym.Group(net.features(mx.sym.var('data'))).tojson())
    return [node['op'] for node in graph['nodes']]


@pytest.mark.parametrize('detector', ['cascade_rcnn', 'faster_rcnn'])
def test_light_box_head_and_batchnorm_options_build_the_asked_network(shapes_root, detector):
    args = _args(shapes_root, '--detector', detector, '--norm-layer', 'bn', '--box-head', '2fc',
                 '--box-head-units', '48')
    net = train.build_detector(args, shapes.SHAPES, 1)
    heads = [net.box_features] + ([h.box_features for h in net.stage_heads]
                                  if isinstance(net, CascadeRCNN) else [])
    assert len(heads) == (3 if detector == 'cascade_rcnn' else 1)
    assert len({id(head) for head in heads}) == len(heads)  # every stage its own weights
    for head in heads:
        assert [type(block).__name__ for block in head] == ['Dense', 'Activation'] * 2
        assert [block._units for block in head if isinstance(block, gluon.nn.Dense)] == [48, 48]
    ops = _ops(net)
    assert 'BatchNorm' in ops and '_contrib_SyncBatchNorm' not in ops
    # From scratch every layer trains, the first stage and the normalisations too.
    trained = set(net.collect_train_params().keys())
    assert {'resnest_layers1_conv0_weight', 'resnest_layers1_batchnorm0_gamma'} <= trained


def test_default_box_head_is_the_recipes(shapes_root):
    args = _args(shapes_root, '--norm-layer', 'syncbn')
    net = train.build_detector(args, shapes.SHAPES, 1)
    for head in [net.box_features] + [h.box_features for h in net.stage_heads]:
        kinds = [type(block).__name__ for block in head]
        assert kinds.count('Conv2D') == 4 and kinds.count('SyncBatchNorm') == 4
    assert '_contrib_SyncBatchNorm' in _ops(net)


def test_batchnorm_option_normalises_with_the_batch_statistics(shapes_root):
    net = train.build_detector(_args(shapes_root, '--norm-layer', 'bn'), shapes.SHAPES, 1)
    net.initialize()
    x = mx.nd.random.uniform(shape=(2, 3, 96, 96))
    stem = net.features(x)[0]  # P2 through BatchNorms initialised to mean 0, variance 1
    with autograd.train_mode():
        trained = net.features(x)[0]
    assert not np.allclose(stem.asnumpy(), trained.asnumpy())
    moving = [p for p in net.features.collect_params().values()
              if p.name.endswith(('running_mean', 'moving_mean'))]
    assert moving and any(np.abs(p.data().asnumpy()).max() > 0 for p in moving)


@pytest.mark.slow
@pytest.mark.parametrize('detector', ['cascade_rcnn', 'faster_rcnn'])
def test_command_trains_with_the_cpu_options(shapes_root, tmp_path, detector):
    prefix = str(tmp_path / detector)
    argv = ['--detector', detector, '--network', 'resnest14', '--dataset', 'shapes',
            '--dataset-root', shapes_root, '--no-pretrained-base', '--short', '96', '--max-size',
            '96', '--num-sample', '16', '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20',
            '--norm-layer', 'bn', '--box-head', '2fc', '--box-head-units', '32', '--lr-mode',
            'cosine', '--lr-warmup', '1', '--epochs', '2', '--no-progress', '--save-prefix', prefix,
            '--log-interval', '1']
    result = train.fit(train.parse_args(argv))
    assert set(result.mean_ap) == {'mAP@0.5', 'mAP@0.7', 'mAP@0.5:0.95'} and result.epochs == 2
    log = open(prefix + '_train.log').read()
    assert 'epoch 2 batch 2/2:' in log and 'rcnn_cls' in log
    # Cosine: the last step of the last epoch runs at (nearly) zero learning rate.
    last = [line for line in log.splitlines() if 'epoch 2 batch 2/2:' in line][0]
    assert float(last.split(' lr ')[1].split()[0]) < 0.002


@pytest.mark.parametrize('flags, message', [
    (['--box-head', '3fc'], "--box-head must be one of recipe, 2fc, got '3fc'"),
    (['--box-head-units', '0'], '--box-head-units must be positive, got 0'),
    (['--norm-layer', 'gn'], "--norm-layer must be one of syncbn, bn or left out, got 'gn'"),
    (['--lr-mode', 'poly'], "--lr-mode must be one of step, cosine, got 'poly'"),
    (['--no-pretrained-base', '--fpn-channels', '1', '--num-sample', '32', '--batch-size', '2'],
     '--num-sample 32 x 2 images per device = 64 regions per pooling call: on CPU at most 48 with '
     '1 FPN channels; lower --num-sample or --batch-size, or raise --fpn-channels'),
    (['--no-pretrained-base', '--fpn-channels', '2', '--num-sample', '16', '--rpn-test-post-nms', '100'],
     '--rpn-test-post-nms 100 regions per pooling call: on CPU at most 97 with 2 FPN channels'),
    (['--detector', 'mask_rcnn', '--dataset', 'voc'],
     '--detector mask_rcnn trains masks: it needs instance annotations, --dataset coco or shapes'),
    (['--short', '96,64'],
     "--short takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more sides >= 1, got (96, 64)"),
    (['--short', '64,0,96'],
     "--short takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more sides >= 1, got (64, 0, 96)"),
])
def test_bad_option_values_give_one_line_errors(shapes_root, tmp_path, capsys, flags, message):
    argv = ['--network', 'resnest14', '--dataset', 'shapes', '--dataset-root', shapes_root,
            '--save-prefix', str(tmp_path / 'run')] + flags
    status, line = command_error(train.main, argv, capsys)
    if message.startswith('--num-sample') or message.startswith('--rpn-test-post-nms'):
        assert (status, line) == (1, 'error: ' + message)  # found when the network is built: a failed run
    else:
        assert (status, line) == (2, 'error: ' + message)  # the config's check: bad usage


@pytest.mark.slow
def test_profile_script_times_the_commands_network(shapes_root, capsys):
    """benchmarks/profile_detection.py builds what the command builds and prints its phases."""
    profile_detection.main(['--steps', '1', '--warmup', '0', '--top', '40', '--',
                            '--network', 'resnest14', '--dataset', 'shapes', '--dataset-root',
                            shapes_root, '--no-pretrained-base', '--short', '96', '--max-size', '96',
                            '--num-sample', '16', '--rpn-train-post-nms', '64', '--norm-layer', 'bn',
                            '--box-head', '2fc', '--box-head-units', '32'])
    out = capsys.readouterr().out
    assert 'cascade_rcnn step, batch 2:' in out
    for phase in ('data', 'forward', 'backward', 'update'):
        assert '  %s ' % phase in out
    assert '_backward_ROIAlign' in out
