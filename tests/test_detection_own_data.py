"""Detection on users' own data: VOC-layout folders and COCO-format files, per-class AP, bad records,
and starting from a detector trained on other classes.

The data is the shapes dataset written as a labelling tool exports it (``shapes.write_export``): classes
disc, tile and wedge; VOC split files fit.txt and holdout.txt; COCO files whose file_names are relative
to the image folder and whose category ids are 7 (disc), 3 (tile) and 42 (wedge); images 120x96.
"""
import contextlib
import io
import json
import os
import re
import shutil

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection import datasets, evaluation, shapes, train
from gluon_resnest.detection.transfer import start_from_detector
from gluon_resnest.engine.checkpoint import read_checkpoint
from conftest import command_error
from test_detection_evaluation import _iou_inclusive  # VOC's IoU of inclusive pixel boxes

CPU_FLAGS = ['--network', 'resnest14', '--no-pretrained-base', '--short', '96', '--max-size', '128',
             '--num-sample', '16', '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20', '--norm-layer', 'bn',
             '--box-head', '2fc', '--box-head-units', '32', '--batch-size', '2', '--epochs', '1', '--no-progress']
VOC_CLASSES = ['disc', 'tile', 'wedge']  # the <name>s, sorted
COCO_CLASSES = ['tile', 'disc', 'wedge']  # the categories in the order of their ids 3, 7, 42


@pytest.fixture(scope='module')
def export_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('export'))
    shapes.write_export(root, num_train=2, num_val=2, size=96)
    return root


def _voc_flags(root):
    return ['--dataset-root', os.path.join(root, 'voc'), '--train-split', 'fit', '--val-split', 'holdout']


def _coco_flags(root):
    coco = os.path.join(root, 'coco')
    return ['--train-json', os.path.join(coco, 'train.json'), '--val-json', os.path.join(coco, 'val.json'),
            '--image-root', os.path.join(coco, 'images')]


def test_export_is_what_labelling_tools_write(export_root):
    doc = json.load(open(os.path.join(export_root, 'coco', 'val.json')))
    assert sorted(c['id'] for c in doc['categories']) == [3, 7, 42]
    assert all(not os.path.isabs(i['file_name']) and 'coco_url' not in i for i in doc['images'])
    assert sorted(os.listdir(os.path.join(export_root, 'voc', 'ImageSets', 'Main'))) == ['fit.txt', 'holdout.txt']


def test_voc_folder_and_coco_files_read_the_same_boxes(export_root):
    """Both layouts of one export give each image's boxes (GluonCV's pixel conventions) and classes."""
    voc_train, voc_val, voc_classes = datasets.open_voc_folder(os.path.join(export_root, 'voc'), 'fit', 'holdout')
    coco = os.path.join(export_root, 'coco')
    coco_train, coco_val, coco_classes = datasets.open_coco_json(
        os.path.join(coco, 'train.json'), os.path.join(coco, 'val.json'), os.path.join(coco, 'images'))
    assert (voc_classes, coco_classes) == (VOC_CLASSES, COCO_CLASSES)
    assert (len(voc_train), len(voc_val), len(coco_train), len(coco_val)) == (2, 2, 2, 2)
    assert coco_val.contiguous_id_to_json == {0: 3, 1: 7, 2: 42}
    for voc_set, coco_set in ((voc_train, coco_train), (voc_val, coco_val)):
        for k in range(2):
            voc_img, voc_label = voc_set[k]
            coco_img, coco_label = coco_set[k]
            assert voc_img.shape == coco_img.shape == (96, 120, 3) and voc_img.dtype == np.uint8
            names = [[VOC_CLASSES[int(c)] for c in voc_label[:, 4]], [COCO_CLASSES[int(c)] for c in coco_label[:, 4]]]
            assert names[0] == names[1]
            # The COCO box is the drawn outline (anti-aliased shapes reach half a pixel further).
            np.testing.assert_allclose(voc_label[:, :4], coco_label[:, :4], atol=1.6)


