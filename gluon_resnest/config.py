"""The settings shared by every job, and how a setting is defined once: errors, recipe files, option groups.

A job's config is a dataclass whose fields are the command-line options of its command (``batch_size`` is
``--batch-size``): :class:`~gluon_resnest.classification.config.TrainConfig` and
:class:`~gluon_resnest.classification.config.EvalConfig`,
:class:`~gluon_resnest.detection.config.DetectionConfig`, and :class:`ExportConfig` here. Each field is
declared once with :func:`setting` (default, help, aliases, choices), from which the command's parser
(:func:`gluon_resnest.cli.add_settings`) and the recipe typing (:func:`field_kinds`) are made. Building a
config validates it, and a bad value raises :class:`ConfigError` (a ``ValueError``) naming the field, so a
program gets the same one-line message the command prints::

    from gluon_resnest.train import TrainConfig, fit
    run = fit(TrainConfig(model='resnest14', data_dir='demo_data', input_size=32, batch_size=16))

``batch_size`` is per device in every job; ``input_size`` is the square image side the network sees.

Recipes are YAML files whose keys are config fields (:func:`read_recipe`); the paper's ship in
``gluon_resnest/recipes/<kind>/`` and load by name: ``TrainConfig.from_file('resnest50', gpus='0,1')``.
"""
import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Optional, Union

from .model_zoo import list_models, model_key
from .pretrained import eval_crop

__all__ = ['ConfigError', 'RecipeError', 'ExportConfig', 'INT8_FORMATS', 'setting', 'check_choices', 'check_rules', 'check_at_least',
           'check_run', 'check_image', 'devices_setting', 'kv_store_setting', 'step_timeout_setting',
           'parse_devices', 'check_model', 'check_weights', 'read_recipe', 'recipe_path', 'list_recipes',
           'config_from_file', 'field_kinds', 'number_list', 'number_list_type', 'epoch_list', 'KV_STORES',
           'EXPORT_FORMATS', 'CALIB_MODES', 'GRANULARITIES', 'RECIPE_DIR', 'RUN_GROUP', 'MODEL_HELP',
           'WEIGHTS_HELP', 'DTYPES', 'MIN_INPUT_SIZE']

KV_STORES = ('local', 'device', 'dist_sync', 'dist_device_sync', 'horovod')
EXPORT_FORMATS = ('mxnet', 'onnx', 'int8', 'onnx-int8')
INT8_FORMATS = ('int8', 'onnx-int8')  # calibrated on images: --calib-data and its flags apply
CALIB_MODES = ('naive', 'entropy')
GRANULARITIES = ('tensor-wise', 'channel-wise')
GRANULARITY_HELP = 'int8, onnx-int8: weight scales per tensor or per output channel (tensor-wise)'
MIN_AGREEMENT_HELP = ('int8, onnx-int8: fail if INT8 and fp32 top-1 agree on fewer calibration (onnx-int8: '
                      'or held-out) images')
DTYPES = ('float32', 'float16')
# ResNeSt downsamples 32x; a deployed graph of unknown stride is held to the same minimum.
MIN_INPUT_SIZE = 32
# The paper's recipes, installed with the package: recipes/imagenet/*.yaml, recipes/detection/*.yaml.
RECIPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'recipes')


class ConfigError(ValueError):
    """A config value that cannot work. ``str(err)`` names fields; :meth:`render` names them otherwise.

    Parameters
    ----------
    template : str
        The message with ``{}`` where each field name goes.
    *fields : str
        Field names, in the order of the ``{}``.
    """

    def __init__(self, template, *fields):
        self.template, self.fields = template, fields
        super(ConfigError, self).__init__(template.format(*fields))

    @property
    def field(self):
        """The field the error is about (the first one named)."""
        return self.fields[0] if self.fields else None

    def render(self, name_of):
        """The message with each field spelled as ``name_of(field)`` (e.g. its command-line flag)."""
        return self.template.format(*(name_of(f) for f in self.fields))


