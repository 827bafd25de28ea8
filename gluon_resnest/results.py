"""Typed records of what the jobs return: :class:`TrainResult` (``fit``), :class:`EvalResult` (``evaluate``),
:class:`ExportResult` (``export``) and :class:`DetectionResult` (``detection.fit`` and ``detection.evaluate``).

Accuracies are fractions 0-1 everywhere (as the training history and detection's mAP); only the
human-readable reports print percent, with a % sign. :meth:`Record.to_dict` is the one conversion to
plain values for JSON (``eval.py --json``).
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ['Record', 'TrainResult', 'EvalResult', 'ExportResult', 'DetectionResult']


class Record:  # pylint: disable=too-few-public-methods
    """Base of the result records: conversion to a dict of plain values."""

    def to_dict(self):
        """The record's fields as JSON's plain values (tuples become lists; fields marked ``json: False``
        are left out), so ``json.load`` of the written file equals it.

        Returns
        -------
        dict
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get('json', True)}


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass
class TrainResult(Record):  # pylint: disable=too-many-instance-attributes
    """A finished training run (what :func:`gluon_resnest.train.fit` returns).

    Attributes
    ----------
    model : str
        The architecture trained.
    classes : int
        Classifier size.
    save_dir : str
        Folder of the checkpoints, log, ``history.json`` and ``curve.png``.
    epochs : int
        Epochs trained in total (the run's ``num_epochs``).
    history : list of dict
        One record per epoch: ``epoch``, ``loss``, ``lr``, ``train-top1``/``train-top5`` and, in validated
        epochs, ``val-top1``/``val-top5`` (fractions), images/s.
    last_checkpoint : str or None
        The ``.json`` record of the latest checkpoint written.
    val_top1, val_top5 : float or None
        The last validation's accuracy (fractions; None without validation data).
    net : HybridBlock
        The trained network (not part of :meth:`to_dict`).
    """
    model: str
    classes: int
    save_dir: str
    epochs: int
    history: List[Dict[str, Any]]
    last_checkpoint: Optional[str] = None
    val_top1: Optional[float] = None
    val_top5: Optional[float] = None
    net: Any = field(default=None, repr=False, compare=False, metadata={'json': False})


@dataclass
class EvalResult(Record):  # pylint: disable=too-many-instance-attributes
    """What :func:`gluon_resnest.evaluate` measured (and ``eval.py --json`` writes).

    Attributes
    ----------
    model, source : str
        The architecture (or exported file prefix) and where its weights came from.
    params : int
        Parameter count (no BatchNorm statistics).
    crop : int
        Evaluation crop; ``crop_ratio`` its resize ratio (None: the protocol's default).
    dtype : str
    quantized : bool
        Whether the graph is INT8.
    batch_size : int
        Images per device.
    images_per_sec : float
        End to end over the data, or with ``benchmark`` the median over ``iters`` synthetic batches.
    top1, top5 : float or None
        Accuracy as fractions 0-1 (top-5 is top-min(5, classes)); None for a speed-only run.
    num_images, skipped_images : int or None
        Images scored and undecodable images skipped.
    iters : int or None
        Timed batches of a speed-only run.
    """
    model: str
    source: str
    params: int
    crop: int
    crop_ratio: Optional[float]
    dtype: str
    quantized: bool
    batch_size: int
    images_per_sec: float
    top1: Optional[float] = None
    top5: Optional[float] = None
    num_images: Optional[int] = None
    skipped_images: Optional[int] = None
    iters: Optional[int] = None


@dataclass
class ExportResult(Record):
    """What :func:`gluon_resnest.export.export` wrote and what its self-check found.

    Attributes
    ----------
    format : str
        'mxnet', 'onnx', 'int8' or 'onnx-int8'.
    files : tuple of str
        Every file written (symbol and params, or the .onnx file), absolute paths.
    max_abs_diff : float or None
        Largest difference between the reloaded artifact's output and the network's (None when the
        onnxruntime comparison was skipped).
    tolerance : float or None
        The tolerance ``max_abs_diff`` was checked against (for INT8: the reload check's).
    agreement : float or None
        INT8: fraction of calibration images whose top-1 equals the fp32 network's.
    held_out_agreement : float or None
        ``onnx-int8``: the same on images of the calibration data not used to calibrate (None when it
        has none left).
    """
    format: str
    files: Tuple[str, ...]
    max_abs_diff: Optional[float]
    tolerance: Optional[float]
    agreement: Optional[float] = None
    held_out_agreement: Optional[float] = None

    def file(self, suffix):
        """The written file whose name ends with ``suffix`` ('-symbol.json', '.params', '.onnx').

        Raises ``KeyError`` when none does.
        """
        for path in self.files:
            if path.endswith(suffix):
                return path
        raise KeyError('no %s file among %s' % (suffix, ', '.join(self.files)))


@dataclass
class DetectionResult(Record):
    """What :func:`gluon_resnest.detection.fit` and :func:`~gluon_resnest.detection.evaluate` return (mAP as fractions 0-1, named as the held-out metrics name them:
    ``mAP@0.5``, ``mAP@0.5:0.95``; COCO: ``bbox_mAP@0.5:0.95``, ...).

    Attributes
    ----------
    mean_ap : dict
        The last evaluation's mAP (empty on Horovod/dist ranks other than 0, which do not evaluate).
    per_epoch : list of dict
        One ``{'epoch': epochs done, name: mAP, ...}`` per evaluated epoch of this run's history.
    checkpoint : str or None
        The ``.json`` record of the last checkpoint written or evaluated.
    epochs : int
        Epochs done.
    per_class : dict
        The last evaluation's AP of every class, ``{metric: {class name: AP or None}}`` (None: the class has
        no ground truth in the held-out data), for the IoUs of ``mean_ap`` (``mAP@0.5``; COCO:
        ``bbox_mAP@0.5:0.95`` and ``bbox_mAP@0.5``, and ``segm_...`` with masks).
    skipped : int
        Bad records left out of the data (``--skip-bad``).
    """
    mean_ap: Dict[str, float] = field(default_factory=dict)
    per_epoch: List[Dict[str, float]] = field(default_factory=list)
    checkpoint: Optional[str] = None
    epochs: int = 0
    per_class: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)
    skipped: int = 0