def test_class_list_option_sets_the_order(export_root, tmp_path):
    names = tmp_path / 'classes.txt'
    names.write_text('wedge\ndisc\ntile\n')
    train_set, _, classes = datasets.open_voc_folder(os.path.join(export_root, 'voc'), 'fit', 'holdout',
                                                     datasets.read_class_list(str(names)))
    reference, _, _ = datasets.open_voc_folder(os.path.join(export_root, 'voc'), 'fit', 'holdout')
    assert classes == ['wedge', 'disc', 'tile']
    for k in range(len(train_set)):
        assert [classes[int(c)] for c in train_set[k][1][:, 4]] == \
            [VOC_CLASSES[int(c)] for c in reference[k][1][:, 4]]
    assert datasets.read_class_list('tile, disc') == ['tile', 'disc']


# ---- bad records: one line naming the file and the record, status 2 ----

def _edit(path, old, new, count=1):
    text = open(path).read()
    assert old in text, (path, old)
    with open(path, 'w') as f:
        f.write(text.replace(old, new, count))


def _first_box(xml):
    return [int(v) for v in re.search(r'<xmin>(\d+)</xmin><ymin>(\d+)</ymin><xmax>(\d+)</xmax><ymax>(\d+)</ymax>',
                                      open(xml).read()).groups()]


def _voc_case(root, case):
    """Break the VOC folder under ``root`` as ``case`` says; returns (extra flags, expected error line)."""
    voc = os.path.join(root, 'voc')
    xml, image = os.path.join(voc, 'Annotations', 'shape_0001.xml'), os.path.join(voc, 'JPEGImages', 'shape_0000.jpg')
    name = re.search(r'<name>(\w+)</name>', open(xml).read()).group(1)
    xmin, ymin, xmax, ymax = _first_box(xml)
    what = '%s: object 1 (%s)' % (xml, name)
    if case == 'image':
        open(image, 'wb').write(b'not an image')
        return [], '%s: not a readable image' % image
    if case == 'outside':
        _edit(xml, '<xmax>%d</xmax>' % xmax, '<xmax>121</xmax>')
        return [], '%s: box (%d, %d, 121, %d) outside its 120x96 image shape_0001.jpg (VOC corners count pixels ' \
                   'from 1)' % (what, xmin, ymin, ymax)
    if case == 'zero-area':
        _edit(xml, '<ymax>%d</ymax>' % ymax, '<ymax>%d</ymax>' % ymin)
        return [], '%s: box (%d, %d, %d, %d) has zero area' % (what, xmin, ymin, xmax, ymin)
    if case == 'class':
        _edit(xml, '<name>%s</name>' % name, '<name>blob</name>')
        return ['--classes', 'disc,tile,wedge'], '%s: object 1 (blob): class not in the class list (disc, tile, ' \
                                                 'wedge)' % xml
    if case == 'xml':
        _edit(xml, '</annotation>', '')
        return [], '%s: not readable XML (no element found: line 2, column 0)' % xml
    split = os.path.join(voc, 'ImageSets', 'Main', 'holdout.txt')
    open(split, 'w').close()
    return [], '%s: empty split (no image ids)' % split


def _coco_case(root, case):
    """Break the COCO files under ``root`` as ``case`` says; returns (extra flags, expected error line)."""
    coco = os.path.join(root, 'coco')
    path = os.path.join(coco, 'train.json' if case == 'class' else 'val.json')
    doc = json.load(open(path))
    ann, image = doc['annotations'][0], doc['images'][0]
    what = '%s: annotation 1 (image %s)' % (path, image['file_name'])
    if case == 'image':
        picture = os.path.join(coco, 'images', image['file_name'])
        open(picture, 'wb').write(b'\xff\xd8\xff\xd9')  # a JPEG start and end, no frame
        return [], '%s: not a readable image (a JPEG without a frame header)' % picture
    if case == 'category':
        ann['category_id'] = 5
        message = '%s: category id 5 is not declared in categories (ids 3, 7, 42)' % what
    elif case == 'zero-area':
        ann['bbox'][2] = 0
        message = '%s: box [%g, %g, 0, %g] has zero area' % ((what,) + tuple(ann['bbox'][i] for i in (0, 1, 3)))
    elif case == 'outside':
        ann['bbox'][0] = 110.
        message = '%s: box [110, %g, %g, %g] outside its 120x96 image' % ((what,) + tuple(ann['bbox'][1:]))
    elif case == 'class':  # the first annotation a wedge, the others tiles
        for other in doc['annotations']:
            other['category_id'] = 3
        ann['category_id'] = 42
        json.dump(doc, open(path, 'w'))
        return ['--classes', 'tile,disc'], '%s: class wedge not in the class list (tile, disc)' % what
    else:  # 'empty'
        doc['images'], doc['annotations'] = [], []
        message = '%s: no usable image in the split' % path
    json.dump(doc, open(path, 'w'))
    return [], message


