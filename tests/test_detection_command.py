"""The detection command (gluon_resnest/detection/command.py) end to end: training, checkpoints and evaluation,
one-line errors, and its CPU options (light box head, per-device BatchNorm, cosine schedule)."""
import json
import os
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluon_resnest import detection
from gluon_resnest.detection.config import DetectionConfig
from gluon_resnest.detection import CascadeRCNN, shapes, train
from gluon_resnest.engine.checkpoint import read_checkpoint

from conftest import DETECTION_SMALL, REPO, command_error

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import profile_detection  # noqa: E402  pylint: disable=wrong-import-position


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
    with open(prefix + '-0002.json') as f:
        record = json.load(f)
    with open(prefix + '_history.json') as f:
        history = json.load(f)
    # The classification losses of the box heads: one per cascade stage (rcnn_cls1..3), one for Faster R-CNN.
    heads = ['rcnn_cls%d' % k for k in (1, 2, 3)] if detector == 'cascade_rcnn' else ['rcnn_cls']
    assert sorted(name for name in history[0] if name.startswith('rcnn_cls')) == heads
    assert [r['epoch'] for r in history] == [0, 1] and all(r[name] > 0 for r in history for name in heads)
    # Cosine: the last step of the last epoch (2 batches each) runs at (nearly) zero learning rate.
    assert (record['iters_per_epoch'], record['num_update']) == (2, 4) and record['learning_rate'] < 0.002


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


def _cli(root, prefix, *extra):
    return ['--network', 'resnest14', '--dataset', 'shapes', '--dataset-root', root,
            '--norm-layer', 'syncbn', '--no-pretrained-base', '--short', '96', '--max-size', '96',
            '--num-sample', '16', '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20',
            '--epochs', '1', '--lr-warmup', '1', '--no-progress', '--save-prefix', prefix] + list(extra)


@pytest.mark.slow
def test_command_trains_checkpoints_and_evaluates(shapes_root, tmp_path, capsys):
    prefix = str(tmp_path / 'run' / 'cascade')
    assert train.main(_cli(shapes_root, prefix)) == 0
    record = json.load(open(prefix + '-0001.json'))
    out = capsys.readouterr().out.splitlines()
    report = [k for k, line in enumerate(out) if line.startswith('held-out ')][-1]
    assert out[report].endswith('after 1 epochs; checkpoint %s-0001.json' % prefix)
    assert [line.split()[0] for line in out[report + 1:report + 5]] == ['class'] + list(shapes.SHAPES)
    assert set(record['val']) == {'mAP@0.5', 'mAP@0.7', 'mAP@0.5:0.95'}
    # The printed report in percent (the record in fractions), as every command prints accuracies.
    assert 'mAP@0.5=%.2f%%' % (100 * record['val']['mAP@0.5']) in out[report]
    assert all(0 <= value <= 1 for value in record['val'].values())
    assert record['epoch'] == 1 and record['classes'] == list(shapes.SHAPES)
    assert record['val_unit'] == 'fraction (0-1)'
    assert read_checkpoint(prefix + '-0001.json')['params'] == prefix + '-0001.params'  # SHA-1 checked
    assert not [name for name in os.listdir(str(tmp_path / 'run')) if '.tmp' in name]
    assert 'mAP@0.5=' in open(prefix + '_train.log').read()
    # From Python: the latest checkpoint of the prefix, and a .params file.
    again = train.evaluate(train.parse_args(_cli(shapes_root, prefix, '--eval-only', '--resume')))
    assert again.mean_ap == pytest.approx(record['val']) and again.epochs == 1
    assert again.checkpoint == prefix + '-0001.json'
    other = train.evaluate(DetectionConfig.from_file(
        str(_recipe(tmp_path)), dataset_root=shapes_root, resume_params=prefix + '-0001.params',
        save_prefix=str(tmp_path / 'elsewhere' / 'x')))
    assert other.mean_ap == pytest.approx(record['val'])


def _recipe(tmp_path):
    """The flags of :func:`_cli` as a recipe file."""
    path = tmp_path / 'small.yaml'
    path.write_text('network: resnest14\ndataset: shapes\nnorm_layer: syncbn\nno_pretrained_base: true\n'
                    'short: 96\nmax_size: 96\nnum_sample: 16\nrpn_train_post_nms: 64\nrpn_test_post_nms: 20\n'
                    'epochs: 1\nlr_warmup: 1\nno_progress: true\n')
    return path


def test_command_bad_input_gives_one_line_errors(shapes_root, tmp_path, capsys):
    prefix = str(tmp_path / 'x')
    status, line = command_error(train.main, _cli(shapes_root, prefix) + ['--network', 'resnest51'], capsys)
    assert status == 2 and 'unknown network' in line
    status, line = command_error(train.main, _cli(str(tmp_path / 'nowhere'), prefix), capsys)
    assert status == 2 and line.startswith('error: ') and 'does not exist' in line  # a path named: usage
    empty = tmp_path / 'empty'
    shapes.write_shapes(str(empty), num_train=2, num_val=1, size=64)
    (empty / 'VOC2007' / 'Annotations' / '000001.xml').write_text(
        '<annotation><size><width>64</width><height>64</height></size></annotation>')
    status, line = command_error(train.main, _cli(str(empty), prefix), capsys)
    assert status == 1 and 'image 000001 has no boxes' in line


def test_command_refuses_a_checkpoint_with_another_class_count(shapes_root, tmp_path, capsys):
    path = str(tmp_path / 'five.params')
    five = detection.custom_cascade_rcnn_fpn(list('abcde'), backbone='resnest14', pretrained_base=False,
                                             **DETECTION_SMALL)
    five.initialize()
    five(mx.nd.zeros((1, 3, 96, 96)))  # completes the deferred initialisation
    five.save_parameters(path)
    status, line = command_error(train.main, _cli(shapes_root, str(tmp_path / 'y'), '--eval-only',
                                                  '--resume-params', path), capsys)
    assert status == 1 and line.endswith('has 5 classes, the network has 3')
