"""Training ResNeSt on ImageNet-style data with the paper's recipe (what ``train_imagenet.py`` runs).

::

    from gluon_resnest.train import TrainConfig, fit
    result = fit(TrainConfig(model='resnest14', data_dir='demo_data', input_size=32, batch_size=16,
                             lr=0.01, num_epochs=5, save_dir='runs/demo'))
    result.history[-1]['val-top1']      # a TrainResult; history is the list of per-epoch records


- :mod:`.recipe`: warmup + cosine/step/poly schedule, no-wd groups, label smoothing, mixup, DropBlock ramp;
- :mod:`.distributed`: local/device/dist_sync/dist_device_sync kvstores and Horovod behind one interface;
- :mod:`.data`: sharded, resumable training order and the loaders;
- :mod:`.checkpoint`: atomic checkpoints, finding the latest complete one, removing interrupted writes;
- :mod:`.watchdog`: stopping a dist_sync worker that makes no progress (a lost peer or server);
- :mod:`.monitor`: log, progress bar, history JSON and curve PNG;
- :mod:`.loop` and :mod:`.build`: the epoch loop, and assembling a run from a :class:`TrainConfig`.
"""
from ..config import TrainConfig
from .build import build_run, fit
from .checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from .loop import TrainingDiverged, TrainingInterrupted, train

__all__ = ['TrainConfig', 'fit', 'build_run', 'train', 'TrainingDiverged', 'TrainingInterrupted',
           'latest_checkpoint', 'read_checkpoint', 'save_checkpoint']
