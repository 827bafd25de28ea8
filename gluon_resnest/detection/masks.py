"""Mask R-CNN and Cascade Mask R-CNN training: instance data, the training transform, mask targets.

The detection command trains masks with ``--detector mask_rcnn`` (GluonCV's FPN Mask R-CNN on our
backbone) or ``--detector cascade_mask_rcnn``, as GluonCV's ``train_mask_rcnn.py`` does:
instances from ``COCOInstance`` (COCO) or the shapes dataset's COCO-layout annotations,
``MaskRCNNDefaultTrainTransform`` and ``MaskRCNNTrainBatchify``, and a sigmoid cross-entropy on
the matched class's channel of each positive sample, against its ground-truth mask cropped to the
sample's box and resized to the network's mask size (``net.mask_target``).
"""
import mxnet as mx
import numpy as np

__all__ = ['load_instance_datasets', 'train_pipeline', 'ShortSideChoice',
           'mask_targets', 'mask_loss']


def load_instance_datasets(name, root):
    """(train, val, classes) for mask training: instances to train on, COCO boxes to evaluate.

    ``train`` yields (image, label, polygons) as GluonCV's ``COCOInstance``; ``val`` is a
    ``COCODetection`` of the held-out split (images without objects kept), whose ``coco`` the
    box and mask evaluation reads.

    Raises
    ------
    ValueError
        A dataset without instance annotations (VOC).
    FileNotFoundError
        ``root`` or its annotation files do not exist.
    """
    from gluoncv import data as gdata  # pylint: disable=import-outside-toplevel
    from .shapes import ShapesCOCODetection, ShapesInstance  # pylint: disable=import-outside-toplevel
    if name not in ('coco', 'shapes'):
        raise ValueError('mask training needs instance annotations: --dataset coco or shapes, got %r'
                         % (name,))
    if name == 'coco':
        train = gdata.COCOInstance(root, splits='instances_train2017')
        val = gdata.COCODetection(root, splits='instances_val2017', skip_empty=False)
    else:
        train = ShapesInstance(root, splits='instances_train')
        val = ShapesCOCODetection(root, splits='instances_val', skip_empty=False)
    return train, val, val.classes


class ShortSideChoice(object):
    """A training transform whose short side is drawn per image from a set of sides.

    detectron2's ``MIN_SIZE_TRAIN_SAMPLING: choice``: one of ``transforms`` (one per short side,
    each a GluonCV R-CNN training transform) picked uniformly with numpy's random state.
    """

    def __init__(self, transforms):
        self._transforms = list(transforms)

    def __call__(self, *sample):
        return self._transforms[np.random.randint(len(self._transforms))](*sample)


def train_pipeline(net, num_devices, masks=False):
    """(transform, batchify) of the training loader of any of the command's detectors.

    GluonCV's Mask R-CNN transform and batchify with ``masks`` (a network with a mask head: the
    registry's ``Detector.masks``), its Faster R-CNN ones otherwise. ``net.short``: one side, (LO, HI) for a side drawn in [LO, HI] per image
    (GluonCV's), or three or more sides for one of them per image (:class:`ShortSideChoice`).
    """
    # pylint: disable=import-outside-toplevel
    from gluoncv.data.batchify import FasterRCNNTrainBatchify, MaskRCNNTrainBatchify
    from gluoncv.data.transforms.presets.rcnn import (FasterRCNNDefaultTrainTransform,
                                                      MaskRCNNDefaultTrainTransform)
    kind = MaskRCNNDefaultTrainTransform if masks else FasterRCNNDefaultTrainTransform
    batchify = (MaskRCNNTrainBatchify if masks else FasterRCNNTrainBatchify)(net, num_devices)

    def build(short):
        return kind(short, net.max_size, net, ashape=net.ashape, multi_stage=True)
    short = net.short
    if isinstance(short, (tuple, list)) and len(short) > 2:
        return ShortSideChoice([build(side) for side in short]), batchify
    return build(short), batchify


def mask_targets(net, rois, matches, cls_targets, gt_mask, indices):
    """Targets and weights of the mask loss for the regions the mask head saw.

    Parameters
    ----------
    net
        A Mask R-CNN (GluonCV's ``MaskRCNN`` or :class:`CascadeMaskRCNN`): its ``mask_target``
        crops each ground-truth mask to a region's box and resizes it to the mask size.
    rois, matches, cls_targets : NDArray
        The training outputs (B, N, 4), (B, N), (B, N) of the sampled regions; a cascade's have a
        leading stage axis and its mask head trains on stage 1.
    gt_mask : NDArray
        (B, M, H, W) the images' ground-truth masks (``MaskRCNNTrainBatchify``'s).
    indices : NDArray
        (B, P) the samples the mask head predicted, per image.

    Returns
    -------
    (NDArray, NDArray)
        Targets and weights (B, P, C, MS, MS); weights are 1 on the matched class's channel of
        a positive sample, 0 elsewhere.
    """
    if getattr(net, 'stage_loss_weights', None) is not None:
        rois, matches, cls_targets = rois[0], matches[0], cls_targets[0]

    def pick(values):
        return mx.nd.stack(*[mx.nd.take(values[i], indices[i]) for i in range(indices.shape[0])],
                           axis=0)
    return net.mask_target(pick(rois), gt_mask, pick(matches), pick(cls_targets))


def mask_loss(net, loss_fn, outputs, gt_mask, mask_pred, indices):
    """The mask loss of a batch shard, normalised as ``train_mask_rcnn.py``: ``loss_fn`` (sigmoid
    cross-entropy) over the weighted elements, per image, times the elements over their weights.

    ``outputs``: the network's training outputs without ``mask_pred`` and ``indices`` (the
    region proposals third, matches fifth, class targets ninth, as Faster R-CNN's).
    """
    targets, weights = mask_targets(net, outputs[2], outputs[4], outputs[8], gt_mask, indices)
    if targets.shape[-2:] != mask_pred.shape[-2:]:
        raise ValueError('the mask head predicts %s masks but its targets are %s'
                         % (mask_pred.shape[-2:], targets.shape[-2:]))
    return loss_fn(mask_pred, targets, weights) * targets.size / mx.nd.maximum(weights.sum(), 1)
