"""Typed settings of the three jobs: training, evaluation and export, each checked in one place.

A config is a dataclass whose fields are the command-line options of the job's command (``batch_size`` is
``--batch-size``); building one validates it, and a bad value raises :class:`ConfigError` (a
``ValueError``) naming the field, so a program gets the same one-line message the command prints::

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
from typing import Optional, Tuple, Union

from .model_zoo import model_key
from .pretrained import eval_crop
from .threads import DEFAULT_DATA_WORKERS

__all__ = ['ConfigError', 'RecipeError', 'TrainConfig', 'DetectionConfig', 'EvalConfig', 'ExportConfig',
           'parse_devices', 'check_model', 'check_weights', 'read_recipe', 'recipe_path', 'list_recipes',
           'field_kinds', 'number_list_type', 'KV_STORES', 'EXPORT_FORMATS', 'CALIB_MODES', 'GRANULARITIES',
           'RECIPE_DIR', 'DETECTORS', 'MASK_DETECTORS', 'DETECTION_DATASETS', 'DETECTION_DATASET_DEFAULTS']

DATA_BACKENDS = ('auto', 'python', 'recordio')
KV_STORES = ('local', 'device', 'dist_sync', 'dist_device_sync', 'horovod')
EXPORT_FORMATS = ('mxnet', 'onnx', 'int8', 'onnx-int8')
INT8_FORMATS = ('int8', 'onnx-int8')  # calibrated on images: --calib-data and its flags apply
CALIB_MODES = ('naive', 'entropy')
GRANULARITIES = ('tensor-wise', 'channel-wise')
DETECTORS = ('cascade_rcnn', 'faster_rcnn', 'cascade_mask_rcnn', 'mask_rcnn')
# The detectors that train masks: they need instance annotations (COCO's, or the shapes dataset's).
MASK_DETECTORS = ('cascade_mask_rcnn', 'mask_rcnn')
DETECTION_DATASETS = ('voc', 'coco', 'shapes')
# GluonCV's train_faster_rcnn.py fills the values left out per dataset; shapes trains like VOC.
DETECTION_DATASET_DEFAULTS = {
    'voc': dict(epochs=20, lr=0.001, lr_decay_epoch=(14, 20), lr_warmup=-1, wd=5e-4),
    'coco': dict(epochs=26, lr=0.00125, lr_decay_epoch=(17, 23), lr_warmup=1000, wd=1e-4),
}
DETECTION_DATASET_DEFAULTS['shapes'] = DETECTION_DATASET_DEFAULTS['voc']
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


def _check(rules):
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
    _check([(bool(pretrained) and bool(params_file) or required and not (pretrained or params_file),
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


def _at_least(config, minimum, *names):
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError('{} must be >= %d, got %s' % (minimum, value), name)


def _epochs(value):
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


def _number_list(value, item):
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
    ``kind`` attribute, which :func:`gluon_resnest.cli.parser_kinds` gives recipes)."""
    item = int if kind == 'ints' else float

    def parse(text):
        value = _number_list(text, item)
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
        checked = _number_list(value, int if kind == 'ints' else float)
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


def _config_from_file(cls, kind, source, overrides):
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