@pytest.mark.parametrize('layout, case', [('voc', c) for c in ('image', 'outside', 'zero-area', 'class', 'xml',
                                                                'empty')] +
                         [('coco', c) for c in ('image', 'category', 'zero-area', 'outside', 'class', 'empty')])
def test_bad_records_give_one_line_naming_file_and_record(export_root, tmp_path, capsys, layout, case):
    root = str(tmp_path / 'data')
    shutil.copytree(export_root, root)
    extra, message = (_voc_case if layout == 'voc' else _coco_case)(root, case)
    flags = _voc_flags(root) if layout == 'voc' else _coco_flags(root)
    argv = ['--detector', 'faster_rcnn', '--save-prefix', str(tmp_path / 'run')] + CPU_FLAGS + flags + extra
    assert command_error(train.main, argv, capsys) == (2, 'error: ' + message)


def test_skip_bad_leaves_bad_records_out_with_a_warning_each_and_a_count(export_root, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(export_root, root)
    _voc_case(root, 'outside')  # a training record
    voc = os.path.join(root, 'voc')
    with open(os.path.join(voc, 'ImageSets', 'Main', 'holdout.txt'), 'a') as f:
        f.write('shape_0009\n')  # listed, never annotated
    for name in ('fit', 'holdout'):  # both splits also list the training image 0 again
        with open(os.path.join(voc, 'ImageSets', 'Main', name + '.txt'), 'a') as f:
            f.write('shape_0000\n')
    train_set, val, _ = datasets.open_voc_folder(voc, 'fit', 'holdout', skip_bad=True)
    assert (len(train_set), len(val)) == (2, 3)  # shape_0001 and shape_0009 left out
    assert len(train_set.skipped) == 1 and 'shape_0001.xml: object 1' in train_set.skipped[0]
    assert val.skipped == ['%s: annotation file not found (its image id is in the split file)'
                           % os.path.join(voc, 'Annotations', 'shape_0009.xml')]
    with pytest.raises(datasets.DataError, match='shape_0009.xml: annotation file not found'):
        datasets.open_voc_folder(voc, 'fit', 'holdout')


# ---- per-class AP against independent references ----

def _voc07_class_ap(truth, detections, cls, iou_thresh):
    """Naive VOC07 11-point AP of ``cls``: truth [(boxes, classes, difficult)] per image, detections
    [(class, score, box)] per image; a match with a difficult box counts neither way."""
    ranked = sorted((-s, i, box) for i, dets in enumerate(detections) for c, s, box in dets if c == cls)
    positives = sum(int(c == cls and not d) for boxes, classes, diff in truth for c, d in zip(classes, diff))
    if positives == 0:
        return None
    taken, hits = set(), []
    for _, image, box in ranked:
        boxes, classes, difficult = truth[image]
        candidates = [(_iou_inclusive(box, b), k) for k, b in enumerate(boxes) if classes[k] == cls]
        iou, best = max(candidates) if candidates else (0, -1)
        if iou < iou_thresh:
            hits.append(False)
        elif difficult[best]:
            continue
        else:
            hits.append((image, best) not in taken)
            taken.add((image, best))
    tp = np.cumsum(hits)
    recall, precision = tp / float(positives), tp / np.arange(1, len(hits) + 1)
    return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.
                          for t in np.arange(0, 1.1, 0.1)]))


