"""Pieces every export format shares: the preprocessing block, writing files
atomically and comparing outputs."""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..data.eval_protocol import MEAN, STD
from ..loading import import_graph

__all__ = ['ExportCheckError', 'Preprocess', 'deploy_block', 'output_dir',
           'random_input', 'input_shape', 'compare_outputs', 'load_symbol_block', 'random_ops_in']

# The ImageNet statistics of training and evaluation (GluonCV's export_block folds the same), in 0..255 units.
MEAN_RGB = tuple(255 * m for m in MEAN)
STD_RGB = tuple(255 * s for s in STD)


class ExportCheckError(RuntimeError):
    """An exported artifact does not compute what the network computes."""


class Preprocess(HybridBlock):
    """Raw images (N, H, W, 3), RGB, 0..255, uint8 or float -> normalised (N, 3, H, W) float32.

    GluonCV's ``export_block`` folds the same mean/std and HWC->CHW into exported graphs; this block
    adds a cast first so the deployed graph takes uint8 images directly (GluonCV's broadcast would
    reject them).
    """

    def __init__(self, mean=MEAN_RGB, std=STD_RGB, **kwargs):
        super(Preprocess, self).__init__(**kwargs)
        with self.name_scope():
            self.mean = self.params.get_constant('mean', mx.nd.array(mean).reshape((1, 1, 1, 3)))
            self.std = self.params.get_constant('std', mx.nd.array(std).reshape((1, 1, 1, 3)))

    def hybrid_forward(self, F, x, mean, std):  # pylint: disable=arguments-differ
        x = F.broadcast_div(F.broadcast_minus(F.cast(x, 'float32'), mean), std)
        return F.transpose(x, axes=(0, 3, 1, 2))


def deploy_block(net, preprocess=False):
    """``net`` itself, or ``net`` behind a :class:`Preprocess` block (one graph taking raw images)."""
    if not preprocess:
        return net
    # Empty prefix: the network's own parameter names (resnest_conv0_weight ...) stay unchanged.
    wrapper = nn.HybridSequential(prefix='')
    pre = Preprocess(prefix='preprocess_')
    pre.initialize(ctx=mx.cpu())
    wrapper.add(pre)
    wrapper.add(net)
    return wrapper


@contextmanager
def output_dir(out_dir):
    """Yield a private temporary folder inside ``out_dir``; on success ``publish`` moves files out.

    Usage: ``with output_dir(d) as (tmp, publish): ...write into tmp...; paths = publish()``.
    Nothing is left in ``out_dir`` if the body raises, so a failed export leaves no partial files.
    """
    out_dir = os.path.abspath(out_dir)
    created = not os.path.exists(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.export-', dir=out_dir)
    except OSError as err:
        raise ValueError('cannot write to output folder %s: %s' % (out_dir, err.strerror)) from err

    def publish():
        # os.replace within one folder is atomic: readers never see half-written artifacts.
        paths = []
        for name in sorted(os.listdir(tmp)):
            final = os.path.join(out_dir, name)
            os.replace(os.path.join(tmp, name), final)
            paths.append(final)
        return paths

    try:
        yield tmp, publish
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)  # a failed export leaves no trace, not even the folder it made


def random_input(shape, preprocess=False, seed=0):
    """A reproducible random batch: uint8 images (N, H, W, 3) with ``preprocess``, else N(0, 1) NCHW."""
    rng = np.random.RandomState(seed)
    if preprocess:
        return mx.nd.array(rng.randint(0, 256, size=shape), dtype='uint8')
    return mx.nd.array(rng.standard_normal(shape).astype('float32'))


def input_shape(batch_size, input_size, preprocess=False):
    """Shape of the exported graph's ``data`` input."""
    if batch_size < 1 or input_size < 1:
        raise ValueError('batch size and input size must be >= 1, got %d and %d'
                         % (batch_size, input_size))
    if preprocess:
        return (batch_size, input_size, input_size, 3)
    return (batch_size, 3, input_size, input_size)


def compare_outputs(expected, actual, atol, what):
    """Raise :class:`ExportCheckError` unless ``actual`` equals ``expected`` within ``atol``.

    Returns the maximum absolute difference.
    """
    expected = np.asarray(expected, dtype='float64')
    actual = np.asarray(actual, dtype='float64')
    if expected.shape != actual.shape:
        raise ExportCheckError('%s: output shape %s differs from the network\'s %s'
                               % (what, actual.shape, expected.shape))
    if not np.all(np.isfinite(actual)):
        raise ExportCheckError('%s: output contains NaN or inf' % what)
    diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if not diff <= atol:
        raise ExportCheckError('%s: output differs from the network\'s by %.3g (tolerance %.1g)'
                               % (what, diff, atol))
    return diff


def load_symbol_block(prefix, ctx=None):
    """Load ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` as eval.py does."""
    return import_graph(prefix, ctx=ctx)[0]


def random_ops_in(symbol_json):
    """Names of random or training-only operators (Dropout, _random_*, _sample_*) in a symbol JSON."""
    nodes = json.loads(symbol_json)['nodes']
    return sorted({n['op'] for n in nodes
                   if n['op'] == 'Dropout' or n['op'].startswith(('_random', '_sample', 'random'))})
