"""Mask R-CNN and Cascade Mask R-CNN training in the detection command.

The mask targets are checked against a naive crop-and-resize of the matched ground-truth mask, the
shapes dataset's polygons against the pixels it draws, the short-side choice against the images
it gives, and the command trains both mask detectors end to end on the shapes dataset.
"""
import json
import os
import types

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.rcnn.mask_rcnn.rcnn_target import MaskTargetGenerator

from gluon_resnest.config import list_recipes
from gluon_resnest.detection import masks, shapes, train

MS = 28
HEIGHT, WIDTH = 60, 100  # non-square images


def _gt_masks():
    """(2 images, 2 objects, H, W): an L shape, a triangle, a disc and a bar."""
    out = np.zeros((2, 2, HEIGHT, WIDTH), np.float32)
    out[0, 0, 10:50, 10:25] = 1
    out[0, 0, 40:50, 10:60] = 1
    cv2.fillPoly(out[0, 1], [np.array([[70, 5], [95, 55], [50, 55]], np.int32)], 1)
    cv2.circle(out[1, 0], (30, 30), 20, 1, -1)
    out[1, 1, 20:30, 40:95] = 1
    return out


# Per image: sampled regions (x1, y1, x2, y2), their matched object and class target (0: background).
ROIS = [[(8, 8, 62, 52), (48, 3, 97, 57), (0, 0, 20, 20), (12, 30, 40, 52)],
        [(35, 15, 99, 35), (8, 8, 52, 52), (60, 40, 99, 59), (10, 10, 50, 50)]]
MATCHES = [[0, 1, 0, 0], [1, 0, 1, 0]]
CLASSES = [[2, 3, 0, 2], [1, 3, 0, 3]]
INDICES = [[3, 1, 0], [1, 3, 0]]  # the samples the mask head saw, in its order


def _bilinear(image, y, x):
    """``image`` at real coordinates (pixel i's value at coordinate i), zero outside."""
    padded = np.pad(image, 1)
    y, x = np.clip(y, -1, image.shape[0]) + 1, np.clip(x, -1, image.shape[1]) + 1
    y0, x0 = np.minimum(np.floor(y).astype(int), padded.shape[0] - 2), \
        np.minimum(np.floor(x).astype(int), padded.shape[1] - 2)
    dy, dx = y - y0, x - x0
    return ((1 - dy) * (1 - dx) * padded[y0, x0] + (1 - dy) * dx * padded[y0, x0 + 1]
            + dy * (1 - dx) * padded[y0 + 1, x0] + dy * dx * padded[y0 + 1, x0 + 1])


def _naive_targets(gt, num_classes):
    """Crop the matched mask to each picked region and resize it to MS x MS (the value at each
    output cell's centre, the region's corners in pixel coordinates as GluonCV's boxes); weight 1
    on the matched class's channel (class c -> channel c - 1) of a foreground sample."""
    targets = np.zeros((2, len(INDICES[0]), num_classes, MS, MS), np.float32)
    weights = np.zeros_like(targets)
    for image in range(2):
        for slot, index in enumerate(INDICES[image]):
            x1, y1, x2, y2 = ROIS[image][index]
            centres = (np.arange(MS) + 0.5) / MS
            y, x = np.meshgrid(y1 + centres * (y2 - y1), x1 + centres * (x2 - x1), indexing='ij')
            targets[image, slot] = _bilinear(gt[image, MATCHES[image][index]], y, x)
            if CLASSES[image][index] > 0:
                weights[image, slot, CLASSES[image][index] - 1] = 1
    return targets, weights


@pytest.mark.parametrize('stages', [0, 3], ids=['mask_rcnn', 'cascade_mask_rcnn'])
def test_mask_targets_are_the_matched_mask_cropped_to_the_region(stages):
    num_classes = 3
    net = types.SimpleNamespace(mask_target=MaskTargetGenerator(2, 3, num_classes, (MS, MS)))
    rois, matches, classes = (mx.nd.array(v) for v in (ROIS, MATCHES, CLASSES))
    if stages:  # a cascade's outputs have a stage axis; its mask head trains on stage 1
        net.stage_loss_weights = (1., 0.5, 0.25)
        rois, matches, classes = (mx.nd.stack(v, mx.nd.flip(v, axis=1), v[::-1], axis=0)
                                  for v in (rois, matches, classes))
    gt = _gt_masks()
    got, weights = masks.mask_targets(net, rois, matches, classes, mx.nd.array(gt),
                                      mx.nd.array(INDICES))
    want, want_weights = _naive_targets(gt, num_classes)
    np.testing.assert_array_equal(weights.asnumpy(), want_weights)
    got = got.asnumpy()
    # ROIAlign averages 2 x 2 samples per cell, the reference takes its centre: they differ only
    # at the edges of a shape (0.009 on average; half a pixel off would be 0.037, agreement 0.96).
    assert np.abs(got - want).mean() < 0.015
    assert ((got > 0.5) == (want > 0.5)).mean() > 0.99


