"""Training ResNeSt on ImageNet-style data with the paper's recipe (what ``train_imagenet.py`` runs).

::

    from gluon_resnest.train import TrainConfig, fit
    result = fit(TrainConfig(model='resnest14', data_dir='demo_data', input_size=32, batch_size=16,
                             lr=0.01, num_epochs=5, save_dir='runs/demo'))
    result.history[-1]['val-top1']      # a TrainResult; history is the list of per-epoch records

The public names of classification training, kept in one place: the code is in
:mod:`gluon_resnest.classification` (the task, its data and command) and :mod:`gluon_resnest.engine` (the
loop, checkpoints, distribution, watchdog, monitor, schedules).
"""
from ..classification.task import build_run, fit
from ..config import TrainConfig
from ..engine import loop
from ..engine.checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from ..engine.loop import TrainingDiverged, TrainingInterrupted, train

__all__ = ['TrainConfig', 'fit', 'build_run', 'train', 'TrainingDiverged', 'TrainingInterrupted',
           'latest_checkpoint', 'read_checkpoint', 'save_checkpoint', 'loop']