def parse_devices(gpus):
    """GPU ids as a tuple of ints from ``'0,1'``, ``[0, 1]``, ``''`` or None (empty: CPU)."""
    if gpus is None:
        return ()
    if isinstance(gpus, int):
        gpus = [gpus]
    items = gpus.split(',') if isinstance(gpus, str) else list(gpus)
    try:
        ids = tuple(int(str(i).strip()) for i in items if str(i).strip())
    except ValueError:
        raise ConfigError('{} takes comma-separated GPU ids such as "0,1", got %r' % (gpus,), 'gpus') from None
    if any(i < 0 for i in ids):
        raise ConfigError('{} ids must be >= 0, got %r' % (gpus,), 'gpus')
    return ids


def check_rules(rules):
    """Raise the first failing rule: ``(failed, template, *fields)``."""
    for failed, template, *fields in rules:
        if failed:
            raise ConfigError(template, *fields)


def check_weights(pretrained, params_file, required=True):
    """The one check of a network's weights: at most one of ``pretrained`` and ``params_file``, and one of
    them when ``required`` (without either a network is randomly initialised: speed measurements only).

    Raises
    ------
    ConfigError
        Naming the fields ``pretrained`` and ``params_file``.
    """
    check_rules([(bool(pretrained) and bool(params_file) or required and not (pretrained or params_file),
             'give exactly one of {} and {}', 'pretrained', 'params_file')])


def check_model(model, optional=False):
    """The lower-case name of a published architecture; :class:`ConfigError` (field ``model``) otherwise."""
    if model is None and optional:
        return None
    try:
        return model_key(model)
    except ValueError as err:
        text = str(err).replace('{', '{{').replace('}', '}}')
        raise ConfigError(text.replace('model', '{}', 1), 'model') from None


def check_at_least(config, minimum, *names):
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError('{} must be >= %d, got %s' % (minimum, value), name)


def epoch_list(value):
    """``'40,60'`` or ``[40, 60]`` -> (40, 60)."""
    items = value.split(',') if isinstance(value, str) else list(value)
    items = [str(e).strip() for e in items if str(e).strip()]
    if not all(e.isdigit() for e in items):
        raise ConfigError('{} must be comma-separated epochs, got %r' % (value,), 'lr_decay_epoch')
    return tuple(int(e) for e in items)


class RecipeError(ValueError):
    """A recipe file that cannot be read: missing, not YAML, an unknown key or a value of the wrong type."""


def list_recipes(kind):
    """Names of the recipes shipped for ``kind`` ('imagenet' or 'detection'), sorted."""
    folder = os.path.join(RECIPE_DIR, kind)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(os.path.splitext(n)[0] for n in names if n.endswith('.yaml'))


def recipe_path(source, kind):
    """The file ``source`` names: a path to a YAML file, or the name of a recipe shipped for ``kind``.

    Raises
    ------
    RecipeError
        Neither an existing file nor a shipped recipe's name.
    """
    source = os.path.expanduser(str(source))
    if os.path.isfile(source):
        return source
    if source.endswith(('.yaml', '.yml')) or os.sep in source:
        raise RecipeError('config file %s does not exist' % source)
    shipped = os.path.join(RECIPE_DIR, kind, source + '.yaml')
    if not os.path.isfile(shipped):
        raise RecipeError('%r is neither a file nor a recipe name (%s recipes: %s)'
                          % (source, kind, ', '.join(list_recipes(kind))))
    return shipped


def field_kinds(cls):
    """{field: (kind, nullable)} of a config dataclass, for :func:`read_recipe`.

    ``kind`` is bool, int, float, str, ``'ints'`` (a ``Tuple[int, ...]`` field) or ``'floats'``
    (``Tuple[float, ...]``); ``nullable`` is True
    for ``Optional`` fields.
    """
    kinds = {}
    for field in dataclasses.fields(cls):
        kind, args = field.type, typing.get_args(field.type)
        nullable = typing.get_origin(kind) is typing.Union and type(None) in args
        if nullable:
            kind = [a for a in args if a is not type(None)][0]
        if typing.get_origin(kind) is tuple:
            kind = 'floats' if typing.get_args(kind)[0] is float else 'ints'
        kinds[field.name] = (kind, nullable)
    return kinds


