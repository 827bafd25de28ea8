"""Install our networks into GluonCV 0.10.5, and take them out again.

GluonCV has no registration API. Its ``gluoncv.model_zoo.get_model`` looks names up in the module dict
``gluoncv.model_zoo.model_zoo._models`` at call time; its segmentation networks call the module function
``gluoncv.model_zoo.segbase.get_backbone`` when they are built, and its custom FPN detectors call the
``custom_rcnn_fpn`` their modules imported. Registering sets entries of that dict and those module
attributes, remembering what was there; unregistering puts it all back. Code that imported
``get_model`` before registration still sees our entries.
"""
import os
from functools import partial

from gluoncv.model_zoo import model_zoo as _gluoncv_zoo
from gluoncv.model_zoo import segbase as _segbase
from gluoncv.model_zoo.rcnn.faster_rcnn import doublehead_rcnn as _gluoncv_doublehead_rcnn
from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn as _gluoncv_faster_rcnn
from gluoncv.model_zoo.rcnn.mask_rcnn import mask_rcnn as _gluoncv_mask_rcnn

from ..detection import zoo as detection_zoo
from ..detection.rcnn import custom_rcnn_fpn
from ..model_zoo import VARIANTS, get_model
from ..pretrained import PUBLISHED
from . import segmentation

__all__ = ['register', 'unregister', 'is_registered', 'registered_names', 'zoo_entries',
           'classifier']

# The paper publishes transfer results for these backbones; GluonCV uses the same names.
DEEPLAB_BACKBONES = ('resnest50', 'resnest101', 'resnest200', 'resnest269')

# (module, attribute, our replacement): the GluonCV functions other GluonCV code looks up at call time.
# The zoo's 'custom_faster_rcnn_fpn' is doublehead_rcnn's copy (it shadows faster_rcnn's on import *).
_PATCHES = ((_segbase, 'get_backbone', segmentation.get_backbone),
            (_gluoncv_faster_rcnn, 'custom_rcnn_fpn', custom_rcnn_fpn),
            (_gluoncv_doublehead_rcnn, 'custom_rcnn_fpn', custom_rcnn_fpn),
            (_gluoncv_mask_rcnn, 'custom_rcnn_fpn', custom_rcnn_fpn))

_MISSING = object()
# name -> what GluonCV had there (or _MISSING); empty while not registered.
_saved_entries = {}
# what GluonCV had at each of _PATCHES, in order.
_saved_attributes = []


def classifier(name, pretrained=False, input_size=None, **kwargs):
    """One of our 13 networks, called the way GluonCV calls its model-zoo classifiers.

    ``pretrained`` may also be a GluonCV hash tag (a prefix of the published sha1); ``input_size``,
    which GluonCV's ResNeSt needs for its DropBlock, is accepted and unused (ours works at any size).
    """
    del input_size
    if pretrained and isinstance(pretrained, str) and not os.path.isfile(pretrained) and \
            PUBLISHED[name].sha1.startswith(pretrained.lower()):
        pretrained = True
    return get_model(name, pretrained=pretrained, **kwargs)


def zoo_entries():
    """The GluonCV model-zoo names we install, each with the factory it maps to.

    Our 13 classification networks, ``deeplab_resnest{50,101,200,269}_ade`` and the detectors of
    :func:`gluon_resnest.detection.zoo_entries` (Faster, Mask, Cascade and Cascade Mask R-CNN).
    """
    entries = {name: partial(classifier, name) for name in VARIANTS}
    for backbone in DEEPLAB_BACKBONES:
        entries['deeplab_%s_ade' % backbone] = partial(segmentation.deeplab_ade, backbone)
    entries.update(detection_zoo.zoo_entries())
    return entries


def is_registered():
    """Whether our networks are installed in GluonCV right now."""
    return bool(_saved_entries)


def registered_names():
    """Sorted model-zoo names we install (whether or not installed now)."""
    return sorted(zoo_entries())


def register():
    """Install our networks into GluonCV's model zoo and segmentation backbones. Idempotent.

    Afterwards ``gluoncv.model_zoo.get_model('resnest50', pretrained=True)`` returns our network with
    the same published weights, the 7 fast models are available, GluonCV's segmentation networks
    (DeepLabV3, FCN, PSPNet, ...) build on our backbones for all 13 names, the detection names listed
    by :func:`zoo_entries` build Faster, Mask and Cascade (Mask) R-CNN on them, and GluonCV's
    ``custom_faster_rcnn_fpn`` / ``custom_mask_rcnn_fpn`` accept our names as ``base_network_name``.
    ``import gluon_resnest`` calls it.

    Returns
    -------
    list of str
        The names installed by this call (empty if already registered).
    """
    if is_registered():
        return []
    entries = zoo_entries()
    models = _gluoncv_zoo._models  # pylint: disable=protected-access
    for name, factory in entries.items():
        _saved_entries[name] = models.get(name, _MISSING)
        models[name] = factory
    for module, attribute, ours in _PATCHES:
        _saved_attributes.append(getattr(module, attribute))
        setattr(module, attribute, ours)
    return sorted(entries)


def unregister():
    """Restore GluonCV's own model-zoo entries, segmentation backbones and custom FPN parts. Idempotent.

    Returns
    -------
    list of str
        The names restored or removed by this call (empty if not registered).
    """
    if not is_registered():
        return []
    models = _gluoncv_zoo._models  # pylint: disable=protected-access
    for name, previous in _saved_entries.items():
        if previous is _MISSING:
            models.pop(name, None)
        else:
            models[name] = previous
    for (module, attribute, _), previous in zip(_PATCHES, _saved_attributes):
        setattr(module, attribute, previous)
    del _saved_attributes[:]
    names = sorted(_saved_entries)
    _saved_entries.clear()
    return names
