"""``gluon-resnest-train-detection`` (``python -m gluon_resnest.detection.train``): train and evaluate Faster,
Mask, Cascade and Cascade Mask R-CNN with FPN on ResNeSt.

``python -m gluon_resnest.detection.train --network resnest50 --dataset coco --norm-layer syncbn
--gpus 0,1,2,3 ...`` takes the flag names of GluonCV's ``train_faster_rcnn.py`` where they apply (its
per-dataset defaults too, and ``--lr`` as given), and ``--detector cascade_rcnn|faster_rcnn`` or,
with masks (``gluon_resnest.detection.masks``), ``cascade_mask_rcnn|mask_rcnn``.
``--config FILE|NAME`` reads a recipe (``gluon_resnest/recipes/detection/``) whose values are the
defaults that flags override. Datasets: ``voc`` (VOC07+12 trainval, VOC07 test, VOC07
mAP), ``coco`` (train2017 / val2017, COCO mAP) and ``shapes`` (the offline dataset of
``python -m gluon_resnest.detection.shapes``; VOC07 mAP). Held-out mAP is reported at every IoU of
``--val-iou`` (VOC style; default 0.5 and 0.7).

The command is parse -> :class:`~gluon_resnest.detection.config.DetectionConfig` -> :func:`~.task.fit` (or
:func:`~.task.evaluate` with ``--eval-only``) -> report.
"""
import sys

from .. import cli
from .class_ap import format_class_aps
from .config import DATASET_DEFAULTS, DetectionConfig
from .task import fit

__all__ = ['parse_args', 'main', 'DATASET_DEFAULTS']

def _parser():
    parser = cli.ArgumentParser(description='Train Cascade (Mask) R-CNN or Faster / Mask R-CNN FPN on ResNeSt.',
                                formatter_class=cli.HelpFormatter)
    cli.add_config(parser, 'detection')
    cli.add_settings(parser, DetectionConfig)
    return parser


def parse_args(argv=None):
    """The :class:`~gluon_resnest.detection.config.DetectionConfig` of a command line (GluonCV's
    ``train_faster_rcnn.py`` names where they apply).

    ``--config FILE|NAME`` sets the defaults (flags override it); what neither sets takes GluonCV's
    default for the ``--dataset`` (:data:`DATASET_DEFAULTS`). Bad usage exits with one line naming the
    flag (and the recipe file if the value came from it), status 2.
    """
    parser = _parser()
    args, recipe = cli.parse_with_recipe(parser, argv, 'detection', DetectionConfig)
    return cli.build_config(parser, DetectionConfig, args, recipe)

def _report(result):
    # The printed report shows percent, as every command's (the records and logs keep fractions).
    maps = ' '.join('%s=%.2f%%' % (key, 100 * value) for key, value in sorted(result.mean_ap.items()))
    print('held-out %s after %d epochs; checkpoint %s' % (maps or '(rank 0 evaluates)', result.epochs,
                                                          result.checkpoint or 'none'))
    for line in format_class_aps(result.per_class):
        print('  ' + line)
    if result.skipped:
        print('skipped %d bad records (--skip-bad; the log names them)' % result.skipped)

def _run(argv):
    _report(fit(parse_args(argv)))

def main(argv=None):
    """``gluon-resnest-train-detection``: parse -> :class:`DetectionConfig` -> :func:`fit` /
    :func:`evaluate` -> report; returns the exit status (:func:`gluon_resnest.cli.run_command`: 0 done,
    2 bad usage, 1 a failed run such as divergence, 130 Ctrl-C after writing a checkpoint; errors are
    one line on stderr).
    """
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
