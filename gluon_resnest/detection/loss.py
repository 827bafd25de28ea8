"""Training losses of Faster R-CNN and Cascade (Mask) R-CNN, normalised as GluonCV's scripts do."""
from mxnet import gluon

from .masks import mask_loss

__all__ = ['DetectionLoss']


def _box_loss(rho):
    """Smooth L1 (Huber) turning linear at ``rho``; L1 at 0 (HuberLoss divides by rho)."""
    if rho < 0:
        raise ValueError('a box loss rho must be >= 0, got %s' % rho)
    return gluon.loss.HuberLoss(rho=rho) if rho > 0 else gluon.loss.L1Loss()


class DetectionLoss(object):
    """RPN + R-CNN losses for one batch shard of GluonCV's ``FasterRCNNTrainBatchify`` layout.

    RPN: sigmoid cross-entropy and Huber (``rpn_rho``, default 1/9); R-CNN: softmax cross-entropy and
    Huber (``rcnn_rho``, default 1); a rho of 0 is the L1 loss of detectron2's configs (its
    ``SMOOTH_L1_BETA: 0``). Each is normalised by its number of valid samples as
    ``train_faster_rcnn.py`` does (GluonCV's ``--rpn-smoothl1-rho``/``--rcnn-smoothl1-rho``). For a
    :class:`~gluon_resnest.detection.CascadeRCNN` every stage adds its R-CNN losses times the net's
    ``stage_loss_weights``. With ``masks=True``, for a Mask R-CNN (GluonCV's ``MaskRCNN``) or a
    :class:`~gluon_resnest.detection.CascadeMaskRCNN` (the registry's ``Detector.masks``), it adds the
    mask loss (:func:`~gluon_resnest.detection.masks.mask_loss`: sigmoid cross-entropy on the matched
    class's channel, as ``train_mask_rcnn.py``), given the batch of GluonCV's
    ``MaskRCNNTrainBatchify`` (``gt_mask`` after ``label``).
    """

    def __init__(self, rpn_rho=1 / 9., rcnn_rho=1., masks=False):
        self.masks = masks
        self.rpn_cls_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box_loss = _box_loss(rpn_rho)
        self.rcnn_cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box_loss = _box_loss(rcnn_rho)
        self.rcnn_mask_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)

    def __call__(self, net, data, label, *targets):
        """Forward ``net`` in training mode (inside ``autograd.record``) and return the losses.

        Returns
        -------
        dict of str -> NDArray
            ``'total'`` (NDArray to call backward on, then ``trainer.step(batch_size)``) and
            per-part losses (means over the images, as GluonCV's training log shows them):
            ``rpn_cls``, ``rpn_box``, ``rcnn_cls``, ``rcnn_box`` (Faster R-CNN) or
            ``rcnn_cls{k}``, ``rcnn_box{k}`` for stage k = 1, 2, 3 (Cascade R-CNN), and ``rcnn_mask``
            (a Mask R-CNN).
        """
        gt_label, gt_box = label[:, :, 4:5], label[:, :, :4]
        outputs = list(net(data, gt_box, gt_label))
        mask = None
        if self.masks:  # mask_pred third and indices last, as GluonCV's
            mask = (targets[0], outputs.pop(2), outputs.pop())
            targets = targets[1:]
        rpn_cls_targets, rpn_box_targets, rpn_box_masks = targets
        cls_pred, box_pred, rpn_score, rpn_box = outputs[0], outputs[1], outputs[5], outputs[6]
        cls_targets, box_targets, box_masks = outputs[8], outputs[9], outputs[10]
        num_rpn = (rpn_cls_targets >= 0).sum()
        rpn_score = rpn_score.squeeze(axis=-1)
        # Per-image vectors, scaled as train_faster_rcnn.py: their sum is what backward sees.
        parts = {
            'rpn_cls': self.rpn_cls_loss(rpn_score, rpn_cls_targets, rpn_cls_targets >= 0)
                       * rpn_cls_targets.size / num_rpn,
            'rpn_box': self.rpn_box_loss(rpn_box, rpn_box_targets, rpn_box_masks)
                       * rpn_box.size / num_rpn}
        weights = getattr(net, 'stage_loss_weights', None)
        if weights is None:  # Faster R-CNN: one stage, per-class boxes
            stages = [('', 1., cls_pred, box_pred, cls_targets, box_targets, box_masks)]
        else:
            stages = [(str(k + 1), weights[k], cls_pred[k], box_pred[k], cls_targets[k],
                       box_targets[k], box_masks[k]) for k in range(len(weights))]
        for tag, weight, cls_p, box_p, cls_t, box_t, box_m in stages:
            num = (cls_t >= 0).sum()
            parts['rcnn_cls' + tag] = weight * self.rcnn_cls_loss(
                cls_p, cls_t, cls_t.expand_dims(-1) >= 0) * cls_t.size / num
            parts['rcnn_box' + tag] = weight * self.rcnn_box_loss(
                box_p, box_t, box_m) * box_p.size / num
        if mask is not None:
            parts['rcnn_mask'] = mask_loss(net, self.rcnn_mask_loss, outputs, *mask)
        losses = {name: value.mean() for name, value in parts.items()}
        losses['total'] = sum(value.sum() for value in parts.values())
        return losses
