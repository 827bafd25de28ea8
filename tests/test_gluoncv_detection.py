"""GluonCV's FPN Faster-RCNN and Mask-RCNN on our backbones, trained and run the way GluonCV does it."""
import json

import mxnet as mx
import numpy as np
import pytest
from gluoncv.data import VOCDetection
from gluoncv.data.batchify import FasterRCNNTrainBatchify
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform, FasterRCNNDefaultValTransform
from gluoncv.model_zoo import get_model as gcv_get_model
from gluoncv.model_zoo import resnest as gcv_resnest
from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn as gcv_faster_module
from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask as FasterTask
from gluoncv.model_zoo.rcnn.mask_rcnn.data_parallel import ForwardBackwardTask as MaskTask
from gluoncv.nn.dropblock import DropBlock as GluonCVDropBlock
from mxnet import gluon
from mxnet.gluon.contrib.nn import SyncBatchNorm

from gluon_resnest import detection, gluoncv as plugin

# The two-image VOC set (fixtures voc_root, frozen_base) and GluonCV's training preparation.
from conftest import DETECTION_SMALL as SMALL  # noqa: E402
from conftest import first_shard as _first_shard, mask_sample as _mask_sample  # noqa: E402
from conftest import mask_training_batch, prepare_for_training as _prepare_for_training  # noqa: E402




def _losses():
    return (gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
            gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
            gluon.loss.HuberLoss())


def _check_step(net, losses):
    """Finite losses of a sane size (no activation blow-up) and finite gradients everywhere."""
    values = np.array([loss.asscalar() for loss in losses])
    assert np.isfinite(values).all() and (values > 0).all() and (values < 100).all(), values
    trained = [param for param in net.collect_train_params().values() if param.grad_req != 'null']
    assert all(np.isfinite(param.grad().asnumpy()).all() for param in trained)
    weight = net.collect_params()['resnest_layers4_conv0_weight']
    assert weight.grad_req == 'write' and weight.grad().abs().sum().asscalar() > 0


@pytest.mark.slow
@pytest.mark.parametrize('syncbn', [True, pytest.param(False, marks=pytest.mark.smoke)],
                         ids=['syncbn', 'frozen_bn'])
def test_faster_rcnn_trains_and_detects_on_voc_samples(voc_root, frozen_base, syncbn):
    dataset = VOCDetection(root=voc_root, splits=[(2007, 'train')])
    assert dataset[1][1].shape == (2, 6)
    net = detection.faster_rcnn_fpn('resnest14', dataset='voc', syncbn=syncbn,
                                    pretrained_base=False if syncbn else frozen_base, **SMALL)
    trainer = _prepare_for_training(net)
    loader = gluon.data.DataLoader(
        dataset.transform(FasterRCNNDefaultTrainTransform(net.short, net.max_size, net,
                                                          ashape=net.ashape, multi_stage=True)),
        batch_size=2, batchify_fn=FasterRCNNTrainBatchify(net, 1))
    weight = net.collect_params()['resnest_layers4_conv0_weight']
    before = weight.data().copy()
    task = FasterTask(net, trainer, *_losses(), mix_ratio=1.0, amp_enabled=False)
    _check_step(net, task.forward_backward(_first_shard(next(iter(loader))))[:4])
    trainer.step(2)
    assert not np.array_equal(weight.data().asnumpy(), before.asnumpy())

    net.hybridize()  # inference takes other inputs: GluonCV's validate() re-hybridizes too
    x, _, _ = FasterRCNNDefaultValTransform(128, 160)(*dataset[0])
    ids, scores, boxes = net(x.expand_dims(0))
    detections = SMALL['rpn_test_post_nms'] * 20
    assert ids.shape == (1, detections, 1) and scores.shape == (1, detections, 1)
    assert boxes.shape == (1, detections, 4)
    assert np.isfinite(boxes.asnumpy()).all()


def _flood_memory_pool(shape, value=1e30, times=4):
    """Leave freed buffers of ``shape`` holding ``value`` in MXNet's memory pool."""
    for _ in range(times):
        junk = mx.nd.full(shape, value)
        junk.wait_to_read()
        del junk


class _PyramidLevels(object):
    """The two attributes FPN region pooling reads off an R-CNN: pool P2..P5 (P6 is skipped)."""
    _min_stage, _max_stage = 2, 6


