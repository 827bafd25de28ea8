"""Detection evaluation: VOC07 and COCO mAP (boxes, masks) of a network over a held-out loader, in the
original images' coordinates.
"""
import contextlib
import copy
import io

import mxnet as mx
import numpy as np

from .class_ap import coco_class_aps, voc_class_aps

__all__ = ['evaluate_network', 'evaluators', 'VOCEvaluation', 'COCOEvaluation', 'COCO_IOUS', 'MAP_UNIT',
           'MAP_KEYS']

# IoU thresholds of COCO's mAP; the VOC-style mAP is also averaged over them.
COCO_IOUS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))

MAP_UNIT = 'fraction (0-1)'
# Names of the held-out results (VOC-style; COCO box and mask).
MAP_KEYS = ('mAP@', 'bbox_mAP@', 'segm_mAP@')

class VOCEvaluation(object):
    """VOC07 11-point mAP (GluonCV's ``VOC07MApMetric``), as a fraction (0-1).

    Results ``mAP@{iou}`` for every IoU of ``ious`` and ``mAP@0.5:0.95``, the VOC07 mAP averaged
    over IoU 0.5, 0.55, ..., 0.95 (VOC-style AP at COCO's thresholds; not COCO's 101-point AP).
    """

    def __init__(self, classes, ious):
        from gluoncv.utils.metrics import VOC07MApMetric  # pylint: disable=import-outside-toplevel
        self._ious = [round(float(iou), 2) for iou in ious]
        self._metrics = {iou: VOC07MApMetric(iou_thresh=iou, class_names=classes)
                         for iou in set(self._ious) | set(COCO_IOUS)}

    def reset(self):
        """Forget every image seen."""
        for metric in self._metrics.values():
            metric.reset()

    def update(self, det, gt):
        """One image: ``det`` and ``gt`` as :func:`evaluate` makes them (original coordinates)."""
        for metric in self._metrics.values():
            metric.update(det['boxes'], det['ids'], det['scores'], gt['boxes'], gt['ids'],
                          gt['difficults'])

    def results(self):
        """{name: mAP} over the images seen."""
        values = {iou: float(metric.get()[1][-1]) for iou, metric in self._metrics.items()}
        out = {'mAP@%g' % iou: values[iou] for iou in self._ious}
        out['mAP@0.5:0.95'] = float(np.mean([values[iou] for iou in COCO_IOUS]))
        return out

    def class_aps(self):
        """{'mAP@{iou}': {class name: AP or None}} over the images seen, for every IoU of ``ious``."""
        return {'mAP@%g' % iou: voc_class_aps(self._metrics[iou]) for iou in self._ious}

class COCOEvaluation(object):
    """COCO box (and with ``masks`` mask) mAP with pycocotools, as a fraction (0-1).

    Detections are collected by GluonCV's ``COCODetectionMetric`` (boxes; its score threshold
    0.05) and ``COCOInstanceMetric`` (masks pasted into the original image; threshold 0.001), in
    the order of ``sorted(dataset.coco.getImgIds())``, the loader's. Results
    ``{bbox,segm}_mAP@0.5:0.95`` (COCO's AP, ``COCOeval.stats[0]``), ``@0.5`` and ``@0.75``.
    """

    def __init__(self, dataset, prefix, masks=False):
        # pylint: disable=import-outside-toplevel
        from gluoncv.utils.metrics.coco_detection import COCODetectionMetric
        from gluoncv.utils.metrics.coco_instance import COCOInstanceMetric
        self._coco, self._evals = dataset.coco, {}
        self._boxes = COCODetectionMetric(dataset, prefix + '_eval', cleanup=True)
        self._masks = COCOInstanceMetric(dataset, prefix + '_eval', cleanup=True) if masks else None

    def reset(self):
        """Forget every image seen."""
        for metric in (self._boxes, self._masks):
            if metric is not None:
                metric.reset()

    def update(self, det, gt):
        """One image (``gt`` is the dataset's own, read by pycocotools)."""
        del gt
        self._boxes.update(det['boxes'], det['ids'], det['scores'])
        if self._masks is not None:
            keep = det['keep']
            self._masks.update(det['boxes'][0][keep], det['ids'][0][keep], det['scores'][0][keep],
                               det['masks'])

    def results(self):
        """{name: mAP} over the images seen."""
        out, self._evals['bbox'] = _coco_map(self._coco, self._boxes._results, 'bbox')  # pylint: disable=W0212
        if self._masks is not None:
            masks, self._evals['segm'] = _coco_map(self._coco, self._masks.get_result_buffer(), 'segm')
            out.update(masks)
        return out

    def class_aps(self):
        """{'{bbox,segm}_mAP@{0.5:0.95,0.5}': {class name: AP or None}} of the last :meth:`results`."""
        names = {cat_id: cat['name'] for cat_id, cat in self._coco.cats.items()}
        out = {}
        for kind, coco_eval in sorted(self._evals.items()):
            slices = {'%s_mAP@0.5:0.95' % kind: slice(None), '%s_mAP@0.5' % kind: slice(0, 1)}
            out.update(coco_class_aps(coco_eval, names, slices) if coco_eval is not None
                       else {metric: dict.fromkeys(names.values()) for metric in slices})
        return out

