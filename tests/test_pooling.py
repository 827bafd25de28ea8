"""FPN region pooling (gluon_resnest/detection/pooling.py) against MXNet's ROIAlign level by level, and its CPU
region limit."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_resnest.detection.pooling import cpu_region_limit, pyramid_roi_feats


class _Levels(object):
    """The two attributes FPN region pooling reads off an R-CNN: pool P2..P5 (P6 is skipped)."""
    _min_stage, _max_stage = 2, 6


def _pyramid_case(num_rois=300):
    """Features of 2 images on P2..P5 and regions spread over the four levels and both images."""
    rng = np.random.RandomState(3)
    features = [mx.nd.array(rng.uniform(size=(2, 8, 40 >> k, 48 >> k))) for k in range(4)]
    levels = rng.randint(2, 6, size=num_rois)
    side = 224.0 * 2.0 ** (levels - 4) * rng.uniform(1.1, 1.8, size=num_rois)
    corner = rng.uniform(0, 60, size=(num_rois, 2))
    rois = np.hstack([rng.randint(0, 2, size=(num_rois, 1)), corner, corner + side[:, None] - 1])
    return features, mx.nd.array(rois), levels


def test_fpn_pooling_pools_and_backpropagates_each_region_on_its_own_level():
    """Forward and gradient equal ROIAlign run level by level on that level's regions only.

    More regions than MXNet's CPU ROIAlign zero-writes fit below the first region's output, with
    the memory pool full of 1e30: a wrong element or gradient would show.
    """
    features, rois, levels = _pyramid_case()
    head_grad = mx.nd.array(np.random.RandomState(4).normal(size=(len(levels), 8, 7, 7)))
    want_out = np.zeros(head_grad.shape, np.float32)
    want_grads = []
    for feature, stride, level in zip(features, (4, 8, 16, 32), (2, 3, 4, 5)):
        index = mx.nd.array(np.flatnonzero(levels == level))
        feature = feature.copy()
        feature.attach_grad()
        with autograd.record():
            out = mx.nd.contrib.ROIAlign(feature, rois.take(index), (7, 7), 1. / stride,
                                         sample_ratio=2)
        out.backward(head_grad.take(index))
        want_out[levels == level] = out.asnumpy()
        want_grads.append(feature.grad.asnumpy())
    for feature in features:
        feature.attach_grad()
    for _ in range(2):
        for _ in range(4):
            junk = mx.nd.full(head_grad.shape, 1e30)
            junk.wait_to_read()
            del junk
        with autograd.record():
            got = pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
        got.backward(head_grad)
        np.testing.assert_allclose(got.asnumpy(), want_out, rtol=1e-5, atol=1e-6)
        for feature, want in zip(features, want_grads):
            np.testing.assert_allclose(feature.grad.asnumpy(), want, rtol=1e-4, atol=1e-5)


def _level_by_level(features, rois, levels):
    out = np.zeros((len(levels), features[0].shape[1], 7, 7), np.float32)
    for feature, stride, level in zip(features, (4, 8, 16, 32), (2, 3, 4, 5)):
        index = mx.nd.array(np.flatnonzero(levels == level))
        out[levels == level] = mx.nd.contrib.ROIAlign(feature, rois.take(index), (7, 7), 1. / stride,
                                                      sample_ratio=2).asnumpy()
    return out


def test_cpu_region_limit_is_where_fpn_pooling_stops_being_exact():
    """8 channels at 7x7 hold 392 output elements per region: 391 regions pool exactly; past the
    limit the graph form (which cannot check the count) loses elements to ROIAlign's zero-writes,
    and the eager form refuses with a one-line error."""
    limit = cpu_region_limit(8, (7, 7))
    assert limit == 391
    features, rois, levels = _pyramid_case(limit)
    got = pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
    np.testing.assert_allclose(got.asnumpy(), _level_by_level(features, rois, levels),
                               rtol=1e-5, atol=1e-6)
    features, rois, levels = _pyramid_case(3 * limit)
    with pytest.raises(ValueError, match=r'^1173 regions in one FPN pooling call; on CPU at most 391 '
                                         r'with 8 channels at 7x7$'):
        pyramid_roi_feats(_Levels(), mx.nd, features, rois, (7, 7), (4, 8, 16, 32))
    names = ['p%d' % k for k in range(4)]
    graph = pyramid_roi_feats(_Levels(), mx.sym, [mx.sym.var(n) for n in names], mx.sym.var('rois'),
                              (7, 7), (4, 8, 16, 32))
    inputs = dict(zip(names, features), rois=rois)
    got = graph.eval(ctx=mx.cpu(), **inputs)[0].asnumpy()
    want = _level_by_level(features, rois, levels)
    lost = (got == 0) & (want > 0)  # positive features: zeros only where a region leaves the map
    assert lost.sum() > 0
    np.testing.assert_allclose(got[~lost], want[~lost], rtol=1e-5, atol=1e-6)
