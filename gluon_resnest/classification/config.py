"""The settings of classification's two jobs: :class:`TrainConfig` (``gluon-resnest-train``) and
:class:`EvalConfig` (``eval.py``). Each field is one command-line option, declared once with
:func:`~gluon_resnest.config.setting`; the options every job shares are made by the helpers of
:mod:`gluon_resnest.config`.
"""
from dataclasses import dataclass
import os
from typing import Optional, Tuple, Union

from ..config import (DTYPES, MODEL_HELP, RUN_GROUP, WEIGHTS_HELP, check_at_least, check_choices,
                      check_image, check_model, check_rules, check_run, check_weights, config_from_file,
                      devices_setting, epoch_list, kv_store_setting, parse_devices, setting,
                      step_timeout_setting)
from ..engine.schedules import LR_MODES
from ..finetune import NEW_CLASSIFIER_LR_MULT
from ..pretrained import eval_crop
from ..threads import DATA_WORKER_FLAGS, DEFAULT_DATA_WORKERS

__all__ = ['TrainConfig', 'EvalConfig', 'DATA_BACKENDS', 'LR_MODES']

DATA_BACKENDS = ('auto', 'python', 'recordio')
_DATA, _RECIPE, _TUNE = 'data', 'recipe', 'fine-tuning (docs/your-data.md)'
_SIZE_FLAGS = ('--input-size', '--crop-size')
_PROGRESS_HELP = 'no progress bar (there is none anyway when output is not a terminal)'


def _progress(group):
    """``--no-progress``; without it a bar shows only when stderr is a terminal."""
    return setting(None, _PROGRESS_HELP, flags=('--no-progress',), const=False, group=group)


