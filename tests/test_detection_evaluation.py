"""Held-out evaluation of the detection command at a non-unit, non-square resize.

A stub network returns known detections (the ground truth, or known perturbations of it) in the
coordinates of the image the validation transform gives it (resized by 1.28, 1.42 and 1.28, width and
height rounded separately). The command's VOC07 mAP must equal a naive 11-point reference written
here, and its COCO box and mask mAP must equal ``pycocotools.COCOeval`` run directly on the same
detections in original image coordinates.
"""
import json
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection import evaluation, shapes, train

SHORT = 128
COCO_IOUS = np.round(np.arange(0.5, 0.951, 0.05), 2)
# (width, height, [(class, x1, y1, x2, y2)]) in original pixel coordinates (inclusive corners);
# some boxes touch the border, where clipping matters.
IMAGES = [
    (150, 100, [(0, 10, 12, 59, 61), (1, 70, 30, 149, 99), (2, 100, 5, 139, 25)]),
    (120, 90, [(1, 5, 5, 44, 54), (0, 60, 20, 109, 79)]),
    (100, 140, [(2, 20, 30, 79, 99), (1, 0, 100, 29, 139)]),
]
CATEGORY_IDS = (3, 7, 11)  # COCO ids are not the contiguous class indices


def _perfect(image):
    return [(c, 0.9 - 0.05 * k - 0.01 * i, (x1, y1, x2, y2))
            for k, (c, x1, y1, x2, y2) in enumerate(image[2]) for i in [IMAGES.index(image)]]


def _shifted(image):  # every other box moved right by 20% of its width: IoU about 0.67
    return [(c, s, (x1 + 0.2 * (x2 - x1), y1, x2 + 0.2 * (x2 - x1), y2) if k % 2 else (x1, y1, x2, y2))
            for k, (c, s, (x1, y1, x2, y2)) in enumerate(_perfect(image))]


def _dropped(image):
    return _perfect(image)[1:]


def _wrong_class(image):
    return [((c + 1) % 3 if k == 0 else c, s, box) for k, (c, s, box) in enumerate(_perfect(image))]


def _false_positives(image):  # two confident false positives ranked above some true ones
    width, height = image[:2]
    extra = [(0, 0.87 - 0.01 * len(image[2]), (width - 12, 0, width - 1, 8)),
             (1, 0.62, (0, height - 6, 6, height - 1))]
    return [(c, s - 0.3 * (k % 2), box) for k, (c, s, box) in enumerate(_perfect(image))] + extra


def _outside(image):  # boxes that touch a border stretched 30 px past it: clipped back
    width, height = image[:2]
    return [(c, s, (x1 - 30 * (x1 == 0), y1 - 30 * (y1 == 0), x2 + 30 * (x2 == width - 1),
                    y2 + 30 * (y2 == height - 1))) for c, s, (x1, y1, x2, y2) in _perfect(image)]


PERTURBATIONS = [_perfect, _shifted, _dropped, _wrong_class, _false_positives, _outside]


class StubDetector(object):
    """Returns given detections (original coordinates) in the coordinates of its input image,
    images in loader order, padded with one invalid detection (-1) as GluonCV's networks pad."""

    def __init__(self, detections, masks=None):
        self._detections, self._masks, self._index = detections, masks, 0

    def hybridize(self, **kwargs):
        del kwargs
        self._index = 0

    def __call__(self, x):
        (width, height, _), dets = IMAGES[self._index], self._detections[self._index]
        scale = np.array([x.shape[3] / width, x.shape[2] / height] * 2)
        ids = [c for c, _, _ in dets] + [-1]
        scores = [s for _, s, _ in dets] + [-1]
        boxes = [np.array(box) * scale for _, _, box in dets] + [np.full(4, -1.)]
        out = [mx.nd.array(np.array(v, 'float32').reshape((1, len(ids), -1)))
               for v in (ids, scores, boxes)]
        if self._masks is not None:
            masks = self._masks[self._index]
            out.append(mx.nd.array(np.concatenate([masks, np.zeros((1,) + masks.shape[1:])])[None]))
        self._index += 1
        return out


