"""The detection command's flags as GluonCV's scripts take them: per-dataset defaults, --lr as given, box
losses, test-time limits, multi-scale short sides, and batches of one image orientation."""
import os
import types

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from conftest import command_error

from gluon_resnest.detection import data, shapes, train
from gluon_resnest.detection.limits import DetectionLimits
from gluon_resnest.detection.loss import DetectionLoss
from gluon_resnest.detection.sampler import AspectRatioBatchSampler, image_orientations
from gluon_resnest.detection.task import DetectionTask
from gluon_resnest.engine.assemble import make_trainer
from gluon_resnest.engine.distributed import Distributed
from gluon_resnest.engine.loop import Run
from gluon_resnest.engine.sampler import ShardedShuffleSampler

# GluonCV 0.10.5's scripts/detection/faster_rcnn/train_faster_rcnn.py, parse_args(), copied by hand.
GLUONCV = {'voc': dict(epochs=20, lr=0.001, lr_decay_epoch=(14, 20), lr_warmup=-1, wd=5e-4),
           'coco': dict(epochs=26, lr=0.00125, lr_decay_epoch=(17, 23), lr_warmup=1000, wd=1e-4)}


@pytest.mark.parametrize('dataset, like', [('voc', 'voc'), ('coco', 'coco'), ('shapes', 'voc')])
def test_per_dataset_defaults_are_gluoncvs(dataset, like):
    args = train.parse_args(['--dataset', dataset])
    assert {key: getattr(args, key) for key in GLUONCV[like]} == GLUONCV[like]
    args = train.parse_args(['--dataset', dataset, '--epochs', '3', '--lr', '0.5', '--wd', '0'])
    assert (args.epochs, args.lr, args.wd) == (3, 0.5, 0)


def _trainer(args, net, iters):
    """The trainer the shared run assembly makes for the detection task's optimizer settings."""
    run = Run(config=args, dist=Distributed('local', 0, 1), ctx=[mx.cpu()], log=None, save_dir='', name='',
              task=DetectionTask(), net=net, sampler=types.SimpleNamespace(batches_per_epoch=iters))
    return make_trainer(run)[0]


class _Dense(gluon.nn.Dense):
    def collect_train_params(self):
        return self.collect_params()


@pytest.mark.parametrize('warmup, factor, first', [(0, 1. / 3, 0.02), (-1, 1. / 3, 0.02), (1000, 0.001, 2e-5)])
def test_lr_is_taken_as_given(warmup, factor, first):
    net = _Dense(2, in_units=3)
    net.initialize()
    args = train.parse_args(['--dataset', 'coco', '--batch-size', '16', '--lr', '0.02', '--lr-warmup', str(warmup),
                             '--lr-warmup-factor', str(factor), '--epochs', '12', '--lr-decay-epoch', '8,11'])
    trainer = _trainer(args, net, 1000)
    schedule = trainer._optimizer.lr_scheduler  # pylint: disable=protected-access
    assert schedule(0) == pytest.approx(first)
    assert schedule(1000) == schedule(7999) == pytest.approx(0.02)  # --lr itself, whatever the batch
    assert schedule(8000) == pytest.approx(0.002) and schedule(11000) == pytest.approx(0.0002)


class _Stack(gluon.nn.HybridSequential):
    def collect_train_params(self):
        return self.collect_params()


@pytest.mark.parametrize('flag', [[], ['--no-wd-norm']])
def test_no_wd_norm_spares_only_normalisation_layers(flag):
    net = _Stack()
    net.add(gluon.nn.Dense(4, in_units=3), gluon.nn.BatchNorm(in_channels=4))
    net.initialize()
    _trainer(train.parse_args(flag), net, 10)
    spared = {name for name, param in net.collect_params().items() if param.wd_mult == 0}
    assert spared == ({name for name in net.collect_params() if name.endswith(('gamma', 'beta'))} if flag else set())
    assert any(name.endswith('bias') for name in net.collect_params())  # biases decay, as in detectron2


def _naive_box_loss(pred, target, mask, rho):
    diff = np.abs(pred - target)
    loss = diff if rho == 0 else np.where(diff > rho, diff - 0.5 * rho, 0.5 / rho * diff ** 2)
    return (loss * mask).reshape(len(pred), -1).mean(axis=1)


@pytest.mark.parametrize('rho', [0., 1. / 9, 1.])
def test_box_losses_are_smooth_l1_or_l1(rho):
    rng = np.random.RandomState(0)
    pred, target = rng.randn(2, 5, 4) * 2, rng.randn(2, 5, 4)
    mask = (rng.rand(2, 5, 4) > 0.3).astype(np.float32)
    loss = DetectionLoss(rpn_rho=rho, rcnn_rho=rho)
    for block in (loss.rpn_box_loss, loss.rcnn_box_loss):
        got = block(mx.nd.array(pred), mx.nd.array(target), mx.nd.array(mask)).asnumpy()
        np.testing.assert_allclose(got, _naive_box_loss(pred, target, mask, rho), rtol=1e-5)
    with pytest.raises(ValueError, match='rho must be >= 0'):
        DetectionLoss(rcnn_rho=-1)


