"""Recipe files (--config): every shipped recipe builds its config, flags override files, bad files fail in one line."""
import glob
import os
import sys

import pytest
import yaml

from gluon_resnest.config import RECIPE_DIR, ConfigError, DetectionConfig, RecipeError, TrainConfig, list_recipes
from gluon_resnest.detection import train as detection

from conftest import command_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_imagenet  # noqa: E402  pylint: disable=wrong-import-position

# The paper's ImageNet recipes (finetune.yaml, beside them, is tested in test_finetune.py).
IMAGENET = sorted(p for p in glob.glob(os.path.join(RECIPE_DIR, 'imagenet', '*.yaml')) if 'finetune' not in p)
DETECTION = sorted(glob.glob(os.path.join(RECIPE_DIR, 'detection', '*.yaml')))


def _values(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _same(got, want):
    """A recipe's list (or a scalar for a list-valued flag) against the parsed tuple."""
    if isinstance(got, tuple):
        return got == tuple(want if isinstance(want, list) else [want])
    return got == want


def test_the_paper_networks_have_recipes():
    assert list_recipes('imagenet') == ['finetune', 'resnest101', 'resnest14', 'resnest200', 'resnest26',
                                        'resnest269', 'resnest50']
    detectors = ('faster_rcnn', 'cascade_rcnn', 'mask_rcnn', 'cascade_mask_rcnn')
    assert {'%s_resnest%d_fpn_syncbn_coco' % (d, n) for d in detectors for n in (50, 101)} \
        <= set(list_recipes('detection'))


@pytest.mark.parametrize('path', IMAGENET, ids=os.path.basename)
def test_imagenet_recipe_builds_its_config(path):
    values = _values(path)
    config = TrainConfig.from_file(path)
    for key, value in values.items():
        assert _same(getattr(config, key), value), key
    name = os.path.splitext(os.path.basename(path))[0]
    assert config.model == name and TrainConfig.from_file(name) == config  # by name too
    assert train_imagenet.parse_args(['--config', name]) == config
    # The paper's recipe: 270 cosine epochs, 5 of warm-up, every trick on.
    assert (config.num_epochs, config.lr_mode, config.warmup_epochs) == (270, 'cosine', 5)
    assert config.no_wd and config.last_gamma and config.mixup and config.auto_aug
    assert config.label_smoothing == 0.1


def test_imagenet_recipes_scale_batch_and_crop_with_depth():
    table = {name: (c.input_size, c.batch_size, c.lr, c.dropblock_prob, c.final_drop)
             for name in list_recipes('imagenet') if name != 'finetune' for c in [TrainConfig.from_file(name)]}
    # GluonCV's model zoo training commands of the published weights (dmlc/web-data), per GPU.
    assert table == {'resnest14': (224, 128, 0.05, 0.0, 0.0), 'resnest26': (224, 128, 0.05, 0.1, 0.0),
                     'resnest50': (224, 128, 0.05, 0.1, 0.0), 'resnest101': (224, 64, 0.025, 0.1, 0.0),
                     'resnest200': (256, 32, 0.0125, 0.1, 0.2), 'resnest269': (320, 32, 0.0125, 0.1, 0.2)}


@pytest.mark.parametrize('path', DETECTION, ids=os.path.basename)
def test_detection_recipe_builds_its_network(path):
    values = _values(path)
    args = detection.parse_args(['--config', path, '--no-pretrained-base'])
    name = os.path.splitext(os.path.basename(path))[0]
    assert DetectionConfig.from_file(name, no_pretrained_base=True) == args  # as TrainConfig loads its recipes
    for key, value in values.items():
        assert _same(getattr(args, key), value), key
    net = detection.build_detector(args, ['a', 'b'], 1)
    short = values['short']
    assert net.short == (tuple(short) if isinstance(short, list) else short)
    assert net.max_size == values['max_size']


def test_coco_recipes_are_the_detectron2_1x_schedule():
    for name in list_recipes('detection'):
        if name.endswith('_coco'):
            args = detection.parse_args(['--config', name])
            assert (args.batch_size, args.lr, args.lr_warmup, args.lr_warmup_factor) == (16, 0.02, 1000, 0.001)
            # detectron2-ResNeSt's box configs sample the short side in a range, its instance
            # segmentation configs choose one of six (Base-RCNN-FPN.yaml's default sampling).
            short = (640, 672, 704, 736, 768, 800) if 'mask' in name else (640, 800)
            assert (args.epochs, args.lr_decay_epoch, args.short, args.max_size) == (12, (8, 11), short, 1333)
            assert (args.rpn_smoothl1_rho, args.rcnn_smoothl1_rho) == (0, 0)
            assert (args.test_score_thresh, args.post_nms, args.norm_layer) == (0.05, 100, 'syncbn')
            assert args.no_wd_norm and args.wd == 1e-4 and args.momentum == 0.9


def test_flags_override_the_file(tmp_path):
    config = train_imagenet.parse_args(['--config', 'resnest101', '--lr', '0.01', '--gpus', '0,1', '--no-progress'])
    assert (config.lr, config.batch_size, config.gpus, config.model) == (0.01, 64, (0, 1), 'resnest101')
    assert TrainConfig.from_file('resnest101', lr=0.01, gpus='0,1', progress=False) == config
    args = detection.parse_args(['--config', 'faster_rcnn_resnest50_fpn_syncbn_coco', '--lr', '0.5',
                                 '--short', '96', '--lr-decay-epoch', '3,4'])
    assert (args.lr, args.short, args.lr_decay_epoch, args.batch_size) == (0.5, (96,), (3, 4), 16)
    # What neither the file nor a flag sets takes GluonCV's default for the dataset in force.
    path = tmp_path / 'mine.yaml'
    path.write_text('dataset: coco\nnetwork: resnest14\nlr-decay-epoch: "5, 6"\n')
    args = detection.parse_args(['--config', str(path)])
    assert (args.dataset, args.network, args.lr_decay_epoch, args.lr, args.epochs) == ('coco', 'resnest14', (5, 6),
                                                                                      0.00125, 26)
    args = detection.parse_args(['--config', str(path), '--dataset', 'voc'])
    assert (args.lr, args.wd, args.lr_warmup, args.lr_decay_epoch) == (0.001, 5e-4, -1, (5, 6))



def test_switches_the_recipe_turns_on_can_be_turned_off():
    on = train_imagenet.parse_args(['--config', 'resnest50'])
    assert (on.mixup, on.auto_aug, on.last_gamma) == (True, True, True)
    off = train_imagenet.parse_args(['--config', 'resnest50', '--no-mixup', '--no-auto-aug'])
    assert (off.mixup, off.auto_aug, off.last_gamma) == (False, False, True)
    # without a recipe the opposite of a switch is its default, and the switch still works
    assert not train_imagenet.parse_args(['--model', 'resnest14', '--no-mixup']).mixup
    assert train_imagenet.parse_args(['--model', 'resnest14', '--mixup']).mixup
    coco = 'faster_rcnn_resnest50_fpn_syncbn_coco'
    assert detection.parse_args(['--config', coco]).no_wd_norm
    assert not detection.parse_args(['--config', coco, '--wd-norm']).no_wd_norm


BAD_FILES = [
    ('lrr: 0.1\n', "unknown key 'lrr'"),
    ('lr: fast\n', "lr must be a number, got 'fast'"),
    ('batch_size: 8.5\n', 'batch_size must be an integer, got 8.5'),
    ('batch_size: true\n', 'batch_size must be an integer, got True'),
    ('mixup: 1\n', 'mixup must be true or false, got 1'),
    ('lr_decay_epoch: [10, x]\n', "lr_decay_epoch must be a list of integers, got [10, 'x']"),
    ('model: [resnest50]\n', "model must be a string, got ['resnest50']"),
    ('lr: [0.1\n', 'not valid YAML at line 2'),
    ('- lr\n', 'a recipe is a mapping of keys to values, got list'),
]


@pytest.mark.parametrize('text, message', BAD_FILES)
def test_bad_imagenet_files_give_one_line_naming_file_and_key(tmp_path, capsys, text, message):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        TrainConfig.from_file(str(path))
    assert str(err.value).startswith('%s: ' % path) and message in str(err.value) and '\n' not in str(err.value)
    status, line = command_error(train_imagenet.main, ['--config', str(path)], capsys)
    assert (status, line) == (2, 'error: ' + str(err.value))


@pytest.mark.parametrize('text, message', [
    ('epochs: 2.5\n', 'epochs must be an integer or null, got 2.5'),  # null: the dataset's default
    ('short: [640, big]\n', "short must be a list of integers or null, got [640, 'big']"),
    ('no_pretrained_base: yes please\n', "no_pretrained_base must be true or false, got 'yes please'"),
    ('lr: null\n', None),  # the per-dataset default: allowed
    ('box_head_units: null\n', 'box_head_units must be an integer, got None'),
    ('gpu: 0\n', "unknown key 'gpu'"),
])
def test_bad_detection_files_give_one_line(tmp_path, capsys, text, message):
    path = tmp_path / 'det.yaml'
    path.write_text(text)
    if message is None:
        assert detection.parse_args(['--config', str(path)]).lr == 0.001
        return
    status, line = command_error(detection.main, ['--config', str(path)], capsys)
    assert (status, line) == (2, 'error: %s: %s' % (path, message))


def test_exponent_numbers_and_hyphenated_keys_read_as_meant(tmp_path):
    path = tmp_path / 'mine.yaml'
    path.write_text('model: resnest14\nwd: 1e-4\nwarmup-lr: 1E-3\nlr_decay_epoch: "10, 20"\ngpus: [0, 1]\n')
    config = TrainConfig.from_file(str(path), dtype='float32')
    assert (config.wd, config.warmup_lr, config.lr_decay_epoch, config.gpus) == (1e-4, 1e-3, (10, 20), (0, 1))


def test_missing_files_and_unknown_names(tmp_path):
    with pytest.raises(RecipeError, match='config file .*nowhere.yaml does not exist'):
        TrainConfig.from_file(str(tmp_path / 'nowhere.yaml'))
    with pytest.raises(RecipeError, match=r"'resnest51' is neither a file nor a recipe name \(imagenet recipes: "
                                          r"finetune, resnest101, resnest14"):
        TrainConfig.from_file('resnest51')


def test_a_bad_value_from_a_file_names_the_file(tmp_path, capsys):
    path = tmp_path / 'neg.yaml'
    path.write_text('model: resnest14\nlr: -1\n')
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_file(str(path))
    assert str(err.value) == 'lr must be positive, got -1.0 (set in %s)' % path
    with pytest.raises(ConfigError, match=r'^lr must be positive, got -2.0$'):
        TrainConfig.from_file(str(path), lr=-2.0)  # the override's own error names no file
    status, line = command_error(train_imagenet.main, ['--config', str(path)], capsys)
    assert (status, line) == (2, 'error: --lr must be positive, got -1.0 (set in %s)' % path)


def test_help_says_how_to_name_a_recipe(capsys):
    with pytest.raises(SystemExit):
        detection.parse_args(['--help'])
    flat = ' '.join(capsys.readouterr().out.split())
    assert '--config FILE|NAME' in flat and 'gluon_resnest/recipes/detection/' in flat
    assert 'faster_rcnn_resnest50_fpn_syncbn_coco' in flat and 'override' in flat
