"""Image classification on the training engine (what ``train_imagenet.py`` runs).

- :mod:`.command`: the ``gluon-resnest-train`` parser and main;
- :mod:`.data`: sharded, resumable training order and the loaders;
- :mod:`.task`: :class:`~.task.ClassificationTask` (the recipe's targets, DropBlock ramp, top-1/top-5
  validation), ``build_run`` and ``fit``.
"""
from .task import ClassificationTask, build_run, fit

__all__ = ['ClassificationTask', 'build_run', 'fit']
