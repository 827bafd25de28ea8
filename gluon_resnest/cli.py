"""The command-line vocabulary of the classification commands (each flag is defined here once), and the one
error policy of every command.

``train_imagenet.py``, ``eval.py``, ``python -m gluon_resnest.export``, the converter (``--model``) and
``benchmarks/bench_deploy.py`` build their parsers from these helpers, so a flag means the same in each:
``--model NAME``, ``--pretrained``/``--params-file F``, ``--batch-size`` (per device), ``--input-size`` (the
image side the network sees; ``--crop-size`` is the same flag), ``--gpus 0,1`` or GluonCV's ``--num-gpus N``,
``-j/--num-data-workers``, ``--no-progress``, ``--config FILE|NAME`` (a recipe whose values become the
defaults: :func:`parse_with_recipe`; the detection command reads it too). The detection command otherwise
keeps the flag names of GluonCV's ``train_faster_rcnn.py`` (docs/design.md lists every command's flags).
:func:`build_config` turns parsed flags into a config of :mod:`gluon_resnest.config`, whose one-line errors
then name the flags.

The one error policy of every command (:func:`run_command`): a command's ``main(argv=None)`` returns its
exit status; an error is one line on stderr naming the problem, no traceback. Status 2: bad usage (a flag
argparse rejects, a :class:`~gluon_resnest.config.ConfigError` or ``RecipeError``, a file named on the
command line that is missing or unreadable); 1: a run that failed (a diverging loss, a bad checkpoint,
an export whose self-check failed, ...); 130: Ctrl-C (the trainer writes a checkpoint first).
"""
import argparse
import dataclasses
import sys

from .config import ConfigError, RecipeError, check_model, field_kinds, list_recipes, number_list_type, read_recipe
from .model_zoo import list_models
from .threads import DATA_WORKER_FLAGS, DEFAULT_DATA_WORKERS, GPU_COUNT_FLAG, GPU_FLAG

__all__ = ['ArgumentParser', 'UsageError', 'DataError', 'run_command', 'EXIT_FAILED', 'EXIT_USAGE', 'EXIT_INTERRUPTED',
           'add_model', 'model_flag', 'add_weights', 'add_batch_size', 'add_input_size', 'add_devices', 'add_workers',
           'add_progress', 'add_config', 'add_switch_opposites', 'add_settings', 'parse_with_recipe', 'build_config',
           'flag_name', 'HelpFormatter']

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class DataError(ValueError):
    """A dataset named on the command line whose contents fail the checks made when it is opened: bad usage
    (exit status 2), one line naming the file and the record."""


# A file named on the command line that cannot be read is bad usage, as a bad flag value is; so is a dataset
# whose records fail their checks.
_USAGE_ERRORS = (ConfigError, DataError, RecipeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                 PermissionError)
# A run that failed: MXNet's errors are RuntimeErrors; ImportError is an optional package missing.
_RUN_ERRORS = (ValueError, OSError, RuntimeError, ImportError)

# Fields whose flag is not simply --field-name.
_FLAGS = {'num_data_workers': '-j/--num-data-workers', 'progress': '--no-progress'}


class UsageError(ValueError):
    """Bad command-line usage that argparse found (exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` (one line through
    :func:`run_command`) instead of printing the usage block and exiting."""

    def error(self, message):
        raise UsageError(message)


