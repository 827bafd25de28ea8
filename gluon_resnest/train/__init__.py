"""Training ResNeSt on ImageNet-style data with the paper's recipe (what ``train_imagenet.py`` runs).

- :mod:`.recipe`: warmup + cosine/step/poly schedule, no-wd groups, label smoothing, mixup, DropBlock ramp;
- :mod:`.distributed`: local/device/dist_sync/dist_device_sync kvstores and Horovod behind one interface;
- :mod:`.data`: sharded, resumable training order and the loaders;
- :mod:`.checkpoint`: atomic checkpoints, finding the latest complete one, removing interrupted writes;
- :mod:`.watchdog`: stopping a dist_sync worker that makes no progress (a lost peer or server);
- :mod:`.monitor`: log, progress bar, history JSON and curve PNG;
- :mod:`.loop` and :mod:`.build`: the epoch loop and assembling a run from arguments.
"""
from .build import build_run
from .checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from .loop import TrainingDiverged, TrainingInterrupted, train

__all__ = ['build_run', 'train', 'TrainingDiverged', 'TrainingInterrupted', 'latest_checkpoint',
           'read_checkpoint', 'save_checkpoint']
