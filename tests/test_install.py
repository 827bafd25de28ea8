"""Installing: pip never puts a second MXNet over the user's, the .pth file ships in the wheel and works
there, and scripts/setup.sh keeps a working core when an optional step fails."""
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO

PIP_TIMEOUT = 900  # resolving from the registries on a loaded machine


def _bare_venv(path):
    """A venv without pip (fast to make); pip runs into it from this one with ``--python``."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)], check=True, timeout=300)
    python = os.path.join(str(path), 'bin', 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    return python, site


def _fake_distribution(site, name, version, top_level):
    """Register an installed distribution ``name`` (metadata only), as a GPU build of MXNet would be."""
    info = os.path.join(site, '%s-%s.dist-info' % (name.replace('-', '_'), version))
    os.makedirs(info)
    files = {'METADATA': 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' % (name, version),
             'INSTALLER': 'pip\n', 'top_level.txt': top_level + '\n'}
    for file_name, text in files.items():
        with open(os.path.join(info, file_name), 'w') as out:
            out.write(text)
    with open(os.path.join(info, 'RECORD'), 'w') as out:
        out.write(''.join('%s/%s,,\n' % (os.path.basename(info), file_name) for file_name in list(files) + ['RECORD']))


def _pip(*args):
    proc = subprocess.run([sys.executable, '-m', 'pip'] + list(args), capture_output=True, text=True,
                          timeout=PIP_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize('target,mxnet_expected', [('.', False), ('.[cpu]', True)], ids=['core', 'cpu-extra'])
def test_pip_never_installs_an_mxnet_over_a_gpu_build(tmp_path, target, mxnet_expected):
    """With mxnet-cu112 installed, the package resolves no `mxnet`; the `cpu` extra (chosen by the user)
    does, which shows the check can see one."""
    python, site = _bare_venv(tmp_path / 'venv')
    _fake_distribution(site, 'mxnet-cu112', '1.9.1', 'mxnet')
    report = tmp_path / 'report.json'
    _pip('--python', python, 'install', '--dry-run', '--quiet', '--report', str(report),
         os.path.join(REPO, target) if target != '.' else REPO)
    install = {re.sub(r'[-_.]+', '-', item['metadata']['name']).lower(): item['metadata']['version']
               for item in json.loads(report.read_text())['install']}
    assert 'gluon-resnest' in install and 'gluoncv' in install
    assert [name for name in install if name.startswith('mxnet')] == (['mxnet'] if mxnet_expected else [])
    # numpy 1 where the interpreter has wheels of it (mxnet's own metadata asks numpy<2).
    assert (install['numpy'].split('.')[0] == '1') == (sys.version_info < (3, 13))


@pytest.mark.slow
def test_wheel_carries_the_pth_file_and_it_restores_at_interpreter_start(tmp_path):
    """A regular (non-editable) install: the wheel puts gluon_resnest_compat.pth into site-packages, and
    a script importing mxnet first runs there (numpy and mxnet from this venv, on PYTHONPATH)."""
    _pip('wheel', '--no-deps', '--quiet', '-w', str(tmp_path / 'dist'), REPO)
    wheel, = (tmp_path / 'dist').glob('gluon_resnest-*.whl')
    with zipfile.ZipFile(str(wheel)) as archive:
        names = archive.namelist()
        assert archive.read('gluon_resnest_compat.pth') == open(os.path.join(REPO, 'gluon_resnest_compat.pth'),
                                                                'rb').read()
    assert 'gluon_resnest_compat.py' in names and 'gluon_resnest/__init__.py' in names
    python, site = _bare_venv(tmp_path / 'venv')
    _pip('--python', python, 'install', '--no-deps', '--quiet', str(wheel))
    code = ('import mxnet, numpy, gluon_resnest_compat, json\n'
            'print(json.dumps([gluon_resnest_compat.__file__, numpy.float is float]))')
    # PYTHONPATH entries run no .pth files: only the wheel's, in the new venv's site-packages, can restore.
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()['purelib'])
    proc = subprocess.run([python, '-W', 'ignore', '-c', code], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module_file, restored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert os.path.dirname(module_file) == site
    assert restored


def _setup(tmp_path, steps, venv=sys.prefix):
    """Run scripts/setup.sh with the optional steps ``steps`` ({name: script}) on ``venv`` (this one)."""
    folder = tmp_path / 'setup.d'
    folder.mkdir()
    for name, script in steps.items():
        (folder / (name + '.sh')).write_text(script)
    env = dict(os.environ, SETUP_D=str(folder), VENV=str(venv), PYTHON=sys.executable)
    return subprocess.run(['bash', os.path.join(REPO, 'scripts', 'setup.sh')], capture_output=True, text=True,
                          env=env, timeout=PIP_TIMEOUT, check=False)


@pytest.mark.slow
def test_failed_optional_step_is_one_line_and_the_core_works(tmp_path):
    proc = _setup(tmp_path, {
        '10-broken': '# costs: the broken demo feature\necho "compiling"\necho "error: no compiler" >&2\nexit 1\n',
        '20-fine': 'echo "fine step ran"\n'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('setup: core ok in %s: Python %d.%d, mxnet 1.9.1' % ((sys.prefix,)
                                                                                     + sys.version_info[:2]))
    broken = [line for line in lines if '10-broken' in line]
    assert broken == ['setup: optional step 10-broken failed (log: %s/setup-logs/10-broken.log); without it: '
                      'the broken demo feature; retry: VENV=%s bash %s/10-broken.sh'
                      % (sys.prefix, sys.prefix, tmp_path / 'setup.d')]
    assert 'no compiler' in open(os.path.join(sys.prefix, 'setup-logs', '10-broken.log')).read()
    assert lines[-1] == 'setup: 20-fine: fine step ran'
    # The editable install the core made carries the .pth file (pip's PEP 660 path, pyproject.toml).
    assert os.path.isfile(os.path.join(sysconfig.get_paths()['purelib'], 'gluon_resnest_compat.pth'))
    core = subprocess.run([sys.executable, '-c', 'import gluon_resnest; print(len(gluon_resnest.list_models()))'],
                          capture_output=True, text=True, timeout=300, check=False)
    assert core.stdout.split()[-1] == '13', core.stderr[-2000:]


def test_setup_refuses_a_venv_of_another_python(tmp_path):
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    (venv / 'bin' / 'python').write_text('#!/bin/sh\necho 3.9\n')
    (venv / 'bin' / 'python').chmod(0o755)
    proc = _setup(tmp_path, {}, venv)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('setup: %s is Python 3.9, not %d.%d: set VENV to another folder'
                                   % ((venv,) + sys.version_info[:2]))
