"""Train a ResNeSt on ImageNet (or any ImageNet-layout / RecordIO dataset) with the paper's recipe.

Flag names follow GluonCV's ``train_imagenet.py`` and the official ResNeSt scripts. The paper's ResNeSt-50
recipe, per GPU, on 64 GPUs with Horovod::

    horovodrun -np 64 -H ... python train_imagenet.py --model resnest50 --kv-store horovod --gpus 0 \\
        --rec-train train.rec --rec-train-idx train.idx --rec-val val.rec --rec-val-idx val.idx \\
        --batch-size 128 --lr 0.05 --lr-mode cosine --num-epochs 270 --warmup-epochs 5 --no-wd \\
        --last-gamma --label-smoothing 0.1 --mixup --auto-aug --dropblock-prob 0.1 --input-size 224

``--lr`` is per device: the peak rate is ``lr x workers x devices per worker``. See README for the rest.
"""
import argparse
import sys

from gluon_resnest import list_models
from gluon_resnest.train import TrainingDiverged, TrainingInterrupted, build_run, train
from gluon_resnest.train.distributed import KV_STORES


def _data_flags(parser):
    group = parser.add_argument_group('data')
    group.add_argument('--data-dir', default='~/.mxnet/datasets/imagenet',
                       help='ImageNet layout: DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG')
    group.add_argument('--rec-train', default='', help='training RecordIO file (replaces --data-dir)')
    group.add_argument('--rec-train-idx', default='', help='its index (default: .rec -> .idx)')
    group.add_argument('--rec-val', default='', help='validation RecordIO file')
    group.add_argument('--rec-val-idx', default='', help='its index (default: .rec -> .idx)')
    group.add_argument('--use-rec', action='store_true', help='require the RecordIO flags (GluonCV compat)')
    group.add_argument('--data-backend', default='auto', choices=('auto', 'python', 'recordio'),
                       help="who decodes and augments training images: 'recordio' MXNet's C++ RecordIO "
                       "pipeline (needs --rec-train; several times faster), 'python' Gluon transforms, 'auto' "
                       "recordio whenever --rec-train is given without --auto-aug")
    group.add_argument('-j', '--num-data-workers', dest='num_data_workers', type=int, default=4,
                       help='data loading processes per worker (0: in the training process); C++ decoding '
                       'threads (at least 1) with --data-backend recordio')
    group.add_argument('--classes', type=int, default=None,
                       help='number of classes (default: class folders found, or 1000 for RecordIO)')
    group.add_argument('--input-size', type=int, default=224, help='training and validation crop size')
    group.add_argument('--crop-ratio', type=float, default=None,
                       help='validation crop / resize ratio (default: the eval protocol, 0.875 below 320)')
    group.add_argument('--min-random-area', type=float, default=0.08, help='smallest random crop area')
    group.add_argument('--random-mirror', type=int, default=1, choices=(0, 1), help='random horizontal flips')
    group.add_argument('--jitter-param', type=float, default=0.4, help='brightness/contrast/saturation jitter')
    group.add_argument('--lighting-param', type=float, default=0.1, help='PCA lighting noise')
    group.add_argument('--auto-aug', action='store_true', help='AutoAugment ImageNet policy')


def _recipe_flags(parser):
    group = parser.add_argument_group('recipe')
    group.add_argument('--model', default='resnest50', help='one of: ' + ', '.join(list_models()))
    group.add_argument('--batch-size', type=int, default=32, help='batch size per device')
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


def _run_flags(parser):
    group = parser.add_argument_group('devices, checkpoints, logging')
    group.add_argument('--gpus', default='', help="GPU ids, e.g. '0,1,2,3' (empty: CPU); with horovod any "
                       "value means one GPU per process, the one of its local rank")
    group.add_argument('--kv-store', default='device', choices=KV_STORES,
                       help='gradient aggregation: one machine (local, device) or many')
    group.add_argument('--save-dir', default='params', help='checkpoints, log, history.json, curve.png')
    group.add_argument('--save-frequency', type=int, default=10, help='checkpoint every N epochs (and last)')
    group.add_argument('--resume', action='store_true', help='continue from the latest checkpoint in --save-dir')
    group.add_argument('--resume-epoch', type=int, default=0, help='epochs done by --resume-params/-states')
    group.add_argument('--resume-params', default='', help='params file to start from')
    group.add_argument('--resume-states', default='', help='trainer states file to continue with')
    group.add_argument('--log-interval', type=int, default=50, help='log every N batches (0: never)')
    group.add_argument('--logging-file', default='train_imagenet.log', help='log file name in --save-dir')
    group.add_argument('--eval-frequency', type=int, default=1, help='validate every N epochs (and last)')
    group.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bar')