@dataclass
class TrainConfig:  # pylint: disable=too-many-instance-attributes
    """Everything one training run needs (``train_imagenet.py``'s options; ``--help`` says what each does).

    ``batch_size`` and ``lr`` are per device: the peak rate is ``lr x workers x devices per worker``.
    ``gpus`` takes ``'0,1'`` or ``[0, 1]`` (empty: CPU) and ``lr_decay_epoch`` ``'40,60'`` or ``[40, 60]``;
    both are stored as tuples of ints. ``dropblock_prob``/``final_drop`` None keep the model's own values.
    """
    model: str = 'resnest50'
    data_dir: str = '~/.mxnet/datasets/imagenet'
    rec_train: str = ''
    rec_train_idx: str = ''
    rec_val: str = ''
    rec_val_idx: str = ''
    use_rec: bool = False
    data_backend: str = 'auto'
    num_data_workers: int = DEFAULT_DATA_WORKERS
    classes: Optional[int] = None
    val_fraction: float = 0.0
    input_size: int = 224
    crop_ratio: Optional[float] = None
    min_random_area: float = 0.08
    random_mirror: bool = True
    jitter_param: float = 0.4
    lighting_param: float = 0.1
    auto_aug: bool = False
    batch_size: int = 32
    num_epochs: int = 120
    lr: float = 0.1
    lr_mode: str = 'cosine'
    lr_decay: float = 0.1
    lr_decay_epoch: Tuple[int, ...] = (40, 60)
    warmup_epochs: int = 0
    warmup_lr: float = 0.0
    momentum: float = 0.9
    wd: float = 1e-4
    no_wd: bool = False
    last_gamma: bool = False
    label_smoothing: float = 0.0
    mixup: bool = False
    mixup_alpha: float = 0.2
    mixup_off_epoch: int = 0
    dropblock_prob: Optional[float] = None
    final_drop: Optional[float] = None
    dtype: str = 'float32'
    seed: int = 0
    pretrained: Union[bool, str] = False
    new_classifier: bool = False
    classifier_lr_mult: Optional[float] = None
    linear_probe: bool = False
    freeze_bn: bool = False
    gpus: Tuple[int, ...] = ()
    kv_store: str = 'device'
    step_timeout: float = 30.0
    save_dir: str = 'params'
    save_frequency: int = 10
    resume: bool = False
    resume_epoch: int = 0
    resume_params: str = ''
    resume_states: str = ''
    log_interval: int = 50
    logging_file: str = 'train_imagenet.log'
    eval_frequency: int = 1
    progress: Optional[bool] = None

    def __post_init__(self):
        self.model = check_model(self.model)
        self.gpus = parse_devices(self.gpus)
        self.lr_decay_epoch = _epochs(self.lr_decay_epoch)
        self.random_mirror = bool(self.random_mirror)
        _at_least(self, 1, 'num_epochs', 'save_frequency', 'eval_frequency')
        # BatchNorm inside split attention normalises one pooled value per channel and image: with one
        # image on a device its variance is 0, its output the constant beta, and nothing trains.
        _check([(self.batch_size < 2, '{} must be >= 2 per device (BatchNorm in split attention needs '
                 'two images on each device), got %d' % self.batch_size, 'batch_size')])
        _at_least(self, 0, 'num_data_workers', 'log_interval', 'mixup_off_epoch')
        _at_least(self, 2, 'classes')
        self._check_recipe()
        self._check_data()
        self._check_run()
        self._check_start()

    @classmethod
    def from_file(cls, source, **overrides):
        """The config of a recipe file (or shipped recipe name, e.g. ``'resnest50'``) with ``overrides``.

        Keys of the file are this class's fields; ``overrides`` win over the file. A bad key or type
        raises :class:`RecipeError`, a bad value :class:`ConfigError`, both naming the file.
        """
        return _config_from_file(cls, 'imagenet', source, overrides)

    def _check_recipe(self):
        _check([
            (self.lr <= 0, '{} must be positive, got %s' % self.lr, 'lr'),
            (self.lr_mode not in ('cosine', 'step', 'poly'), '{} must be cosine, step or poly, got %r'
             % (self.lr_mode,), 'lr_mode'),
            (not 0 <= self.label_smoothing < 1, '{} must be in [0, 1), got %s' % self.label_smoothing,
             'label_smoothing'),
            (self.mixup and self.mixup_alpha <= 0, '{} needs {} > 0', 'mixup', 'mixup_alpha'),
            (not 0 <= self.warmup_epochs < self.num_epochs, '{} must be in [0, {})', 'warmup_epochs',
             'num_epochs'),
            (self.dropblock_prob is not None and not 0 <= self.dropblock_prob < 1, '{} must be in [0, 1)',
             'dropblock_prob'),
            (self.final_drop is not None and not 0 <= self.final_drop < 1, '{} must be in [0, 1)',
             'final_drop'),
            (self.dtype not in ('float32', 'float16'), '{} must be float32 or float16, got %r' % (self.dtype,),
             'dtype'),
            (self.dtype == 'float16' and not self.gpus, '{} float16 needs {} (MXNet has no float16 CPU '
             'training)', 'dtype', 'gpus'),
        ])

    def _check_data(self):
        _check([
            (self.input_size < MIN_INPUT_SIZE, '{} must be >= %d (the network downsamples 32x), got %d'
             % (MIN_INPUT_SIZE, self.input_size), 'input_size'),
            (not 0 < self.min_random_area <= 1, '{} must be in (0, 1], got %s' % self.min_random_area,
             'min_random_area'),
            (self.jitter_param < 0 or self.lighting_param < 0, '{} and {} must be >= 0', 'jitter_param',
             'lighting_param'),
            (self.crop_ratio is not None and not 0 < self.crop_ratio <= 1, '{} must be in (0, 1]',
             'crop_ratio'),
            (self.use_rec and not self.rec_train, '{} needs {}', 'use_rec', 'rec_train'),
            (self.data_backend not in DATA_BACKENDS, '{} must be one of %s, got %r'
             % (', '.join(DATA_BACKENDS), self.data_backend), 'data_backend'),
            (self.data_backend == 'recordio' and not self.rec_train, '{} recordio needs {}', 'data_backend',
             'rec_train'),
            (self.data_backend == 'recordio' and self.auto_aug, '{} recordio cannot apply {} (AutoAugment has '
             'no C++ form); use auto or python', 'data_backend', 'auto_aug'),
            (self.data_backend == 'recordio' and self.input_size >= 320, '{} recordio cannot apply the >= 320 px '
             "pipeline of {} %d (EfficientNet crop, PIL colour: no C++ form); use auto or python"
             % self.input_size, 'data_backend', 'input_size'),
            (bool(self.rec_train) != bool(self.rec_val), '{} and {} go together', 'rec_train', 'rec_val'),
        ])

    def _check_start(self):
        # Fine-tuning (gluon_resnest.finetune): where the weights come from and what trains.
        if self.pretrained in ('', None):
            self.pretrained = False
        _check([
            (bool(self.pretrained) and bool(self.resume_params), '{} and {} both give the starting weights: {} '
             'continues a run of this dataset, {} starts a new one from them', 'pretrained', 'resume_params',
             'resume_params', 'pretrained'),
            (bool(self.pretrained) and bool(self.resume_states), '{} starts a new run; {} continues one',
             'pretrained', 'resume_states'),
            (isinstance(self.pretrained, str) and not os.path.isfile(os.path.expanduser(self.pretrained))
             and not self.resume, '{} file not found: %s' % self.pretrained, 'pretrained'),
            ((self.new_classifier or self.linear_probe) and not self.pretrained, '{}/{} need {}', 'new_classifier',
             'linear_probe', 'pretrained'),
            (self.classifier_lr_mult is not None and self.classifier_lr_mult <= 0, '{} must be positive, got %s'
             % self.classifier_lr_mult, 'classifier_lr_mult'),
            (not 0 <= self.val_fraction < 1, '{} must be in [0, 1), got %s' % self.val_fraction, 'val_fraction'),
            (self.val_fraction > 0 and bool(self.rec_train), '{} holds out images of a folder; {} comes with '
             'its own validation file', 'val_fraction', 'rec_train'),
        ])
        if isinstance(self.pretrained, str):
            self.pretrained = os.path.expanduser(self.pretrained)

    def _check_run(self):
        _check([
            (self.kv_store not in KV_STORES, '{} must be one of %s, got %r' % (', '.join(KV_STORES),
                                                                              self.kv_store), 'kv_store'),
            (self.resume and bool(self.resume_params or self.resume_states),
             '{} cannot be combined with {}/{}', 'resume', 'resume_params', 'resume_states'),
            (not 0 <= self.resume_epoch < self.num_epochs, '{} must be in [0, {})', 'resume_epoch',
             'num_epochs'),
            (self.step_timeout < 0, '{} must be >= 0 seconds (0: no limit), got %s' % self.step_timeout,
             'step_timeout'),
        ])


