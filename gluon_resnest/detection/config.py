"""The settings of detection training (``gluon-resnest-train-detection``): :class:`DetectionConfig`, whose
fields are the command's options (GluonCV's ``train_faster_rcnn.py`` names), each declared once with
:func:`~gluon_resnest.config.setting`; the detectors come from :mod:`.registry`.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from ..config import (KV_STORES, ConfigError, check_at_least, check_choices, check_rules, check_run, config_from_file,
                      devices_setting, kv_store_setting, number_list, parse_devices, setting,
                      step_timeout_setting)
from ..model_zoo import model_key
from .registry import BOX_HEADS, detector, detector_names

__all__ = ['DetectionConfig', 'DATASETS', 'DATASET_DEFAULTS', 'LR_MODES', 'NORM_LAYERS']

DATASETS = ('voc', 'coco', 'shapes')
# GluonCV's train_faster_rcnn.py fills the values left out per dataset; shapes trains like VOC.
DATASET_DEFAULTS = {
    'voc': dict(epochs=20, lr=0.001, lr_decay_epoch=(14, 20), lr_warmup=-1, wd=5e-4),
    'coco': dict(epochs=26, lr=0.00125, lr_decay_epoch=(17, 23), lr_warmup=1000, wd=1e-4),
}
DATASET_DEFAULTS['shapes'] = DATASET_DEFAULTS['voc']
LR_MODES = ('step', 'cosine')
NORM_LAYERS = ('syncbn', 'bn')


def _per_dataset(key):
    """Help text naming GluonCV's per-dataset defaults of ``key``."""
    shown = [DATASET_DEFAULTS[name][key] for name in ('voc', 'coco')]
    shown = [','.join(map(str, v)) if isinstance(v, tuple) else str(v) for v in shown]
    return ' (default: GluonCV\'s for the dataset: VOC and shapes %s, COCO %s)' % tuple(shown)


def _checked(default, help_text, choices):
    """A setting whose ``choices`` the config checks (its help lists them, as GluonCV's flags do)."""
    return setting(default, help_text, choices=choices, show_choices=False)


_HOROVOD = (('--horovod',), dict(action='store_const', const='horovod', help="GluonCV's spelling of --kv-store "
                                 'horovod'))


