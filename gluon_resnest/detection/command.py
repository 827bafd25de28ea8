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

The command is parse -> :class:`~gluon_resnest.config.DetectionConfig` -> :func:`~.task.fit` (or
:func:`~.task.evaluate` with ``--eval-only``) -> report.
"""
import argparse
import sys

from .. import cli
from ..config import DETECTION_DATASET_DEFAULTS, KV_STORES, DetectionConfig, number_list_type
from .class_ap import format_class_aps
from .task import fit

__all__ = ['parse_args', 'main', 'DATASET_DEFAULTS']

DATASET_DEFAULTS = DETECTION_DATASET_DEFAULTS
INTS, FLOATS = number_list_type('ints'), number_list_type('floats')

def _parser():
    p = cli.ArgumentParser(description='Train Cascade (Mask) R-CNN or Faster / Mask R-CNN FPN on ResNeSt.',
                           formatter_class=cli.HelpFormatter)
    cli.add_config(p, 'detection')
    p.add_argument('--detector', default='cascade_rcnn',
                   help='cascade_rcnn, faster_rcnn, or with masks (--dataset coco or shapes) '
                        'cascade_mask_rcnn or mask_rcnn')
    p.add_argument('--network', '--backbone', dest='network', default='resnest50',
                   help='backbone: one of gluon_resnest.list_models(); under horovodrun write --backbone '
                        '(horovodrun takes --network for its own --network-interface)')
    p.add_argument('--dataset', default=None,
                   help='voc, coco or shapes (default: coco with --train-json/--val-json, else voc)')
    p.add_argument('--dataset-root', default=None,
                   help='dataset folder (default: ~/.mxnet/datasets/{voc,coco}); with --dataset voc, a '
                        'VOCdevkit (VOC2007/, VOC2012/) or one VOC-layout folder (Annotations/, '
                        'JPEGImages/, ImageSets/Main/)')
    _own_data_flags(p)
    p.add_argument('--norm-layer', default=None,
                   help="'syncbn': SyncBatchNorm recipe; 'bn': the same recipe with BatchNorm on "
                        "each device's batch (one device, e.g. CPU); default: frozen BatchNorm")
    p.add_argument('--gpus', default='', help="e.g. '0,1'; empty: CPU")
    # Before --kv-store: recipes take the kind of the last option of a name (cli.parser_kinds).
    p.add_argument('--horovod', dest='kv_store', action='store_const', const='horovod',
                   default=argparse.SUPPRESS, help="GluonCV's spelling of --kv-store horovod")
    p.add_argument('--kv-store', default='device',
                   help='gradient aggregation, as train_imagenet.py: %s; horovod: data parallel over the '
                        'processes horovodrun starts, each on its share of the images, on the GPU of its '
                        'local rank (with --gpus) or the CPU' % ', '.join(KV_STORES))
    p.add_argument('--step-timeout', type=float, default=30.0,
                   help='dist_sync/dist_device_sync: stop a worker (exit status 124) after this many seconds '
                        'without progress, as train_imagenet.py; 0: never')
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per step over all devices (default: 2 per device); a device with more '
                        'than one image gets images of one orientation (landscape or portrait)')
    _schedule_flags(p)
    _network_flags(p)
    p.add_argument('--val-iou', type=FLOATS, default='0.5,0.7', help='IoU thresholds of the VOC-style mAP')
    p.add_argument('--val-interval', type=int, default=1, help='epochs between evaluations')
    p.add_argument('--eval-only', action='store_true',
                   help='evaluate the --resume checkpoint (or --resume-params) and exit')
    p.add_argument('--save-prefix', default='',
                   help='checkpoints {prefix}-{epochs done:04d}.params/.states/.json, {prefix}_train.log and '
                        '{prefix}_history.json (default: {detector}_fpn_{network}_{dataset})')
    p.add_argument('--log-interval', type=int, default=20, help='batches between log lines')
    p.add_argument('--num-workers', type=int, default=0, help='data loader processes')
    p.add_argument('--seed', type=int, default=233, help='random seed')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p

def _own_data_flags(p):
    p.add_argument('--classes', default=None,
                   help="class names in index order, 'a,b,c' or a file with one name a line (default: a "
                        "VOC-layout folder's <name>s sorted; COCO files' categories in the order of their ids)")
    p.add_argument('--train-split', default='train', help='training split of a VOC-layout folder: '
                   'ImageSets/Main/NAME.txt')
    p.add_argument('--val-split', default='val', help='held-out split of a VOC-layout folder')
    p.add_argument('--train-json', default=None, help='COCO-format training annotations')
    p.add_argument('--val-json', default=None, help='COCO-format held-out annotations (evaluated with '
                   'pycocotools on this file)')
    p.add_argument('--image-root', default=None, help="the folder the COCO files' file_names are relative to")
    p.add_argument('--skip-bad', action='store_true',
                   help='leave out bad records of --dataset-root / --train-json / --val-json (a warning '
                        'each and a count) instead of stopping with an error')
    p.add_argument('--pretrained-detector', default=None,
                   help='start from this detector trained on other classes: a checkpoint .params/.json '
                        'of this command, a .params with --pretrained-classes, or a GluonCV model-zoo '
                        'name; classes whose names match keep their rows')
    p.add_argument('--pretrained-classes', default=None,
                   help="the classes of a bare --pretrained-detector .params, 'a,b,c' or a file")


def _per_dataset(key):
    """Help text naming GluonCV's per-dataset defaults of ``key``."""
    shown = [DATASET_DEFAULTS[name][key] for name in ('voc', 'coco')]
    shown = [','.join(map(str, v)) if isinstance(v, tuple) else str(v) for v in shown]
    return ' (default: GluonCV\'s for the dataset: VOC and shapes %s, COCO %s)' % tuple(shown)