def test_voc_class_ap_equals_a_naive_reference():
    rng = np.random.RandomState(3)
    classes = ['a', 'b', 'c', 'd']  # 'd' has no ground truth
    truth, detections = [], []
    for image in range(4):
        count = 3 + image % 2
        xy = rng.uniform(0, 80, size=(count, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(15, 40, size=(count, 2))], axis=1).round()
        labels = [image % 3, (image + 1) % 3] + [rng.randint(3) for _ in range(count - 2)]
        difficult = [0] * (count - 1) + [int(image == 2)]
        truth.append((boxes, labels, difficult))
        dets = [(c if rng.rand() > 0.2 else 3 - (c == 0) * 3, rng.uniform(0.2, 1), b + rng.uniform(-6, 6, 4))
                for c, b in zip(labels, boxes)]
        dets.append((rng.randint(4), rng.uniform(0, 1), rng.uniform(0, 60, 4) + [0, 0, 30, 30]))
        detections.append(dets)
    metric = train.VOCEvaluation(classes, [0.5, 0.7])
    for (boxes, labels, difficult), dets in zip(truth, detections):
        det = dict(boxes=np.array([[b for _, _, b in dets]]), ids=np.array([[[c] for c, _, _ in dets]], 'float32'),
                   scores=np.array([[[s] for _, s, _ in dets]]))
        gt = dict(boxes=boxes[None], ids=np.array(labels, 'float32')[None, :, None],
                  difficults=np.array(difficult, 'float32')[None, :, None])
        metric.update(det, gt)
    results, per_class = metric.results(), metric.class_aps()
    assert set(per_class) == {'mAP@0.5', 'mAP@0.7'}
    for iou in (0.5, 0.7):
        expected = {c: _voc07_class_ap(truth, detections, k, iou) for k, c in enumerate(classes)}
        assert per_class['mAP@%g' % iou].keys() == expected.keys() and expected['d'] is None
        for name in classes:
            assert per_class['mAP@%g' % iou][name] == pytest.approx(expected[name], abs=1e-9), (iou, name)
        assert results['mAP@%g' % iou] == pytest.approx(np.mean([v for v in expected.values() if v is not None]))
    assert len({round(v, 6) for v in per_class['mAP@0.5'].values() if v is not None}) > 1


class _StubDetector(object):
    """Returns given detections (original coordinates) scaled to its input, images in loader order."""
    short, max_size = 80, 200  # what val_loader reads: a resize by 5/6

    def __init__(self, sizes, detections):
        self._sizes, self._detections, self._index = sizes, detections, 0

    def hybridize(self, **kwargs):
        del kwargs
        self._index = 0

    def __call__(self, x):
        (width, height), dets = self._sizes[self._index], self._detections[self._index]
        scale = np.array([x.shape[3] / width, x.shape[2] / height] * 2)
        self._index += 1
        return [mx.nd.array(np.array(v, 'float32').reshape((1, len(dets) + 1, -1))) for v in (
            [c for c, _, _ in dets] + [-1], [s for _, s, _ in dets] + [-1],
            [np.array(b) * scale for _, _, b in dets] + [np.full(4, -1.)])]


def _cocoeval(gt_path, results, cat_ids=None):
    """pycocotools on the file itself: (AP@0.5:0.95, AP@0.5), over ``cat_ids`` (default all)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        coco_eval = COCOeval(gt, gt.loadRes(results), 'bbox')
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats[0], coco_eval.stats[1]


def test_coco_evaluation_of_own_files_equals_cocoeval_per_category(export_root, tmp_path):
    """Relative file_names and category ids 7, 3, 42: the command's COCO AP, overall and per class, equals
    pycocotools run on the user's JSON with the same detections (each category on its own)."""
    coco = os.path.join(export_root, 'coco')
    _, val, classes = datasets.open_coco_json(None, os.path.join(coco, 'val.json'), os.path.join(coco, 'images'))
    rng = np.random.RandomState(0)
    detections = []
    for k in range(len(val)):
        label = val.labels[k]
        dets = [(int(c) if j else (int(c) + 1) % 3, 0.9 - 0.1 * j, np.clip(box + rng.uniform(-3, 3, 4), 0, 95))
                for j, (box, c) in enumerate(zip(label[:, :4], label[:, 4]))]
        detections.append(dets + [(int(rng.randint(3)), 0.5, [2., 2., 40., 30.])])
    metrics = evaluation.evaluators('coco', val, classes, [0.5], str(tmp_path / 'eval'))
    results = train.evaluate_network(_StubDetector(val.sizes, detections),
                                     train.val_loader(_StubDetector([], []), val, 1), metrics, [mx.cpu()])
    per_class = metrics[0].class_aps()
    ids = sorted(val.coco.getImgIds())
    reference = [dict(image_id=ids[k], category_id=val.contiguous_id_to_json[c], score=s,
                      bbox=[float(b[0]), float(b[1]), float(b[2] - b[0] + 1), float(b[3] - b[1] + 1)])
                 for k, dets in enumerate(detections) for c, s, b in dets]
    gt_path = os.path.join(coco, 'val.json')
    overall = _cocoeval(gt_path, reference)
    np.testing.assert_allclose([results['bbox_mAP@0.5:0.95'], results['bbox_mAP@0.5']], overall, atol=1e-6)
    assert 0 < overall[0] < 1
    for index, name in enumerate(classes):
        json_id = val.contiguous_id_to_json[index]
        ap, ap50 = _cocoeval(gt_path, reference, [json_id])
        got = per_class['bbox_mAP@0.5:0.95'][name], per_class['bbox_mAP@0.5'][name]
        if ap < 0:  # pycocotools' -1: no ground truth of that category
            assert got == (None, None)
        else:
            np.testing.assert_allclose(got, (ap, ap50), atol=1e-6, err_msg=name)