def _coco_map(coco, detections, kind):
    """COCO AP at IoU 0.5:0.95, 0.5 and 0.75 (all areas, 100 detections) of ``detections``, and the
    accumulated ``COCOeval`` (None without detections)."""
    from pycocotools.cocoeval import COCOeval  # pylint: disable=import-outside-toplevel
    names = ['%s_mAP@%s' % (kind, iou) for iou in ('0.5:0.95', '0.5', '0.75')]
    if not detections:  # pycocotools cannot load an empty result list
        return dict.fromkeys(names, 0.), None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_eval = COCOeval(coco, coco.loadRes(copy.deepcopy(detections)), kind)
        coco_eval.evaluate()
        coco_eval.accumulate()
    # (IoU, recall, class, area range 'all', at most 100 detections); -1 where a class has no truth
    precision = coco_eval.eval['precision'][:, :, :, 0, -1]
    values = [precision, precision[:1], precision[5:6]]
    return {name: float(np.mean(p[p > -1])) if (p > -1).any() else 0.
            for name, p in zip(names, values)}, coco_eval

def evaluators(dataset, val, classes, ious, prefix, masks=False):
    """The evaluators of a held-out set: COCO's for COCO annotations, else VOC07's at ``ious``."""
    if dataset == 'coco' or hasattr(val, 'coco'):  # COCO annotations (the shapes' for masks)
        return [COCOEvaluation(val, prefix, masks)]
    if masks:
        raise ValueError('mask evaluation needs COCO annotations (--dataset coco)')
    return [VOCEvaluation(classes, ious)]

def _original_coordinates(net_out, data, label, size):
    """Detections clipped to the network's input (as GluonCV's ``validate``) and detections and
    ground truth scaled, axis by axis, from the resized image to the original one."""
    from gluoncv.nn.bbox import BBoxClipToImage  # pylint: disable=import-outside-toplevel
    height, width = [float(v) for v in size.asnumpy().ravel()]
    scale = mx.nd.array([width / data.shape[3], height / data.shape[2]] * 2,
                        ctx=data.context).reshape((1, 1, 4))
    det = dict(ids=net_out[0], scores=net_out[1],
               boxes=mx.nd.broadcast_mul(BBoxClipToImage()(net_out[2], data), scale))
    gt = dict(boxes=mx.nd.broadcast_mul(label.slice_axis(axis=-1, begin=0, end=4), scale),
              ids=label.slice_axis(axis=-1, begin=4, end=5),
              difficults=label.slice_axis(axis=-1, begin=5, end=6) if label.shape[-1] > 5 else None)
    if len(net_out) > 3:  # masks of (MS, MS) in their boxes -> binary masks of the original image
        from gluoncv.data.transforms.mask import fill  # pylint: disable=import-outside-toplevel
        det = {key: value.asnumpy() for key, value in det.items()}
        det['keep'] = np.where((det['ids'][0].ravel() >= 0) & (det['scores'][0].ravel() >= 1e-3))[0]
        det['masks'] = fill(net_out[3][0].asnumpy()[det['keep']], det['boxes'][0][det['keep']],
                            (int(round(width)), int(round(height))))
    return det, gt

def evaluate_network(net, loader, metrics, ctx):
    """Run ``net`` over ``loader`` (:func:`val_loader`'s) and return {name: mAP (0-1)}.

    Detections are clipped to the network's input image, then detections and ground truth are
    scaled to the original image, as GluonCV's ``train_faster_rcnn.py`` validates; a mask network's
    masks (a fourth output, as ``MaskRCNN``'s) are pasted into the original image with GluonCV's
    ``fill``, as ``train_mask_rcnn.py`` does. ``metrics``: :class:`VOCEvaluation` /
    :class:`COCOEvaluation` objects.
    """
    for metric in metrics:
        metric.reset()
    net.hybridize(static_alloc=True)  # inference takes other inputs than training
    for batch in loader:
        for data, label, size in zip(*[[x.as_in_context(c) for x, c in zip(part, ctx)]
                                       for part in batch]):
            det, gt = _original_coordinates(net(data), data, label, size)
            for metric in metrics:
                metric.update(det, gt)
    results = {}
    for metric in metrics:
        results.update(metric.results())
    return results