@dataclass
class DetectionConfig:  # pylint: disable=too-many-instance-attributes
    """Everything one detection training (or evaluation) run needs (``python -m gluon_resnest.detection.train``'s
    options, GluonCV's ``train_faster_rcnn.py`` names; ``--help`` says what each does).

    ``batch_size`` is images per step over all devices and workers (None: 2 per device) and ``lr`` is taken
    as given, as GluonCV does. ``epochs``, ``lr``, ``lr_decay_epoch``, ``lr_warmup`` and ``wd`` left None
    take GluonCV's value for the ``dataset`` (:data:`DATASET_DEFAULTS`). ``short`` is one side, ``(LO, HI)``
    (a range) or three or more sides (a choice per image); ``gpus``, ``short``, ``lr_decay_epoch`` and
    ``val_iou`` also take comma-separated strings. Checkpoints are ``{save_prefix}-{epochs
    done:04d}.params/.states/.json``; ``resume`` continues from the latest complete one, ``resume_params``
    starts from a weights file at epoch ``resume_epoch``.
    Users' data (:mod:`gluon_resnest.detection.datasets`): ``dataset_root`` a VOC-layout folder with
    ``train_split``/``val_split``, or ``train_json``/``val_json``/``image_root`` (``dataset`` None becomes
    ``'coco'`` with them, else ``'voc'``); ``classes`` names and orders the classes; ``skip_bad`` leaves bad
    records out. ``pretrained_detector`` (a checkpoint, a ``.params`` with ``pretrained_classes``, or a
    GluonCV zoo name) starts from a detector of other classes (:mod:`gluon_resnest.detection.transfer`).
    """
    detector: str = _checked('cascade_rcnn', 'cascade_rcnn, faster_rcnn, or with masks (--dataset coco or shapes) '
                             'cascade_mask_rcnn or mask_rcnn', detector_names())
    network: str = setting('resnest50', 'backbone: one of gluon_resnest.list_models(); under horovodrun write '
                           '--backbone (horovodrun takes --network for its own --network-interface)',
                           flags=('--network', '--backbone'))
    dataset: Optional[str] = _checked(None, 'voc, coco or shapes (default: coco with --train-json/--val-json, '
                                      'else voc)', DATASETS)
    dataset_root: Optional[str] = setting(None, 'dataset folder (default: ~/.mxnet/datasets/{voc,coco}); with '
                                          '--dataset voc, a VOCdevkit (VOC2007/, VOC2012/) or one VOC-layout '
                                          'folder (Annotations/, JPEGImages/, ImageSets/Main/)')
    # Users' own data (gluon_resnest.detection.datasets) and a detector trained on other classes to start from.
    classes: Optional[str] = setting(None, "class names in index order, 'a,b,c' or a file with one name a line "
                                     "(default: a VOC-layout folder's <name>s sorted; COCO files' categories in "
                                     "the order of their ids)")
    train_split: str = setting('train', 'training split of a VOC-layout folder: ImageSets/Main/NAME.txt')
    val_split: str = setting('val', 'held-out split of a VOC-layout folder')
    train_json: Optional[str] = setting(None, 'COCO-format training annotations')
    val_json: Optional[str] = setting(None, 'COCO-format held-out annotations (evaluated with pycocotools on '
                                      'this file)')
    image_root: Optional[str] = setting(None, "the folder the COCO files' file_names are relative to")
    skip_bad: bool = setting(False, 'leave out bad records of --dataset-root / --train-json / --val-json (a '
                             'warning each and a count) instead of stopping with an error')
    pretrained_detector: Optional[str] = setting(
        None, 'start from this detector trained on other classes: a checkpoint .params/.json of this command, '
        'a .params with --pretrained-classes, or a GluonCV model-zoo name; classes whose names match keep their '
        'rows')
    pretrained_classes: Optional[str] = setting(None, "the classes of a bare --pretrained-detector .params, "
                                                "'a,b,c' or a file")
    norm_layer: Optional[str] = _checked(None, "'syncbn': SyncBatchNorm recipe; 'bn': the same recipe with "
                                         "BatchNorm on each device's batch (one device, e.g. CPU); default: "
                                         "frozen BatchNorm", NORM_LAYERS)
    gpus: Tuple[int, ...] = devices_setting("e.g. '0,1'; empty: CPU", gluoncv_count=False)
    kv_store: str = kv_store_setting(
        'gradient aggregation, as train_imagenet.py: %s; horovod: data parallel over the processes horovodrun '
        'starts, each on its share of the images, on the GPU of its local rank (with --gpus) or the CPU'
        % ', '.join(KV_STORES), show_choices=False, extra=(_HOROVOD,))
    step_timeout: float = step_timeout_setting()
    batch_size: Optional[int] = setting(None, 'images per step over all devices (default: 2 per device); a '
                                        'device with more than one image gets images of one orientation '
                                        '(landscape or portrait)')
    epochs: Optional[int] = setting(None, 'training epochs' + _per_dataset('epochs'))
    resume: bool = setting(False, 'continue from the latest complete checkpoint of --save-prefix (weights, '
                           'optimizer state and position, even mid-epoch); without one, start from scratch')
    resume_params: str = setting('', '.params file to start from (weights only)')
    resume_epoch: int = setting(0, 'epochs --resume-params has done: the schedule continues from there',
                                flags=('--resume-epoch', '--start-epoch'))
    lr: Optional[float] = setting(None, 'learning rate of the whole step, taken as given as GluonCV does (scale '
                                  'it with --batch-size yourself)' + _per_dataset('lr'))
    lr_mode: str = _checked('step', "'step' (GluonCV's) or 'cosine'", LR_MODES)
    lr_decay: float = setting(0.1, 'step decay factor')
    lr_decay_epoch: Optional[Tuple[int, ...]] = setting(None, 'epochs of the step decays'
                                                        + _per_dataset('lr_decay_epoch'))
    lr_warmup: Optional[int] = setting(None, 'warmup iterations, <= 0: none' + _per_dataset('lr_warmup'))
    lr_warmup_factor: float = setting(1. / 3., 'warmup start factor')
    momentum: float = setting(0.9, 'SGD momentum')
    wd: Optional[float] = setting(None, 'weight decay' + _per_dataset('wd'))
    no_wd_norm: bool = setting(False, "no weight decay on normalisation layers' gamma and beta (detectron2's "
                               "WEIGHT_DECAY_NORM 0; GluonCV decays them)")
    no_pretrained_base: bool = setting(False, 'do not load the ImageNet backbone weights')
    short: Optional[Tuple[int, ...]] = setting(
        None, "image short side; 'LO,HI': a random short side in [LO, HI] per training image (detectron2's "
        "'range' sampling); three or more sides 'S1,S2,S3,...': one of them per training image (its 'choice' "
        "sampling); the largest at evaluation (default: recipe)")
    max_size: Optional[int] = setting(None, 'image long side limit')
    box_head: str = _checked('recipe', "'recipe': the network's own box heads (4 conv + 1 fc with syncbn, else "
                             "2 fc of 1024); '2fc': two fully connected layers of --box-head-units", BOX_HEADS)
    box_head_units: int = setting(1024, "units of the '2fc' box head")
    fpn_channels: Optional[int] = setting(None, "channels of the FPN's outputs and the RPN head (recipe: 256)")
    num_sample: Optional[int] = setting(None, 'R-CNN samples per image')
    rpn_train_post_nms: Optional[int] = setting(None, 'proposals kept in training')
    rpn_test_post_nms: Optional[int] = setting(None, 'proposals kept at test')
    rpn_smoothl1_rho: float = setting(1. / 9., "RPN box loss: smooth L1 turning linear at rho (GluonCV's); 0: L1 "
                                      "(detectron2's)")
    rcnn_smoothl1_rho: float = setting(1., "R-CNN box loss: smooth L1 turning linear at rho (GluonCV's); 0: L1 "
                                       "(detectron2's)")
    test_score_thresh: float = setting(0., "evaluation keeps detections scored at least this (GluonCV's 0: all; "
                                       "detectron2's 0.05)")
    post_nms: int = setting(-1, "evaluation keeps at most this many detections per image, the best (GluonCV's "
                            "-1: all; detectron2's 100)")
    val_iou: Tuple[float, ...] = setting((0.5, 0.7), 'IoU thresholds of the VOC-style mAP')
    val_interval: int = setting(1, 'epochs between evaluations')
    eval_only: bool = setting(False, 'evaluate the --resume checkpoint (or --resume-params) and exit')
    save_prefix: str = setting('', 'checkpoints {prefix}-{epochs done:04d}.params/.states/.json, '
                               '{prefix}_train.log and {prefix}_history.json (default: '
                               '{detector}_fpn_{network}_{dataset})')
    log_interval: int = setting(20, 'batches between log lines')
    num_workers: int = setting(0, 'data loader processes')
    seed: int = setting(233, 'random seed')
    no_progress: bool = setting(False, 'no progress bar')

    def __post_init__(self):
        self.gpus = parse_devices(self.gpus)
        for name, kind in (('short', int), ('lr_decay_epoch', int), ('val_iou', float)):
            self._as_list(name, kind)
        if self.dataset is None:  # COCO-format files name their layout
            self.dataset = 'coco' if self.train_json or self.val_json else 'voc'
        self._check_own_data()
        check_choices(self)
        for key, value in DATASET_DEFAULTS[self.dataset].items():
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
        return config_from_file(cls, 'detection', source, overrides)

    # The training engine's names of the settings it shares with classification.
    num_epochs = property(lambda self: self.epochs)
    eval_frequency = property(lambda self: self.val_interval)
    save_frequency = property(lambda self: 1)  # every epoch: a detection epoch is long
    progress = property(lambda self: False if self.no_progress else None)

    def _as_list(self, name, kind):
        value = getattr(self, name)
        if value is not None:
            items = number_list(value, kind)
            check_rules([(items is None, '{} takes comma-separated numbers, got %r' % (value,), name)])
            setattr(self, name, items)

    def _check_own_data(self):
        json_files = self.train_json or self.val_json or self.image_root
        check_rules([
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
        check_rules([
            (self.box_head_units < 1, '{} must be positive, got %d' % self.box_head_units, 'box_head_units'),
            (self.fpn_channels is not None and self.fpn_channels < 1, '{} must be positive, got %s'
             % self.fpn_channels, 'fpn_channels'),
            (self.short is not None and not (self.short and min(self.short) >= 1
                                             and (len(self.short) != 2 or self.short[0] <= self.short[1])),
             "{} takes one side, 'LO,HI' with 1 <= LO <= HI, or three or more sides >= 1, got %s"
             % (self.short,), 'short'),
            (detector(self.detector).masks and self.dataset == 'voc', '{} %s trains masks: it needs '
             'instance annotations, {} coco or shapes' % self.detector, 'detector', 'dataset'),
            (self.box_head not in detector(self.detector).box_heads, '{} %s does not take {} %s'
             % (self.detector, self.box_head), 'detector', 'box_head'),
        ])

    def _check_recipe(self):
        check_rules([
            (min(self.rpn_smoothl1_rho, self.rcnn_smoothl1_rho) < 0, '{} and {} must be >= 0',
             'rpn_smoothl1_rho', 'rcnn_smoothl1_rho'),
            (not 0 <= self.test_score_thresh < 1, '{} must be in [0, 1), got %s' % self.test_score_thresh,
             'test_score_thresh'),
            (self.post_nms == 0 or self.post_nms < -1, '{} must be -1 (all) or positive, got %d' % self.post_nms,
             'post_nms'),
            (self.lr <= 0, '{} must be positive, got %s' % self.lr, 'lr'),
            (self.epochs < 1, '{} must be >= 1, got %d' % self.epochs, 'epochs'),
            (not all(0 < iou < 1 for iou in self.val_iou) or not self.val_iou,
             '{} takes IoU thresholds in (0, 1), got %s' % (self.val_iou,), 'val_iou'),
        ])
        check_at_least(self, 1, 'batch_size', 'val_interval')

    def _check_run(self):
        check_at_least(self, 0, 'num_workers', 'log_interval')
        check_run(self, 'epochs')
        check_rules([
            (self.eval_only and not (self.resume or self.resume_params), '{} needs {} (the latest checkpoint '
             'of {}) or {} CHECKPOINT.params', 'eval_only', 'resume', 'save_prefix', 'resume_params'),
        ])
