"""FPN region pooling that never reads unwritten memory on the CPU.

On CPU, MXNet 1.9.1's ``ROIAlign`` leaves the output of a region whose batch index is -1 unwritten,
and GluonCV's FPN pooling marks the regions of the other pyramid levels exactly that way, so their
"zeros" are whatever the memory pool held (RCNN losses of 1e30 after a few networks in one process;
GluonCV's own ResNet detectors too). :func:`pyramid_roi_feats` pools each region on its own level, as
GluonCV does, and replaces the other levels' unwritten results by zeros, which is what the GPU kernel
gives. Every FPN detector of this package pools with it (:func:`use_safe_roi_pooling` installs it in
a GluonCV R-CNN).
"""
import types

import mxnet as mx

__all__ = ['pyramid_roi_feats', 'cpu_region_limit', 'use_safe_roi_pooling']


def pyramid_roi_feats(self, F, features, rpn_rois, roi_size, strides, roi_mode='align',
                      roi_canonical_scale=224.0, sampling_ratio=2, eps=1e-6):
    """FPN region pooling as GluonCV's ``RCNN._pyramid_roi_feats``, without masked regions.

    Each region goes to level ``floor(4 + log2(sqrt(area) / roi_canonical_scale))`` clipped to the
    pooled levels (P6 excluded), as in GluonCV. As in GluonCV, each level pools only its own regions
    (the others get batch index -1, which ROIAlign skips forward and backward: on CPU the region
    pooling's backward is a large share of an R-CNN training step); unlike GluonCV, the skipped
    regions' outputs, which MXNet leaves unwritten, are replaced by zeros before the sum, so no
    output depends on unwritten memory. MXNet 1.9.1's CPU ``ROIAlign`` also writes a zero to
    output element ``n`` (the flat index) for every skipped region ``n``: a skipped region put
    first takes those writes, which stay inside its own output while there are fewer regions than
    channels x pooled height x width (12,544 for FPN's 256 channels at 7x7): see
    :func:`cpu_region_limit`. Called eagerly on CPU with more regions, it raises ValueError.
    """
    if F is mx.nd and features[0].context.device_type == 'cpu':
        limit = cpu_region_limit(features[0].shape[1], roi_size)
        if rpn_rois.shape[0] > limit:
            raise ValueError('%d regions in one FPN pooling call; on CPU at most %d with %d channels '
                             'at %dx%d' % ((rpn_rois.shape[0], limit, features[0].shape[1])
                                           + tuple(roi_size)))
    max_stage = self._max_stage - 1 if self._max_stage > 5 else self._max_stage
    batch_id, x1, y1, x2, y2 = F.split(rpn_rois, axis=-1, num_outputs=5)
    size = F.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
    roi_level = F.floor(4 + F.log2(size / roi_canonical_scale + eps))
    roi_level = F.clip(roi_level, self._min_stage, max_stage)
    skipped = -F.ones_like(F.slice_axis(rpn_rois, axis=0, begin=0, end=1))
    pooled = []
    for index, level in enumerate(range(self._min_stage, max_stage + 1)):
        mine = roi_level == level
        level_rois = F.concat(F.where(mine, batch_id, -F.ones_like(batch_id)), x1, y1, x2, y2,
                              dim=-1)
        level_rois = F.concat(skipped, level_rois, dim=0)
        if roi_mode == 'align':
            feature = F.contrib.ROIAlign(features[index], level_rois, roi_size,
                                         1. / strides[index], sample_ratio=sampling_ratio)
        elif roi_mode == 'pool':
            feature = F.ROIPooling(features[index], level_rois, roi_size, 1. / strides[index])
        else:
            raise ValueError('invalid roi_mode %r; valid: align, pool' % (roi_mode,))
        feature = F.slice_axis(feature, axis=0, begin=1, end=None)
        pooled.append(F.where(F.reshape(mine, (-1,)), feature, F.zeros_like(feature)))
    return F.ElementWiseSum(*pooled)


def cpu_region_limit(channels, roi_size):
    """Most regions one call of :func:`pyramid_roi_feats` pools correctly on CPU: one fewer than
    ``channels`` x pooled height x width (MXNet 1.9.1's CPU ``ROIAlign`` zero-writes for skipped regions
    must land in the first region's output). An R-CNN pools ``num_sample`` x per-device batch regions
    per call while training and ``rpn_test_post_nms`` at inference (one image per call).
    """
    return channels * roi_size[0] * roi_size[1] - 1


def use_safe_roi_pooling(net):
    """Make a GluonCV FPN R-CNN pool regions with :func:`pyramid_roi_feats`; returns ``net``.

    Parameters and outputs are unchanged (on GPU, and on CPU whenever the memory pool held zeros).
    """
    net._pyramid_roi_feats = types.MethodType(pyramid_roi_feats, net)  # pylint: disable=protected-access
    net._clear_cached_op()  # pylint: disable=protected-access
    return net