def _error_line(err):
    """``error: `` and the line of ``err``'s text that says what went wrong: the first, or where MXNet
    puts its C++ frames first (``Traceback (most recent call last):`` and indented ``File`` lines, then
    ``MXNetError: ...``), the first line after them. (OSError's text starts with [Errno N].)"""
    lines = [line for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
    if lines[0].startswith('Traceback (most recent call last)'):
        lines = [line for line in lines[1:] if not line[:1].isspace()] or lines
    return 'error: %s' % lines[0].strip()


def run_command(body, argv=None):
    """Run ``body(argv)`` under the commands' error policy; returns the exit status.

    Parameters
    ----------
    body : callable
        The command: takes ``argv`` (a list of strings, or None for ``sys.argv[1:]``) and returns None or
        an exit status.
    argv : list of str, optional

    Returns
    -------
    int
        0 on success (or ``body``'s own status), 2 for bad usage, 1 for a failed run, 130 after Ctrl-C;
        errors are printed as one line on stderr.
    """
    try:
        status = body(argv)
    except SystemExit as err:  # --help (0), or a module that still exits itself
        if err.code is None or isinstance(err.code, int):
            return err.code or 0
        print(err.code, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as err:  # the trainer's TrainingInterrupted says where its checkpoint is
        print('interrupted%s' % (': %s' % err if str(err) else ''), file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError,) + _USAGE_ERRORS as err:
        print(_error_line(err), file=sys.stderr)
        return EXIT_USAGE
    except _RUN_ERRORS as err:
        print(_error_line(err), file=sys.stderr)
        return EXIT_FAILED
    return status or 0


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


def add_weights(group):
    """``--pretrained`` or ``--params-file F`` (a checkpoint; its class count is read from the file).

    Not argparse-exclusive: "exactly one of" is checked in one place, :func:`gluon_resnest.config.check_weights`,
    which the configs and :func:`gluon_resnest.loading.load_network` call."""
    group.add_argument('--pretrained', action='store_true', help='published ImageNet weights')
    group.add_argument('--params-file', help='.params file (save_parameters; classes read from its classifier)')


def add_batch_size(group, default, what='batch size'):
    """``--batch-size``: images per device."""
    group.add_argument('--batch-size', type=int, default=default, help='%s per device' % what)


def add_input_size(group, default=None, help_text=None):
    """``--input-size`` (also ``--crop-size``): the square image side the network sees."""
    group.add_argument('--input-size', '--crop-size', dest='input_size', type=int, default=default,
                       help=help_text or "image side (default: the model's published eval crop)")


def add_devices(group, help_text="GPU ids, e.g. '0,1,2,3' (empty: CPU)"):
    """``--gpus 0,1`` (empty: CPU) or GluonCV's ``--num-gpus N`` (GPUs 0..N-1)."""
    devices = group.add_mutually_exclusive_group()
    devices.add_argument(GPU_FLAG, default='', help=help_text)
    devices.add_argument(GPU_COUNT_FLAG, type=int, default=None, metavar='N',
                         help='GluonCV spelling: GPUs 0..N-1 (0: CPU)')


def add_workers(group, default=DEFAULT_DATA_WORKERS, help_text=None):
    """``-j/--num-data-workers`` (or GluonCV detection's ``--num-workers``): data loading processes (0: in
    the main process)."""
    group.add_argument(*DATA_WORKER_FLAGS, dest='num_data_workers', type=int, default=default,
                       help=help_text or 'data loading processes (0: in the main process)')


def add_progress(group):
    """``--no-progress``; without it a bar shows only when stderr is a terminal."""
    group.add_argument('--no-progress', dest='progress', action='store_const', const=False, default=None,
                       help='no progress bar (there is none anyway when output is not a terminal)')


def add_config(parser, kind):
    """``--config FILE|NAME``: a YAML recipe (a path, or the name of one shipped for ``kind``)."""
    parser.add_argument('--config', metavar='FILE|NAME', default=None,
                        help='YAML recipe whose keys are this command\'s flags (lr_decay_epoch: for '
                        '--lr-decay-epoch): a file path, or the name of a recipe installed in '
                        'gluon_resnest/recipes/%s/ (%s); flags given on the command line override it '
                        '(a switch the recipe turns on is turned off by its opposite: --no-mixup, '
                        '--wd-norm for --no-wd-norm)' % (kind, ', '.join(list_recipes(kind))))


def add_switch_opposites(parser):
    """Give every switch (``--mixup``, ``--no-wd-norm``) its opposite (``--no-mixup``, ``--wd-norm``), so a
    switch a recipe turns on can be turned off on the command line. An opposite whose name another option
    already has (``--wd`` for ``--no-wd``) is left out. The opposites are not listed in ``--help``."""
    taken = parser._option_string_actions  # pylint: disable=protected-access
    for action in list(parser._actions):  # pylint: disable=protected-access
        if not isinstance(action, argparse._StoreTrueAction):  # pylint: disable=protected-access
            continue
        for name in action.option_strings:
            opposite = '--' + name[5:] if name.startswith('--no-') else '--no-' + name[2:]
            if name.startswith('--') and opposite not in taken:
                parser.add_argument(opposite, dest=action.dest, action='store_false',
                                    default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def parse_with_recipe(parser, argv, kind, cls):
    """Parse ``argv``; with ``--config`` its recipe's values are the defaults that flags override.

    A recipe's keys are the fields of the config dataclass ``cls``, typed as
    :func:`gluon_resnest.config.field_kinds` says (the types the parser's options come from, see
    :func:`add_settings`). A bad recipe exits through ``parser.error`` (one line).

    Returns
    -------
    (argparse.Namespace, tuple or None)
        The arguments and ``(path, values)`` of the recipe read (None without ``--config``).
    """
    add_switch_opposites(parser)
    args = parser.parse_args(argv)
    if not args.config:
        return args, None
    try:
        recipe = read_recipe(args.config, kind, field_kinds(cls))
    except RecipeError as err:
        parser.error(str(err))
    parser.set_defaults(**recipe[1])
    return parser.parse_args(argv), recipe


def _option(field, kind):
    """argparse keywords of a config ``field`` of recipe ``kind`` (see :func:`gluon_resnest.config.setting`)."""
    meta = field.metadata
    default = field.default
    if isinstance(default, tuple):  # given as its text, which argparse reads with the option's type
        default = ','.join(map(str, default))
    options = dict(default=default, help=meta['help'])
    if 'metavar' in meta:
        options['metavar'] = meta['metavar']
    if meta.get('choices') is not None and meta.get('show_choices', True):
        options['choices'] = meta['choices']
    if field.default is dataclasses.MISSING:
        options.update(required=True, default=None)
    if kind is bool and 'type' not in meta:
        if 'const' in meta:
            return dict(options, action='store_const', const=meta['const'])
        return dict(options, action='store_true')
    parse = meta.get('type', kind)
    if parse is int and isinstance(default, bool):
        options['default'] = int(default)
    if parse in ('ints', 'floats'):
        parse = number_list_type(parse)
    if parse is not str:
        options['type'] = parse
    if 'const' in meta:
        options.update(nargs='?', const=meta['const'])
    return options


def add_settings(parser, cls, groups=()):
    """Add an option for each field of the config dataclass ``cls`` declared with
    :func:`gluon_resnest.config.setting`: its flags, default, help, type, choices and aliases are the field's.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    cls : type
        A config dataclass.
    groups : tuple of str
        Help sections in this order (a field's ``group`` not listed comes after them; fields without one go
        to ``parser``).
    """
    targets = {name: parser.add_argument_group(name) for name in groups}
    kinds = field_kinds(cls)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if 'help' not in meta:
            continue
        group = meta.get('group')
        if group and group not in targets:
            targets[group] = parser.add_argument_group(group)
        target = targets[group] if group else parser
        for flags, options in meta.get('extra', ()):
            target.add_argument(*flags, dest=field.name, default=argparse.SUPPRESS, **options)
        if meta.get('devices'):
            add_devices(target, help_text=meta['help'])
            continue
        flags = meta.get('flags') or ('--' + field.name.replace('_', '-'),)
        target.add_argument(*flags, dest=field.name, **_option(field, kinds[field.name][0]))


def build_config(parser, cls, args, recipe=None, **overrides):
    """``cls(**fields of args)``; a :class:`ConfigError` exits through ``parser.error`` naming the flags
    (and ``recipe``'s file, as :func:`parse_with_recipe` returns it, when the bad value came from it)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if getattr(args, 'num_gpus', None) is not None:
        if args.num_gpus < 0:
            parser.error('--num-gpus must be >= 0, got %d' % args.num_gpus)
        values['gpus'] = list(range(args.num_gpus))
    values.update(overrides)
    try:
        return cls(**values)
    except ConfigError as err:
        from_file = recipe is not None and err.field in recipe[1] and values.get(err.field) == recipe[1][err.field]
        parser.error(err.render(flag_name) + (' (set in %s)' % recipe[0] if from_file else ''))
    return None  # not reached: parser.error exits