def _pyramid_inputs():
    rng = np.random.RandomState(0)
    features = [mx.nd.array(rng.uniform(size=(1, 16, 32 >> k, 40 >> k))) for k in range(4)]
    levels = rng.randint(2, 6, size=256)
    # Side lengths well inside each level's band: GluonCV maps sqrt(area) of 224 * 2**(level - 4).
    side = 224.0 * 2.0 ** (levels - 4) * rng.uniform(1.1, 1.8, size=256)
    corner = rng.uniform(0, 100, size=(256, 2))
    rois = np.hstack([np.zeros((256, 1)), corner, corner + side[:, None] - 1])
    return features, mx.nd.array(rois), levels


def test_fpn_roi_pooling_never_reads_unwritten_memory():
    """MXNet's CPU ROIAlign skips regions marked -1, which GluonCV's FPN pooling relies on."""
    features, rois, levels = _pyramid_inputs()
    assert set(levels) == {2, 3, 4, 5}
    # Every region pooled on its own level only; all regions are valid, so ROIAlign writes them all.
    expected = sum(mx.nd.contrib.ROIAlign(feature, rois, (7, 7), 1. / stride, sample_ratio=2)
                   .asnumpy() * (levels == level)[:, None, None, None]
                   for feature, stride, level in zip(features, (4, 8, 16, 32), (2, 3, 4, 5)))
    for _ in range(3):
        _flood_memory_pool((256, 16, 7, 7))
        got = detection.pyramid_roi_feats(_PyramidLevels(), mx.nd, features, rois, (7, 7),
                                          (4, 8, 16, 32))
        np.testing.assert_allclose(got.asnumpy(), expected, rtol=1e-6, atol=1e-6)


def test_our_detectors_use_the_safe_roi_pooling():
    net = detection.faster_rcnn_fpn('resnest14', pretrained_base=False)
    assert net._pyramid_roi_feats.__func__ is detection.pyramid_roi_feats  # pylint: disable=W0212
    mask = detection.mask_rcnn_fpn('resnest14', pretrained_base=False)
    assert mask._pyramid_roi_feats.__func__ is detection.pyramid_roi_feats  # pylint: disable=W0212


def _heads_on_pooled_regions(net, x, boxes):
    """Regions of image ``x`` pooled as the network's inference pools its detections, with what the
    box and mask heads make of them."""
    # pylint: disable=protected-access
    rois = mx.nd.concat(mx.nd.zeros((len(boxes), 1)), mx.nd.array(boxes), dim=-1)
    pooled = net._pyramid_roi_feats(mx.nd, net.features(x), rois, net._roi_size, net._strides,
                                    roi_mode=net._roi_mode)
    return pooled, net.box_features(pooled), net.mask(pooled)


def _first_dense(block):
    return next(child for child in _descendants(block) if isinstance(child, gluon.nn.Dense))


def test_mask_rcnn_pools_and_predicts_masks_as_gluoncvs_fpn_mask_rcnn():
    """GluonCV's own FPN Mask R-CNN with the same 4-conv mask head pools regions at 14x14, average-pools
    them to 7x7 for the box head and predicts 28x28 masks; ours does the same."""
    # pylint: disable=protected-access
    theirs = gcv_get_model('mask_rcnn_fpn_resnet50_v1b_coco', pretrained_base=False)
    ours = detection.mask_rcnn_fpn('resnest14', pretrained_base=False, rpn_test_pre_nms=60,
                                   rpn_test_post_nms=12)
    x = mx.nd.random.uniform(-1, 1, shape=(1, 3, 96, 128))  # non-square
    boxes = [[4, 8, 40, 60], [10, 6, 125, 90], [0, 0, 18, 14], [60, 20, 100, 95]]
    shapes = {}
    for name, net in (('theirs', theirs), ('ours', ours)):
        net.initialize()
        detection.use_safe_roi_pooling(net)
        pooled, box_feat, masks = _heads_on_pooled_regions(net, x, boxes)
        shapes[name] = (net._roi_size, net._target_roi_size, net.mask_target._mask_size,
                        pooled.shape, box_feat.shape, _first_dense(net.box_features).weight.shape,
                        masks.shape)
    assert shapes['theirs'] == ((14, 14), (28, 28), (28, 28), (4, 256, 14, 14), (4, 1024),
                                (1024, 256 * 7 * 7), (1, 4, 80, 28, 28))
    assert shapes['ours'] == shapes['theirs']
    # The whole inference: one 28x28 mask per kept detection.
    ids, scores, bboxes, masks = ours(x)
    assert ids.shape == scores.shape == (1, 12, 1) and bboxes.shape == (1, 12, 4)
    assert masks.shape == (1, 12, 28, 28)
    assert np.isfinite(masks.asnumpy()).all()


