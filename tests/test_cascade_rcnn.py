"""Cascade R-CNN on our ResNeSt: outputs, the cascade's targets, training, checkpoints (the command:
test_detection_command.py)."""
import json

import mxnet as mx
import numpy as np
import pytest
from gluoncv.data import VOCDetection
from gluoncv.data.batchify import FasterRCNNTrainBatchify
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
from gluoncv.model_zoo import get_model as gcv_get_model
from mxnet import autograd

from gluon_resnest import detection
from gluon_resnest.detection import shapes, train
from gluon_resnest.detection.loss import DetectionLoss
from gluon_resnest.detection.pooling import pyramid_roi_feats
# The two-image VOC set (fixtures voc_root, frozen_base) and GluonCV's training preparation.
from conftest import DETECTION_SMALL as FASTER_SMALL
from conftest import first_shard as _first_shard
from conftest import mask_training_batch, prepare_for_training as _prepare_for_training

# Three heads pool every region: fewer regions than the Faster R-CNN tests keep them quick.
SMALL = dict(FASTER_SMALL, num_sample=32, rpn_train_post_nms=64)

STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
GT_BOX = [[[10, 12, 60, 70], [50, 40, 120, 100]], [[5, 5, 50, 50], [-1, -1, -1, -1]]]
GT_LABEL = [[[1], [3]], [[2], [-1]]]


def _net(syncbn=True, classes=('a', 'b', 'c', 'd'), **kwargs):
    net = detection.custom_cascade_rcnn_fpn(list(classes), backbone='resnest14', syncbn=syncbn,
                                            pretrained_base=False, **dict(SMALL, **kwargs))
    net.initialize()
    return net


def _train_outputs(net):
    x = mx.nd.random.uniform(shape=(2, 3, 128, 160))
    with autograd.train_mode():
        return x, net(x, mx.nd.array(GT_BOX), mx.nd.array(GT_LABEL))


@pytest.mark.parametrize('hybridize', [False, True], ids=['eager', 'hybridized'])
def test_training_outputs_stack_the_three_stages(hybridize):
    net = _net()
    if hybridize:
        net.hybridize()
    _, out = _train_outputs(net)
    cls_preds, box_preds, rois, samples, matches = out[:5]
    cls_targets, box_targets, box_masks = out[8:]
    n = SMALL['num_sample']
    assert cls_preds.shape == (3, 2, n, 5)
    assert box_preds.shape == rois.shape == box_targets.shape == box_masks.shape == (3, 2, n, 4)
    assert samples.shape == matches.shape == cls_targets.shape == (3, 2, n)
    assert np.isfinite(cls_preds.asnumpy()).all() and np.isfinite(box_preds.asnumpy()).all()


def test_inference_eager_equals_hybridized_and_has_gluoncv_format():
    net = _net()
    x = mx.nd.random.uniform(shape=(1, 3, 128, 160))
    eager = [out.asnumpy() for out in net(x)]
    net.hybridize()
    hybrid = [out.asnumpy() for out in net(x)]
    detections = SMALL['rpn_test_post_nms'] * 4
    assert [out.shape for out in eager] == [(1, detections, 1), (1, detections, 1),
                                            (1, detections, 4)]
    for mine, want in zip(hybrid, eager):
        np.testing.assert_allclose(mine, want, rtol=1e-4, atol=1e-4)
    ids, scores = eager[0].ravel(), eager[1].ravel()
    kept = ids >= 0
    assert kept.any() and set(ids[kept]) <= {0, 1, 2, 3}
    assert (scores[kept] > 0).all() and (scores[kept] <= 1).all()


