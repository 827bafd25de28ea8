"""Training losses of Faster R-CNN and Cascade R-CNN, normalised as GluonCV's training script does."""
from mxnet import gluon

__all__ = ['DetectionLoss']


class DetectionLoss(object):
    """RPN + R-CNN losses for one batch shard of GluonCV's ``FasterRCNNTrainBatchify`` layout.

    RPN: sigmoid cross-entropy and Huber (rho 1/9); R-CNN: softmax cross-entropy and Huber (rho 1),
    each normalised by its number of valid samples as ``train_faster_rcnn.py`` does. For a
    :class:`~gluon_resnest.detection.CascadeRCNN` every stage adds its R-CNN losses times the net's
    ``stage_loss_weights``.
    """

    def __init__(self):
        self.rpn_cls_loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box_loss = gluon.loss.HuberLoss(rho=1 / 9.)
        self.rcnn_cls_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box_loss = gluon.loss.HuberLoss()

    def __call__(self, net, data, label, rpn_cls_targets, rpn_box_targets, rpn_box_masks):
        """Forward ``net`` in training mode (inside ``autograd.record``) and return the losses.

        Returns
        -------
        dict of str -> NDArray
            ``'total'`` (NDArray to call backward on, then ``trainer.step(batch_size)``) and
            per-part losses (means over the images, as GluonCV's training log shows them):
            ``rpn_cls``, ``rpn_box``, ``rcnn_cls``, ``rcnn_box`` (Faster R-CNN) or
            ``rcnn_cls{k}``, ``rcnn_box{k}`` for stage k = 1, 2, 3 (Cascade R-CNN).
        """
        gt_label, gt_box = label[:, :, 4:5], label[:, :, :4]
        outputs = net(data, gt_box, gt_label)
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
        losses = {name: value.mean() for name, value in parts.items()}
        losses['total'] = sum(value.sum() for value in parts.values())
        return losses
