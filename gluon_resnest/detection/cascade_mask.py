"""Cascade Mask R-CNN: :class:`CascadeRCNN` plus GluonCV's Mask R-CNN mask head.

As in detectron2's ``CascadeROIHeads``, the mask head trains on stage 1's foreground samples (IoU
>= 0.5 with a ground-truth box, as Mask R-CNN's) and at inference segments the final detections,
whose boxes come from the last stage. As in detectron2 and GluonCV's FPN Mask R-CNN, it pools its own
14x14 features (the box heads pool 7x7) and predicts 28x28 masks; its pooling is not behind the box
heads' gradient scale, so the mask loss reaches the features at full strength.
"""
import mxnet as mx
from mxnet import autograd

from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import Mask
from gluoncv.model_zoo.rcnn.mask_rcnn.rcnn_target import MaskTargetGenerator

from .cascade import CascadeRCNN, get_cascade_detector, class_mapping, materialised

__all__ = ['CascadeMaskRCNN', 'get_cascade_mask_rcnn']


class CascadeMaskRCNN(CascadeRCNN):
    """Cascade R-CNN with a mask head (GluonCV's ``Mask``), outputs as GluonCV's ``MaskRCNN``.

    Parameters
    ----------
    mask_channels, rcnn_max_dets, target_roi_scale, num_fcn_convs, norm_layer, norm_kwargs
        As ``gluoncv.model_zoo.MaskRCNN``.
    mask_roi_size : tuple of int, default (14, 14)
        Size the mask head pools its regions to; masks are ``target_roi_scale`` times larger.
    **kwargs
        :class:`CascadeRCNN` arguments.

    Inference returns ``(ids, scores, bboxes, masks)``; masks (1, rcnn_max_dets, MS, MS) are the
    sigmoid of each detection's class channel. Training returns :class:`CascadeRCNN`'s outputs with
    ``mask_pred`` (B, P, C, MS, MS) inserted third and ``indices`` (B, P) last: the P stage-1
    samples the mask head saw (positives first).
    """

    def __init__(self, mask_channels=256, rcnn_max_dets=1000, target_roi_scale=1, num_fcn_convs=0,
                 norm_layer=None, norm_kwargs=None, mask_roi_size=(14, 14), **kwargs):
        super(CascadeMaskRCNN, self).__init__(**kwargs)
        self._rcnn_max_dets = min(rcnn_max_dets, self._rpn_test_post_nms)
        self._max_pos = self.sampler._max_pos  # pylint: disable=protected-access
        with self.name_scope():
            self.mask = Mask(self._batch_size, self.classes, mask_channels,
                             num_fcn_convs=num_fcn_convs, norm_layer=norm_layer,
                             norm_kwargs=norm_kwargs)
            self._mask_roi_size = tuple(mask_roi_size)
            self._target_roi_size = tuple(s * target_roi_scale for s in self._mask_roi_size)
            self.mask_target = MaskTargetGenerator(self._batch_size, self._max_pos, self.num_class,
                                                   self._target_roi_size)

    def reset_class(self, classes, reuse_weights=None):
        """New classes: :meth:`CascadeRCNN.reset_class` and the mask head's, as GluonCV's
        ``MaskRCNN.reset_class``."""
        mapping = class_mapping(getattr(self, 'classes', []), list(classes), reuse_weights)
        super(CascadeMaskRCNN, self).reset_class(classes, mapping)
        # GluonCV's copies rows with .data(): none to copy before the first forward.
        self.mask.reset_class(list(classes), mapping if materialised(self.mask.mask) else None)
        self.mask_target = MaskTargetGenerator(self._batch_size, self._max_pos, self.num_class,
                                               self._target_roi_size)

    # pylint: disable=arguments-differ
    def hybrid_forward(self, F, x, gt_box=None, gt_label=None):
        feat = self.features(x)
        if not isinstance(feat, (list, tuple)):
            feat = [feat]
        if not autograd.is_training():
            return self._segment(F, feat, *self._infer(F, x, feat))
        outputs = self._train_forward(F, x, feat, gt_box, gt_label)
        samples = F.slice_axis(outputs[3], axis=0, begin=0, end=1).reshape((-3, 0))  # stage 1
        # The first max_pos samples of each image, positives first (GluonCV's sampler takes no more).
        indices = F.slice_axis(F.argsort(samples, axis=1, is_ascend=False), axis=1, begin=0,
                               end=self._max_pos)
        rois = F.slice_axis(outputs[2], axis=0, begin=0, end=1).reshape((-3, 0, 0))
        picked = F.stack(*[F.take(F.slice_axis(rois, axis=0, begin=i, end=i + 1).squeeze(axis=0),
                                  F.slice_axis(indices, axis=0, begin=i, end=i + 1).squeeze(axis=0))
                           for i in range(self._batch_size)], axis=0)
        # Pooled apart from the box heads: no gradient scale between the mask loss and the features.
        picked = self._pool(F, feat, picked, self._batch_size, self._max_pos, self._mask_roi_size)
        mask_pred = self.mask(picked)
        return outputs[:2] + (mask_pred,) + outputs[2:] + (indices,)

    def _segment(self, F, feat, ids, scores, boxes):
        """Masks of the ``rcnn_max_dets`` best detections, pooled on their final boxes."""
        num = self._rcnn_max_dets
        order = F.slice_axis(F.argsort(scores.squeeze(axis=-1), axis=1, is_ascend=False), axis=1,
                             begin=0, end=num).reshape((-1,))
        ids, scores, boxes = [F.take(out.squeeze(axis=0), order).expand_dims(0)
                              for out in (ids, scores, boxes)]
        pooled = self._pool(F, feat, boxes, 1, num, self._mask_roi_size)
        masks = self.mask(pooled).squeeze(axis=0)  # (num, C, MS, MS)
        class_ids = F.clip(ids.reshape((-1,)), 0, self.num_class - 1)  # -1: no detection
        masks = F.gather_nd(masks, F.stack(F.arange(0, num), class_ids, axis=0))
        return ids, scores, boxes, F.sigmoid(masks).expand_dims(0)


def get_cascade_mask_rcnn(name, dataset, pretrained=False, ctx=mx.cpu(), root=None, **kwargs):
    """As :func:`gluon_resnest.detection.get_cascade_rcnn`, for :class:`CascadeMaskRCNN`."""
    return get_cascade_detector(CascadeMaskRCNN, 'cascade_mask_rcnn', name, dataset, pretrained, ctx,
                          root, **kwargs)