# ---- starting from a detector trained on other classes ----

OLD_CLASSES = ['wedge', 'cat', 'disc', 'tile']
NEW_CLASSES = ['tile', 'disc', 'bird']  # tile and disc move; bird is new


def _built(detector, classes):
    config = train.parse_args(['--detector', detector, '--dataset', 'shapes', '--dataset-root', '.', '--fpn-channels',
                               '16'] + CPU_FLAGS)
    return train.build_detector(config, classes, 1)


def _materialised(detector, classes):
    net = _built(detector, classes)
    net.initialize()
    net(mx.nd.random.uniform(shape=(1, 3, 96, 96)))  # inference: every deferred shape known
    for param in net.collect_params().values():  # as trained: no row equals a fresh one (zero biases)
        param.set_data(mx.nd.random.normal(shape=param.shape))
    return net


def _row_layout(old_rows, new_rows):
    """(rows per class, leading rows) of a class layer: 1 + background, 4 per class (boxes), or 1 (masks)."""
    for per_class, lead in ((1, 1), (4, 0), (1, 0)):
        if (old_rows, new_rows) == (per_class * len(OLD_CLASSES) + lead, per_class * len(NEW_CLASSES) + lead):
            return per_class, lead
    raise AssertionError('not a class layer: %d -> %d rows' % (old_rows, new_rows))


@pytest.mark.slow
@pytest.mark.parametrize('detector', ['faster_rcnn', 'cascade_rcnn', 'mask_rcnn', 'cascade_mask_rcnn'])
def test_pretrained_detector_keeps_matching_rows_bit_for_bit(tmp_path, detector):
    path = str(tmp_path / 'old.params')
    _materialised(detector, OLD_CLASSES).save_parameters(path)
    saved = {k: v.asnumpy() for k, v in mx.nd.load(path).items()}
    mx.random.seed(1)
    net, kept = start_from_detector(lambda names: _built(detector, names), path, OLD_CLASSES, NEW_CLASSES,
                                    [mx.cpu()])
    assert kept == ['tile', 'disc'] and net.classes == NEW_CLASSES
    params = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}  # pylint: disable=W0212
    assert set(params) == set(saved)
    class_layers = [k for k in params if params[k].shape != saved[k].shape]
    expected = {'class_predictor.weight', 'class_predictor.bias'}
    if detector in ('faster_rcnn', 'mask_rcnn'):
        expected |= {'box_predictor.weight', 'box_predictor.bias'}
    if detector.startswith('cascade'):
        expected |= {'stage_heads.%d.class_predictor.%s' % (k, w) for k in (0, 1) for w in ('weight', 'bias')}
    if 'mask' in detector:
        expected |= {'mask.mask.weight', 'mask.mask.bias'}
    assert set(class_layers) == expected
    for key, value in params.items():
        if key not in class_layers:  # the body and class-agnostic layers: the file's, bit for bit
            assert np.array_equal(value, saved[key]), key
            continue
        per_class, lead = _row_layout(saved[key].shape[0], value.shape[0])
        rows = lambda a, k: a[lead + k * per_class:lead + (k + 1) * per_class]  # noqa: E731
        assert np.array_equal(value[:lead], saved[key][:lead]), key  # the background
        for new, name in enumerate(NEW_CLASSES):
            if name in OLD_CLASSES:
                assert np.array_equal(rows(value, new), rows(saved[key], OLD_CLASSES.index(name))), (key, name)
            else:  # fresh from the layer's initialiser, none of the old rows
                assert not any(np.array_equal(rows(value, new), rows(saved[key], old))
                               for old in range(len(OLD_CLASSES))), key
                assert np.isfinite(rows(value, new)).all(), key