@pytest.mark.slow
def test_mask_rcnn_trains_and_segments_instances():
    pytest.importorskip('pycocotools', reason='GluonCV needs pycocotools for mask targets')
    net = detection.custom_mask_rcnn_fpn(['first', 'second'], backbone='resnest14',
                                         pretrained_base=False, **SMALL)
    trainer, batch = mask_training_batch(net)
    task = MaskTask(net, trainer, *_losses(), gluon.loss.SigmoidBinaryCrossEntropyLoss(),
                    amp_enabled=False)
    _check_step(net, task.forward_backward(_first_shard(batch))[:5])
    trainer.step(2)

    net.hybridize()
    img = mx.nd.image.normalize(mx.nd.image.to_tensor(_mask_sample(0)[0]),
                                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ids, scores, boxes, masks = net(img.expand_dims(0))
    kept = SMALL['rpn_test_post_nms']  # rcnn_max_dets is capped by the proposals kept
    assert ids.shape == (1, kept, 1) and scores.shape == (1, kept, 1)
    assert boxes.shape == (1, kept, 4)
    assert masks.shape == (1, kept, 28, 28)
    assert np.isfinite(masks.asnumpy()).all()


@pytest.mark.parametrize('backbone, taps', [
    ('resnest50', ['layers1_relu11_fwd', 'layers2_relu15_fwd', 'layers3_relu23_fwd',
                   'layers4_relu11_fwd']),
    ('resnest101', ['layers1_relu11_fwd', 'layers2_relu15_fwd', 'layers3_relu91_fwd',
                    'layers4_relu11_fwd']),
    ('resnest14', ['layers1_relu3_fwd', 'layers2_relu3_fwd', 'layers3_relu3_fwd',
                   'layers4_relu3_fwd']),
])
def test_fpn_taps_are_computed_from_the_network(backbone, taps):
    # The resnest50/101 lists are the ones GluonCV hard-codes for its own ResNeSt.
    backbone = detection.detection_backbone(backbone, pretrained_base=False)
    assert detection.fpn_tap_names(backbone) == taps


def test_fast_model_with_its_own_prefix_builds_an_fpn():
    net = detection.faster_rcnn_fpn('resnest50_fast_1s1x64d', pretrained_base=False)
    assert any(key.startswith('resnetv1f_layers4_') for key in net.features.collect_params())
    shapes = mx.sym.Group(net.features(mx.sym.var('data'))).infer_shape(data=(1, 3, 128, 128))[1]
    assert [shape[2] for shape in shapes] == [32, 16, 8, 4, 2]


def _graph_nodes(net):
    return json.loads(mx.sym.Group(net.features(mx.sym.var('data'))).tojson())['nodes']


def test_dropblock_is_off_in_detection():
    backbone = detection.detection_backbone('resnest50', pretrained_base=False)
    drops = [block for block in _descendants(backbone) if isinstance(block, GluonCVDropBlock)]
    assert len(drops) == 3 * (6 + 3) and {block.drop_prob for block in drops} == {0.0}
    net = gcv_get_model('faster_rcnn_fpn_syncbn_resnest50_coco', pretrained_base=False)
    ops = {node['op'] for node in _graph_nodes(net)}
    assert 'Dropout' not in ops and 'Convolution' in ops


def _descendants(block):
    yield block
    for child in block._children.values():  # pylint: disable=protected-access
        yield from _descendants(child)


def test_frozen_bn_recipe_freezes_backbone_statistics_and_affine():
    net = detection.custom_faster_rcnn_fpn(['a'], backbone='resnest14', syncbn=False,
                                           pretrained_base=False)
    norms = [node for node in _graph_nodes(net) if node['op'] == 'BatchNorm']
    assert norms and all(node['attrs']['use_global_stats'] == 'True' for node in norms)
    trained = list(net.collect_train_params())
    assert not any(name.startswith('resnest_') and name.endswith('gamma') for name in trained)
    assert 'resnest_layers4_conv0_weight' in trained
    sync = detection.custom_faster_rcnn_fpn(['a'], backbone='resnest14', pretrained_base=False)
    assert {node['op'] for node in _graph_nodes(sync)} >= {'_contrib_SyncBatchNorm'}
    assert 'resnest_layers1_syncbatchnorm0_gamma' in sync.collect_train_params()


@pytest.mark.slow
def test_faster_rcnn_checkpoint_from_gluoncv_loads_strictly(tmp_path):
    name = 'faster_rcnn_fpn_syncbn_resnest50_coco'
    try:
        plugin.unregister()
        theirs = gcv_get_model(name, pretrained_base=False)
    finally:
        plugin.register()
    theirs.initialize()
    # GluonCV's own pooling reads unwritten memory on CPU (see pyramid_roi_feats); compare like for like.
    detection.use_safe_roi_pooling(theirs)
    x = mx.nd.random.uniform(-1, 1, shape=(1, 3, 128, 128))
    expected = [out.asnumpy() for out in theirs(x)]
    path = str(tmp_path / (name + '.params'))
    theirs.save_parameters(path)

    ours = gcv_get_model(name, pretrained_base=False)
    ours.load_parameters(path)  # strict: no missing, no extra keys
    got = [out.asnumpy() for out in ours(x)]
    assert got[2].shape == (1, 80 * 1000, 4)
    for mine, want in zip(got, expected):
        np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-5)