def _write_image(path, width, height, seed):
    pixels = np.random.RandomState(seed).randint(0, 255, size=(height, width, 3)).astype('uint8')
    cv2.imwrite(path, pixels)


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc_layout')
    for folder in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(str(root / 'VOC2007' / folder))
    for index, (width, height, objects) in enumerate(IMAGES):
        _write_image(str(root / 'VOC2007' / 'JPEGImages' / ('%06d.jpg' % index)), width, height, index)
        boxes = ''.join('<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin>'
                        '<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
                        % ((shapes.SHAPES[c],) + tuple(v + 1 for v in box)) for c, *box in objects)
        (root / 'VOC2007' / 'Annotations' / ('%06d.xml' % index)).write_text(
            '<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>%s'
            '</annotation>' % (width, height, boxes))
    for split in ('train', 'val'):
        (root / 'VOC2007' / 'ImageSets' / 'Main' / (split + '.txt')).write_text(
            '\n'.join('%06d' % i for i in range(len(IMAGES))) + '\n')
    return str(root)


def _coco_box(box):  # GluonCV's COCO convention: inclusive corners, width x2 - x1 + 1
    return [float(box[0]), float(box[1]), float(box[2] - box[0] + 1), float(box[3] - box[1] + 1)]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_layout')
    os.makedirs(str(root / 'val2017'))
    os.makedirs(str(root / 'annotations'))
    images, annotations = [], []
    for index, (width, height, objects) in enumerate(IMAGES):
        name = '%012d.jpg' % (index + 1)
        _write_image(str(root / 'val2017' / name), width, height, index)
        images.append(dict(id=index + 1, file_name=name, width=width, height=height,
                           coco_url='http://images.cocodataset.org/val2017/' + name))
        for c, *box in objects:
            x, y, w, h = _coco_box(box)
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1, iscrowd=0,
                                    category_id=CATEGORY_IDS[c], bbox=[x, y, w, h], area=w * h,
                                    segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    categories = [dict(id=i, name=name) for i, name in zip(CATEGORY_IDS, shapes.SHAPES)]
    with open(str(root / 'annotations' / 'instances_val2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return str(root)


def _coco_val(root):
    from gluoncv.data import COCODetection

    class ShapesCOCO(COCODetection):  # GluonCV checks the category names against CLASSES
        CLASSES = list(shapes.SHAPES)
    return ShapesCOCO(root, splits='instances_val2017', skip_empty=False)


class _Net(object):  # what val_loader reads from a network
    short, max_size = SHORT, 1000


def _evaluate(stub, dataset, kind, tmp_path, masks=False):
    metrics = evaluation.evaluators(kind, dataset, shapes.SHAPES, [0.5, 0.7], str(tmp_path / 'eval'), masks=masks)
    return train.evaluate_network(stub, train.val_loader(_Net(), dataset, 1), metrics, [mx.cpu()])


def _clip(box, width, height):
    return np.clip(np.array(box, 'float64'), 0, [width, height, width, height])


def _voc07_reference(detections, iou_thresh):
    """Naive VOC07 11-point mAP over the classes with ground truth (inclusive pixel boxes)."""
    aps = []
    for cls in sorted({c for _, _, objects in IMAGES for c, *_ in objects}):
        truth = [[np.array(box, 'float64') for c, *box in objects if c == cls]
                 for _, _, objects in IMAGES]
        ranked = sorted([(-s, i, _clip(box, *IMAGES[i][:2])) for i, dets in enumerate(detections)
                         for c, s, box in dets if c == cls], key=lambda r: r[0])
        taken, hits = set(), []
        for _, image, box in ranked:
            ious = [_iou_inclusive(box, gt) for gt in truth[image]]
            best = int(np.argmax(ious)) if ious else -1
            hit = best >= 0 and ious[best] >= iou_thresh and (image, best) not in taken
            if hit:
                taken.add((image, best))
            hits.append(hit)
        tp = np.cumsum(hits)
        recall = tp / float(sum(len(t) for t in truth))
        precision = tp / np.arange(1, len(hits) + 1)
        aps.append(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.
                            for t in np.arange(0, 1.1, 0.1)]))
    return float(np.mean(aps))