class _Fixed(gluon.Block):
    """A detector returning given outputs (B, N, ...)."""

    def __init__(self, *outputs):
        super(_Fixed, self).__init__()
        self.outputs = [mx.nd.array(o) for o in outputs]

    def forward(self, x):  # pylint: disable=arguments-differ
        return tuple(self.outputs)


def _naive_limits(ids, scores, extra, thresh, cap):
    """Per image: detections with id >= 0 and score >= thresh, best first, at most cap, -1 padded."""
    out_ids, out_scores, out_extra = [], [], []
    places = ids.shape[1] if cap <= 0 else min(cap, ids.shape[1])
    for i in range(len(ids)):
        keep = [j for j in np.argsort(-scores[i, :, 0], kind='stable')
                if ids[i, j, 0] >= 0 and scores[i, j, 0] >= thresh][:places]
        pad = places - len(keep)
        out_ids.append(list(ids[i, keep, 0]) + [-1] * pad)
        out_scores.append(list(scores[i, keep, 0]) + [-1] * pad)
        out_extra.append(extra[i, keep])
    return out_ids, out_scores, out_extra, places


@pytest.mark.parametrize('thresh, cap', [(0.05, 3), (0.0, -1), (0.5, 100), (0.05, 100)])
def test_detection_limits_keep_the_best_above_the_threshold(thresh, cap):
    rng = np.random.RandomState(1)
    b, n = 2, 9
    scores = rng.permutation(np.linspace(0.01, 0.99, b * n)).reshape(b, n, 1)
    ids = rng.randint(0, 3, size=(b, n, 1)).astype(np.float32)
    ids[0, 2] = ids[1, 5] = -1  # GluonCV's empty places
    scores[0, 2] = scores[1, 5] = -1
    boxes = rng.rand(b, n, 4) * 100
    masks = rng.rand(b, n, 3, 5)  # non-square per-detection outputs are selected alike
    got = DetectionLimits(_Fixed(ids, scores, boxes, masks), thresh, cap)(mx.nd.zeros((b, 3, 8, 8)))
    want_ids, want_scores, want_extra, places = _naive_limits(ids, scores, np.concatenate(
        [boxes, masks.reshape(b, n, -1)], axis=-1), thresh, cap)
    assert got[0].shape == (b, places, 1) and got[3].shape == (b, places, 3, 5)
    np.testing.assert_allclose(got[0].asnumpy()[..., 0], want_ids)
    np.testing.assert_allclose(got[1].asnumpy()[..., 0], want_scores, rtol=1e-6)
    for i in range(b):
        kept = len(want_extra[i])
        np.testing.assert_allclose(got[2].asnumpy()[i, :kept], want_extra[i][:, :4], rtol=1e-5)
        np.testing.assert_allclose(got[3].asnumpy()[i, :kept].reshape(kept, -1), want_extra[i][:, 4:], rtol=1e-5)


def _batches(landscape, batch_size, epoch=0, seed=0, parts=1, part=0):
    sampler = AspectRatioBatchSampler(landscape, batch_size, parts, part, seed)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    return batches


def test_each_batch_is_one_orientation_and_each_image_comes_once():
    rng = np.random.RandomState(0)
    landscape = rng.rand(61) > 0.4
    wide = int(landscape.sum())
    for batch_size in (2, 3, 4):
        batches = _batches(landscape, batch_size)
        assert all(len(b) == batch_size and len(set(landscape[b])) == 1 for b in batches)
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen))  # at most once per epoch
        # Only the last partial batch of each orientation sits the epoch out.
        assert len(seen) == wide // batch_size * batch_size + (61 - wide) // batch_size * batch_size
    divisible = np.array([True] * 12 + [False] * 8)
    assert sorted(i for b in _batches(divisible, 4) for i in b) == list(range(20))  # every image exactly once
    mixed = [landscape[b[0]] for b in _batches(landscape, 2)]
    assert 0 < sum(mixed) < len(mixed)  # orientations interleave, not all of one kind first


def test_grouped_batches_are_seeded_and_split_over_workers():
    landscape = np.random.RandomState(3).rand(50) > 0.5
    assert _batches(landscape, 2, epoch=1) == _batches(landscape, 2, epoch=1)
    assert _batches(landscape, 2, epoch=1) != _batches(landscape, 2, epoch=2)
    assert _batches(landscape, 2, seed=1) != _batches(landscape, 2, seed=2)
    shares = [_batches(landscape, 2, epoch=4, parts=3, part=k) for k in range(3)]
    assert len({len(s) for s in shares}) == 1  # synchronous training: the same number of batches
    for step in zip(*shares):  # one step of all workers: one orientation, no image twice
        images = [i for b in step for i in b]
        assert len(set(landscape[images])) == 1 and len(set(images)) == 6