# What train_faster_rcnn.py passes for ``custom-model`` besides the network options (its defaults).
CUSTOM_MODEL_ARGS = dict(min_stage=2, max_stage=6, nms_thresh=0.5, nms_topk=-1, post_nms=-1,
                         roi_mode='align', roi_size=(7, 7), strides=(4, 8, 16, 32, 64), clip=4.14,
                         rpn_channel=256, base_size=16, scales=(2, 4, 8, 16, 32),
                         ratios=(0.5, 1, 2), alloc_size=(384, 384), rpn_min_size=1)


@pytest.fixture
def no_gluoncv_resnest(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("GluonCV's own ResNeSt was built")
    monkeypatch.setattr(gcv_resnest, 'ResNeSt', refuse)


def test_gluoncv_custom_fpn_builders_use_our_backbone(no_gluoncv_resnest):
    """GluonCV's custom_faster_rcnn_fpn with train_faster_rcnn.py's custom-model syncbn options."""
    network = dict(base_network_name='resnest50', norm_layer=SyncBatchNorm,
                   norm_kwargs={'num_devices': 1}, sym_norm_kwargs={'ndev': 1})
    net = gcv_faster_module.custom_faster_rcnn_fpn(
        ['dog', 'car'], dataset='voc', pretrained_base=False, **network,
        **dict(CUSTOM_MODEL_ARGS, **SMALL))
    assert 'resnest_layers3_conv0_weight' in net.features.collect_params()
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize()
    ids, scores, boxes = net(mx.nd.random.uniform(shape=(1, 3, 128, 160)))
    assert ids.shape == scores.shape == (1, SMALL['rpn_test_post_nms'] * 2, 1)
    assert boxes.shape == (1, SMALL['rpn_test_post_nms'] * 2, 4)
    # The zoo's entry (GluonCV's DoubleHead copy, which script custom-model calls) and Mask-RCNN's.
    zoo = gcv_get_model('custom_faster_rcnn_fpn', classes=['dog'], pretrained_base=False,
                        **network, **CUSTOM_MODEL_ARGS)
    mask = gcv_get_model('custom_mask_rcnn_fpn', classes=['dog'], pretrained_base=False,
                         **dict(network, base_network_name='resnest14'), **CUSTOM_MODEL_ARGS)
    assert 'resnest_layers3_conv0_weight' in zoo.features.collect_params()
    assert 'resnest_layers3_conv0_weight' in mask.features.collect_params()


def test_gluoncv_custom_fpn_builders_keep_other_networks(no_gluoncv_resnest):
    other = gcv_faster_module.custom_faster_rcnn_fpn(
        ['dog'], pretrained_base=False, base_network_name='resnet18_v1b', **CUSTOM_MODEL_ARGS)
    assert 'resnetv1b_layers4_conv0_weight' in other.features.collect_params()
    with pytest.raises(ValueError, match='valid names: resnet18_v1b, .*, resnest14, resnest26'):
        gcv_faster_module.custom_faster_rcnn_fpn(['dog'], pretrained_base=False,
                                                 base_network_name='resnest51')