_KIND_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
               'ints': 'a list of integers', 'floats': 'a list of numbers',
               Union[bool, str]: 'true, false or a file path'}


def number_list(value, item):
    """``[640, 800]``, ``'640,800'`` or ``800`` -> a tuple of ``item``; None if it is none of these."""
    if isinstance(value, str):
        value = [v for v in value.split(',') if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    out = []
    for v in value:
        v = _scalar(v.strip() if isinstance(v, str) else v, item, parse=isinstance(v, str))
        if v is None:
            return None
        out.append(v)
    return tuple(out)


def number_list_type(kind):
    """An argparse ``type`` reading ``'640,800'`` as a tuple (``kind`` 'ints' or 'floats', also its
    ``kind`` attribute)."""
    item = int if kind == 'ints' else float

    def parse(text):
        value = number_list(text, item)
        if value is None:
            raise ValueError(text)
        return value
    parse.__name__, parse.kind = '%s list' % item.__name__, kind  # argparse's and recipes' names
    return parse


def _scalar(value, kind, parse=False):
    """``value`` as ``kind`` (int or float; ``parse``: from a string), or None if it is not one."""
    if parse:
        try:
            return kind(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is int and not isinstance(value, int):
        return None
    return kind(value)


def _typed(value, kind, nullable):
    """``value`` checked as ``kind`` (see :func:`field_kinds`); raises TypeError naming the kind."""
    if value is None:
        if nullable:
            return None
    elif kind in ('ints', 'floats'):
        checked = number_list(value, int if kind == 'ints' else float)
        if checked is not None:
            return checked
    elif kind in (int, float):
        # PyYAML reads 1e-4 (no dot) as a string: numbers written so are numbers.
        checked = _scalar(value, kind, parse=isinstance(value, str))
        if checked is not None:
            return checked
    elif isinstance(value, kind):
        return value
    raise TypeError(_KIND_NAMES[kind] + (' or null' if nullable else ''))


def _load_yaml(path):
    import yaml  # pylint: disable=import-outside-toplevel
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = ' at line %d' % (mark.line + 1) if mark is not None else ''
        raise RecipeError('%s: not valid YAML%s: %s' % (path, where, getattr(err, 'problem', None) or err)) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError('%s: a recipe is a mapping of keys to values, got %s' % (path, type(values).__name__))
    return values


def read_recipe(source, kind, kinds):
    """The values of a recipe file, each checked against ``kinds`` (as :func:`field_kinds` returns).

    Keys are field names (``lr_decay_epoch``; ``lr-decay-epoch`` is the same key); lists may also be
    written as comma-separated strings.

    Parameters
    ----------
    source : str
        A YAML file, or the name of a recipe shipped for ``kind`` (see :func:`list_recipes`).
    kind : str
        'imagenet' or 'detection'.
    kinds : dict
        {key: (kind, nullable)} of the keys a recipe may set.

    Returns
    -------
    (str, dict)
        The file read and {key: value}.

    Raises
    ------
    RecipeError
        One line naming the file and the key: unknown key, wrong type, missing file, bad YAML.
    """
    path = recipe_path(source, kind)
    values = {}
    for key, value in _load_yaml(path).items():
        name = str(key).replace('-', '_')
        if name not in kinds:
            raise RecipeError('%s: unknown key %r' % (path, key))
        try:
            values[name] = _typed(value, *kinds[name])
        except TypeError as err:
            raise RecipeError('%s: %s must be %s, got %r' % (path, key, err, value)) from None
    return path, values


def config_from_file(cls, kind, source, overrides):
    """``cls`` built from the recipe ``source`` of ``kind`` with ``overrides`` winning; a bad value from the
    file names the file."""
    path, values = read_recipe(source, kind, field_kinds(cls))
    try:
        return cls(**dict(values, **overrides))
    except ConfigError as err:
        if err.field not in values or err.field in overrides:
            raise
        raise ConfigError(err.template + ' (set in %s)' % path.replace('{', '{{').replace('}', '}}'),
                          *err.fields) from None


# ---- one definition per setting: a field, its command-line option and its checks ----

def setting(default, help, **option):  # pylint: disable=redefined-builtin
    """A config field that is also a command-line option (:func:`gluon_resnest.cli.add_settings` adds it).

    The field's name, type and default are the option's (``batch_size: int`` is ``--batch-size N``, a
    ``bool`` field is a switch, a ``Tuple[int, ...]`` field takes ``'40,60'``); ``option`` says the rest.

    Parameters
    ----------
    default
        The field's default (also the option's).
    help : str
        The option's help text.
    **option
        ``flags`` (tuple: its spellings, aliases after the first; default ``--field-name``), ``extra``
        (``((flags...), argparse keywords)`` pairs: more options storing into this field, added before it,
        e.g. ``--horovod``), ``choices`` (the values allowed: shown by argparse and checked by
        :func:`check_choices`), ``show_choices`` (False: checked only), ``const`` (a switch storing this
        value; with a non-bool field, the value of the flag given alone), ``type`` (the parser's type when
        not the field's), ``metavar``, ``group`` (the help section), ``devices`` (``--gpus`` with GluonCV's
        ``--num-gpus``).

    Returns
    -------
    dataclasses.Field
    """
    return dataclasses.field(default=default, metadata=dict(option, help=help))


def check_choices(config):
    """Each field with ``choices`` holds one of them (a None default is also allowed)."""
    for field in dataclasses.fields(config):
        choices = field.metadata.get('choices')
        value = getattr(config, field.name)
        if choices is None or value in choices or (value is None and field.default is None):
            continue
        listed = ', '.join(map(str, choices)) + (' or left out' if field.default is None else '')
        raise ConfigError('{} must be one of %s, got %r' % (listed, value), field.name)


# Settings every job that trains shares: devices, gradient aggregation, the watchdog, resuming, seed.
RUN_GROUP = 'devices, checkpoints, logging'
STEP_TIMEOUT_HELP = ('dist_sync/dist_device_sync: stop a worker (exit status 1) after this many seconds without '
                     'progress, as a peer or server is then gone; 10x the median time of the same kind of work if '
                     'longer, 10x this value for the first training batch, validation batch and checkpoint; '
                     '0: never (default: %(default)s)')


def devices_setting(help_text, group=None, gluoncv_count=True):
    """``--gpus 0,1`` (empty: CPU), with GluonCV's ``--num-gpus N`` when ``gluoncv_count``."""
    return setting((), help_text, type=str, group=group, devices=gluoncv_count)


def kv_store_setting(help_text, group=None, show_choices=True, extra=()):
    """``--kv-store``: one of :data:`KV_STORES` (``extra``: more spellings, see :func:`setting`)."""
    return setting('device', help_text, choices=KV_STORES, show_choices=show_choices, group=group, extra=extra)


def step_timeout_setting(group=None):
    """``--step-timeout``: the watchdog's limit in seconds (0: none)."""
    return setting(30.0, STEP_TIMEOUT_HELP, group=group)


def check_run(config, epochs):
    """The settings of a training run every job shares: aggregation, watchdog, and how a run resumes
    (``--resume`` or ``--resume-params``/``--resume-states`` from epoch ``--resume-epoch`` < ``epochs``)."""
    weights = ['resume_params'] + (['resume_states'] if hasattr(config, 'resume_states') else [])
    check_rules([
        (config.resume and any(getattr(config, name) for name in weights),
         '{} cannot be combined with ' + '/'.join('{}' for _ in weights), 'resume', *weights),
        (not 0 <= config.resume_epoch < getattr(config, epochs), '{} must be in [0, {})', 'resume_epoch',
         epochs),
        (config.step_timeout < 0, '{} must be >= 0 seconds (0: no limit), got %s' % config.step_timeout,
         'step_timeout'),
    ])


def check_image(config):
    """``input_size`` (the network downsamples 32x) and the held-out ``crop_ratio`` in (0, 1]."""
    check_rules([
        (config.input_size < MIN_INPUT_SIZE, '{} must be >= %d (the network downsamples 32x), got %d'
         % (MIN_INPUT_SIZE, config.input_size), 'input_size'),
        (config.crop_ratio is not None and not 0 < config.crop_ratio <= 1, '{} must be in (0, 1]', 'crop_ratio'),
    ])


MODEL_HELP = 'one of: ' + ', '.join(list_models())
WEIGHTS_HELP = ('published ImageNet weights', '.params file (save_parameters; classes read from its classifier)')


@dataclass
class ExportConfig:  # pylint: disable=too-many-instance-attributes
    """What ``gluon_resnest.export.export`` writes (``python -m gluon_resnest.export``'s options).

    ``input_size`` None is the model's published evaluation crop; ``prefix`` None is the model name
    (+ ``-int8`` for INT8). ``batch_size`` is the exported graph's batch (and the calibration batch).
    """
    model: str = setting(dataclasses.MISSING, MODEL_HELP, metavar='NAME')
    out: str = setting(dataclasses.MISSING, 'output folder (created if needed)')
    pretrained: bool = setting(False, WEIGHTS_HELP[0])
    params_file: Optional[str] = setting(None, WEIGHTS_HELP[1])
    prefix: Optional[str] = setting(None, 'file name prefix (default: the model name, +"-int8" for int8 and onnx-int8)')
    format: str = setting('mxnet', 'default: mxnet', choices=EXPORT_FORMATS)
    input_size: Optional[int] = setting(None, "image side (default: the model's published eval crop)",
                                        flags=('--input-size', '--crop-size'))
    batch_size: int = setting(1, 'export / calibration batch (1) per device')
    preprocess: bool = setting(False, 'fold mean/std and HWC->CHW into the graph: input raw (N, H, W, 3) images')
    dynamic_batch: bool = setting(False, 'onnx: free batch dimension')
    no_runtime_check: bool = setting(False, 'onnx: only run onnx.checker, skip the onnxruntime comparison')
    calib_data: Optional[str] = setting(None, 'int8, onnx-int8: ImageNet-layout image folder or .rec file')
    num_calib_batches: int = setting(10, 'int8, onnx-int8: batches (10)')
    calib_mode: str = setting('naive', 'int8, onnx-int8 (naive)', choices=CALIB_MODES)
    granularity: str = setting('tensor-wise', GRANULARITY_HELP, choices=GRANULARITIES)
    min_agreement: float = setting(0.8, MIN_AGREEMENT_HELP)

    def __post_init__(self):
        self.model = check_model(self.model)
        if self.input_size is None:
            self.input_size = eval_crop(self.model)
        if self.prefix is None:
            self.prefix = self.model + ('-int8' if self.format in INT8_FORMATS else '')
        check_at_least(self, 1, 'batch_size', 'num_calib_batches', 'input_size')
        check_weights(self.pretrained, self.params_file)
        check_choices(self)
        check_rules([
            (self.format in INT8_FORMATS and not self.calib_data,
             '{} %s needs {} (an image folder or .rec file)' % self.format, 'format', 'calib_data'),
            (self.format != 'onnx' and (self.dynamic_batch or self.no_runtime_check),
             '{} and {} apply to {} onnx only', 'dynamic_batch', 'no_runtime_check', 'format'),
            (not 0 <= self.min_agreement <= 1, '{} must be in [0, 1]', 'min_agreement'),
        ])
