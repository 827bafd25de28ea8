"""The published ResNeSt variants: one table row each, thin entry points, get_model/list_models."""
import mxnet as mx

from .pretrained import PUBLISHED, get_model_file, load_weights
from .resnest import ResNeSt

__all__ = ['VARIANTS', 'get_model', 'list_models', 'model_key', 'resnest14', 'resnest26', 'resnest50',
           'resnest101', 'resnest200', 'resnest269', 'resnest50_fast_1s1x64d',
           'resnest50_fast_2s1x64d', 'resnest50_fast_4s1x64d', 'resnest50_fast_1s2x40d',
           'resnest50_fast_2s2x40d', 'resnest50_fast_4s2x40d', 'resnest50_fast_1s4x24d']


def _fast(radix, cardinality, bottleneck_width):
    # The official ablation networks were published with the resnetv1f_ symbol prefix.
    return dict(layers=[3, 4, 6, 3], stem_width=32, radix=radix, cardinality=cardinality,
                bottleneck_width=bottleneck_width, avd_first=True, dropblock_prob=0.1,
                prefix='resnetv1f_')


# Every variant is deep stem + avg_down + avd + split attention (the ResNeSt defaults).
VARIANTS = {
    'resnest14': dict(layers=[1, 1, 1, 1], stem_width=32, dropblock_prob=0.0),
    'resnest26': dict(layers=[2, 2, 2, 2], stem_width=32, dropblock_prob=0.1),
    'resnest50': dict(layers=[3, 4, 6, 3], stem_width=32, dropblock_prob=0.1),
    'resnest101': dict(layers=[3, 4, 23, 3], stem_width=64, dropblock_prob=0.1),
    'resnest200': dict(layers=[3, 24, 36, 3], stem_width=64, dropblock_prob=0.1, final_drop=0.2),
    'resnest269': dict(layers=[3, 30, 48, 8], stem_width=64, dropblock_prob=0.1, final_drop=0.2),
    'resnest50_fast_1s1x64d': _fast(1, 1, 64),
    'resnest50_fast_2s1x64d': _fast(2, 1, 64),
    'resnest50_fast_4s1x64d': _fast(4, 1, 64),
    'resnest50_fast_1s2x40d': _fast(1, 2, 40),
    'resnest50_fast_2s2x40d': _fast(2, 2, 40),
    'resnest50_fast_4s2x40d': _fast(4, 2, 40),
    'resnest50_fast_1s4x24d': _fast(1, 4, 24),
}


def list_models():
    """Names of all published ResNeSt networks, in table order."""
    return list(VARIANTS)


def model_key(name, what='model'):
    """The table key of a published network: ``name`` lower-cased.

    Every command and API checks names here, so they all accept the same spellings and say the same.

    Raises
    ------
    ValueError
        ``name`` is not a published network; the message lists the valid names (``what`` names the
        role, e.g. 'backbone').
    """
    key = str(name).lower()
    if key not in VARIANTS:
        raise ValueError('unknown %s %r; valid names: %s' % (what, name, ', '.join(VARIANTS)))
    return key


def get_model(name, pretrained=False, ctx=None, root=None, **kwargs):
    """Build a published ResNeSt network.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (case-insensitive).
    pretrained : bool or str, default False
        True loads the published ImageNet weights (downloaded once into ``root``, sha1-checked); a path
        loads that ``.params`` file (e.g. a train_imagenet.py checkpoint). ImageNet weights loaded with
        ``classes`` other than 1000 keep the backbone and get a fresh classifier; a file with another
        number of classes must match ``classes``. False returns an uninitialised network.
    ctx : Context, default cpu()
        Where the loaded weights go.
    root : str, default ``~/.mxnet/models``
        Folder of the downloaded weights (shared with GluonCV).
    **kwargs
        Any :class:`~gluon_resnest.resnest.ResNeSt` argument; it overrides the published value
        (e.g. ``dropblock_prob=0``, ``dilated=True``, ``classes=10``).

    Returns
    -------
    ResNeSt
    """
    key = model_key(name)
    config = dict(VARIANTS[key])
    config.update(kwargs)
    net = ResNeSt(**config)
    net.model_name = key
    if pretrained:
        ctx = ctx or mx.cpu()
        path = pretrained if isinstance(pretrained, str) else get_model_file(key, root=root)
        load_weights(net, path, ctx=ctx, fresh_imagenet_classifier=True)
        if net.num_classes == 1000:
            _attach_imagenet_names(net)
    return net


def _attach_imagenet_names(net):
    from gluoncv.data import ImageNet1kAttr  # pylint: disable=import-outside-toplevel
    attrib = ImageNet1kAttr()
    net.synset = attrib.synset
    net.classes = attrib.classes
    net.classes_long = attrib.classes_long


def resnest14(**kwargs):
    """ResNeSt-14; arguments as :func:`get_model`."""
    return get_model('resnest14', **kwargs)


def resnest26(**kwargs):
    """ResNeSt-26; arguments as :func:`get_model`."""
    return get_model('resnest26', **kwargs)


def resnest50(**kwargs):
    """ResNeSt-50; arguments as :func:`get_model`."""
    return get_model('resnest50', **kwargs)


def resnest101(**kwargs):
    """ResNeSt-101; arguments as :func:`get_model`."""
    return get_model('resnest101', **kwargs)


def resnest200(**kwargs):
    """ResNeSt-200; arguments as :func:`get_model`."""
    return get_model('resnest200', **kwargs)


def resnest269(**kwargs):
    """ResNeSt-269; arguments as :func:`get_model`."""
    return get_model('resnest269', **kwargs)


def resnest50_fast_1s1x64d(**kwargs):
    """ResNeSt-50 fast, radix 1, cardinality 1, width 64; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_1s1x64d', **kwargs)


def resnest50_fast_2s1x64d(**kwargs):
    """ResNeSt-50 fast, radix 2, cardinality 1, width 64; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_2s1x64d', **kwargs)


def resnest50_fast_4s1x64d(**kwargs):
    """ResNeSt-50 fast, radix 4, cardinality 1, width 64; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_4s1x64d', **kwargs)


def resnest50_fast_1s2x40d(**kwargs):
    """ResNeSt-50 fast, radix 1, cardinality 2, width 40; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_1s2x40d', **kwargs)


def resnest50_fast_2s2x40d(**kwargs):
    """ResNeSt-50 fast, radix 2, cardinality 2, width 40; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_2s2x40d', **kwargs)


def resnest50_fast_4s2x40d(**kwargs):
    """ResNeSt-50 fast, radix 4, cardinality 2, width 40; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_4s2x40d', **kwargs)


def resnest50_fast_1s4x24d(**kwargs):
    """ResNeSt-50 fast, radix 1, cardinality 4, width 24; arguments as :func:`get_model`."""
    return get_model('resnest50_fast_1s4x24d', **kwargs)