def test_orientations_come_from_the_annotations(tmp_path):
    root = str(tmp_path)
    shapes.write_shapes(root, num_train=4, num_val=1, size=64)
    anno = os.path.join(root, 'VOC2007', 'Annotations', '000001.xml')
    with open(anno) as f:
        text = f.read()
    with open(anno, 'w') as f:
        f.write(text.replace('<width>64</width>', '<width>90</width>', 1))
    dataset = shapes.ShapesDetection(root, splits=[(2007, 'train')])
    ids = [item[1] for item in dataset._items]  # pylint: disable=protected-access
    assert image_orientations(dataset) == [i == '000001' for i in ids]
    with pytest.raises(ValueError, match='gives no image sizes'):
        image_orientations(gluon.data.SimpleDataset([1, 2]))


class _Sized(list):
    def get_im_aspect_ratio(self):
        return list(self)


def test_loader_groups_only_when_a_device_takes_several_images():
    landscape = _Sized([1.5, 0.5] * 4)
    local = Distributed('local', 0, 1)
    order, sampler = data._train_order(landscape, 4, 2, local, 0)  # pylint: disable=protected-access
    assert isinstance(sampler, AspectRatioBatchSampler) and order == dict(batch_sampler=sampler)
    order, sampler = data._train_order(landscape, 2, 2, local, 0)  # pylint: disable=protected-access
    # One image per device: a seeded shuffle of any orientations, resumable mid-epoch as the engine needs.
    assert isinstance(sampler, ShardedShuffleSampler) and order['sampler'] is sampler
    sampler.set_epoch(3, 2)
    assert len(sampler) == 2 * (sampler.batches_per_epoch - 2)
    with pytest.raises(ValueError, match='no batch of 8 images of one orientation'):
        data._train_order(landscape, 8, 2, local, 0)  # pylint: disable=protected-access


def test_short_range_reaches_the_network(tmp_path, capsys):
    args = train.parse_args(['--network', 'resnest14', '--dataset', 'shapes', '--no-pretrained-base',
                             '--short', '80,96', '--max-size', '96', '--batch-size', '2'])
    assert train.build_detector(args, shapes.SHAPES, 1).short == (80, 96)
    for short, message in (('96,80', "--short takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more "
                                     "sides >= 1, got (96, 80)"),
                           ('1,0,3', "--short takes one side, 'LO,HI'")):
        status, line = command_error(train.main, ['--dataset', 'shapes', '--dataset-root', str(tmp_path),
                                                 '--short', short], capsys)
        assert status == 2 and line.startswith('error: ' + message)


@pytest.mark.parametrize('flags, message', [
    (['--post-nms', '0'], '--post-nms must be -1 (all) or positive, got 0'),
    (['--test-score-thresh', '1'], '--test-score-thresh must be in [0, 1), got 1.0'),
    (['--rcnn-smoothl1-rho', '-0.5'], '--rpn-smoothl1-rho and --rcnn-smoothl1-rho must be >= 0'),
    (['--lr', '0'], '--lr must be positive, got 0.0'),
])
def test_new_option_values_give_one_line_errors(tmp_path, capsys, flags, message):
    status, line = command_error(train.main, ['--dataset', 'shapes', '--dataset-root', str(tmp_path)] + flags,
                                 capsys)
    assert (status, line) == (2, 'error: ' + message)


@pytest.mark.slow
def test_command_trains_from_a_recipe_with_grouped_batches(tmp_path):
    root = str(tmp_path / 'shapes')
    shapes.write_shapes(root, num_train=8, num_val=3, size=96)
    recipe = tmp_path / 'tiny.yaml'
    recipe.write_text('network: resnest14\ndataset: shapes\nnorm_layer: bn\nno_pretrained_base: true\n'
                      'short: [80, 96]\nmax_size: 96\nnum_sample: 16\nrpn_train_post_nms: 64\n'
                      'rpn_test_post_nms: 20\nbox_head: 2fc\nbox_head_units: 32\nbatch_size: 4\n'
                      'rpn_smoothl1_rho: 0\nrcnn_smoothl1_rho: 0\ntest_score_thresh: 0.05\npost_nms: 10\n'
                      'lr: 0.01\nlr_warmup: 1\nepochs: 3\n')
    prefix = str(tmp_path / 'run' / 'x')
    results = train.fit(train.parse_args(['--config', str(recipe), '--dataset-root', root, '--epochs', '1',
                                          '--no-progress', '--save-prefix', prefix, '--log-interval', '1'])).mean_ap
    assert set(results) == {'mAP@0.5', 'mAP@0.7', 'mAP@0.5:0.95'} and all(0 <= v <= 1 for v in results.values())
    log = open(prefix + '_train.log').read()
    assert 'epoch 1 batch 2/2:' in log and 'lr 0.01\n' in log  # 8 images in 2 grouped batches of 4, lr as given
    assert 'epoch 1 batch 3/' not in log
    assert sorted(os.listdir(str(tmp_path / 'run'))) == ['x-0001.json', 'x-0001.params', 'x-0001.states', 'x_history.json',
                                                          'x_train.log']  # --epochs 1 overrode the file's 3