def test_pretrained_detector_classes_come_from_the_record_or_the_option(tmp_path, capsys):
    from gluon_resnest.detection.transfer import detector_source
    bare = tmp_path / 'bare.params'
    bare.write_bytes(b'')
    line = command_error(train.main, ['--pretrained-detector', str(bare), '--dataset', 'shapes', '--dataset-root',
                                      str(tmp_path), '--save-prefix', str(tmp_path / 'run')] + CPU_FLAGS, capsys)
    assert line == (2, 'error: --pretrained-detector %s: a bare .params file does not say its classes; name them '
                       'with --pretrained-classes a,b,c (or a file, one name a line)' % bare)
    assert detector_source(str(bare), 'a,b') == (str(bare), ['a', 'b'])
    record = tmp_path / 'run-0003.json'
    record.write_text(json.dumps({'classes': ['x', 'y']}))
    (tmp_path / 'run-0003.params').write_bytes(b'')
    for given in (record, tmp_path / 'run-0003.params'):
        assert detector_source(str(given)) == (str(tmp_path / 'run-0003.params'), ['x', 'y'])


# ---- the command, one training step on each layout ----

@pytest.fixture(scope='module')
def voc_run(export_root, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp('voc_run') / 'voc')
    argv = ['--detector', 'faster_rcnn', '--save-prefix', prefix] + CPU_FLAGS + _voc_flags(export_root)
    return train.fit(train.parse_args(argv)), prefix


@pytest.mark.slow
def test_voc_folder_with_own_names_trains_and_evaluates_per_class(voc_run):
    result, prefix = voc_run
    assert set(result.mean_ap) == {'mAP@0.5', 'mAP@0.7', 'mAP@0.5:0.95'} and result.epochs == 1
    assert {k: list(v) for k, v in result.per_class.items()} == {'mAP@0.5': VOC_CLASSES, 'mAP@0.7': VOC_CLASSES}
    record = read_checkpoint(prefix + '-0001.json')
    assert record['classes'] == VOC_CLASSES and record['val_per_class'] == result.per_class
    values = [v for v in result.per_class['mAP@0.5'].values() if v is not None]
    assert result.mean_ap['mAP@0.5'] == pytest.approx(np.mean(values))
    assert '[Epoch 1] disc ' in open(prefix + '_train.log').read()


@pytest.mark.slow
def test_coco_files_train_from_the_voc_detector_and_evaluate_per_class(voc_run, export_root, tmp_path, capsys):
    prefix = str(tmp_path / 'coco')
    argv = ['--detector', 'faster_rcnn', '--save-prefix', prefix, '--pretrained-detector',
            voc_run[1] + '-0001.json'] + CPU_FLAGS + _coco_flags(export_root)
    assert train.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('held-out bbox_mAP@0.5=') and out[1].split() == ['class', 'bbox_mAP@0.5',
                                                                              'bbox_mAP@0.5:0.95']
    assert [line.split()[0] for line in out[2:5]] == COCO_CLASSES
    log = open(prefix + '_train.log').read()
    assert 'starting from %s-0001.params (3 classes); rows kept for tile, disc, wedge' % voc_run[1] in log
    record = read_checkpoint(prefix + '-0001.json')
    assert record['classes'] == COCO_CLASSES
    assert sorted(record['val_per_class']['bbox_mAP@0.5']) == sorted(COCO_CLASSES)


@pytest.mark.slow
def test_skip_bad_evaluates_the_rest_and_reports_the_count(voc_run, export_root, tmp_path, capsys):
    root = str(tmp_path / 'data')
    shutil.copytree(export_root, root)
    holdout = os.path.join(root, 'voc', 'ImageSets', 'Main', 'holdout.txt')
    with open(holdout, 'a') as f:
        f.write('shape_0009\nshape_0000\n')
    open(os.path.join(root, 'voc', 'JPEGImages', 'shape_0000.jpg'), 'wb').write(b'not an image')
    prefix = str(tmp_path / 'eval')
    argv = ['--detector', 'faster_rcnn', '--save-prefix', prefix, '--eval-only', '--resume-params',
            voc_run[1] + '-0001.params', '--skip-bad'] + CPU_FLAGS + _voc_flags(root)
    assert train.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == 'skipped 3 bad records (--skip-bad; the log names them)'
    log = open(prefix + '_train.log').read()
    assert log.count('WARNING skipped ') == 4 and 'skipped 3 bad records (--skip-bad)' in log
    assert 'shape_0009.xml: annotation file not found' in log and 'shape_0000.jpg: not a readable image' in log


