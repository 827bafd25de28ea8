"""The held-out AP of every class, beside the mAP (their mean).

Per class, as the overall metrics compute it: VOC07 11-point AP (GluonCV's ``VOC07MApMetric`` keeps one
per class) and COCO's AP from ``COCOeval``'s precision array (IoU x recall x category x area x max
detections), the category's slice averaged where it is defined. A class without ground truth in the
held-out data has no AP (None).
"""
import math

import numpy as np

__all__ = ['voc_class_aps', 'coco_class_aps', 'collect_class_aps', 'format_class_aps']


def _value(ap):
    ap = float(ap)
    return None if math.isnan(ap) else ap


def voc_class_aps(metric):
    """{class name: AP or None} of a GluonCV ``VOC07MApMetric`` (or ``VOCMApMetric``)."""
    names, values = metric.get()
    return {name: _value(ap) for name, ap in zip(names[:-1], values[:-1])}  # the last is the mean


def coco_class_aps(coco_eval, names, iou_slices):
    """{metric name: {class name: AP or None}} of an accumulated ``COCOeval``.

    Parameters
    ----------
    coco_eval : pycocotools.cocoeval.COCOeval
        After ``accumulate()`` (area range 'all' and the largest detection count are read).
    names : dict
        {category id: class name} of the categories to report.
    iou_slices : dict
        {metric name: slice of the IoU thresholds}, e.g. ``{'bbox_mAP@0.5': slice(0, 1)}``.
    """
    precision = coco_eval.eval['precision'][:, :, :, 0, -1]
    out = {}
    for metric, ious in iou_slices.items():
        per_class = {}
        for k, cat_id in enumerate(coco_eval.params.catIds):
            if cat_id in names:
                p = precision[ious, :, k]
                per_class[names[cat_id]] = float(np.mean(p[p > -1])) if (p > -1).any() else None
        out[metric] = per_class
    return out


def collect_class_aps(metrics):
    """{metric name: {class name: AP}} of every evaluation object in ``metrics`` (their ``class_aps()``)."""
    out = {}
    for metric in metrics:
        out.update(metric.class_aps())
    return out


def format_class_aps(class_aps):
    """Lines of a table: one row per class, one column per metric ('-': no ground truth)."""
    if not class_aps:
        return []
    columns = sorted(class_aps)
    classes = list(class_aps[columns[0]])
    width = max([len('class')] + [len(name) for name in classes])
    lines = ['%-*s  %s' % (width, 'class', '  '.join('%12s' % c for c in columns))]
    for name in classes:
        values = [class_aps[c].get(name) for c in columns]
        lines.append('%-*s  %s' % (width, name, '  '.join('%12s' % ('-' if v is None else '%.4f' % v)
                                                            for v in values)))
    return lines
