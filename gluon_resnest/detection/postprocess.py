"""Test-time limits on an R-CNN's detections: a score threshold and at most N detections per image.

GluonCV's R-CNNs keep every detection NMS leaves (scores down to 0.0001, no cap); detectron2, whose
ResNeSt configs gave the paper's COCO numbers, keeps scores >= 0.05 and the 100 best per image.
Applied after NMS this selects the same detections as detectron2 (which thresholds before NMS): a
box below the threshold can only suppress boxes scored lower than itself, which are dropped anyway.
"""
from mxnet import gluon, nd

__all__ = ['DetectionLimits']


class DetectionLimits(gluon.Block):
    """``detector`` whose detections below ``score_thresh`` are dropped and of which ``max_dets`` per image
    are kept, the best first; dropped places get id and score -1 (GluonCV's "no detection").

    Parameters
    ----------
    detector : gluon.Block
        Returns ``(ids, scores, bboxes, ...)`` of shapes (B, N, 1), (B, N, 1), (B, N, 4), and optionally
        per-detection outputs (B, N, ...) such as masks, which are selected alike.
    score_thresh : float
        Lowest score kept (0: all).
    max_dets : int
        Detections kept per image (-1 or 0: all); the output has ``min(N, max_dets)`` places.
    """

    def __init__(self, detector, score_thresh=0.0, max_dets=-1):
        super(DetectionLimits, self).__init__()
        self.detector = detector
        self.score_thresh, self.max_dets = score_thresh, max_dets

    def forward(self, x):  # pylint: disable=arguments-differ
        outputs = self.detector(x)
        ids, scores = outputs[0], outputs[1]
        kept = (ids >= 0) * (scores >= self.score_thresh)
        ranked = nd.where(kept, scores, -nd.ones_like(scores))
        places = scores.shape[1] if self.max_dets <= 0 else min(self.max_dets, scores.shape[1])
        order = nd.topk(ranked, axis=1, k=places, ret_typ='indices', dtype='int32')  # (B, k, 1)
        batch = nd.broadcast_like(nd.arange(scores.shape[0], dtype='int32').reshape((-1, 1, 1)), order)
        index = nd.concat(batch, order, dim=-1).reshape((-1, 2)).T  # (2, B*k)
        picked = [nd.gather_nd(out, index).reshape((scores.shape[0], places) + out.shape[2:])
                  for out in outputs]
        valid = nd.gather_nd(ranked, index).reshape((scores.shape[0], places, 1)) >= 0
        picked[0] = nd.where(valid, picked[0], -nd.ones_like(picked[0]))
        picked[1] = nd.where(valid, picked[1], -nd.ones_like(picked[1]))
        return tuple(picked)