def _iou_inclusive(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize('perturb', PERTURBATIONS, ids=lambda f: f.__name__.strip('_'))
def test_voc07_map_equals_a_naive_reference_at_a_non_unit_scale(voc_root, tmp_path, perturb):
    _, val, _ = train.load_datasets('shapes', voc_root)
    detections = [perturb(image) for image in IMAGES]
    results = _evaluate(StubDetector(detections), val, 'shapes', tmp_path)
    assert set(results) == {'mAP@0.5', 'mAP@0.7', 'mAP@0.5:0.95'}
    for iou in (0.5, 0.7):
        assert results['mAP@%g' % iou] == pytest.approx(_voc07_reference(detections, iou), abs=1e-6)
    expected = np.mean([_voc07_reference(detections, iou) for iou in COCO_IOUS])
    assert results['mAP@0.5:0.95'] == pytest.approx(expected, abs=1e-6)
    if perturb in (_perfect, _outside):  # clipped to the image, a perfect detector scores 1
        assert all(value == pytest.approx(1.) for value in results.values())
    else:
        assert results['mAP@0.5:0.95'] < 0.95


def _cocoeval(coco_root, results, kind):
    """COCO AP at IoU 0.5:0.95 straight from pycocotools on ``results`` (a JSON list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(os.path.join(coco_root, 'annotations', 'instances_val2017.json'))
    coco_eval = COCOeval(gt, gt.loadRes(results), kind)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats[0], coco_eval.stats[1], coco_eval.stats[2]


@pytest.mark.parametrize('perturb', PERTURBATIONS, ids=lambda f: f.__name__.strip('_'))
def test_coco_box_map_equals_cocoeval_on_original_coordinates(coco_root, tmp_path, perturb):
    val = _coco_val(coco_root)
    detections = [perturb(image) for image in IMAGES]
    results = _evaluate(StubDetector(detections), val, 'coco', tmp_path)
    reference = [dict(image_id=i + 1, category_id=CATEGORY_IDS[c], score=float(s),
                      bbox=_coco_box(_clip(box, *IMAGES[i][:2])))
                 for i, dets in enumerate(detections) for c, s, box in dets]
    expected = _cocoeval(coco_root, reference, 'bbox')
    got = [results['bbox_mAP@%s' % iou] for iou in ('0.5:0.95', '0.5', '0.75')]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    if perturb in (_perfect, _outside):
        np.testing.assert_allclose(got, 1.)


def _box_masks(detections):
    """28x28 mask logits per detection: full boxes, the second of each image only its left half."""
    masks = []
    for dets in detections:
        m = np.ones((len(dets), 28, 28), 'float32')
        m[1:2, :, 14:] = 0
        masks.append(m)
    return masks


@pytest.mark.parametrize('perturb', [_perfect, _shifted, _false_positives],
                         ids=lambda f: f.__name__.strip('_'))
def test_coco_mask_map_equals_cocoeval_on_masks_pasted_in_original_images(coco_root, tmp_path,
                                                                          perturb):
    from gluoncv.data.transforms.mask import fill
    from pycocotools import mask as cocomask
    val = _coco_val(coco_root)
    detections = [perturb(image) for image in IMAGES]
    masks = _box_masks(detections)
    results = _evaluate(StubDetector(detections, masks), val, 'coco', tmp_path, masks=True)
    reference = []
    for i, dets in enumerate(detections):
        width, height = IMAGES[i][:2]
        boxes = np.array([_clip(box, width, height) for _, _, box in dets])
        for (c, s, _), full in zip(dets, fill(masks[i], boxes, (width, height))):
            rle = cocomask.encode(np.asfortranarray(full[:, :, None]))[0]
            rle['counts'] = rle['counts'].decode('ascii')
            reference.append(dict(image_id=i + 1, category_id=CATEGORY_IDS[c],
                                  score=round(float(s), 3), segmentation=rle))
    expected = _cocoeval(coco_root, reference, 'segm')
    got = [results['segm_mAP@%s' % iou] for iou in ('0.5:0.95', '0.5', '0.75')]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert 0 < got[0] < 1  # the half masks cost
