"""Each command's parser is made from its config's fields (gluon_resnest.cli.add_settings): a flag left out
gives the config's default, every field is a flag, and recipes are typed from the same fields."""
import argparse
import dataclasses

import pytest

from gluon_resnest import cli
from gluon_resnest.classification import command as train_command
from gluon_resnest.classification import evaluation
from gluon_resnest.classification.config import EvalConfig, TrainConfig
from gluon_resnest.config import ExportConfig, field_kinds
from gluon_resnest.detection import command as detection_command
from gluon_resnest.detection.config import DetectionConfig
from gluon_resnest.export import __main__ as export_command

# Each command: its parser, its config and the values a config needs to build (flags and fields).
COMMANDS = {
    'train': (lambda: _parser(TrainConfig, ('data', 'recipe', 'devices, checkpoints, logging')), TrainConfig, {}),
    'detection': (detection_command._parser, DetectionConfig, {}),  # pylint: disable=protected-access
    'eval': (evaluation._parser, EvalConfig, {'model': 'resnest14', 'benchmark': True}),  # pylint: disable=W0212
    'export': (lambda: _parser(ExportConfig), ExportConfig, {'model': 'resnest14', 'out': 'x', 'pretrained': True}),
}
# Options that are not fields: --help, --config, GluonCV's --num-gpus (build_config turns it into gpus).
NOT_FIELDS = {'help', 'config', 'num_gpus'}


def _parser(cls, groups=()):
    parser = cli.ArgumentParser(formatter_class=cli.HelpFormatter)
    cli.add_config(parser, 'imagenet')
    cli.add_settings(parser, cls, groups)
    return parser


def _options(parser):
    """{dest: action} of the options a user sees (not the hidden opposites of switches, not --horovod)."""
    return {a.dest: a for a in parser._actions  # pylint: disable=protected-access
            if a.help != argparse.SUPPRESS and a.default is not argparse.SUPPRESS}


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_every_flag_defaults_to_its_fields_default(name):
    make, cls, needed = COMMANDS[name]
    options = _options(make())
    reference = cls(**needed)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(options) - NOT_FIELDS == fields, name  # each field one flag, each flag a field
    for dest, action in options.items():
        if dest in NOT_FIELDS or dest in needed:
            continue
        # The default a user gets when leaving the flag out is what the config holds without it.
        built = cls(**dict(needed, **{dest: action.type(action.default)
                                      if action.type and isinstance(action.default, str) else action.default}))
        assert getattr(built, dest) == getattr(reference, dest), (name, dest, action.default)


def test_a_parsed_empty_command_line_is_the_default_config():
    assert train_command.parse_args([]) == TrainConfig()
    assert detection_command.parse_args([]) == DetectionConfig()
    assert evaluation.parse_args(['--model', 'resnest14', '--benchmark']) == EvalConfig(model='resnest14',
                                                                                         benchmark=True)
    assert export_command.parse_args(['--model', 'resnest14', '--out', 'x', '--pretrained']) == ExportConfig(
        model='resnest14', out='x', pretrained=True)


def test_options_take_the_fields_types_aliases_and_consts():
    options = _options(detection_command._parser())  # pylint: disable=protected-access
    assert options['network'].option_strings == ['--network', '--backbone']
    assert options['resume_epoch'].option_strings == ['--resume-epoch', '--start-epoch']
    assert options['val_iou'].type('0.3,0.6') == (0.3, 0.6) and options['short'].type('96') == (96,)
    config = detection_command.parse_args(['--horovod', '--start-epoch', '0', '--backbone', 'resnest14'])
    assert (config.kv_store, config.network) == ('horovod', 'resnest14')
    train = train_command.parse_args(['--label-smoothing', '--crop-size', '64', '--random-mirror', '0'])
    assert (train.label_smoothing, train.input_size, train.random_mirror) == (0.1, 64, False)
    assert train_command.parse_args(['--label-smoothing', '0.2', '--no-progress']).label_smoothing == 0.2
    assert train_command.parse_args(['--no-progress']).progress is False


def test_the_watchdog_help_is_one_text_naming_its_exit_status():
    helps = [_options(make())['step_timeout'].help for make in (COMMANDS['train'][0], COMMANDS['detection'][0])]
    assert helps[0] == helps[1] and 'exit status 1)' in helps[0]


def test_a_choice_is_checked_by_the_config_as_the_parser_offers_it():
    options = _options(COMMANDS['train'][0]())
    for field in dataclasses.fields(TrainConfig):
        if field.metadata.get('choices'):
            assert tuple(options[field.name].choices) == tuple(field.metadata['choices'])
    with pytest.raises(ValueError, match="lr_mode must be one of step, cosine, got 'poly'"):
        DetectionConfig(lr_mode='poly')
    with pytest.raises(ValueError, match="norm_layer must be one of syncbn, bn or left out, got 'gn'"):
        DetectionConfig(norm_layer='gn')


@pytest.mark.parametrize('cls,kind', [(TrainConfig, 'imagenet'), (DetectionConfig, 'detection')])
def test_recipes_are_typed_by_the_fields_the_flags_come_from(tmp_path, cls, kind):
    kinds = field_kinds(cls)
    path = tmp_path / 'recipe.yaml'
    path.write_text('gpus: 0\nlr_decay_epoch: [3, 5]\nseed: 7\n')
    parser = _parser(cls) if cls is TrainConfig else detection_command._parser()  # pylint: disable=W0212
    args, recipe = cli.parse_with_recipe(parser, ['--config', str(path)], kind, cls)
    config = cli.build_config(parser, cls, args, recipe)
    assert (config.gpus, config.lr_decay_epoch, config.seed) == ((0,), (3, 5), 7)
    assert kinds['gpus'] == ('ints', False) and kinds['lr_decay_epoch'][0] == 'ints'
    path.write_text('seed: seven\n')
    with pytest.raises(cli.UsageError, match='seed must be an integer'):
        cli.parse_with_recipe(parser, ['--config', str(path)], kind, cls)