@dataclass
class DetectionConfig:  # pylint: disable=too-many-instance-attributes
    """Everything one detection training (or evaluation) run needs (``python -m gluon_resnest.detection.train``'s
    options, GluonCV's ``train_faster_rcnn.py`` names; ``--help`` says what each does).

    ``batch_size`` is images per step over all devices and workers (None: 2 per device) and ``lr`` is taken
    as given, as GluonCV does. ``epochs``, ``lr``, ``lr_decay_epoch``, ``lr_warmup`` and ``wd`` left None
    take GluonCV's value for the ``dataset`` (:data:`DETECTION_DATASET_DEFAULTS`). ``short`` is one side,
    ``(LO, HI)`` (a range) or three or more sides (a choice per image); ``gpus``, ``short``, ``lr_decay_epoch`` and ``val_iou`` also take comma-separated strings.
    Checkpoints are ``{save_prefix}-{epochs done:04d}.params/.states/.json``; ``resume`` continues from the
    latest complete one, ``resume_params`` starts from a weights file at epoch ``resume_epoch``.
    Users' data (:mod:`gluon_resnest.detection.datasets`): ``dataset_root`` a VOC-layout folder with
    ``train_split``/``val_split``, or ``train_json``/``val_json``/``image_root`` (``dataset`` None becomes
    ``'coco'`` with them, else ``'voc'``); ``classes`` names and orders the classes; ``skip_bad`` leaves bad
    records out. ``pretrained_detector`` (a checkpoint, a ``.params`` with ``pretrained_classes``, or a
    GluonCV zoo name) starts from a detector of other classes (:mod:`gluon_resnest.detection.transfer`).
    """
    detector: str = 'cascade_rcnn'
    network: str = 'resnest50'
    dataset: Optional[str] = None
    dataset_root: Optional[str] = None
    # Users' own data (gluon_resnest.detection.datasets) and a detector trained on other classes to start from.
    classes: Optional[str] = None
    train_split: str = 'train'
    val_split: str = 'val'
    train_json: Optional[str] = None
    val_json: Optional[str] = None
    image_root: Optional[str] = None
    skip_bad: bool = False
    pretrained_detector: Optional[str] = None
    pretrained_classes: Optional[str] = None
    norm_layer: Optional[str] = None
    gpus: Tuple[int, ...] = ()
    kv_store: str = 'device'
    step_timeout: float = 30.0
    batch_size: Optional[int] = None
    epochs: Optional[int] = None
    lr: Optional[float] = None
    lr_mode: str = 'step'
    lr_decay: float = 0.1
    lr_decay_epoch: Optional[Tuple[int, ...]] = None
    lr_warmup: Optional[int] = None
    lr_warmup_factor: float = 1. / 3.
    momentum: float = 0.9
    wd: Optional[float] = None
    no_wd_norm: bool = False
    no_pretrained_base: bool = False
    short: Optional[Tuple[int, ...]] = None
    max_size: Optional[int] = None
    box_head: str = 'recipe'
    box_head_units: int = 1024
    fpn_channels: Optional[int] = None
    num_sample: Optional[int] = None
    rpn_train_post_nms: Optional[int] = None
    rpn_test_post_nms: Optional[int] = None
    rpn_smoothl1_rho: float = 1. / 9.
    rcnn_smoothl1_rho: float = 1.
    test_score_thresh: float = 0.
    post_nms: int = -1
    val_iou: Tuple[float, ...] = (0.5, 0.7)
    val_interval: int = 1
    eval_only: bool = False
    save_prefix: str = ''
    resume: bool = False
    resume_params: str = ''
    resume_epoch: int = 0
    log_interval: int = 20
    num_workers: int = 0
    seed: int = 233
    no_progress: bool = False

    def __post_init__(self):
        self.gpus = parse_devices(self.gpus)
        for name, kind in (('short', int), ('lr_decay_epoch', int), ('val_iou', float)):
            self._as_list(name, kind)
        if self.dataset is None:  # COCO-format files name their layout
            self.dataset = 'coco' if self.train_json or self.val_json else 'voc'
        self._check_own_data()
        _check([(self.dataset not in DETECTION_DATASETS, '{} must be one of %s, got %r'
                 % (', '.join(DETECTION_DATASETS), self.dataset), 'dataset')])
        for key, value in DETECTION_DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if not self.save_prefix:
            self.save_prefix = '_'.join((self.detector, 'fpn', str(self.network), self.dataset))
        self._check_network()
        self._check_recipe()
        self._check_run()

    @classmethod
    def from_file(cls, source, **overrides):
        """The config of a detection recipe file (or shipped name, e.g. ``'cascade_rcnn_resnest50_fpn_voc'``)
        with ``overrides``; errors as :meth:`TrainConfig.from_file`."""
        return _config_from_file(cls, 'detection', source, overrides)

    # The training engine's names of the settings it shares with classification.
    num_epochs = property(lambda self: self.epochs)
    eval_frequency = property(lambda self: self.val_interval)
    save_frequency = property(lambda self: 1)  # every epoch: a detection epoch is long
    progress = property(lambda self: False if self.no_progress else None)

    def _as_list(self, name, kind):
        value = getattr(self, name)
        if value is not None:
            items = _number_list(value, kind)
            _check([(items is None, '{} takes comma-separated numbers, got %r' % (value,), name)])
            setattr(self, name, items)

    def _check_own_data(self):
        json_files = self.train_json or self.val_json or self.image_root
        _check([
            (json_files and self.dataset != 'coco', '{}, {} and {} read COCO-format files: {} must be coco, got %r'
             % self.dataset, 'train_json', 'val_json', 'image_root', 'dataset'),
            (json_files and not (self.val_json and self.image_root and (self.train_json or self.eval_only)),
             '{} FILE (unless {}), {} FILE and {} DIR go together', 'train_json', 'eval_only', 'val_json',
             'image_root'),
            (json_files and self.dataset_root is not None, '{} and {} exclude each other', 'dataset_root',
             'train_json'),
            (bool(self.pretrained_classes) and not self.pretrained_detector, '{} names the classes of {}',
             'pretrained_classes', 'pretrained_detector'),
            (bool(self.pretrained_detector) and bool(self.resume_params), '{} cannot be combined with {}',
             'pretrained_detector', 'resume_params'),
            (not (self.train_split.strip() and self.val_split.strip()), '{} and {} name split files',
             'train_split', 'val_split'),
        ])

    def _check_network(self):
        try:
            self.network = model_key(self.network, 'network')
        except ValueError as err:
            raise ConfigError(str(err).replace('{', '{{').replace('}', '}}')) from None
        _check([
            (self.detector not in DETECTORS, 'unknown {} %r; valid: %s' % (self.detector, ', '.join(DETECTORS)),
             'detector'),
            (self.norm_layer not in (None, 'syncbn', 'bn'), "{} must be 'syncbn', 'bn' or left out, got %r"
             % (self.norm_layer,), 'norm_layer'),
            (self.box_head not in ('recipe', '2fc'), "{} must be 'recipe' or '2fc', got %r" % (self.box_head,),
             'box_head'),
            (self.box_head_units < 1, '{} must be positive, got %d' % self.box_head_units, 'box_head_units'),
            (self.fpn_channels is not None and self.fpn_channels < 1, '{} must be positive, got %s'
             % self.fpn_channels, 'fpn_channels'),
            (self.short is not None and not (self.short and min(self.short) >= 1
                                             and (len(self.short) != 2 or self.short[0] <= self.short[1])),
             "{} takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more sides >= 1, got %s"
             % (self.short,), 'short'),
            (self.detector in MASK_DETECTORS and self.dataset == 'voc', '{} %s trains masks: it needs '
             'instance annotations, {} coco or shapes' % self.detector, 'detector', 'dataset'),
        ])

    def _check_recipe(self):
        _check([
            (min(self.rpn_smoothl1_rho, self.rcnn_smoothl1_rho) < 0, '{} and {} must be >= 0',
             'rpn_smoothl1_rho', 'rcnn_smoothl1_rho'),
            (not 0 <= self.test_score_thresh < 1, '{} must be in [0, 1), got %s' % self.test_score_thresh,
             'test_score_thresh'),
            (self.post_nms == 0 or self.post_nms < -1, '{} must be -1 (all) or positive, got %d' % self.post_nms,
             'post_nms'),
            (self.lr <= 0, '{} must be positive, got %s' % self.lr, 'lr'),
            (self.lr_mode not in ('step', 'cosine'), "{} must be 'step' or 'cosine', got %r" % (self.lr_mode,),
             'lr_mode'),
            (self.epochs < 1, '{} must be >= 1, got %d' % self.epochs, 'epochs'),
            (not all(0 < iou < 1 for iou in self.val_iou) or not self.val_iou,
             '{} takes IoU thresholds in (0, 1), got %s' % (self.val_iou,), 'val_iou'),
        ])
        _at_least(self, 1, 'batch_size', 'val_interval')

    def _check_run(self):
        _at_least(self, 0, 'num_workers', 'log_interval', 'resume_epoch')
        _check([
            (self.kv_store not in KV_STORES, '{} must be one of %s, got %r' % (', '.join(KV_STORES),
                                                                              self.kv_store), 'kv_store'),
            (self.resume and bool(self.resume_params), '{} cannot be combined with {}', 'resume', 'resume_params'),
            (bool(self.resume_params) and not os.path.isfile(self.resume_params), '{} %s does not exist'
             % self.resume_params, 'resume_params'),
            (self.resume_epoch >= self.epochs, '{} must be in [0, {})', 'resume_epoch', 'epochs'),
            (self.eval_only and not (self.resume or self.resume_params), '{} needs {} (the latest checkpoint '
             'of {}) or {} CHECKPOINT.params', 'eval_only', 'resume', 'save_prefix', 'resume_params'),
            (self.step_timeout < 0, '{} must be >= 0 seconds (0: no limit), got %s' % self.step_timeout,
             'step_timeout'),
        ])


