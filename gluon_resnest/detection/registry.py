"""The detectors the detection command trains, each with what it can do: the one table that the config's
checks, the data loading, the network building and the evaluation read (``--detector NAME``).

A detector is a :class:`Detector`: its builder (a model-zoo style function ``builder(backbone, dataset,
classes=..., syncbn=..., pretrained_base=..., num_devices=..., per_device_batch_size=..., **overrides)``),
whether it trains masks (it then needs instance annotations), its number of box stages (more than one: a
cascade, each stage with its own box head) and the box heads it takes (``--box-head``). A new detector is
one :func:`register` call.
"""
import dataclasses
from typing import Callable, Tuple

from .cascade import STAGE_IOU_THRESHS
from .rcnn import faster_rcnn_fpn, mask_rcnn_fpn
from .zoo import cascade_mask_rcnn_fpn, cascade_rcnn_fpn

__all__ = ['Detector', 'DETECTOR_REGISTRY', 'register', 'detector', 'detector_names', 'BOX_HEADS']

# 'recipe': the network's own box heads; '2fc': two fully connected layers per stage.
BOX_HEADS = ('recipe', '2fc')


@dataclasses.dataclass(frozen=True)
class Detector:
    """One trainable detector and its capabilities.

    Parameters
    ----------
    name : str
        Its ``--detector`` name.
    builder : callable
        Builds the network (see the module's docstring).
    masks : bool
        It predicts instance masks: it trains on instance annotations and is evaluated on boxes and masks.
    stages : int
        Box stages (1: Faster/Mask R-CNN; a cascade has one per IoU threshold of ``STAGE_IOU_THRESHS``).
    box_heads : tuple of str
        The ``--box-head`` kinds it takes.
    """
    name: str
    builder: Callable
    masks: bool = False
    stages: int = 1
    box_heads: Tuple[str, ...] = BOX_HEADS

    @property
    def cascade(self):
        """More than one box stage, each refining the previous stage's boxes."""
        return self.stages > 1


DETECTOR_REGISTRY = {}


def register(spec):
    """Add ``spec`` (a :class:`Detector`) under its name; returns it."""
    DETECTOR_REGISTRY[spec.name] = spec
    return spec


def detector(name):
    """The :class:`Detector` named ``name``; ``KeyError`` naming the valid ones otherwise."""
    if name not in DETECTOR_REGISTRY:
        raise KeyError('unknown detector %r; valid: %s' % (name, ', '.join(detector_names())))
    return DETECTOR_REGISTRY[name]


def detector_names(masks=None):
    """The registered names (only those with or without masks when ``masks`` is given), in order."""
    return tuple(n for n, d in DETECTOR_REGISTRY.items() if masks is None or d.masks == masks)


CASCADE_STAGES = len(STAGE_IOU_THRESHS)
register(Detector('cascade_rcnn', cascade_rcnn_fpn, stages=CASCADE_STAGES))
register(Detector('faster_rcnn', faster_rcnn_fpn))
register(Detector('cascade_mask_rcnn', cascade_mask_rcnn_fpn, masks=True, stages=CASCADE_STAGES))
register(Detector('mask_rcnn', mask_rcnn_fpn, masks=True))
