"""Train a ResNeSt on ImageNet (or any ImageNet-layout / RecordIO dataset) with the paper's recipe.

The documented script form of ``gluon-resnest-train``; both run :func:`gluon_resnest.classification.command.main`
(flags, recipes and exit statuses are described there and in docs/training.md)::

    python train_imagenet.py --config resnest50 --rec-train train.rec --rec-val val.rec --gpus 0,1,2,3
"""
import sys

# Before MXNet loads: importing the package sets this tool's compute threads (gluon_resnest.threads).
from gluon_resnest.classification.command import main, parse_args  # noqa: F401  (parse_args: the flags as a TrainConfig)

__all__ = ['main', 'parse_args']

if __name__ == '__main__':
    sys.exit(main())
