"""The detector registry: each detector's capabilities, and what the command builds from them (a 2-fc box
head on every stage of both cascades, and Cascade Mask R-CNN training a step with them)."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_resnest.config import ConfigError
from gluon_resnest.detection import CascadeMaskRCNN, CascadeRCNN, STAGE_IOU_THRESHS, registry, shapes, train
from gluon_resnest.detection.config import DetectionConfig
from gluon_resnest.detection.loss import DetectionLoss
from gluon_resnest.detection.task import build_detector

from conftest import first_shard, mask_training_batch

SMALL_FLAGS = ['--network', 'resnest14', '--dataset', 'shapes', '--no-pretrained-base', '--short', '128',
               '--max-size', '160', '--num-sample', '32', '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20',
               '--batch-size', '2', '--norm-layer', 'bn', '--box-head', '2fc', '--box-head-units', '32']


def test_capabilities_are_the_networks_the_builders_make():
    assert registry.detector_names() == ('cascade_rcnn', 'faster_rcnn', 'cascade_mask_rcnn', 'mask_rcnn')
    assert registry.detector_names(masks=True) == ('cascade_mask_rcnn', 'mask_rcnn')
    for name in registry.detector_names():
        spec = registry.detector(name)
        net = train.build_detector(train.parse_args(SMALL_FLAGS[:-4] + ['--detector', name]), shapes.SHAPES, 1)
        assert isinstance(net, CascadeRCNN) == spec.cascade, name
        assert (net.num_cascade_stages if spec.cascade else 1) == spec.stages == (
            len(STAGE_IOU_THRESHS) if name.startswith('cascade') else 1)
        assert hasattr(net, 'mask') == spec.masks, name  # the network predicts masks exactly when registered so
    with pytest.raises(KeyError, match="unknown detector 'yolo'; valid: cascade_rcnn, faster_rcnn"):
        registry.detector('yolo')


def test_the_config_checks_detectors_against_the_registry():
    with pytest.raises(ConfigError, match='detector must be one of cascade_rcnn, faster_rcnn, cascade_mask_rcnn, '
                                          "mask_rcnn, got 'yolo'"):
        train.DetectionConfig(detector='yolo')
    with pytest.raises(ConfigError, match='cascade_mask_rcnn trains masks'):
        train.DetectionConfig(detector='cascade_mask_rcnn', dataset='voc')


def _heads(net):
    return [net.box_features] + [head.box_features for head in getattr(net, 'stage_heads', [])]


@pytest.mark.parametrize('name', ['cascade_rcnn', 'cascade_mask_rcnn'])
def test_two_fc_heads_on_every_stage_of_both_cascades(name):
    net = train.build_detector(train.parse_args(SMALL_FLAGS + ['--detector', name]), shapes.SHAPES, 1)
    heads = _heads(net)
    assert len(heads) == registry.detector(name).stages == 3
    assert len({id(head) for head in heads}) == 3  # each stage its own weights
    for head in heads:
        assert [type(block).__name__ for block in head] == ['Dense', 'Activation'] * 2
        assert [block._units for block in head[::2]] == [32, 32]  # pylint: disable=protected-access
    names = list(net.collect_params().keys())  # the heads' parameters are all distinct
    assert len(names) == len(set(names))


@pytest.mark.slow
def test_cascade_mask_rcnn_with_two_fc_heads_trains_a_step():
    pytest.importorskip('pycocotools', reason='GluonCV needs pycocotools for mask targets')
    args = train.parse_args(SMALL_FLAGS + ['--detector', 'cascade_mask_rcnn'])
    net = train.build_detector(args, ['first', 'second'], 1)
    assert isinstance(net, CascadeMaskRCNN)
    net.initialize()
    trainer, batch = mask_training_batch(net)
    batch = first_shard(batch)
    with autograd.record():
        losses = DetectionLoss(masks=True)(net, *batch)
    losses['total'].backward()
    trainer.step(2)
    assert np.isfinite(losses['total'].asscalar()) and losses['rcnn_mask'].asscalar() > 0
    for head in _heads(net):  # every stage's own head takes part in the loss
        assert np.abs(head[0].weight.grad().asnumpy()).max() > 0


def test_a_detector_built_later_in_the_process_has_the_same_parameter_names():
    """gluon.Trainer orders parameters by name and a checkpoint's trainer states follow that order: names
    taken from MXNet's counters would sort otherwise once they cross a power of ten (dense10 < dense9)."""
    config = DetectionConfig(network='resnest14', dataset='shapes', norm_layer='bn', no_pretrained_base=True,
                             short=(96,), max_size=96, box_head='2fc', box_head_units=32, batch_size=2)
    first = build_detector(config, ['a', 'b'], 1)
    for _ in range(97):  # what other networks built in this process before would take
        mx.gluon.nn.Dense(1)
    later = build_detector(config, ['a', 'b'], 1)
    assert sorted(first.collect_train_params().keys()) == sorted(later.collect_train_params().keys())
    assert 'dense0_weight' in first.collect_train_params().keys()
