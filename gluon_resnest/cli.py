"""The command-line vocabulary of the classification commands: each flag is defined here once.

``train_imagenet.py``, ``eval.py``, ``python -m gluon_resnest.export``, the converter (``--model``) and
``benchmarks/bench_deploy.py`` build their parsers from these helpers, so a flag means the same in each:
``--model NAME``, ``--pretrained``/``--params-file F``, ``--batch-size`` (per device), ``--input-size`` (the
image side the network sees; ``--crop-size`` is the same flag), ``--gpus 0,1`` or GluonCV's ``--num-gpus N``,
``-j/--num-data-workers``, ``--no-progress``. The detection command keeps the flag names of GluonCV's
``train_faster_rcnn.py`` instead (docs/design.md lists every command's flags). :func:`build_config` turns
parsed flags into a config of :mod:`gluon_resnest.config`, whose one-line errors then name the flags.
"""
import argparse
import dataclasses

from .config import ConfigError, check_model
from .model_zoo import list_models
from .threads import DEFAULT_DATA_WORKERS

__all__ = ['add_model', 'model_flag', 'add_weights', 'add_batch_size', 'add_input_size', 'add_devices', 'add_workers',
           'add_progress', 'build_config', 'flag_name', 'HelpFormatter']

# Fields whose flag is not simply --field-name.
_FLAGS = {'num_data_workers': '-j/--num-data-workers', 'progress': '--no-progress'}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once: not where the help already states it, nor for switches or empty values."""

    def _get_help_string(self, action):
        text = action.help or ''
        if 'default' in text or action.nargs == 0 or action.default in (None, ''):
            return text
        return super(HelpFormatter, self)._get_help_string(action)


def flag_name(field):
    """The command-line spelling of a config field (``batch_size`` -> ``--batch-size``)."""
    return _FLAGS.get(field, '--' + field.replace('_', '-'))


def add_model(group, required=False, default=None):
    """``--model NAME``: one of the published architectures (checked by the config)."""
    group.add_argument('--model', required=required, default=default, metavar='NAME',
                       help='one of: ' + ', '.join(list_models()))


def model_flag(parser, name):
    """``name`` checked as :func:`add_model` promises (lower-cased); a one-line ``parser.error`` if unknown."""
    try:
        return check_model(name)
    except ConfigError as err:
        parser.error(err.render(flag_name))
    return None  # not reached: parser.error exits


def add_weights(group, required=False):
    """``--pretrained`` or ``--params-file F`` (a checkpoint; its class count is read from the file)."""
    weights = group.add_mutually_exclusive_group(required=required)
    weights.add_argument('--pretrained', action='store_true', help='published ImageNet weights')
    weights.add_argument('--params-file', help='.params file (save_parameters; classes read from its '
                         'classifier)')


def add_batch_size(group, default, what='batch size'):
    """``--batch-size``: images per device."""
    group.add_argument('--batch-size', type=int, default=default, help='%s per device' % what)


def add_input_size(group, default=None, help_text=None):
    """``--input-size`` (also ``--crop-size``): the square image side the network sees."""
    group.add_argument('--input-size', '--crop-size', dest='input_size', type=int, default=default,
                       help=help_text or "image side (default: the model's published eval crop)")


def add_devices(group, extra_help=''):
    """``--gpus 0,1`` (empty: CPU) or GluonCV's ``--num-gpus N`` (GPUs 0..N-1)."""
    devices = group.add_mutually_exclusive_group()
    devices.add_argument('--gpus', default='', help="GPU ids, e.g. '0,1,2,3' (empty: CPU)" + extra_help)
    devices.add_argument('--num-gpus', type=int, default=None, metavar='N',
                         help='GluonCV spelling: GPUs 0..N-1 (0: CPU)')


def add_workers(group, default=DEFAULT_DATA_WORKERS, help_text=None):
    """``-j/--num-data-workers``: data loading processes (0: in the main process)."""
    group.add_argument('-j', '--num-data-workers', dest='num_data_workers', type=int, default=default,
                       help=help_text or 'data loading processes (0: in the main process)')


def add_progress(group):
    """``--no-progress``; without it a bar shows only when stderr is a terminal."""
    group.add_argument('--no-progress', dest='progress', action='store_const', const=False, default=None,
                       help='no progress bar (there is none anyway when output is not a terminal)')


def build_config(parser, cls, args, **overrides):
    """``cls(**fields of args)``; a :class:`ConfigError` exits through ``parser.error`` naming the flags."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if getattr(args, 'num_gpus', None) is not None:
        if args.num_gpus < 0:
            parser.error('--num-gpus must be >= 0, got %d' % args.num_gpus)
        values['gpus'] = list(range(args.num_gpus))
    values.update(overrides)
    try:
        return cls(**values)
    except ConfigError as err:
        parser.error(err.render(flag_name))
    return None  # not reached: parser.error exits
