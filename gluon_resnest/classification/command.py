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
from ..config import RUN_GROUP, ConfigError
from .config import TrainConfig
from .task import fit

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    """The :class:`~gluon_resnest.classification.config.TrainConfig` of a command line (``argv`` None: ``sys.argv[1:]``).

    ``--config FILE|NAME`` reads a recipe whose keys are TrainConfig fields; flags override it. Bad values
    raise :class:`~gluon_resnest.cli.UsageError` or ``ConfigError`` naming the flag (and the recipe file if
    the value came from it), which :func:`main` reports in one line with status 2.
    """
    parser = cli.ArgumentParser(description='Train ResNeSt with the paper\'s ImageNet recipe.',
                                formatter_class=cli.HelpFormatter)
    cli.add_config(parser, 'imagenet')
    cli.add_settings(parser, TrainConfig, ('data', 'recipe', RUN_GROUP, 'fine-tuning (docs/your-data.md)'))
    args, recipe = cli.parse_with_recipe(parser, argv, 'imagenet', TrainConfig)
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