@dataclass
class EvalConfig:  # pylint: disable=too-many-instance-attributes
    """What ``gluon_resnest.evaluate`` measures (``eval.py``'s options).

    The network is ``model`` with ``pretrained`` or ``params_file`` weights (random weights for
    ``benchmark`` only), or an exported graph ``model_prefix`` with ``deploy``/``quantized``. Data is an
    ImageNet folder ``data_dir`` or a RecordIO file ``rec_val``. ``input_size`` None is the model's published
    evaluation crop; ``batch_size`` is per device. ``class_subset`` scores only the first N outputs of a
    classifier larger than the data's N classes (for data whose labels are the classifier's first N).
    """
    model: Optional[str] = None
    pretrained: bool = False
    params_file: Optional[str] = None
    classes: Optional[int] = None
    model_root: Optional[str] = None
    deploy: bool = False
    quantized: bool = False
    model_prefix: Optional[str] = None
    epoch: int = 0
    data_dir: Optional[str] = None
    rec_val: Optional[str] = None
    rec_val_idx: Optional[str] = None
    verify_images: bool = False
    input_size: Optional[int] = None
    crop_ratio: Optional[float] = None
    class_subset: bool = False
    batch_size: int = 32
    num_data_workers: int = DEFAULT_DATA_WORKERS
    gpus: Tuple[int, ...] = ()
    dtype: str = 'float32'
    benchmark: bool = False
    warmup: int = 5
    iters: int = 20
    json: Optional[str] = None
    progress: Optional[bool] = None

    def __post_init__(self):
        self.model = check_model(self.model, optional=True)
        self.gpus = parse_devices(self.gpus)
        self.deploy = self.deploy or self.quantized
        if self.input_size is None:
            self.input_size = eval_crop(self.model or '')
        _at_least(self, 1, 'batch_size', 'classes', 'iters')
        _at_least(self, 0, 'num_data_workers', 'warmup', 'epoch')
        self._check_network()
        _check([
            (self.input_size < MIN_INPUT_SIZE, '{} must be >= %d (the network downsamples 32x), got %d'
             % (MIN_INPUT_SIZE, self.input_size), 'input_size'),
            (self.crop_ratio is not None and not 0 < self.crop_ratio <= 1, '{} must be in (0, 1]',
             'crop_ratio'),
            (not self.benchmark and bool(self.data_dir) == bool(self.rec_val),
             'pass exactly one of {} and {}', 'data_dir', 'rec_val'),
            (bool(self.rec_val_idx) and not self.rec_val, '{} needs {}', 'rec_val_idx', 'rec_val'),
            (self.dtype not in ('float32', 'float16'), '{} must be float32 or float16, got %r' % (self.dtype,),
             'dtype'),
            (self.quantized and self.dtype != 'float32', 'an INT8 model takes float32 input: drop {} %s'
             % self.dtype, 'dtype'),
            (self.dtype == 'float16' and not self.gpus, '{} float16 needs {}: MXNet has no float16 matrix '
             'multiply on CPU', 'dtype', 'gpus'),
        ])

    def _check_network(self):
        if self.deploy:
            _check([(not self.model_prefix, '{}/{} need {}', 'deploy', 'quantized', 'model_prefix'),
                    (self.pretrained or bool(self.params_file) or bool(self.classes),
                     '{} evaluates the exported files; drop {}/{}/{}', 'deploy', 'pretrained', 'params_file',
                     'classes')])
            return
        _check([(self.model is None, '{} is required (or {} with {})', 'model', 'deploy', 'model_prefix')])
        check_weights(self.pretrained, self.params_file, required=False)
        _check([(not (self.benchmark or self.pretrained or self.params_file),
                 'pass {} or {} to evaluate accuracy (or {})', 'pretrained', 'params_file', 'benchmark')])


