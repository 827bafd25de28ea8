"""``gluon-resnest-train`` (``train_imagenet.py``): train a ResNeSt on ImageNet (or any ImageNet-layout or
RecordIO dataset) with the paper's recipe.

Flag names follow GluonCV's ``train_imagenet.py`` and the official ResNeSt scripts. The paper's ResNeSt-50
recipe, per GPU, on 64 GPUs with Horovod::

    horovodrun -np 64 -H ... gluon-resnest-train --model resnest50 --kv-store horovod --gpus 0 \\
        --rec-train train.rec --rec-train-idx train.idx --rec-val val.rec --rec-val-idx val.idx \\
        --batch-size 128 --lr 0.05 --lr-mode cosine --num-epochs 270 --warmup-epochs 5 --no-wd \\
        --last-gamma --label-smoothing 0.1 --mixup --auto-aug --dropblock-prob 0.1 --input-size 224

The same recipe as a file (``gluon_resnest/recipes/imagenet/resnest50.yaml``; flags still override it)::

    horovodrun -np 64 -H ... gluon-resnest-train --config resnest50 --kv-store horovod --gpus 0 \\
        --rec-train train.rec --rec-train-idx train.idx --rec-val val.rec --rec-val-idx val.idx

``--lr`` is per device: the peak rate is ``lr x workers x devices per worker``. See docs/training.md.
This command is a thin wrapper of :func:`gluon_resnest.train.fit` (``TrainConfig`` fields are the flags);
its errors follow :func:`gluon_resnest.cli.run_command` (status 2 bad usage, 1 a failed run such as a
diverging loss, 130 Ctrl-C after the checkpoint is written).
"""
from .. import cli
from ..config import DATA_BACKENDS, KV_STORES, ConfigError, TrainConfig, field_kinds
from ..finetune import NEW_CLASSIFIER_LR_MULT
from .task import fit

__all__ = ['parse_args', 'main']


def _data_flags(parser):
    group = parser.add_argument_group('data')
    group.add_argument('--data-dir', default='~/.mxnet/datasets/imagenet',
                       help='ImageNet layout: DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG')
    group.add_argument('--rec-train', default='', help='training RecordIO file (replaces --data-dir)')
    group.add_argument('--rec-train-idx', default='', help='its index (default: .rec -> .idx)')
    group.add_argument('--rec-val', default='', help='validation RecordIO file')
    group.add_argument('--rec-val-idx', default='', help='its index (default: .rec -> .idx)')
    group.add_argument('--use-rec', action='store_true', help='require the RecordIO flags (GluonCV compat)')
    group.add_argument('--data-backend', default='auto', choices=DATA_BACKENDS,
                       help="who decodes and augments training images: 'python' OpenCV in the -j loader "
                       "processes (AutoAugment too), 'recordio' MXNet's C++ RecordIO pipeline "
                       "(needs --rec-train), 'auto' python (recordio when resuming a recordio run)")
    cli.add_workers(group, help_text='data loading processes per worker (0: in the training process); C++ '
                    'decoding threads (at least 1) with --data-backend recordio')
    group.add_argument('--classes', type=int, default=None,
                       help='number of classes (default: class folders found, or 1000 for RecordIO)')
    group.add_argument('--val-fraction', type=float, default=0.0,
                       help='--data-dir holds class folders and no val/: hold out this fraction of each class '
                       '(seeded by --seed; listed in --save-dir/val_images.txt)')
    cli.add_input_size(group, 224, 'training and validation crop size')
    group.add_argument('--crop-ratio', type=float, default=None,
                       help='validation crop / resize ratio (default: the eval protocol, 0.875 below 320)')
    group.add_argument('--min-random-area', type=float, default=0.08, help='smallest random crop area')
    group.add_argument('--random-mirror', type=int, default=1, choices=(0, 1), help='random horizontal flips')
    group.add_argument('--jitter-param', type=float, default=0.4, help='brightness/contrast/saturation jitter')
    group.add_argument('--lighting-param', type=float, default=0.1, help='PCA lighting noise')
    group.add_argument('--auto-aug', action='store_true', help='AutoAugment ImageNet policy')


def _recipe_flags(parser):
    group = parser.add_argument_group('recipe')
    cli.add_model(group, default='resnest50')
    cli.add_batch_size(group, 32)
    group.add_argument('--num-epochs', type=int, default=120, help='epochs to train')
    group.add_argument('--lr', type=float, default=0.1, help='peak learning rate per device')
    group.add_argument('--lr-mode', default='cosine', choices=('cosine', 'step', 'poly'),
                       help='learning-rate schedule after warm-up')
    group.add_argument('--lr-decay', type=float, default=0.1, help='step mode decay factor')
    group.add_argument('--lr-decay-epoch', default='40,60', help='step mode epochs, comma separated')
    group.add_argument('--warmup-epochs', type=int, default=0, help='linear warm-up epochs')
    group.add_argument('--warmup-lr', type=float, default=0.0, help='learning rate the warm-up starts from')
    group.add_argument('--momentum', type=float, default=0.9, help='Nesterov momentum')
    group.add_argument('--wd', type=float, default=1e-4, help='weight decay')
    group.add_argument('--no-wd', action='store_true', help='no weight decay on biases and BN gamma/beta')
    group.add_argument('--last-gamma', action='store_true', help="zero-init each block's last BN gamma")
    group.add_argument('--label-smoothing', type=float, nargs='?', const=0.1, default=0.0,
                       help='smoothing eta (flag alone: 0.1, as GluonCV)')
    group.add_argument('--mixup', action='store_true', help='mixup training')
    group.add_argument('--mixup-alpha', type=float, default=0.2, help='Beta(alpha, alpha) of the mixup ratio')
    group.add_argument('--mixup-off-epoch', type=int, default=0, help='last epochs trained without mixup')
    group.add_argument('--dropblock-prob', type=float, default=None,
                       help="final DropBlock probability, ramped linearly from 0 (default: the model's)")
    group.add_argument('--final-drop', type=float, default=None,
                       help="dropout before the classifier (default: the model's)")
    group.add_argument('--dtype', default='float32', choices=('float32', 'float16'),
                       help='float16: mixed precision with AMP (float32 master weights, dynamic loss '
                       'scaling; GPU only)')
    group.add_argument('--seed', type=int, default=0, help='seed of every random stream')