def _check(parser, args):
    """One-line errors for values and combinations that cannot work."""
    positive = ('batch_size', 'num_epochs', 'save_frequency', 'eval_frequency')
    bad = [name for name in positive if getattr(args, name) < 1]
    rules = [
        (args.model not in list_models(), 'unknown --model %r (choose from %s)'
         % (args.model, ', '.join(list_models()))),
        (bool(bad), '--%s must be >= 1, got %s' % (bad[0].replace('_', '-'), getattr(args, bad[0])) if bad
         else ''),
        (args.lr <= 0, '--lr must be positive'),
        (not all(e.strip().isdigit() for e in args.lr_decay_epoch.split(',') if e.strip()),
         '--lr-decay-epoch must be comma-separated epochs, got %r' % args.lr_decay_epoch),
        (args.input_size < 32, '--input-size must be >= 32 (the network downsamples 32x)'),
        (args.num_data_workers < 0, '-j/--num-data-workers must be >= 0'),
        (not 0 < args.min_random_area <= 1, '--min-random-area must be in (0, 1]'),
        (args.jitter_param < 0 or args.lighting_param < 0, '--jitter-param and --lighting-param must be >= 0'),
        (args.classes is not None and args.classes < 2, '--classes must be >= 2'),
        (not 0 <= args.label_smoothing < 1, '--label-smoothing must be in [0, 1)'),
        (args.mixup and args.mixup_alpha <= 0, '--mixup needs --mixup-alpha > 0'),
        (not 0 <= args.warmup_epochs < args.num_epochs, '--warmup-epochs must be in [0, --num-epochs)'),
        (args.dropblock_prob is not None and not 0 <= args.dropblock_prob < 1, '--dropblock-prob must be in [0, 1)'),
        (args.final_drop is not None and not 0 <= args.final_drop < 1, '--final-drop must be in [0, 1)'),
        (args.dtype == 'float16' and not args.gpus, '--dtype float16 needs --gpus (MXNet has no float16 CPU '
         'training)'),
        (args.use_rec and not args.rec_train, '--use-rec needs --rec-train'),
        (args.data_backend == 'recordio' and not args.rec_train, '--data-backend recordio needs --rec-train'),
        (args.data_backend == 'recordio' and args.auto_aug, '--data-backend recordio cannot apply --auto-aug '
         '(AutoAugment has no C++ form); use --data-backend auto or python'),
        (bool(args.rec_train) != bool(args.rec_val), '--rec-train and --rec-val go together'),
        (args.resume and bool(args.resume_params or args.resume_states),
         '--resume cannot be combined with --resume-params/--resume-states'),
        (not 0 <= args.resume_epoch < args.num_epochs, '--resume-epoch must be in [0, --num-epochs)'),
    ]
    for failed, message in rules:
        if failed:
            parser.error(message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once: not where the help already states it, nor for switches or empty values."""

    def _get_help_string(self, action):
        text = action.help or ''
        if 'default' in text or action.nargs == 0 or action.default in (None, ''):
            return text
        return super(_HelpFormatter, self)._get_help_string(action)


def parse_args(argv=None):
    """Parse and check the command line (``argv`` None: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Train ResNeSt with the paper\'s ImageNet recipe.',
                                     formatter_class=_HelpFormatter)
    _data_flags(parser)
    _recipe_flags(parser)
    _run_flags(parser)
    args = parser.parse_args(argv)
    _check(parser, args)
    return args


def main(args=None):
    """Train; returns the finished run (``run.net``, ``run.history.records``, ``run.last_checkpoint``).

    ``args`` is a Namespace from :func:`parse_args`, a list of command-line strings, or None (sys.argv).
    Bad input and a diverging loss exit with a one-line ``error: ...``; Ctrl-C exits with status 130
    after writing a checkpoint.
    """
    if args is None or isinstance(args, (list, tuple)):
        args = parse_args(args)
    try:
        run = build_run(args)
        return train(run)
    except TrainingInterrupted as err:
        print('interrupted: %s' % err, file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, ImportError, TrainingDiverged) as err:
        sys.exit('error: %s' % err)


if __name__ == '__main__':
    main()
