"""Every command is a console script whose main(argv=None) returns its exit status under one error policy:
one line on stderr, 2 for bad usage, 1 for a failed run, 130 for Ctrl-C."""
import ast
import importlib
import inspect
import os
import subprocess
import sys

import mxnet as mx
import pytest

from gluon_resnest import cli, threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _console_scripts():
    """{name: 'module:function'} of setup.py's console_scripts, read from its source (nothing installed)."""
    tree = ast.parse(open(os.path.join(REPO, 'setup.py')).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'entry_points':
            entries = ast.literal_eval(node.value)['console_scripts']
            return dict(tuple(part.strip() for part in entry.split('=')) for entry in entries)
    raise AssertionError('setup.py has no entry_points')


SCRIPTS = _console_scripts()


def _main(name):
    module, function = SCRIPTS[name].split(':')
    return getattr(importlib.import_module(module), function)


def test_every_command_is_a_console_script():
    assert sorted(SCRIPTS) == sorted([
        'gluon-resnest-train', 'gluon-resnest-eval', 'gluon-resnest-export', 'gluon-resnest-convert-torch',
        'gluon-resnest-train-detection', 'gluon-resnest-summary', 'gluon-resnest-make-demo-data',
        'gluon-resnest-make-shapes-data', 'gluon-resnest-run-gluoncv'])
    # The documented scripts run the console scripts' main.
    sys.path.insert(0, REPO)
    try:
        assert importlib.import_module('train_imagenet').main is _main('gluon-resnest-train')
        assert importlib.import_module('eval').main is _main('gluon-resnest-eval')
    finally:
        sys.path.remove(REPO)


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_console_script_takes_argv(name):
    parameters = list(inspect.signature(_main(name)).parameters.values())
    assert len(parameters) == 1 and parameters[0].default is None, (name, parameters)
    assert parameters[0].name == 'argv', name
    # Each command picks its compute threads by the name it was started under.
    assert name in threads.TOOLS


BAD_FLAGS = {
    'gluon-resnest-train': (['--lr', 'fast'], "argument --lr: invalid float value: 'fast'"),
    'gluon-resnest-eval': (['--model', 'resnest14', '--benchmark', '--batch-size', 'x'],
                           "argument --batch-size: invalid int value: 'x'"),
    'gluon-resnest-export': (['--model', 'resnest14', '--pretrained', '--out', 'o', '--format', 'tflite'],
                             "argument --format: invalid choice: 'tflite'"),
    'gluon-resnest-convert-torch': (['--model', 'resnest7', '--input', 'a.npz', '--output', 'b.params'],
                                    "unknown --model 'resnest7'"),
    'gluon-resnest-train-detection': (['--lr', 'fast'], "argument --lr: invalid float value: 'fast'"),
    'gluon-resnest-summary': (['resnest7'], "unknown model 'resnest7'"),
    'gluon-resnest-make-demo-data': (['out', '--val-fraction', '1.5'], '--val-fraction must be in (0, 1)'),
    'gluon-resnest-make-shapes-data': (['out', '--size', 'big'], "argument --size: invalid int value: 'big'"),
    'gluon-resnest-run-gluoncv': (['no/such/script.py'], 'script not found: no/such/script.py'),
}


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_bad_flag_value_is_status_2_and_one_line(name, capsys):
    argv, message = BAD_FLAGS[name]
    assert _main(name)(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith('error: %s' % message), captured.err
    assert len(captured.err.splitlines()) == 1 and captured.out == ''


def test_commands_exit_with_status_2_on_bad_flags(capsys):
    for name, argv in (('gluon-resnest-eval', ['--model', 'resnest14', '--benchmark', '--batch-size', '0']),
                       ('gluon-resnest-train', ['--batch-size', '1'])):
        assert _main(name)(argv) == 2
        err = capsys.readouterr().err
        assert '--batch-size must be >= ' in err.strip().splitlines()[-1], err


def test_missing_file_on_the_command_line_is_bad_usage(tmp_path, capsys):
    missing = str(tmp_path / 'resnest14.npz')
    assert _main('gluon-resnest-convert-torch')(['--model', 'resnest14', '--input', missing, '--output',
                                                 str(tmp_path / 'out.params')]) == 2
    assert capsys.readouterr().err == 'error: state dict file not found: %s\n' % missing
    assert os.listdir(str(tmp_path)) == []


def test_failed_run_is_status_1_and_one_line(tmp_path, capsys):
    # A file that exists but is no checkpoint: the run fails (MXNet's error, first line only).
    bad = tmp_path / 'bad.params'
    bad.write_bytes(b'not ndarrays')
    assert _main('gluon-resnest-eval')(['--model', 'resnest14', '--params-file', str(bad), '--benchmark',
                                        '--crop-size', '32', '--iters', '1', '--warmup', '0']) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'is not an MXNet .params file' in err[0]


def test_failing_gluoncv_script_is_status_1(tmp_path, capsys):
    script = tmp_path / 'fails.py'
    script.write_text("raise RuntimeError('no dataset here\\nsecond line')\n")
    assert _main('gluon-resnest-run-gluoncv')([str(script)]) == 1
    assert capsys.readouterr().err == 'error: no dataset here\n'


@pytest.mark.parametrize('raised, line', [
    ("assert 1 == 2, 'bad shape'", 'error: AssertionError: bad shape'),
    ("{}['mask']", "error: KeyError: 'mask'"),
    ("len(3)", "error: TypeError: object of type 'int' has no len()"),
    ("open('no/such/annotations.json')", "error: FileNotFoundError: [Errno 2] No such file or directory: "
     "'no/such/annotations.json'"),
])
def test_gluoncv_script_errors_are_its_failed_run(tmp_path, capsys, raised, line):
    # Whatever a GluonCV script raises is the script's failed run: status 1, one line, no traceback.
    script = tmp_path / 'fails.py'
    script.write_text(raised + '\n')
    assert _main('gluon-resnest-run-gluoncv')([str(script)]) == 1
    assert capsys.readouterr().err == line + '\n'


def _raises(error):
    def body(argv):
        raise error
    return body


@pytest.mark.parametrize('error, status, line', [
    (cli.UsageError('argument --x: expected one argument'), 2, 'error: argument --x: expected one argument'),
    (FileNotFoundError('data folder not found: d'), 2, 'error: data folder not found: d'),
    (PermissionError(13, 'Permission denied'), 2, 'error: [Errno 13] Permission denied'),
    (ValueError('loss is nan at epoch 2 batch 1'), 1, 'error: loss is nan at epoch 2 batch 1'),
    (mx.base.MXNetError('bad shape\nStack trace:\n  File "x.cc"'), 1, 'error: bad shape'),
    (ImportError('needs Horovod'), 1, 'error: needs Horovod'),
    (KeyboardInterrupt('interrupted after epoch 1; checkpoint c.json'), 130,
     'interrupted: interrupted after epoch 1; checkpoint c.json'),
    (SystemExit('error: from a module that still exits itself'), 1, 'error: from a module that still exits itself'),
])
def test_error_policy(error, status, line, capsys):
    assert cli.run_command(_raises(error), []) == status
    assert capsys.readouterr().err == line + '\n'


def test_mxnet_error_with_its_frames_first_is_its_message_line(capsys):
    def body(argv):  # pylint: disable=unused-argument
        mx.nd.dot(mx.nd.ones((2, 3)), mx.nd.ones((2, 3))).asnumpy()
    with pytest.raises(mx.base.MXNetError) as raised:
        body([])
    assert str(raised.value).startswith('Traceback (most recent call last):')  # MXNet 1.9.1's format
    assert cli.run_command(body, []) == 1
    line = capsys.readouterr().err
    assert line.startswith('error: MXNetError: Check failed: ') and line.endswith('dot shape error: [2,3] X [2,3]\n')
    assert line.count('\n') == 1


def test_error_policy_passes_success_and_help(capsys):
    assert cli.run_command(lambda argv: None, []) == 0
    assert cli.run_command(lambda argv: 3, []) == 3
    assert cli.run_command(_raises(SystemExit(0)), []) == 0
    with pytest.raises(TypeError):  # a bug keeps its traceback
        cli.run_command(_raises(TypeError('bug')), [])
    assert _main('gluon-resnest-summary')(['--help']) == 0
    assert 'usage: gluon-resnest-summary' in capsys.readouterr().out


def test_console_script_exit_status_reaches_the_shell(tmp_path):
    # What pip's generated wrapper does: sys.exit(main()).
    wrapper = 'import sys; from gluon_resnest.export.__main__ import main; sys.exit(main())'
    proc = subprocess.run([sys.executable, '-c', wrapper, '--model', 'resnest14', '--out', str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == 'error: give exactly one of --pretrained and --params-file'
    assert 'Traceback' not in proc.stderr