def _finetune_flags(parser):
    group = parser.add_argument_group('fine-tuning (docs/your-data.md)')
    group.add_argument('--pretrained', nargs='?', const=True, default=False, metavar='FILE',
                       help="start from trained weights: the model's published ones (flag alone) or a .params "
                       'file; every parameter but the classifier must fit the network')
    group.add_argument('--new-classifier', action='store_true',
                       help="a new classifier even when the file's class count is the dataset's (it is "
                       'always new when they differ)')
    group.add_argument('--classifier-lr-mult', type=float, default=None,
                       help="the classifier's learning rate as a multiple of --lr (default: %g for a new "
                       'classifier, as GluonCV\'s transfer-learning tutorial, else 1)' % NEW_CLASSIFIER_LR_MULT)
    group.add_argument('--linear-probe', action='store_true',
                       help='train the classifier alone (the rest keeps its weights and BatchNorm statistics)')
    group.add_argument('--freeze-bn', action='store_true',
                       help='keep every BatchNorm\'s running statistics (normalise with them in training too)')


def _run_flags(parser):
    group = parser.add_argument_group('devices, checkpoints, logging')
    cli.add_devices(group, '; with horovod any value means one GPU per process, the one of its local rank')
    group.add_argument('--kv-store', default='device', choices=KV_STORES,
                       help='gradient aggregation: one machine (local, device) or many')
    group.add_argument('--step-timeout', type=float, default=30.0,
                       help='dist_sync/dist_device_sync: stop a worker (exit status 1) after this many '
                       'seconds without progress, as a peer or server is then gone; 10x the median time of '
                       'the same kind of work if longer, 10x this value for the first training batch, '
                       'validation batch and checkpoint; 0: never (default: %(default)s)')
    group.add_argument('--save-dir', default='params', help='checkpoints, log, history.json, curve.png')
    group.add_argument('--save-frequency', type=int, default=10, help='checkpoint every N epochs (and last)')
    group.add_argument('--resume', action='store_true', help='continue from the latest checkpoint in --save-dir')
    group.add_argument('--resume-epoch', type=int, default=0, help='epochs done by --resume-params/-states')
    group.add_argument('--resume-params', default='', help='params file to start from')
    group.add_argument('--resume-states', default='', help='trainer states file to continue with')
    group.add_argument('--log-interval', type=int, default=50, help='log every N batches (0: never)')
    group.add_argument('--logging-file', default='train_imagenet.log', help='log file name in --save-dir')
    group.add_argument('--eval-frequency', type=int, default=1, help='validate every N epochs (and last)')
    cli.add_progress(group)


def parse_args(argv=None):
    """The :class:`~gluon_resnest.config.TrainConfig` of a command line (``argv`` None: ``sys.argv[1:]``).

    ``--config FILE|NAME`` reads a recipe whose keys are TrainConfig fields; flags override it. Bad values
    raise :class:`~gluon_resnest.cli.UsageError` or ``ConfigError`` naming the flag (and the recipe file if
    the value came from it), which :func:`main` reports in one line with status 2.
    """
    parser = cli.ArgumentParser(description='Train ResNeSt with the paper\'s ImageNet recipe.',
                                formatter_class=cli.HelpFormatter)
    cli.add_config(parser, 'imagenet')
    _data_flags(parser)
    _recipe_flags(parser)
    _finetune_flags(parser)
    _run_flags(parser)
    args, recipe = cli.parse_with_recipe(parser, argv, 'imagenet', field_kinds(TrainConfig))
    return cli.build_config(parser, TrainConfig, args, recipe)


def _train(argv):
    try:
        result = fit(parse_args(argv))
    except ConfigError as err:  # found while assembling the run (e.g. weights that do not fit): name the flags
        raise cli.UsageError(err.render(cli.flag_name)) from None
    if result.val_top1 is not None:
        print('%s: %d epochs, validation top-1 %.2f%% top-5 %.2f%%; checkpoints in %s'
              % (result.model, result.epochs, 100 * result.val_top1, 100 * result.val_top5, result.save_dir))


def main(argv=None):
    """Train as the command line ``argv`` says (None: ``sys.argv[1:]``); returns the exit status.

    The run is :func:`gluon_resnest.train.fit`'s (use that for the :class:`~gluon_resnest.results.TrainResult`).
    """
    return cli.run_command(_train, argv)