@dataclass
class ExportConfig:  # pylint: disable=too-many-instance-attributes
    """What ``gluon_resnest.export.export`` writes (``python -m gluon_resnest.export``'s options).

    ``input_size`` None is the model's published evaluation crop; ``prefix`` None is the model name
    (+ ``-int8`` for INT8). ``batch_size`` is the exported graph's batch (and the calibration batch).
    """
    model: str
    out: str
    pretrained: bool = False
    params_file: Optional[str] = None
    prefix: Optional[str] = None
    format: str = 'mxnet'
    input_size: Optional[int] = None
    batch_size: int = 1
    preprocess: bool = False
    dynamic_batch: bool = False
    no_runtime_check: bool = False
    calib_data: Optional[str] = None
    num_calib_batches: int = 10
    calib_mode: str = 'naive'
    granularity: str = 'tensor-wise'
    min_agreement: float = 0.8

    def __post_init__(self):
        self.model = check_model(self.model)
        if self.input_size is None:
            self.input_size = eval_crop(self.model)
        if self.prefix is None:
            self.prefix = self.model + ('-int8' if self.format in INT8_FORMATS else '')
        _at_least(self, 1, 'batch_size', 'num_calib_batches', 'input_size')
        check_weights(self.pretrained, self.params_file)
        _check([
            (self.format not in EXPORT_FORMATS, '{} must be one of %s, got %r'
             % (', '.join(EXPORT_FORMATS), self.format), 'format'),
            (self.format in INT8_FORMATS and not self.calib_data,
             '{} %s needs {} (an image folder or .rec file)' % self.format, 'format', 'calib_data'),
            (self.format != 'onnx' and (self.dynamic_batch or self.no_runtime_check),
             '{} and {} apply to {} onnx only', 'dynamic_batch', 'no_runtime_check', 'format'),
            (self.calib_mode not in CALIB_MODES, '{} must be one of %s' % ', '.join(CALIB_MODES), 'calib_mode'),
            (self.granularity not in GRANULARITIES, '{} must be one of %s' % ', '.join(GRANULARITIES),
             'granularity'),
            (not 0 <= self.min_agreement <= 1, '{} must be in [0, 1]', 'min_agreement'),
        ])
