"""The typed configs of the three jobs and the shared command-line vocabulary that fills them."""
import io
import os
import sys

import pytest

from gluon_resnest.classification.config import EvalConfig, TrainConfig
from gluon_resnest.config import ConfigError, ExportConfig, parse_devices
from gluon_resnest.progress import progress_bar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('fields, message', [
    (dict(batch_size=1), 'batch_size must be >= 2 per device (BatchNorm in split attention'),
    (dict(model='resnest7'), "unknown model 'resnest7'"),
    (dict(lr=0), 'lr must be positive'),
    (dict(warmup_epochs=3, num_epochs=3), 'warmup_epochs must be in [0, num_epochs)'),
    (dict(lr_decay_epoch='30;60'), "lr_decay_epoch must be comma-separated epochs, got '30;60'"),
    (dict(rec_train='a.rec'), 'rec_train and rec_val go together'),
    (dict(dtype='float16'), 'dtype float16 needs gpus'),
    (dict(resume=True, resume_states='s'), 'resume cannot be combined with resume_params/resume_states'),
    (dict(gpus='0,x'), 'gpus takes comma-separated GPU ids'),
    (dict(kv_store='nccl'), "kv_store must be one of local, device"),
])
def test_train_config_errors_name_fields(fields, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**fields)
    assert str(err.value).startswith(message) or message in str(err.value)
    assert isinstance(err.value, ValueError) and '\n' not in str(err.value)


def test_error_renders_in_flag_terms():
    with pytest.raises(ConfigError) as err:
        TrainConfig(warmup_epochs=5, num_epochs=5)
    assert err.value.fields == ('warmup_epochs', 'num_epochs')
    assert err.value.render(lambda f: '--' + f.replace('_', '-')) == '--warmup-epochs must be in [0, --num-epochs)'


def test_train_config_normalises_values():
    config = TrainConfig(model='ResNeSt14', gpus='', lr_decay_epoch='30, 60,90', random_mirror=0)
    assert (config.model, config.gpus, config.lr_decay_epoch, config.random_mirror) == \
        ('resnest14', (), (30, 60, 90), False)
    assert parse_devices('1,3') == parse_devices([1, 3]) == (1, 3) and parse_devices(None) == ()


def test_eval_and_export_defaults_follow_the_published_crop():
    assert EvalConfig(model='resnest200', benchmark=True).input_size == 320
    config = ExportConfig(model='resnest269', pretrained=True, out='o', format='int8', calib_data='c')
    assert (config.input_size, config.prefix) == (416, 'resnest269-int8')
    with pytest.raises(ConfigError, match='give exactly one of pretrained and params_file'):
        ExportConfig(model='resnest14', out='o')
    with pytest.raises(ConfigError, match='dynamic_batch and no_runtime_check apply to format onnx only'):
        ExportConfig(model='resnest14', out='o', pretrained=True, dynamic_batch=True)


def _train_cli():
    sys.path.insert(0, ROOT)
    import train_imagenet  # pylint: disable=import-outside-toplevel
    return train_imagenet


def test_train_flags_map_onto_the_config():
    train_imagenet = _train_cli()
    config = train_imagenet.parse_args(['--model', 'resnest14', '--data-dir', 'd', '--crop-size', '64',
                                        '--batch-size', '4', '-j', '2', '--num-gpus', '0', '--lr-decay-epoch',
                                        '10,20', '--random-mirror', '0', '--label-smoothing', '--no-progress'])
    assert config == TrainConfig(model='resnest14', data_dir='d', input_size=64, batch_size=4, num_data_workers=2,
                                 gpus=(), lr_decay_epoch=(10, 20), random_mirror=False, label_smoothing=0.1,
                                 progress=False)
    assert train_imagenet.parse_args([]) == TrainConfig()  # the same defaults in both


def test_gluoncv_num_gpus_spelling(capsys):
    train_imagenet = _train_cli()
    assert train_imagenet.main(['--gpus', '0', '--num-gpus', '2']) == 2
    assert 'not allowed with argument' in capsys.readouterr().err
    assert train_imagenet.main(['--num-gpus', '-1']) == 2
    assert capsys.readouterr().err == 'error: --num-gpus must be >= 0, got -1\n'


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, 'stderr', io.StringIO())
    assert progress_bar(None, total=3).disable and not progress_bar(True, total=3).disable
    monkeypatch.setattr(sys, 'stderr', _Terminal())
    assert not progress_bar(None, total=3).disable and progress_bar(False, total=3).disable
