"""The training engine every task runs on (no task code here).

- :mod:`.loop`: :func:`~.loop.train`, the typed :class:`~.loop.Run`, the :class:`~.loop.Task` protocol,
  ``TrainingDiverged``/``TrainingInterrupted`` and per-step seeding;
- :mod:`.assemble`: one run assembly for every task (distributed set-up, folders, logger, devices, resume,
  seeding, evaluation copy, trainer, schedule);
- :mod:`.checkpoint`: atomic checkpoints, finding the latest complete one, removing interrupted writes;
- :mod:`.distributed`: local/device/dist_sync/dist_device_sync kvstores and Horovod behind one interface;
- :mod:`.watchdog`: stopping a dist_sync worker that makes no progress (a lost peer or server);
- :mod:`.monitor`: log, progress bar, history JSON and curve PNG;
- :mod:`.schedules`: warmup + cosine/step/poly schedule, no-wd groups;
- :mod:`.sampler`: the sharded, resumable training order.
"""
from .assemble import assemble, fit
from .loop import Run, Task, TrainingDiverged, TrainingInterrupted, seed_everything, train

__all__ = ['assemble', 'fit', 'Run', 'Task', 'TrainingDiverged', 'TrainingInterrupted', 'seed_everything',
           'train']