def _decode(deltas, boxes, stds, width, height):
    """Naive NormalizedBoxCenterDecoder + clip to the image, in numpy."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    cx, cy = cx + deltas[:, 0] * stds[0] * w, cy + deltas[:, 1] * stds[1] * h
    w, h = w * np.exp(deltas[:, 2] * stds[2]), h * np.exp(deltas[:, 3] * stds[3])
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return np.minimum(np.maximum(out, 0), [width, height, width, height])


def _iou(boxes, gt):
    x0, y0 = np.maximum(boxes[:, None, 0], gt[None, :, 0]), np.maximum(boxes[:, None, 1], gt[None, :, 1])
    x1, y1 = np.minimum(boxes[:, None, 2], gt[None, :, 2]), np.minimum(boxes[:, None, 3], gt[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(boxes)[:, None] + area(gt)[None, :] - inter)


def test_later_stages_train_on_the_previous_stages_refined_boxes():
    net = _net()
    # Large, distinct shifts so each refinement moves the boxes visibly.
    for head, shift in zip([net] + list(net.stage_heads), ([2., -1., 1., 0.5], [-1., 2., -.5, 1.],
                                                            [1., 1., 1., 1.])):
        head.box_predictor.bias.set_data(mx.nd.array(shift))
    _, out = _train_outputs(net)
    box_preds, rois, samples, matches = [o.asnumpy() for o in out[1:5]]
    box_targets, box_masks = out[9].asnumpy(), out[10].asnumpy()
    gt = np.array(GT_BOX, 'float32')
    for image in range(2):
        valid = gt[image][gt[image, :, 0] >= 0]
        assert any((rois[0, image] == box).all(axis=1).any() for box in valid)  # GT joins stage 1
        for stage in range(3):
            boxes = rois[stage, image]
            if stage > 0:  # this stage's boxes are the previous stage's, refined
                np.testing.assert_allclose(boxes, _decode(box_preds[stage - 1, image],
                                                          rois[stage - 1, image], STDS[stage - 1],
                                                          160, 128), rtol=1e-4, atol=1e-3)
                ious = _iou(boxes, valid)
                threshold = (0.5, 0.6, 0.7)[stage]
                np.testing.assert_array_equal(samples[stage, image],
                                              np.where(ious.max(1) >= threshold, 1, -1))
                positive = samples[stage, image] > 0
                np.testing.assert_array_equal(matches[stage, image][positive],
                                              ious.argmax(1)[positive])
            # Regression targets in this stage's stds, from its own boxes to the matched truth.
            positive = samples[stage, image] > 0
            assert (box_masks[stage, image][positive] == 1).all()
            assert (box_masks[stage, image][~positive] == 0).all()
            ref = valid[matches[stage, image][positive].astype(int)]
            got = box_targets[stage, image][positive]
            aw = boxes[positive, 2] - boxes[positive, 0]
            gw = ref[:, 2] - ref[:, 0]
            np.testing.assert_allclose(got[:, 2], np.log(gw / aw) / STDS[stage][2], rtol=1e-3,
                                       atol=1e-3)
    assert not np.allclose(rois[1], rois[0]) and not np.allclose(rois[2], rois[1])


def test_stds_and_iou_thresholds_as_configured():
    net = _net()
    assert net.stage_iou_threshs == (0.5, 0.6, 0.7)
    assert net.sampler._pos_iou_thresh == 0.5  # pylint: disable=protected-access
    assert [enc._stds for enc in net.box_encoders] == list(STDS)  # pylint: disable=W0212
    assert [dec._stds for dec in net.box_decoders] == list(STDS)  # pylint: disable=W0212
    assert net.stage_loss_weights == (1., 1., 1.) and net.head_grad_scale == pytest.approx(1 / 3.)
    # Class-agnostic regression: 4 outputs per region in every stage.
    assert [head.box_predictor.weight.shape[0] for head in [net] + list(net.stage_heads)] == [4] * 3
    custom = _net(stage_iou_threshs=(0.4, 0.55, 0.8), stage_loss_weights=(1, .5, .25),
                  stage_box_stds=((.2,) * 4, (.1,) * 4, (.05,) * 4))
    assert custom.sampler._pos_iou_thresh == 0.4  # pylint: disable=protected-access
    assert [dec._stds for dec in custom.box_decoders] == [(.2,) * 4, (.1,) * 4, (.05,) * 4]
    with pytest.raises(ValueError, match='3-stage cascade needs 3 IoU thresholds'):
        _net(stage_iou_threshs=(0.5, 0.6))


def _voc_batch(net, voc_root_dir):
    dataset = VOCDetection(root=voc_root_dir, splits=[(2007, 'train')])
    transform = FasterRCNNDefaultTrainTransform(net.short, net.max_size, net, ashape=net.ashape,
                                                multi_stage=True)
    return _first_shard(FasterRCNNTrainBatchify(net, 1)([transform(*dataset[k]) for k in range(2)]))


@pytest.mark.slow
def test_losses_are_finite_and_fall_on_voc_samples(voc_root):
    net = detection.cascade_rcnn_fpn('resnest14', 'voc', pretrained_base=False, **SMALL)
    trainer = _prepare_for_training(net)
    batch, loss_fn = _voc_batch(net, voc_root), DetectionLoss()
    totals = []
    for _ in range(3):
        with autograd.record():
            losses = loss_fn(net, *batch)
        losses['total'].backward()
        trainer.step(2)
        values = {name: value.asscalar() for name, value in losses.items()}
        assert all(np.isfinite(v) for v in values.values()), values
        assert {'rcnn_cls1', 'rcnn_cls2', 'rcnn_cls3', 'rcnn_box3'} <= set(values)
        totals.append(values['total'])
    assert totals[-1] < 0.5 * totals[0], totals


@pytest.mark.slow
@pytest.mark.parametrize('syncbn', [True, False], ids=['syncbn', 'frozen_bn'])
def test_norm_variants_build_and_train_one_step(voc_root, frozen_base, syncbn):
    net = detection.cascade_rcnn_fpn('resnest14', 'voc', syncbn=syncbn,
                                     pretrained_base=False if syncbn else frozen_base, **SMALL)
    ops = {node['op'] for node in json.loads(
        mx.sym.Group(net.features(mx.sym.var('data'))).tojson())['nodes']}
    assert ('_contrib_SyncBatchNorm' in ops) == syncbn
    trainer = _prepare_for_training(net)
    trained = [p for p in net.collect_train_params().values() if p.grad_req != 'null']
    assert any('stage_heads' in p.name or 'cascadehead' in p.name for p in trained)
    with autograd.record():
        losses = DetectionLoss()(net, *_voc_batch(net, voc_root))
    losses['total'].backward()
    before = {p.name: p.data().copy() for p in trained}
    trainer.step(2)
    for param in trained:
        assert np.isfinite(param.grad().asnumpy()).all(), param.name
    heads = [p for p in trained if 'cascadehead' in p.name]
    assert heads and all(not np.array_equal(p.data().asnumpy(), before[p.name].asnumpy())
                         for p in heads if p.name.endswith('weight'))


def test_checkpoint_saves_and_loads_strictly(tmp_path):
    net = _net()
    x = mx.nd.random.uniform(shape=(1, 3, 128, 160))
    expected = [out.asnumpy() for out in net(x)]
    path = str(tmp_path / 'cascade.params')
    net.save_parameters(path)
    fresh = detection.custom_cascade_rcnn_fpn(['a', 'b', 'c', 'd'], backbone='resnest14',
                                              pretrained_base=False, **SMALL)
    train.load_detector(fresh, path, mx.cpu())
    for mine, want in zip(fresh(x), expected):
        np.testing.assert_array_equal(mine.asnumpy(), want)
    loaded = detection.cascade_rcnn_fpn('resnest14', 'custom', classes=['a', 'b', 'c', 'd'],
                                        pretrained=path, pretrained_base=False, **SMALL)
    np.testing.assert_array_equal(loaded(x)[1].asnumpy(), expected[1])
    other = detection.custom_cascade_rcnn_fpn(['a', 'b'], backbone='resnest14',
                                              pretrained_base=False, **SMALL)
    with pytest.raises(ValueError, match=r'has 4 classes, the network has 2$'):
        train.load_detector(other, path, mx.cpu())


def test_zoo_names_reach_the_cascade():
    net = gcv_get_model('cascade_rcnn_fpn_syncbn_resnest50_coco', pretrained_base=False)
    assert isinstance(net, detection.CascadeRCNN) and len(net.classes) == 80
    assert 'resnest_layers4_conv0_weight' in net.features.collect_params()
    voc = detection.get_model('cascade_rcnn_fpn_resnest101_voc', pretrained_base=False)
    assert isinstance(voc, detection.CascadeRCNN) and len(voc.classes) == 20
    custom = gcv_get_model('cascade_rcnn_fpn_syncbn_resnest14_custom', classes=['x'],
                           pretrained_base=False)
    assert custom.classes == ['x']
    with pytest.raises(ValueError, match='needs classes'):
        gcv_get_model('cascade_rcnn_fpn_syncbn_resnest14_custom', pretrained_base=False)
    with pytest.raises(ValueError, match='no published weights for cascade_rcnn_fpn_syncbn_'):
        gcv_get_model('cascade_rcnn_fpn_syncbn_resnest50_coco', pretrained=True)
    with pytest.raises(ValueError, match="unknown network 'cascade_rcnn_fpn_resnest51_voc'"):
        detection.get_model('cascade_rcnn_fpn_resnest51_voc')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    assert shapes.write_shapes(root, num_train=4, num_val=2, size=96) == {'train': 4, 'val': 2}
    return root


def test_shapes_dataset_is_voc_with_boxes_inside_images(shapes_root):
    train_set, val_set, classes = train.load_box_datasets('shapes', shapes_root)
    assert classes == shapes.SHAPES and len(train_set) == 4 and len(val_set) == 2
    assert not set(train_set._items) & set(val_set._items)  # pylint: disable=protected-access
    for img, label in list(train_set) + list(val_set):
        assert img.shape == (96, 96, 3) and 1 <= len(label) <= 3
        assert (label[:, :2] >= 0).all() and (label[:, 2:4] <= 96).all()
        assert (label[:, 2] - label[:, 0] >= 13).all() and set(label[:, 4]) <= {0, 1, 2}
        # A shape's pixels differ from the photo around it: the box is not empty background.
        for x0, y0, x1, y1 in label[:, :4].astype(int):
            inside = img.asnumpy()[y0 + 2:y1 - 1, x0 + 2:x1 - 1].reshape(-1, 3).astype(float)
            assert inside.std(axis=0).min() < 60


@pytest.mark.slow
def test_cascade_mask_rcnn_trains_and_segments():
    pytest.importorskip('pycocotools', reason='GluonCV needs pycocotools for mask targets')
    net = detection.custom_cascade_mask_rcnn_fpn(['first', 'second'], backbone='resnest14',
                                                 pretrained_base=False, **SMALL)
    trainer, batch = mask_training_batch(net)
    batch = _first_shard(batch)
    masks = []
    for _ in range(2):
        with autograd.record():
            losses = DetectionLoss(masks=True)(net, *batch)
        losses['total'].backward()
        trainer.step(2)
        assert np.isfinite(losses['total'].asscalar())
        masks.append(losses['rcnn_mask'].asscalar())
    assert masks[-1] < masks[0], masks
    with autograd.train_mode():
        out = net(batch[0], batch[1][:, :, :4], batch[1][:, :, 4:5])
    samples, indices = out[4].asnumpy()[0], out[-1].asnumpy()
    max_pos = net.sampler._max_pos  # pylint: disable=protected-access
    assert out[2].shape == (2, max_pos, 2, 28, 28) and indices.shape == (2, max_pos)
    for image in range(2):  # the mask head sees stage 1's positives first
        picked = samples[image][indices[image].astype(int)]
        positives = int((samples[image] > 0).sum())
        assert positives > 0 and (picked[:min(positives, max_pos)] > 0).all()


@pytest.mark.parametrize('hybridize', [False, True], ids=['eager', 'hybridized'])
def test_cascade_mask_rcnn_segments_the_final_boxes(hybridize):
    net = detection.custom_cascade_mask_rcnn_fpn(['first', 'second'], backbone='resnest14',
                                                 pretrained_base=False, **SMALL)
    net.initialize()
    x = mx.nd.random.uniform(shape=(1, 3, 128, 160))
    if hybridize:
        net.hybridize()
    ids, scores, boxes, masks = net(x)
    kept = SMALL['rpn_test_post_nms']
    assert ids.shape == scores.shape == (1, kept, 1) and boxes.shape == (1, kept, 4)
    assert masks.shape == (1, kept, 28, 28)
    # Independently: pool the returned boxes, run the mask head, take each detection's class.
    feat = net.features(x)
    rois = mx.nd.concat(mx.nd.zeros((kept, 1)), boxes[0], dim=-1)
    logits = net.mask(pyramid_roi_feats(net, mx.nd, feat, rois, (14, 14), (4, 8, 16, 32)))
    logits = logits[0].asnumpy()
    classes = np.clip(ids.asnumpy().ravel().astype(int), 0, 1)
    expected = 1 / (1 + np.exp(-logits[np.arange(kept), classes]))
    np.testing.assert_allclose(masks.asnumpy()[0], expected, rtol=1e-4, atol=1e-5)
    assert (np.diff(scores.asnumpy().ravel()) <= 1e-6).all()  # best detections first


def test_reset_class_keeps_the_reused_rows_of_every_stage():
    net = _net()
    x = mx.nd.random.uniform(shape=(1, 3, 128, 160))
    net(x)  # completes the deferred initialisation
    preds = lambda n: [n.class_predictor] + [h.class_predictor for h in n.stage_heads]  # noqa: E731
    old = [(p.weight.data().asnumpy(), p.bias.data().asnumpy()) for p in preds(net)]
    boxes = [net.box_predictor.weight.data().asnumpy()] + [
        h.box_predictor.weight.data().asnumpy() for h in net.stage_heads]
    net.reset_class(['d', 'x', 'b'], reuse_weights=['b', 'd'])
    assert net.classes == ['d', 'x', 'b'] and net.num_class == 3
    for pred, (weight, bias) in zip(preds(net), old):
        new_weight, new_bias = pred.weight.data().asnumpy(), pred.bias.data().asnumpy()
        assert new_weight.shape == (4, weight.shape[1])
        # background, 'd' (old 4th class), 'b' (old 2nd); 'x' is new.
        np.testing.assert_array_equal(new_weight[[0, 1, 3]], weight[[0, 4, 2]])
        np.testing.assert_array_equal(new_bias[[0, 1, 3]], bias[[0, 4, 2]])
        assert not any(np.allclose(new_weight[2], row) for row in weight)
    kept = [net.box_predictor.weight.data().asnumpy()] + [
        h.box_predictor.weight.data().asnumpy() for h in net.stage_heads]
    for mine, want in zip(kept, boxes):  # class-agnostic boxes are untouched
        np.testing.assert_array_equal(mine, want)
    _, out = _train_outputs(net)
    assert out[0].shape == (3, 2, SMALL['num_sample'], 4)
    net.hybridize()
    ids = net(x)[0].asnumpy().ravel()
    assert set(ids[ids >= 0]) <= {0, 1, 2}


def test_reset_class_takes_gluoncv_mappings_and_rejects_unknown_names():
    net = _net()
    net(mx.nd.random.uniform(shape=(1, 3, 96, 96)))
    third = net.stage_heads[1].class_predictor.weight.data().asnumpy()
    net.reset_class(['y', 'c'], reuse_weights={'c': 2, 0: 'a'})
    np.testing.assert_array_equal(
        net.stage_heads[1].class_predictor.weight.data().asnumpy()[[1, 2]], third[[1, 3]])
    with pytest.raises(ValueError, match=r"^z not found in the old class names \['y', 'c'\]$"):
        net.reset_class(['z'], reuse_weights={'z': 'z'})


def test_cascade_mask_rcnn_reset_class_resets_the_mask_predictor_too():
    net = detection.custom_cascade_mask_rcnn_fpn(['a', 'b', 'c'], backbone='resnest14',
                                                 pretrained_base=False, **SMALL)
    net.initialize()
    x = mx.nd.random.uniform(shape=(1, 3, 128, 160))
    net(x)
    old_mask = net.mask.mask.weight.data().asnumpy()
    old_cls = net.stage_heads[0].class_predictor.weight.data().asnumpy()
    net.reset_class(['c', 'z'], reuse_weights=['c'])
    assert net.mask.mask.weight.shape[0] == 2
    np.testing.assert_array_equal(net.mask.mask.weight.data().asnumpy()[0], old_mask[2])
    np.testing.assert_array_equal(
        net.stage_heads[0].class_predictor.weight.data().asnumpy()[[0, 1]], old_cls[[0, 3]])
    ids, _, _, masks = net(x)
    assert masks.shape == (1, SMALL['rpn_test_post_nms'], 28, 28)
    assert set(ids.asnumpy().ravel()) <= {-1, 0, 1}


def _mask_loss_feature_grads(net, x, weights):
    """Gradients of the backbone and FPN parameters from a mask-only loss (sampling seeded)."""
    mx.random.seed(7)
    with autograd.record():
        mask_pred = net(x, mx.nd.array(GT_BOX), mx.nd.array(GT_LABEL))[2]
        loss = (mask_pred * weights).sum()
    loss.backward()
    return {name: param.grad().asnumpy().copy()
            for name, param in net.features.collect_params().items() if param.grad_req != 'null'}


def test_cascade_mask_head_pools_14_predicts_28_and_its_loss_reaches_the_features_unscaled():
    net = detection.custom_cascade_mask_rcnn_fpn(['a', 'b', 'c', 'd'], backbone='resnest14',
                                                 pretrained_base=False, **SMALL)
    net.initialize()
    x = mx.nd.random.uniform(shape=(2, 3, 128, 160))
    with autograd.train_mode():
        shape = net(x, mx.nd.array(GT_BOX), mx.nd.array(GT_LABEL))[2].shape
    max_pos = net.sampler._max_pos  # pylint: disable=protected-access
    assert shape == (2, max_pos, 4, 28, 28)
    weights = mx.nd.random.normal(shape=shape)
    scaled = _mask_loss_feature_grads(net, x, weights)
    assert net.head_grad_scale == pytest.approx(1 / 3.)
    net.head_grad_scale = 1.  # the box heads' scale removed: the mask gradient must not change
    unscaled = _mask_loss_feature_grads(net, x, weights)
    norms = {name: np.abs(grad).sum() for name, grad in unscaled.items()}
    assert sum(value > 0 for value in norms.values()) > len(norms) // 2  # it reaches the backbone
    for name, grad in unscaled.items():
        np.testing.assert_allclose(scaled[name], grad, rtol=1e-4, atol=1e-7 * norms[name] + 1e-12,
                                   err_msg=name)


@pytest.mark.parametrize('mask', [False, True], ids=['cascade', 'cascade_mask'])
def test_reset_class_before_the_first_forward(mask):
    factory = detection.custom_cascade_mask_rcnn_fpn if mask else detection.custom_cascade_rcnn_fpn
    net = factory(['a', 'b', 'c', 'd'], backbone='resnest14', pretrained_base=False, **SMALL)
    net.initialize()  # deferred: the predictors' input sizes are known only at the first forward
    net.reset_class(['d', 'x', 'b'], reuse_weights=['b', 'd'])  # nothing trained to copy yet
    assert net.classes == ['d', 'x', 'b']
    net.reset_class(['y', 'z'])
    out = net(mx.nd.random.uniform(shape=(1, 3, 96, 128)))
    preds = [net.class_predictor] + [head.class_predictor for head in net.stage_heads]
    assert [p.weight.shape[0] for p in preds] == [3, 3, 3]
    ids = out[0].asnumpy().ravel()
    assert set(ids[ids >= 0]) <= {0, 1}
    if mask:
        assert net.mask.mask.weight.shape[0] == 2
        assert out[3].shape == (1, SMALL['rpn_test_post_nms'], 28, 28)