def _schedule_flags(p):
    default = _per_dataset
    p.add_argument('--epochs', type=int, default=None, help='training epochs' + default('epochs'))
    p.add_argument('--resume', action='store_true',
                   help='continue from the latest complete checkpoint of --save-prefix (weights, optimizer '
                        'state and position, even mid-epoch); without one, start from scratch')
    p.add_argument('--resume-params', default='', help='.params file to start from (weights only)')
    p.add_argument('--resume-epoch', '--start-epoch', dest='resume_epoch', type=int, default=0,
                   help='epochs --resume-params has done: the schedule continues from there')
    p.add_argument('--lr', type=float, default=None, help='learning rate of the whole step, taken as '
                   'given as GluonCV does (scale it with --batch-size yourself)' + default('lr'))
    p.add_argument('--lr-mode', default='step', help="'step' (GluonCV's) or 'cosine'")
    p.add_argument('--lr-decay', type=float, default=0.1, help='step decay factor')
    p.add_argument('--lr-decay-epoch', type=INTS, default=None,
                   help='epochs of the step decays' + default('lr_decay_epoch'))
    p.add_argument('--lr-warmup', type=int, default=None,
                   help='warmup iterations, <= 0: none' + default('lr_warmup'))
    p.add_argument('--lr-warmup-factor', type=float, default=1. / 3., help='warmup start factor')
    p.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    p.add_argument('--wd', type=float, default=None, help='weight decay' + default('wd'))
    p.add_argument('--no-wd-norm', action='store_true',
                   help="no weight decay on normalisation layers' gamma and beta (detectron2's "
                        "WEIGHT_DECAY_NORM 0; GluonCV decays them)")

def _network_flags(p):
    p.add_argument('--no-pretrained-base', action='store_true',
                   help='do not load the ImageNet backbone weights')
    p.add_argument('--short', type=INTS, default=None,
                   help="image short side; 'LO,HI': a random short side in [LO, HI] per training image "
                        "(detectron2's 'range' sampling); three or more sides 'S1,S2,S3,...': one of "
                        "them per training image (its 'choice' sampling); the largest at evaluation "
                        "(default: recipe)")
    p.add_argument('--max-size', type=int, default=None, help='image long side limit')
    p.add_argument('--box-head', default='recipe',
                   help="'recipe': the network's own box heads (4 conv + 1 fc with syncbn, else "
                        "2 fc of 1024); '2fc': two fully connected layers of --box-head-units")
    p.add_argument('--box-head-units', type=int, default=1024, help="units of the '2fc' box head")
    p.add_argument('--fpn-channels', type=int, default=None,
                   help="channels of the FPN's outputs and the RPN head (recipe: 256)")
    p.add_argument('--num-sample', type=int, default=None, help='R-CNN samples per image')
    p.add_argument('--rpn-train-post-nms', type=int, default=None, help='proposals kept in training')
    p.add_argument('--rpn-test-post-nms', type=int, default=None, help='proposals kept at test')
    p.add_argument('--rpn-smoothl1-rho', type=float, default=1. / 9.,
                   help='RPN box loss: smooth L1 turning linear at rho (GluonCV\'s); 0: L1 (detectron2\'s)')
    p.add_argument('--rcnn-smoothl1-rho', type=float, default=1.,
                   help='R-CNN box loss: smooth L1 turning linear at rho (GluonCV\'s); 0: L1 (detectron2\'s)')
    p.add_argument('--test-score-thresh', type=float, default=0.,
                   help="evaluation keeps detections scored at least this (GluonCV's 0: all; "
                        "detectron2's 0.05)")
    p.add_argument('--post-nms', type=int, default=-1,
                   help="evaluation keeps at most this many detections per image, the best "
                        "(GluonCV's -1: all; detectron2's 100)")

def parse_args(argv=None):
    """The :class:`~gluon_resnest.config.DetectionConfig` of a command line (GluonCV's
    ``train_faster_rcnn.py`` names where they apply).

    ``--config FILE|NAME`` sets the defaults (flags override it); what neither sets takes GluonCV's
    default for the ``--dataset`` (:data:`DATASET_DEFAULTS`). Bad usage exits with one line naming the
    flag (and the recipe file if the value came from it), status 2.
    """
    parser = _parser()
    args, recipe = cli.parse_with_recipe(parser, argv, 'detection', cli.parser_kinds(parser))
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
