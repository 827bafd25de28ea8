"""Compute-thread policy of the command-line tools (gluon_resnest.threads)."""
import io
import os
import subprocess
import sys

import pytest

from gluon_resnest import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('argv,tool,rest', [
    (['python', '-m', 'gluon_resnest.export', '--model', 'x'], 'export', ['--model', 'x']),
    (['python', '-u', '-m', 'gluon_resnest.summary'], 'summary', []),
    (['python', '-W', 'ignore', '/a/b/train_imagenet.py', '-j', '1'], 'train', ['-j', '1']),
    (['python', 'eval.py', '--benchmark'], 'eval', ['--benchmark']),
    (['/venv/bin/python', '/venv/bin/gluon-resnest-convert-torch', 'a.pth'], 'convert', ['a.pth']),
    (['python', '-m', 'pytest', 'tests'], None, ['tests']),
    (['python', 'my_script.py'], None, []),
    (['python'], None, []),
])
def test_command_line_tool(argv, tool, rest):
    assert threads.command_line_tool(argv) == (tool, rest)


@pytest.mark.parametrize('args,workers', [
    ([], threads.DEFAULT_DATA_WORKERS), (['-j', '1'], 1), (['-j3'], 3), (['--num-data-workers=0'], 0),
    (['--num-data-workers', '2', '--lr', '0.1'], 2), (['--model', 'resnest14'], 4),
])
def test_data_workers_from_train_arguments(args, workers):
    assert threads._data_workers(args) == workers  # pylint: disable=protected-access


@pytest.mark.parametrize('args,busy', [
    ([], False), (['-j', '2', '--lr', '0.1'], False), (['--gpus', '0,1'], True), (['--gpus=0'], True),
    (['--gpus', ''], False), (['--auto-aug'], False), (['--gpus', '0', '--gpus', ''], False),
    (['--num-gpus', '2'], True), (['--num-gpus=1'], True), (['--num-gpus', '0'], False),
])
def test_data_workers_need_their_cores_on_gpus(args, busy):
    assert threads._workers_busy(args) == busy  # pylint: disable=protected-access


def test_training_on_the_cpu_takes_all_cores():
    assert threads.compute_threads('train', cores=2, data_workers=1, workers_busy=False) == 2
    assert threads.compute_threads('train', cores=8, data_workers=4, workers_busy=False) == 8


def test_training_leaves_the_data_workers_their_cores():
    assert threads.compute_threads('train', cores=2, data_workers=1) == 1
    assert threads.compute_threads('train', cores=8, data_workers=2) == 6
    assert threads.compute_threads('train', cores=2, data_workers=4) == 1
    assert threads.compute_threads('train', cores=2, data_workers=0) == 2
    for tool in ('eval', 'export', 'convert', 'summary'):
        assert threads.compute_threads(tool, cores=6) == 6
    with pytest.raises(ValueError, match='unknown tool'):
        threads.compute_threads('serve', cores=2)


def test_user_setting_wins_and_is_reported(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    out = io.StringIO()
    assert threads.configure('eval', stream=out) == '3'
    assert out.getvalue() == 'eval: 3 compute threads (set by OMP_NUM_THREADS)\n'


def test_training_keeps_one_cpu_workspace_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    monkeypatch.delenv('MXNET_CPU_TEMP_COPY', raising=False)
    threads.configure('eval', stream=io.StringIO())
    assert 'MXNET_CPU_TEMP_COPY' not in os.environ
    threads.configure('train', stream=io.StringIO())
    assert os.environ['MXNET_CPU_TEMP_COPY'] == '1'
    monkeypatch.setenv('MXNET_CPU_TEMP_COPY', '4')
    threads.configure('train', stream=io.StringIO())
    assert os.environ['MXNET_CPU_TEMP_COPY'] == '4'


def test_too_late_once_mxnet_is_loaded(monkeypatch):
    # MXNet is loaded in this test process: the variable must not be set (it would change nothing).
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    out = io.StringIO()
    assert threads.configure('eval', stream=out) == 'MXNet default'
    assert 'OMP_NUM_THREADS' not in os.environ


def _thread_line(args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop('OMP_NUM_THREADS', None)
    # The tool is recognised from the interpreter's own command line, so run it for real.
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=True)
    return [line for line in proc.stderr.splitlines() if 'compute threads' in line]


@pytest.mark.slow
def test_tools_set_their_threads_before_mxnet_loads():
    cores = threads.available_cores()
    assert _thread_line(['train_imagenet.py', '-j', '1', '--help']) == [
        'train: %d compute threads (all %d cores: training on the CPU, the data workers mostly wait for it; '
        'set OMP_NUM_THREADS to override)' % (cores, cores)]
    assert _thread_line(['train_imagenet.py', '-j', '1', '--gpus', '0', '--help']) == [
        'train: %d compute threads (%d cores - 1 data workers; set OMP_NUM_THREADS to override)'
        % (max(1, cores - 1), cores)]
    assert _thread_line(['-m', 'gluon_resnest.export', '--help']) == [
        'export: %d compute threads (all %d cores; set OMP_NUM_THREADS to override)' % (cores, cores)]
