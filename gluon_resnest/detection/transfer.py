"""Start a detector from one trained on other classes (``--pretrained-detector``).

The source is a weights file or a GluonCV model-zoo name, and its classes are known from:

- a checkpoint of ours: its ``.json`` record (``{prefix}-NNNN.json``, given itself or found beside the
  ``.params`` file) records the classes;
- a bare ``.params`` file: ``pretrained_classes`` (``'a,b,c'`` or a file, one name a line) must name them;
- a zoo name (``faster_rcnn_fpn_syncbn_resnest50_coco``): the classes of the dataset it ends with (COCO's
  80 or VOC's 20, GluonCV's ``CLASSES``), the file from GluonCV's model store (downloaded once into
  ``~/.mxnet/models``, as ``get_model(name, pretrained=True)`` finds it).

:func:`start_from_detector` builds the network for those classes, loads the weights strictly, then resets
its class layers to the new classes with the network's ``reset_class``, keeping the rows of the classes
whose names match (GluonCV's fine-tuning tutorial): Faster R-CNN's class and per-class box predictors,
every cascade stage's class predictor, the mask head's per-class output. The other rows start afresh.
"""
import json
import os

from .datasets import DataError, read_class_list

__all__ = ['detector_source', 'start_from_detector', 'load_weights']

_ZOO_CLASSES = {'coco': 'COCODetection', 'voc': 'VOCDetection'}


def detector_source(source, pretrained_classes=None, root=os.path.join('~', '.mxnet', 'models')):
    """(.params path, class names) of a ``--pretrained-detector`` value.

    Raises
    ------
    DataError
        The classes cannot be known, or the record or file is missing.
    """
    given = read_class_list(pretrained_classes)
    if source.endswith('.json') or source.endswith('.params'):
        stem = source[:-len('.json')] if source.endswith('.json') else source[:-len('.params')]
        params, record = stem + '.params', stem + '.json'
        if not os.path.isfile(params):
            raise DataError('--pretrained-detector %s: no weights file %s' % (source, params))
        if given is not None:
            return params, given
        if not os.path.isfile(record):
            raise DataError('--pretrained-detector %s: a bare .params file does not say its classes; name them '
                            'with --pretrained-classes a,b,c (or a file, one name a line)' % source)
        return params, _record_classes(record)
    return _zoo_source(source, given, root)


def _record_classes(record):
    try:
        with open(record) as f:
            classes = json.load(f).get('classes')
    except (OSError, ValueError, AttributeError) as err:
        raise DataError('--pretrained-detector: checkpoint record %s is unreadable (%s)' % (record, err)) from None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DataError('--pretrained-detector: checkpoint record %s lists no classes; name them with '
                        '--pretrained-classes' % record)
    return classes


def _zoo_source(name, given, root):
    """The model store's file of a zoo name and the classes of its dataset suffix (or ``given``)."""
    # pylint: disable=import-outside-toplevel
    from gluoncv import data as gdata
    from gluoncv.model_zoo.model_store import _model_sha1, get_model_file
    if name not in _model_sha1:
        raise DataError('--pretrained-detector %s: neither a .params/.json file nor a model-zoo name with '
                        'published weights' % name)
    dataset = name.rsplit('_', 1)[-1]
    if given is None and dataset not in _ZOO_CLASSES:
        raise DataError('--pretrained-detector %s: name its classes with --pretrained-classes' % name)
    classes = given if given is not None else list(getattr(gdata, _ZOO_CLASSES[dataset]).CLASSES)
    return get_model_file(name, root=os.path.expanduser(root)), classes


def start_from_detector(build, params, old_classes, classes, ctx):
    """The network ``build(old_classes)`` with the weights of ``params``, reset to ``classes``.

    Parameters
    ----------
    build : callable
        Class names -> an uninitialised detector of the command (any with ``reset_class``).
    params : str
        The weights of a detector of ``old_classes``, loaded strictly.
    old_classes, classes : list of str
    ctx : list of Context

    Returns
    -------
    (network, list of str)
        The network for ``classes`` and the names whose rows came from ``params``.

    Raises
    ------
    ValueError
        The file does not fit the network built (one line naming the first parameters).
    """
    import mxnet as mx  # pylint: disable=import-outside-toplevel
    net = build(list(old_classes))
    rows = mx.nd.load(params).get('class_predictor.weight')
    if rows is not None and rows.shape[0] != len(old_classes) + 1:
        raise ValueError('--pretrained-detector %s has %d classes, not the %d named (%s)'
                         % (params, rows.shape[0] - 1, len(old_classes), ', '.join(old_classes[:5])))
    load_weights(net, params, ctx, '--pretrained-detector %s' % params)
    kept = [name for name in classes if name in old_classes]
    # By index: GluonCV's reset_class changes a dict of names while iterating over it.
    net.reset_class(list(classes), reuse_weights={classes.index(n): list(old_classes).index(n) for n in kept})
    return net, kept


def load_weights(net, params, ctx, what):
    """Load every parameter of ``net`` from the file ``params``, strictly by structural name and shape.

    A checkpoint written during training also holds the constants of the training-target generator
    (``_target_generator.*``, made from the settings once the training transform asks for it): they are
    not weights, and a network built afresh has none yet, so they are left out.

    Raises
    ------
    ValueError
        A parameter missing from the file, one the network does not have, or a shape that differs (one line
        starting with ``what``).
    """
    import mxnet as mx  # pylint: disable=import-outside-toplevel
    saved = {k: v for k, v in mx.nd.load(params).items() if not k.startswith('_target_generator.')}
    wanted = net._collect_params_with_prefix()  # pylint: disable=protected-access
    missing, extra = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
    if missing or extra:
        raise ValueError('%s does not fit the network the flags describe: %s'
                         % (what, '; '.join(part for part in (
                             'missing %s' % ', '.join(missing[:3]) if missing else '',
                             'not in the network %s' % ', '.join(extra[:3]) if extra else '') if part)))
    for name, param in wanted.items():
        if param.shape and all(param.shape) and param.shape != saved[name].shape:
            raise ValueError('%s: %s has shape %s, the network %s' % (what, name, saved[name].shape, param.shape))
        param._load_init(saved[name], ctx)  # pylint: disable=protected-access