def test_images_decode_as_mxnet_and_a_broken_body_is_one_line(export_root, tmp_path, capsys):
    train_set, _, _ = datasets.open_voc_folder(os.path.join(export_root, 'voc'), 'fit', 'holdout')
    assert np.array_equal(train_set[0][0].asnumpy(), mx.image.imread(train_set.paths[0], 1).asnumpy())
    root = str(tmp_path / 'data')
    shutil.copytree(export_root, root)
    image = os.path.join(root, 'voc', 'JPEGImages', 'shape_0001.jpg')
    pixels = np.zeros((96, 120, 3), np.uint8)
    open(image, 'wb').write(cv2_png(pixels)[:60])  # its header says 120x96; the body is cut
    broken, _, _ = datasets.open_voc_folder(os.path.join(root, 'voc'), 'fit', 'holdout')
    assert broken.sizes[1] == (120, 96)
    with pytest.raises(datasets.DataError, match='^%s: the image does not decode$' % re.escape(image)):
        broken[1]  # pylint: disable=pointless-statement


def cv2_png(pixels):
    import cv2
    return cv2.imencode('.png', pixels)[1].tobytes()


def test_checkpoint_classes_must_be_the_datas(voc_run, export_root, tmp_path, capsys):
    argv = ['--detector', 'faster_rcnn', '--save-prefix', voc_run[1], '--eval-only', '--resume',
            '--classes', 'tile,disc,wedge'] + CPU_FLAGS + _voc_flags(export_root)
    assert command_error(train.main, argv, capsys) == (
        2, 'error: checkpoint %s-0001.json was trained on the classes disc,tile,wedge; the data gives '
           'tile,disc,wedge (--classes sets names and order)' % voc_run[1])


@pytest.mark.slow
def test_cascade_masks_train_on_coco_polygons_and_evaluate_per_class(export_root, tmp_path):
    prefix = str(tmp_path / 'masks')
    argv = ['--detector', 'cascade_mask_rcnn', '--save-prefix', prefix] + CPU_FLAGS + _coco_flags(export_root)
    result = train.fit(train.parse_args(argv))
    assert set(result.per_class) == {'bbox_mAP@0.5:0.95', 'bbox_mAP@0.5', 'segm_mAP@0.5:0.95', 'segm_mAP@0.5'}
    assert all(list(v) == COCO_CLASSES for v in result.per_class.values())
    assert read_checkpoint(prefix + '-0001.json')['classes'] == COCO_CLASSES


@pytest.mark.parametrize('flags, message', [
    (['--pretrained-classes', 'a,b'], '--pretrained-classes names the classes of --pretrained-detector'),
    (['--train-json', 'a.json', '--image-root', '.'],
     '--train-json FILE (unless --eval-only), --val-json FILE and --image-root DIR go together'),
    (['--dataset', 'voc', '--val-json', 'a.json', '--image-root', '.'],
     "--train-json, --val-json and --image-root read COCO-format files: --dataset must be coco, got 'voc'"),
    (['--classes', 'a,b', '--dataset', 'shapes'],
     '--classes and --skip-bad read a VOC-layout folder (--dataset-root holding Annotations/, JPEGImages/, '
     'ImageSets/Main/) or COCO-format files (--train-json, --val-json)'),
    (['--classes', 'a,b,a'], 'class list a,b,a: names given twice: a'),
])
def test_own_data_flags_give_one_line_errors(export_root, tmp_path, capsys, flags, message):
    root = os.path.join(export_root, 'voc') if '--dataset' not in flags else export_root
    argv = ['--dataset-root', root, '--save-prefix', str(tmp_path / 'run')] + CPU_FLAGS + flags
    if '--val-json' in flags or '--train-json' in flags:
        argv = argv[2:]
    assert command_error(train.main, argv, capsys) == (2, 'error: ' + message)