def test_mask_loss_is_the_weighted_cross_entropy():
    net = types.SimpleNamespace(mask_target=MaskTargetGenerator(2, 3, 3, (MS, MS)))
    outputs = [None, None, mx.nd.array(ROIS), None, mx.nd.array(MATCHES)] + [None] * 3 \
        + [mx.nd.array(CLASSES)]
    pred = np.random.RandomState(0).normal(size=(2, 3, 3, MS, MS)).astype(np.float32)
    loss = masks.mask_loss(net, mx.gluon.loss.SigmoidBinaryCrossEntropyLoss(), outputs,
                           mx.nd.array(_gt_masks()), mx.nd.array(pred), mx.nd.array(INDICES))
    targets, weights = (v.asnumpy() for v in masks.mask_targets(
        net, outputs[2], outputs[4], outputs[8], mx.nd.array(_gt_masks()), mx.nd.array(INDICES)))
    bce = np.maximum(pred, 0) - pred * targets + np.log1p(np.exp(-np.abs(pred)))
    # As train_mask_rcnn.py: per image, so that the images' sum over trainer.step's batch of 2
    # is the mean over the batch's weighted elements.
    want = 2 * (bce * weights).reshape(2, -1).sum(axis=1) / weights.sum()
    np.testing.assert_allclose(loss.asnumpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match='predicts'):
        masks.mask_loss(net, mx.gluon.loss.SigmoidBinaryCrossEntropyLoss(), outputs,
                        mx.nd.array(_gt_masks()), mx.nd.array(pred[..., :14, :14]),
                        mx.nd.array(INDICES))


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    shapes.write_shapes(root, num_train=4, num_val=2, size=96, seed=3)
    return root


def test_shapes_polygons_cover_the_drawn_shapes(shapes_root):
    from pycocotools import mask as cocomask
    with open(os.path.join(shapes_root, 'VOC2007', 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    assert {c['name'] for c in coco['categories']} == set(shapes.SHAPES)
    rng = np.random.RandomState(0)
    for kind in shapes.SHAPES:
        for _ in range(5):
            side = rng.randint(10, 60)
            x0, y0 = rng.randint(0, 90 - side, size=2)
            box = (x0, y0, x0 + side - 1, y0 + side - 1)
            drawn = np.zeros((90, 120), np.uint8)  # non-square canvas
            shapes._draw(drawn, kind, box, 255)  # pylint: disable=protected-access
            outline = shapes.shape_polygon(kind, box).ravel().tolist()
            mask = cocomask.decode(cocomask.merge(cocomask.frPyObjects([outline], 90, 120)))
            drawn = drawn > 127
            assert (mask & drawn).sum() / float((mask | drawn).sum()) > 0.94, (kind, box)
    dataset = shapes.ShapesInstance(shapes_root)
    image, label, polygons = dataset[0]
    assert image.shape == (96, 96, 3) and len(polygons) == len(label) >= 1
    # Each object's box is its polygon's extent.
    for row, (outline,) in zip(label, polygons):
        np.testing.assert_allclose(row[:4], np.concatenate([outline.min(0), outline.max(0)]),
                                   atol=1e-4)


def test_short_side_choice_draws_one_of_the_sides_per_image(shapes_root):
    args = train.parse_args(['--network', 'resnest14', '--dataset', 'shapes', '--dataset-root',
                             shapes_root, '--no-pretrained-base', '--short', '48,64,80',
                             '--max-size', '200', '--batch-size', '1'])
    net = train.build_detector(args, shapes.SHAPES, 1)
    net.initialize()  # the transform makes the anchors with the net's anchor generator
    transform, _ = masks.train_pipeline(net, 1)
    image, label = shapes.ShapesDetection(shapes_root)[0]
    np.random.seed(0)
    sides = {min(transform(image, label)[0].shape[1:]) for _ in range(30)}
    assert sides == {48, 64, 80}  # each side, and nothing between them
    net.short = (48, 80)  # the range form: GluonCV's draw in [LO, HI]
    transform, _ = masks.train_pipeline(net, 1)
    sides = {min(transform(image, label)[0].shape[1:]) for _ in range(30)}
    assert min(sides) >= 48 and max(sides) <= 80 and len(sides - {48, 64, 80}) > 0


def test_mask_recipes_are_detectron2s():
    for detector in ('mask_rcnn', 'cascade_mask_rcnn'):
        for depth in (50, 101):
            name = '%s_resnest%d_fpn_syncbn_coco' % (detector, depth)
            assert name in list_recipes('detection')
            args = train.parse_args(['--config', name])
            assert (args.detector, args.network, args.norm_layer) == (detector, 'resnest%d' % depth,
                                                                      'syncbn')
            assert args.short == (640, 672, 704, 736, 768, 800)  # choice, not the range
            assert args.rpn_train_post_nms == (2000 if detector == 'cascade_mask_rcnn' else 1000)


@pytest.mark.slow
@pytest.mark.parametrize('detector', ['mask_rcnn', 'cascade_mask_rcnn'])
def test_command_trains_masks_and_scores_them(shapes_root, tmp_path, detector):
    prefix = str(tmp_path / detector)
    argv = ['--detector', detector, '--network', 'resnest14', '--dataset', 'shapes',
            '--dataset-root', shapes_root, '--no-pretrained-base', '--short', '80,88,96',
            '--max-size', '96', '--num-sample', '16', '--rpn-train-post-nms', '64',
            '--rpn-test-post-nms', '20', '--norm-layer', 'bn', '--box-head', '2fc',
            '--box-head-units', '32', '--epochs', '1', '--batch-size', '2', '--no-progress',
            '--save-prefix', prefix]
    result = train.fit(train.parse_args(argv))
    results = result.mean_ap
    assert set(results) == {'%s_mAP@%s' % (kind, iou) for kind in ('bbox', 'segm')
                            for iou in ('0.5', '0.5:0.95', '0.75')}
    assert all(0 <= value <= 1 for value in results.values())
    with open(prefix + '_history.json') as f:
        history = json.load(f)
    assert [r['epoch'] for r in history] == [0] and history[0]['loss'] > 0 and history[0]['rcnn_mask'] > 0
    assert result.checkpoint == prefix + '-0001.json' and result.epochs == 1
    with open(result.checkpoint) as f:
        assert json.load(f)['val'] == results
    saved = mx.nd.load(prefix + '-0001.params')
    assert any(name.startswith('mask.') for name in saved)