@dataclass
class TrainConfig:  # pylint: disable=too-many-instance-attributes
    """Everything one training run needs (``train_imagenet.py``'s options; ``--help`` says what each does).

    ``batch_size`` and ``lr`` are per device: the peak rate is ``lr x workers x devices per worker``.
    ``gpus`` takes ``'0,1'`` or ``[0, 1]`` (empty: CPU) and ``lr_decay_epoch`` ``'40,60'`` or ``[40, 60]``;
    both are stored as tuples of ints. ``dropblock_prob``/``final_drop`` None keep the model's own values.
    """
    model: str = setting('resnest50', MODEL_HELP, metavar='NAME', group=_RECIPE)
    data_dir: str = setting('~/.mxnet/datasets/imagenet',
                            'ImageNet layout: DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG', group=_DATA)
    rec_train: str = setting('', 'training RecordIO file (replaces --data-dir)', group=_DATA)
    rec_train_idx: str = setting('', 'its index (default: .rec -> .idx)', group=_DATA)
    rec_val: str = setting('', 'validation RecordIO file', group=_DATA)
    rec_val_idx: str = setting('', 'its index (default: .rec -> .idx)', group=_DATA)
    use_rec: bool = setting(False, 'require the RecordIO flags (GluonCV compat)', group=_DATA)
    data_backend: str = setting(
        'auto', "who decodes and augments training images: 'python' OpenCV in the -j loader processes "
        "(AutoAugment too), 'recordio' MXNet's C++ RecordIO pipeline (needs --rec-train), 'auto' python "
        "(recordio when resuming a recordio run)", choices=DATA_BACKENDS, group=_DATA)
    num_data_workers: int = setting(
        DEFAULT_DATA_WORKERS, 'data loading processes per worker (0: in the training process); C++ decoding '
        'threads (at least 1) with --data-backend recordio', flags=DATA_WORKER_FLAGS, group=_DATA)
    classes: Optional[int] = setting(None, 'number of classes (default: class folders found, or 1000 for '
                                     'RecordIO)', group=_DATA)
    input_size: int = setting(224, 'training and validation crop size', flags=_SIZE_FLAGS, group=_DATA)
    crop_ratio: Optional[float] = setting(None, 'validation crop / resize ratio (default: the eval protocol, '
                                          '0.875 below 320)', group=_DATA)
    min_random_area: float = setting(0.08, 'smallest random crop area', group=_DATA)
    random_mirror: bool = setting(True, 'random horizontal flips', type=int, choices=(0, 1), group=_DATA)
    jitter_param: float = setting(0.4, 'brightness/contrast/saturation jitter', group=_DATA)
    lighting_param: float = setting(0.1, 'PCA lighting noise', group=_DATA)
    auto_aug: bool = setting(False, 'AutoAugment ImageNet policy', group=_DATA)
    val_fraction: float = setting(0.0, '--data-dir holds class folders and no val/: hold out this fraction of '
                                  'each class (seeded by --seed; listed in --save-dir/val_images.txt)', group=_DATA)
    batch_size: int = setting(32, 'batch size per device', group=_RECIPE)
    num_epochs: int = setting(120, 'epochs to train', group=_RECIPE)
    lr: float = setting(0.1, 'peak learning rate per device', group=_RECIPE)
    lr_mode: str = setting('cosine', 'learning-rate schedule after warm-up', choices=LR_MODES, group=_RECIPE)
    lr_decay: float = setting(0.1, 'step mode decay factor', group=_RECIPE)
    lr_decay_epoch: Tuple[int, ...] = setting((40, 60), 'step mode epochs, comma separated', type=str,
                                              group=_RECIPE)
    warmup_epochs: int = setting(0, 'linear warm-up epochs', group=_RECIPE)
    warmup_lr: float = setting(0.0, 'learning rate the warm-up starts from', group=_RECIPE)
    momentum: float = setting(0.9, 'Nesterov momentum', group=_RECIPE)
    wd: float = setting(1e-4, 'weight decay', group=_RECIPE)
    no_wd: bool = setting(False, 'no weight decay on biases and BN gamma/beta', group=_RECIPE)
    last_gamma: bool = setting(False, "zero-init each block's last BN gamma", group=_RECIPE)
    label_smoothing: float = setting(0.0, 'smoothing eta (flag alone: 0.1, as GluonCV)', const=0.1,
                                     group=_RECIPE)
    mixup: bool = setting(False, 'mixup training', group=_RECIPE)
    mixup_alpha: float = setting(0.2, 'Beta(alpha, alpha) of the mixup ratio', group=_RECIPE)
    mixup_off_epoch: int = setting(0, 'last epochs trained without mixup', group=_RECIPE)
    dropblock_prob: Optional[float] = setting(
        None, "final DropBlock probability, ramped linearly from 0 (default: the model's)", group=_RECIPE)
    final_drop: Optional[float] = setting(None, "dropout before the classifier (default: the model's)",
                                          group=_RECIPE)
    dtype: str = setting('float32', 'float16: mixed precision with AMP (float32 master weights, dynamic loss '
                         'scaling; GPU only)', choices=DTYPES, group=_RECIPE)
    seed: int = setting(0, 'seed of every random stream', group=_RECIPE)
    gpus: Tuple[int, ...] = devices_setting("GPU ids, e.g. '0,1,2,3' (empty: CPU); with horovod any value "
                                            "means one GPU per process, the one of its local rank", RUN_GROUP)
    kv_store: str = kv_store_setting('gradient aggregation: one machine (local, device) or many', RUN_GROUP)
    step_timeout: float = step_timeout_setting(RUN_GROUP)
    save_dir: str = setting('params', 'checkpoints, log, history.json, curve.png', group=RUN_GROUP)
    save_frequency: int = setting(10, 'checkpoint every N epochs (and last)', group=RUN_GROUP)
    resume: bool = setting(False, 'continue from the latest checkpoint in --save-dir', group=RUN_GROUP)
    resume_epoch: int = setting(0, 'epochs done by --resume-params/-states', group=RUN_GROUP)
    resume_params: str = setting('', 'params file to start from', group=RUN_GROUP)
    resume_states: str = setting('', 'trainer states file to continue with', group=RUN_GROUP)
    log_interval: int = setting(50, 'log every N batches (0: never)', group=RUN_GROUP)
    logging_file: str = setting('train_imagenet.log', 'log file name in --save-dir', group=RUN_GROUP)
    eval_frequency: int = setting(1, 'validate every N epochs (and last)', group=RUN_GROUP)
    progress: Optional[bool] = _progress(RUN_GROUP)
    pretrained: Union[bool, str] = setting(
        False, "start from trained weights: the model's published ones (flag alone) or a .params file; every "
        'parameter but the classifier must fit the network', type=str, const=True, metavar='FILE', group=_TUNE)
    new_classifier: bool = setting(False, "a new classifier even when the file's class count is the dataset's "
                                   '(it is always new when they differ)', group=_TUNE)
    classifier_lr_mult: Optional[float] = setting(
        None, "the classifier's learning rate as a multiple of --lr (default: %g for a new classifier, as "
        "GluonCV's transfer-learning tutorial, else 1)" % NEW_CLASSIFIER_LR_MULT, group=_TUNE)
    linear_probe: bool = setting(False, 'train the classifier alone (the rest keeps its weights and BatchNorm '
                                 'statistics)', group=_TUNE)
    freeze_bn: bool = setting(False, "keep every BatchNorm's running statistics (normalise with them in training "
                              'too)', group=_TUNE)

    def __post_init__(self):
        self.model = check_model(self.model)
        self.gpus = parse_devices(self.gpus)
        self._check_start()
        self.lr_decay_epoch = epoch_list(self.lr_decay_epoch)
        self.random_mirror = bool(self.random_mirror)
        check_at_least(self, 1, 'num_epochs', 'save_frequency', 'eval_frequency')
        # BatchNorm inside split attention normalises one pooled value per channel and image: with one
        # image on a device its variance is 0, its output the constant beta, and nothing trains.
        check_rules([(self.batch_size < 2, '{} must be >= 2 per device (BatchNorm in split attention needs '
                      'two images on each device), got %d' % self.batch_size, 'batch_size')])
        check_at_least(self, 0, 'num_data_workers', 'log_interval', 'mixup_off_epoch')
        check_at_least(self, 2, 'classes')
        check_choices(self)
        check_run(self, 'num_epochs')
        self._check_recipe()
        self._check_data()

    @classmethod
    def from_file(cls, source, **overrides):
        """The config of a recipe file (or shipped recipe name, e.g. ``'resnest50'``) with ``overrides``.

        Keys of the file are this class's fields; ``overrides`` win over the file. A bad key or type
        raises :class:`~gluon_resnest.config.RecipeError`, a bad value
        :class:`~gluon_resnest.config.ConfigError`, both naming the file.
        """
        return config_from_file(cls, 'imagenet', source, overrides)

    def _check_recipe(self):
        check_rules([
            (self.lr <= 0, '{} must be positive, got %s' % self.lr, 'lr'),
            (not 0 <= self.label_smoothing < 1, '{} must be in [0, 1), got %s' % self.label_smoothing,
             'label_smoothing'),
            (self.mixup and self.mixup_alpha <= 0, '{} needs {} > 0', 'mixup', 'mixup_alpha'),
            (not 0 <= self.warmup_epochs < self.num_epochs, '{} must be in [0, {})', 'warmup_epochs',
             'num_epochs'),
            (self.dropblock_prob is not None and not 0 <= self.dropblock_prob < 1, '{} must be in [0, 1)',
             'dropblock_prob'),
            (self.final_drop is not None and not 0 <= self.final_drop < 1, '{} must be in [0, 1)',
             'final_drop'),
            (self.dtype == 'float16' and not self.gpus, '{} float16 needs {} (MXNet has no float16 CPU '
             'training)', 'dtype', 'gpus'),
        ])

    def _check_data(self):
        check_image(self)
        check_rules([
            (not 0 < self.min_random_area <= 1, '{} must be in (0, 1], got %s' % self.min_random_area,
             'min_random_area'),
            (self.jitter_param < 0 or self.lighting_param < 0, '{} and {} must be >= 0', 'jitter_param',
             'lighting_param'),
            (self.use_rec and not self.rec_train, '{} needs {}', 'use_rec', 'rec_train'),
            (self.data_backend == 'recordio' and not self.rec_train, '{} recordio needs {}', 'data_backend',
             'rec_train'),
            (self.data_backend == 'recordio' and self.auto_aug, '{} recordio cannot apply {} (AutoAugment has '
             'no C++ form); use auto or python', 'data_backend', 'auto_aug'),
            (bool(self.rec_train) != bool(self.rec_val), '{} and {} go together', 'rec_train', 'rec_val'),
            (self.data_backend == 'recordio' and self.input_size >= 320, '{} recordio cannot apply the >= 320 px '
             "pipeline of {} %d (EfficientNet crop, PIL colour: no C++ form); use auto or python"
             % self.input_size, 'data_backend', 'input_size'),
        ])

    def _check_start(self):
        # Fine-tuning (gluon_resnest.finetune): where the weights come from and what trains.
        if self.pretrained in ('', None):
            self.pretrained = False
        check_rules([
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


_MODEL, _RUN = 'model', 'run'


@dataclass
class EvalConfig:  # pylint: disable=too-many-instance-attributes
    """What ``gluon_resnest.evaluate`` measures (``eval.py``'s options).

    The network is ``model`` with ``pretrained`` or ``params_file`` weights (random weights for
    ``benchmark`` only), or an exported graph ``model_prefix`` with ``deploy``/``quantized``. Data is an
    ImageNet folder ``data_dir`` or a RecordIO file ``rec_val``. ``input_size`` None is the model's published
    evaluation crop; ``batch_size`` is per device. ``class_subset`` scores only the first N outputs of a
    classifier larger than the data's N classes (for data whose labels are the classifier's first N).
    """
    model: Optional[str] = setting(None, MODEL_HELP, metavar='NAME', group=_MODEL)
    pretrained: bool = setting(False, WEIGHTS_HELP[0], group=_MODEL)
    params_file: Optional[str] = setting(None, WEIGHTS_HELP[1], group=_MODEL)
    classes: Optional[int] = setting(None, 'classifier size (default: read from --params-file)', group=_MODEL)
    model_root: Optional[str] = setting(None, 'folder of published weights (default ~/.mxnet/models)',
                                        group=_MODEL)
    deploy: bool = setting(False, 'evaluate an exported PREFIX-symbol.json + PREFIX-0000.params', group=_MODEL)
    quantized: bool = setting(False, 'the exported model is INT8 (implies --deploy)', group=_MODEL)
    model_prefix: Optional[str] = setting(None, 'prefix of the exported files (with --deploy/--quantized)',
                                          group=_MODEL)
    epoch: int = setting(0, 'epoch number in PREFIX-%%04d.params', group=_MODEL)
    data_dir: Optional[str] = setting(None, 'ImageNet folder: DIR/val/<class>/* or DIR/<class>/*', group=_DATA)
    rec_val: Optional[str] = setting(None, 'validation .rec file', group=_DATA)
    rec_val_idx: Optional[str] = setting(None, 'its .idx (default: next to --rec-val)', group=_DATA)
    verify_images: bool = setting(False, 'decode every image first and skip (and count) undecodable ones',
                                  group=_DATA)
    input_size: Optional[int] = setting(None, "eval crop (default: the model's published crop)",
                                        flags=_SIZE_FLAGS, group=_DATA)
    crop_ratio: Optional[float] = setting(None, 'crop < 320: short side = ceil(crop/ratio) (default 0.875); '
                                          'crop >= 320: centre square = short*ratio (default crop/(crop+32))',
                                          group=_DATA)
    class_subset: bool = setting(False, 'the data has N < classifier classes whose labels are its first N: '
                                 'score those outputs only', group=_DATA)
    batch_size: int = setting(32, 'images per batch per device', group=_RUN)
    num_data_workers: int = setting(DEFAULT_DATA_WORKERS, 'data loading processes (0: in the main process)',
                                    flags=DATA_WORKER_FLAGS, group=_RUN)
    gpus: Tuple[int, ...] = devices_setting("GPU ids, e.g. '0,1,2,3' (empty: CPU)", _RUN)
    dtype: str = setting('float32', '', choices=DTYPES, group=_RUN)
    benchmark: bool = setting(False, 'speed only: synthetic input, warm-up, median images/s', group=_RUN)
    warmup: int = setting(5, 'untimed batches before --benchmark timing', group=_RUN)
    iters: int = setting(20, 'timed batches of --benchmark', group=_RUN)
    json: Optional[str] = setting(None, 'also write the results to this JSON file', group=_RUN)
    progress: Optional[bool] = _progress(_RUN)

    def __post_init__(self):
        self.model = check_model(self.model, optional=True)
        self.gpus = parse_devices(self.gpus)
        self.deploy = self.deploy or self.quantized
        if self.input_size is None:
            self.input_size = eval_crop(self.model or '')
        check_at_least(self, 1, 'batch_size', 'classes', 'iters')
        check_at_least(self, 0, 'num_data_workers', 'warmup', 'epoch')
        self._check_network()
        check_image(self)
        check_choices(self)
        check_rules([
            (not self.benchmark and bool(self.data_dir) == bool(self.rec_val),
             'pass exactly one of {} and {}', 'data_dir', 'rec_val'),
            (bool(self.rec_val_idx) and not self.rec_val, '{} needs {}', 'rec_val_idx', 'rec_val'),
            (self.quantized and self.dtype != 'float32', 'an INT8 model takes float32 input: drop {} %s'
             % self.dtype, 'dtype'),
            (self.dtype == 'float16' and not self.gpus, '{} float16 needs {}: MXNet has no float16 matrix '
             'multiply on CPU', 'dtype', 'gpus'),
        ])

    def _check_network(self):
        if self.deploy:
            check_rules([(not self.model_prefix, '{}/{} need {}', 'deploy', 'quantized', 'model_prefix'),
                         (self.pretrained or bool(self.params_file) or bool(self.classes),
                          '{} evaluates the exported files; drop {}/{}/{}', 'deploy', 'pretrained', 'params_file',
                          'classes')])
            return
        check_rules([(self.model is None, '{} is required (or {} with {})', 'model', 'deploy', 'model_prefix')])
        check_weights(self.pretrained, self.params_file, required=False)
        check_rules([(not (self.benchmark or self.pretrained or self.params_file),
                      'pass {} or {} to evaluate accuracy (or {})', 'pretrained', 'params_file', 'benchmark')])
