"""Starting a classification run from trained weights (fine-tuning), as GluonCV's transfer-learning tutorial and
timm's ``train.py --pretrained --num-classes N`` do.

Every parameter but the classifier (``fc``) is loaded strictly from the file (a missing, extra or
differently shaped parameter is a one-line :class:`~gluon_resnest.config.ConfigError` naming it). The
classifier is loaded too when its class count is the dataset's, and replaced by a freshly initialised one
(Xavier, as the tutorial's new output layer) when the counts differ or when asked. A new classifier learns
at ``classifier_lr_mult`` times the body's rate (default :data:`NEW_CLASSIFIER_LR_MULT`, the tutorial's 10x).
A linear probe trains the classifier alone (the body's ``grad_req`` is ``'null'``, its BatchNorm statistics
frozen); ``freeze_bn`` keeps every BatchNorm's running statistics (``use_global_stats``).
"""
import dataclasses
from collections import namedtuple

import mxnet as mx
from mxnet.gluon import nn

from .config import ConfigError
from .pretrained import check_fits, get_model_file, params_by_path

__all__ = ['CLASSIFIER', 'NEW_CLASSIFIER_LR_MULT', 'Start', 'weights_file', 'load_pretrained', 'load_checkpoint',
           'set_classifier_lr_mult', 'freeze_batchnorm', 'freeze_body', 'start_network']

CLASSIFIER = 'fc'
# GluonCV's transfer-learning tutorial: the new output layer at 10x the rate of the pretrained body.
NEW_CLASSIFIER_LR_MULT = 10.0

Start = namedtuple('Start', 'path file_classes new_classifier')
Start.__doc__ = """What :func:`load_pretrained` did: the file read, its classifier's class count (None: it has
none) and whether the classifier was replaced."""


def _escaped(text):
    return str(text).replace('{', '{{').replace('}', '}}')


def weights_file(pretrained, model, root=None):
    """The file ``pretrained`` names: True is ``model``'s published weights (found or downloaded as
    ``get_model(..., pretrained=True)`` does, under ``root``); a string is a ``.params`` path."""
    if pretrained is True:
        return get_model_file(model, root)
    return str(pretrained)


def _is_classifier(key):
    return key.split('.', 1)[0] == CLASSIFIER


def _part(mapping, classifier):
    return {k: v for k, v in mapping.items() if _is_classifier(k) == classifier}


def load_pretrained(net, path, classes, new_classifier=False, ctx=None):
    """Load ``path`` into ``net`` for fine-tuning on ``classes`` classes (see the module's description).

    Parameters
    ----------
    net : ResNeSt
        Initialised (deferred shapes are fine); its classifier has ``classes`` outputs.
    path : str
        A ``.params`` file of the same architecture (ours, GluonCV's, or the converter's).
    classes : int
    new_classifier : bool
        Replace the classifier even when the class counts agree.
    ctx : Context or list of Context

    Returns
    -------
    Start

    Raises
    ------
    ConfigError
        (field ``pretrained``) a body parameter that is missing, extra or shaped differently.
    """
    ctx = ctx or [mx.cpu()]
    arrays = params_by_path(net, path)
    expected = net._collect_params_with_prefix()  # pylint: disable=protected-access
    weight = arrays.get(CLASSIFIER + '.weight')
    file_classes = int(weight.shape[0]) if weight is not None else None
    replace = new_classifier or file_classes != classes
    loaded = _part(expected, False) if replace else expected
    given = _part(arrays, False) if replace else arrays
    try:
        check_fits(loaded, given, '{} ' + _escaped(path), _escaped(net.name))
    except ValueError as err:
        raise ConfigError(str(err), 'pretrained') from None
    for key, param in loaded.items():
        param._load_init(given[key], ctx)  # pylint: disable=protected-access
    if replace:
        getattr(net, CLASSIFIER).initialize(mx.init.Xavier(), ctx=ctx, force_reinit=True)
    return Start(path, file_classes, replace)


def load_checkpoint(net, path, classes, ctx=None):
    """Load a checkpoint to continue training (every parameter, strictly).

    Raises
    ------
    ConfigError
        (field ``resume_params``) naming the mismatching parameter; a checkpoint of another class count
        points to ``pretrained``, which starts from it with a new classifier.
    """
    arrays = params_by_path(net, path)
    expected = net._collect_params_with_prefix()  # pylint: disable=protected-access
    try:
        check_fits(expected, arrays, '{} ' + _escaped(path), '%s with %d classes' % (_escaped(net.name), classes))
    except ValueError as err:
        hint = '; to start from its weights with a new classifier use {} instead' \
            if ' %s.' % CLASSIFIER in str(err) else ''
        raise ConfigError(str(err) + hint, 'resume_params', *(['pretrained'] if hint else [])) from None
    for key, param in expected.items():
        param._load_init(arrays[key], ctx or [mx.cpu()])  # pylint: disable=protected-access


def set_classifier_lr_mult(net, mult):
    """The classifier learns at ``mult`` x the rate (the optimizer reads each parameter's ``lr_mult``)."""
    getattr(net, CLASSIFIER).collect_params().setattr('lr_mult', mult)


def freeze_batchnorm(net):
    """Every BatchNorm of ``net`` normalises with (and keeps) its running statistics, also in training.

    Must run before ``net``'s first forward pass (a hybridized network fixes its graph then).
    """
    count = [0]

    def freeze(block):
        if isinstance(block, nn.BatchNorm):
            block._kwargs['use_global_stats'] = True  # pylint: disable=protected-access
            count[0] += 1
    net.apply(freeze)
    return count[0]


def freeze_body(net):
    """Train the classifier alone: no gradient for any other parameter, BatchNorm statistics frozen."""
    for key, param in net._collect_params_with_prefix().items():  # pylint: disable=protected-access
        if not _is_classifier(key):
            param.grad_req = 'null'
    freeze_batchnorm(net)


def _describe(start, classes, mult):
    if start.new_classifier:
        return 'body from %s, a new %d-class classifier (the file\'s has %s) at %gx the learning rate' % (
            start.path, classes, start.file_classes or 'none', mult)
    return 'every parameter from %s (its %d-class classifier kept)' % (start.path, classes)


def start_network(net, config, classes, ctx, source, log):
    """The starting weights and trainable parts of a classification run's ``net``; returns ``config`` with
    ``classifier_lr_mult`` resolved (recorded in checkpoints, so a resumed run keeps it).

    ``source`` is the run being resumed (:func:`gluon_resnest.engine.assemble.resume_source`; None: a fresh
    start): its weights win, and the pretrained file is not read again.
    """
    mult = config.classifier_lr_mult
    if source:
        if source['params']:
            load_checkpoint(net, source['params'], classes, ctx)
        if mult is None:
            mult = (source.get('config') or {}).get('classifier_lr_mult')
    elif config.pretrained:
        start = load_pretrained(net, weights_file(config.pretrained, config.model), classes,
                                config.new_classifier, ctx)
        if mult is None:
            mult = NEW_CLASSIFIER_LR_MULT if start.new_classifier else 1.0
        log.info('fine-tuning: %s', _describe(start, classes, mult))
    mult = 1.0 if mult is None else float(mult)
    if mult != 1.0:
        set_classifier_lr_mult(net, mult)
    if config.linear_probe:
        freeze_body(net)
        log.info('linear probe: only the classifier trains; BatchNorm statistics frozen')
    elif config.freeze_bn:
        log.info('BatchNorm running statistics frozen in %d layers', freeze_batchnorm(net))
    return dataclasses.replace(config, classifier_lr_mult=mult)
