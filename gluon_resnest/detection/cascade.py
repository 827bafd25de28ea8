"""Cascade R-CNN (Cai & Vasconcelos, 2018) with FPN on our ResNeSt, built from GluonCV's R-CNN parts.

:class:`CascadeRCNN` is GluonCV's ``FasterRCNN`` (same features, RPN, sampler, region pooling,
outputs) with three box heads after the RPN instead of one. Each stage pools the boxes the previous
stage refined, so later stages train on better-placed boxes at a stricter foreground IoU. Defaults
follow detectron2's ``CascadeROIHeads`` (the implementation the published ResNeSt cascade numbers
come from):

- foreground IoU 0.5 / 0.6 / 0.7; stage 1 samples among the RPN proposals plus the ground-truth
  boxes (GluonCV's ``RCNNTargetSampler``); stages 2 and 3 label every box stage 1 sampled, as
  refined by the previous stage, without resampling (detectron2 does the same);
- class-agnostic box regression with target stds (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1),
  (0.033, 0.033, 0.067, 0.067) (detectron2's weights 10/20/30 and 5/10/15);
- stage losses summed with weight 1 each, and the gradient from each head into the shared features
  scaled by 1/3 (detectron2). The paper's 1, 0.5, 0.25 are ``stage_loss_weights=(1, .5, .25)``;
  equal weights are the default because stage 3 is the one whose boxes are kept, and detectron2's
  published ResNeSt cascades were trained that way;
- inference: the last stage's boxes with the class scores averaged over the three stages.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from gluoncv.model_zoo.rcnn.faster_rcnn import FasterRCNN
from gluoncv.nn.bbox import BBoxClipToImage
from gluoncv.nn.coder import (MultiClassEncoder, NormalizedBoxCenterDecoder,
                              NormalizedBoxCenterEncoder)

from .pooling import pyramid_roi_feats

__all__ = ['CascadeRCNN', 'CascadeHead', 'STAGE_IOU_THRESHS', 'STAGE_BOX_STDS', 'get_cascade_rcnn',
           'get_cascade_detector', 'class_mapping', 'materialised']

STAGE_IOU_THRESHS = (0.5, 0.6, 0.7)
STAGE_BOX_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))


class CascadeHead(nn.HybridBlock):
    """One later cascade stage: a box head, a class predictor and a class-agnostic box predictor."""

    def __init__(self, box_features, num_class, **kwargs):
        super(CascadeHead, self).__init__(**kwargs)
        with self.name_scope():
            self.box_features = box_features
            self.class_predictor = nn.Dense(num_class + 1, weight_initializer=mx.init.Normal(0.01))
            self.box_predictor = nn.Dense(4, weight_initializer=mx.init.Normal(0.001))

    def hybrid_forward(self, F, x):  # pylint: disable=arguments-differ
        feat = self.box_features(x)
        return self.class_predictor(feat), self.box_predictor(feat)


class CascadeRCNN(FasterRCNN):
    """Cascade R-CNN: GluonCV's Faster R-CNN with a cascade of three class-agnostic box heads.

    Parameters
    ----------
    stage_box_features : list of HybridBlock
        Box heads of stages 2, 3, ... (stage 1 uses ``box_features``); each a fresh block.
    stage_iou_threshs : tuple of float, default (0.5, 0.6, 0.7)
        Foreground IoU of each stage; the first replaces ``pos_iou_thresh``.
    stage_box_stds : tuple of 4-tuples
        Box-regression target stds of each stage.
    stage_loss_weights : tuple of float, default (1, 1, 1)
        Weights of the stage losses, read by :class:`gluon_resnest.detection.loss.DetectionLoss`.
    head_grad_scale : float or None, default None
        Gradient scale from each head into the features; None means ``1 / num stages``.
    **kwargs
        Everything ``gluoncv.model_zoo.FasterRCNN`` takes (``features``, ``classes``,
        ``box_features``, ``short``, ``num_sample``, ...).

    Outputs are those of ``FasterRCNN``: ``(ids, scores, bboxes)`` at inference; in training
    ``(cls_preds, box_preds, rois, samples, matches, raw_rpn_score, raw_rpn_box, anchors,
    cls_targets, box_targets, box_masks)`` where the per-stage outputs are stacked on a leading
    stage axis: ``cls_preds`` (S, B, N, C+1), ``box_preds``/``box_targets``/``box_masks``
    (S, B, N, 4), ``rois`` (S, B, N, 4) the boxes each stage pooled, ``samples``/``matches``/
    ``cls_targets`` (S, B, N).
    """

    def __init__(self, stage_box_features, stage_iou_threshs=STAGE_IOU_THRESHS,
                 stage_box_stds=STAGE_BOX_STDS, stage_loss_weights=(1., 1., 1.),
                 head_grad_scale=None, **kwargs):
        num_stages = len(stage_box_features) + 1
        if not len(stage_iou_threshs) == len(stage_box_stds) == len(stage_loss_weights) \
                == num_stages:
            raise ValueError('a %d-stage cascade needs %d IoU thresholds, box stds and loss weights, '
                             'got %d, %d and %d' % (num_stages, num_stages, len(stage_iou_threshs),
                                                    len(stage_box_stds), len(stage_loss_weights)))
        kwargs['pos_iou_thresh'] = stage_iou_threshs[0]
        super(CascadeRCNN, self).__init__(**kwargs)
        self.stage_iou_threshs = tuple(stage_iou_threshs)
        self.stage_box_stds = tuple(tuple(stds) for stds in stage_box_stds)
        self.stage_loss_weights = tuple(stage_loss_weights)
        self.head_grad_scale = 1. / num_stages if head_grad_scale is None else head_grad_scale
        self._clip = kwargs.get('clip')
        with self.name_scope():
            # Class-agnostic regression: one box per region instead of one per class.
            self.box_predictor = nn.Dense(4, weight_initializer=mx.init.Normal(0.001))
            self.stage_heads = nn.HybridSequential()
            for box_features in stage_box_features:
                self.stage_heads.add(CascadeHead(box_features, self.num_class))
            self.clip_to_image = BBoxClipToImage()
            self.cls_encoder = MultiClassEncoder()
            # Parameter-free; in HybridSequentials only to be registered children.
            self.box_encoders = nn.HybridSequential()
            self.box_decoders = nn.HybridSequential()
            for stds in self.stage_box_stds:
                self.box_encoders.add(NormalizedBoxCenterEncoder(stds=stds))
                self.box_decoders.add(NormalizedBoxCenterDecoder(stds=stds, convert_anchor=True,
                                                                 clip=self._clip))

    @property
    def num_cascade_stages(self):
        """Number of box stages (3 by default)."""
        return len(self.stage_iou_threshs)

    def reset_class(self, classes, reuse_weights=None):
        """New classes and class predictors of every stage, as GluonCV's ``FasterRCNN.reset_class``.

        Parameters
        ----------
        classes : list of str
            The new categories.
        reuse_weights : dict or list, optional
            ``{new: old}`` by index or name, or a list of names kept: those classes' predictor rows
            (and the background's) are copied into every stage's new class predictor. The
            class-agnostic box predictors are kept as they are.
        """
        mapping = class_mapping(getattr(self, 'classes', []), list(classes), reuse_weights)
        old_preds = [self.class_predictor] + [head.class_predictor for head in self.stage_heads]
        box_predictor = self.box_predictor
        # GluonCV's: classes, stage 1's fresh class predictor, decoder; rows are copied below.
        super(CascadeRCNN, self).reset_class(list(classes))
        with self.name_scope():
            self.box_predictor = box_predictor  # class-agnostic: GluonCV's per-class one dropped
        for head in self.stage_heads:
            old = head.class_predictor
            with head.name_scope():
                head.class_predictor = nn.Dense(self.num_class + 1, prefix=old.prefix,
                                                weight_initializer=mx.init.Normal(0.01),
                                                in_units=old.weight.shape[1])
            if old.weight._data is not None or old.weight._deferred_init:  # pylint: disable=W0212
                head.class_predictor.initialize(ctx=old.weight.list_ctx())
        new_preds = [self.class_predictor] + [head.class_predictor for head in self.stage_heads]
        # Row 0 is the background, kept whenever weights are reused (as GluonCV does). Predictors
        # still waiting for their first forward hold no weights yet: nothing to copy.
        rows = [(0, 0)] + [(new + 1, old + 1) for new, old in mapping.items()] if mapping else []
        for old, new in zip(old_preds, new_preds):
            if not rows or not materialised(old):
                continue
            for old_param, new_param in zip(old.params.values(), new.params.values()):
                data = new_param.data()
                for dst, src in rows:
                    data[dst] = old_param.data()[src]
                new_param.set_data(data)

    def _head(self, stage):
        if stage == 0:
            def first(x):
                feat = self.box_features(x)
                return self.class_predictor(feat), self.box_predictor(feat)
            return first
        return self.stage_heads[stage - 1]

    def _stage(self, F, stage, feat, boxes, batch_size, num_roi):
        """Pool ``boxes`` (B, N, 4) and run one head: class logits (B, N, C+1), deltas (B, N, 4)."""
        pooled = self._pool(F, feat, boxes, batch_size, num_roi, self._roi_size)
        pooled = F.contrib.gradientmultiplier(pooled, scalar=self.head_grad_scale)
        cls_pred, box_pred = self._head(stage)(pooled)
        return (cls_pred.reshape((batch_size, num_roi, self.num_class + 1)),
                box_pred.reshape((batch_size, num_roi, 4)))

    def _pool(self, F, feat, boxes, batch_size, num_roi, size):
        """FPN pooling of ``boxes`` (B, N, 4) to ``size``: (B * N, C, h, w); no gradient to boxes."""
        with autograd.pause():
            batchid = F.repeat(F.arange(0, batch_size), num_roi).reshape((-1, 1))
            rois = F.stop_gradient(F.concat(batchid, boxes.reshape((-1, 4)), dim=-1))
        # The FPN pooling that never reads unwritten memory on CPU (see pyramid_roi_feats).
        return pyramid_roi_feats(self, F, feat, rois, size, self._strides, roi_mode=self._roi_mode)

    def _refine(self, F, stage, box_pred, boxes, x):
        """Decode one stage's deltas on the boxes it pooled; clipped to the image, no gradient."""
        refined = self.box_decoders[stage](box_pred.reshape((1, -1, 4)), boxes.reshape((1, -1, 4)))
        refined = self.clip_to_image(refined.reshape_like(boxes), x)
        return F.stop_gradient(refined)

    def _label(self, F, boxes, gt_box, iou_thresh):
        """Match every box to its best ground truth: samples +1 at IoU >= thresh else -1, matches."""
        samples, matches = [], []
        for i in range(self._batch_size):
            box = F.squeeze(F.slice_axis(boxes, axis=0, begin=i, end=i + 1), axis=0)
            gt = F.squeeze(F.slice_axis(gt_box, axis=0, begin=i, end=i + 1), axis=0)
            ious = F.contrib.box_iou(box, gt, format='corner')
            best = ious.max(axis=-1)
            samples.append(F.where(best >= iou_thresh, F.ones_like(best), -F.ones_like(best)))
            matches.append(ious.argmax(axis=-1))
        return F.stack(*samples, axis=0), F.stack(*matches, axis=0)

    # pylint: disable=arguments-differ
    def hybrid_forward(self, F, x, gt_box=None, gt_label=None):
        feat = self.features(x)
        if not isinstance(feat, (list, tuple)):
            feat = [feat]
        if autograd.is_training():
            return self._train_forward(F, x, feat, gt_box, gt_label)
        return self._infer(F, x, feat)

    def _infer(self, F, x, feat):
        """(ids, scores, bboxes) of one image: last stage's boxes, scores averaged over stages."""
        _, boxes = self.rpn(F.zeros_like(x), *feat)
        scores = []
        for stage in range(self.num_cascade_stages):
            cls_pred, box_pred = self._stage(F, stage, feat, boxes, 1, self._rpn_test_post_nms)
            scores.append(F.softmax(cls_pred, axis=-1))
            boxes = self._refine(F, stage, box_pred, boxes, x)
        return self._detect(F, F.add_n(*scores) / len(scores), boxes)

    def _train_forward(self, F, x, feat, gt_box, gt_label):
        """The training outputs (see the class notes)."""
        rpn_score, rpn_box, raw_rpn_score, raw_rpn_box, anchors = self.rpn(F.zeros_like(x), *feat)
        boxes, samples, matches = self.sampler(rpn_box, rpn_score, gt_box)
        outputs = [[] for _ in range(8)]
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                with autograd.pause():
                    samples, matches = self._label(F, boxes, gt_box,
                                                   self.stage_iou_threshs[stage])
            cls_pred, box_pred = self._stage(F, stage, feat, boxes, self._batch_size,
                                             self._num_sample)
            with autograd.pause():
                cls_target = self.cls_encoder(samples, matches, gt_label)
                box_target, box_mask = self.box_encoders[stage](samples, matches, boxes, gt_box)
            for out, value in zip(outputs, (cls_pred, box_pred, boxes, samples, matches,
                                            cls_target, box_target, box_mask)):
                out.append(value)
            boxes = self._refine(F, stage, box_pred, boxes, x)
        cls_preds, box_preds, rois, samples, matches, cls_targets, box_targets, box_masks = \
            [F.stack(*out, axis=0) for out in outputs]
        return (cls_preds, box_preds, rois, samples, matches, raw_rpn_score, raw_rpn_box, anchors,
                cls_targets, box_targets, box_masks)

    def _detect(self, F, scores, boxes):
        """Per-class NMS as GluonCV's FasterRCNN: scores (1, N, C+1), boxes (1, N, 4)."""
        cls_ids, cls_scores = self.cls_decoder(scores)
        # (1, N, C) -> (C, N, 1); every class proposes the same class-agnostic box.
        cls_ids = cls_ids.transpose((0, 2, 1)).reshape((-3, 0, 1))
        cls_scores = cls_scores.transpose((0, 2, 1)).reshape((-3, 0, 1))
        bbox = F.broadcast_like(boxes, cls_ids, lhs_axes=(0,), rhs_axes=(0,))
        res = F.concat(cls_ids, cls_scores, bbox, dim=-1)
        if self.force_nms:
            res = res.reshape((1, -1, 0))
        res = F.contrib.box_nms(
            res, overlap_thresh=self.nms_thresh, topk=self.nms_topk, valid_thresh=0.0001,
            id_index=0, score_index=1, coord_start=2, force_suppress=self.force_nms)
        res = res.reshape((1, -1, 6))
        return (F.slice_axis(res, axis=-1, begin=0, end=1), F.slice_axis(res, axis=-1, begin=1, end=2),
                F.slice_axis(res, axis=-1, begin=2, end=6))


def materialised(block):
    """True when every parameter of ``block`` holds data (none waits for a first forward)."""
    return all(param._data is not None  # pylint: disable=protected-access
               for param in block.params.values())


def class_mapping(old_classes, new_classes, reuse_weights):
    """``reuse_weights`` as GluonCV's ``reset_class`` reads it, as {new index: old index}."""
    if not reuse_weights:
        return {}
    if isinstance(reuse_weights, (list, tuple)):
        reuse_weights = {name: name for name in reuse_weights
                         if name in new_classes and name in old_classes}
    mapping = {}
    for new, old in reuse_weights.items():
        for value, names, which in ((new, new_classes, 'new'), (old, old_classes, 'old')):
            if isinstance(value, str) and value not in names:
                raise ValueError('%s not found in the %s class names %s' % (value, which, names))
        new = new_classes.index(new) if isinstance(new, str) else int(new)
        old = old_classes.index(old) if isinstance(old, str) else int(old)
        if not (0 <= new < len(new_classes) and 0 <= old < len(old_classes)):
            raise ValueError('reuse_weights maps class %d to %d, outside the %d new / %d old '
                             'classes' % (new, old, len(new_classes), len(old_classes)))
        mapping[new] = old
    return mapping


def get_cascade_detector(cls, kind, name, dataset, pretrained=False, ctx=mx.cpu(), root=None, **kwargs):
    """Build ``cls(**kwargs)`` and load ``pretrained``, as GluonCV's ``get_faster_rcnn`` does.

    ``kind`` and ``name`` only name the network in errors; ``root`` is accepted like GluonCV's
    getters (the model store has no cascade weights).
    """
    del root
    if pretrained is True or (pretrained and not str(pretrained).endswith('.params')):
        raise ValueError('no published weights for %s_%s_%s; pass pretrained=False (with '
                         'pretrained_base) or the path of a .params file' % (kind, name, dataset))
    net = cls(**kwargs)
    if pretrained:
        net.load_parameters(str(pretrained), ctx=ctx)
    return net


def get_cascade_rcnn(name, dataset, pretrained=False, ctx=mx.cpu(), root=None, **kwargs):
    """Build a :class:`CascadeRCNN` the way ``gluoncv.model_zoo.get_faster_rcnn`` builds its net.

    Parameters
    ----------
    name : str
        Network part of the name, e.g. ``'fpn_syncbn_resnest50'`` (used in error messages).
    dataset : str
    pretrained : bool or str, default False
        A ``.params`` file of this detector to load strictly; no Cascade R-CNN weights are published,
        so True is an error.
    ctx : Context
    root : str, optional
        Unused; accepted like GluonCV's getters.
    **kwargs
        :class:`CascadeRCNN` arguments.
    """
    return get_cascade_detector(CascadeRCNN, 'cascade_rcnn', name, dataset, pretrained, ctx, root,
                          **kwargs)
