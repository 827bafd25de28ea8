"""gluon_resnest.engine.watchdog under MXNet's dist_sync kvstore: when a worker is lost the others stop within
the bound, and --resume finishes; a slow but live job is not stopped.

The ps-lite roles run on 127.0.0.1, started by the test; every process is bounded by a timeout. Faults and
delays are injected into the workers through ``FAULT`` (see conftest's ``write_fault_worker``).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import QUICK_FLAGS, SUBPROCESS_TIMEOUT, write_fault_worker, write_tiny_dataset

from gluon_resnest import get_model
from gluon_resnest.engine.watchdog import EXIT_NO_PROGRESS
from gluon_resnest.engine.checkpoint import read_checkpoint

def _start_job(tmp_path, base, args, fault):
    """Scheduler, server and two workers; returns (roles, workers)."""
    script = write_fault_worker(tmp_path)
    base = dict(base, FAULT=json.dumps(fault))
    roles = [subprocess.Popen([sys.executable, '-c', 'import mxnet'], env=dict(base, DMLC_ROLE=role),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for role in ('scheduler', 'server')]
    workers = [subprocess.Popen([sys.executable, str(script)] + args + ['--kv-store', 'dist_sync'],
                                env=dict(base, DMLC_ROLE='worker'), cwd=str(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    return roles, workers


def _end(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def _finish(roles, workers):
    """Wait for both workers and then the roles; returns the workers' outputs."""
    try:
        outputs = [w.communicate(timeout=SUBPROCESS_TIMEOUT)[0] for w in workers]
        for worker, text in zip(workers, outputs):
            assert worker.returncode == 0, text[-3000:]
        for role in roles:
            role.wait(timeout=60)
        return outputs
    finally:
        _end(roles + workers)


def _args(tmp_path, epochs, timeout):
    data = tmp_path / 'data'
    if not data.exists():  # 48 training images: 3 batches of 8 per worker and epoch
        write_tiny_dataset(str(data), val_per_class=16)
    return QUICK_FLAGS + ['--data-dir', str(data), '--num-epochs', str(epochs), '--save-dir', str(tmp_path / 'save'),
                    '--save-frequency', '1', '--step-timeout', str(timeout)]


@pytest.mark.slow
def test_lost_worker_stops_the_other_and_resume_finishes(tmp_path, ps_lite_env):
    save = tmp_path / 'save'
    roles, workers = _start_job(tmp_path, ps_lite_env(), _args(tmp_path, 3, 10), {'kill': [1, 1]})
    try:
        killed = workers_out = None
        for worker in workers:  # rank 1 dies at epoch 2 batch 2; the other stops on its own
            workers_out = (workers_out or []) + [worker.communicate(timeout=SUBPROCESS_TIMEOUT)[0]]
        ended = time.time()
        killed = [float(m) for t in workers_out for m in re.findall(r'KILLED AT ([\d.]+)', t)]
        survivor = [w for w, t in zip(workers, workers_out) if 'KILLED AT' not in t]
        text = [t for t in workers_out if 'KILLED AT' not in t][0]
        assert len(killed) == 1 and len(survivor) == 1, workers_out
        assert survivor[0].returncode == EXIT_NO_PROGRESS == 1, text[-3000:]
        lines = [l for l in text.splitlines() if 'no progress' in l]
        assert len(lines) == 1, text[-3000:]
        bound = float(re.search(r', bound ([\d.]+) s\)', lines[0]).group(1))
        assert lines[0].endswith('a peer worker or the parameter server is probably gone; stopping; '
                                 'last checkpoint: %s' % (save / 'resnest14-0001.json'))
        assert 10 <= bound < 60 and ended - killed[0] < bound + 10, (bound, ended - killed[0])
        assert 'Traceback' not in text
        # ps-lite's scheduler and server do not notice a lost worker: they wait until stopped.
        assert all(role.poll() is None for role in roles)
    finally:
        _end(roles + workers)
    record = read_checkpoint(str(save / 'resnest14-0001.json'))
    get_model('resnest14', classes=3, pretrained=record['params'])  # loads strictly
    assert not [f for f in os.listdir(str(save)) if '.tmp-' in f or f.startswith('resnest14-0002')]

    # A full disk or a killed writer left an incomplete set; --resume removes it and never picks it.
    shutil.copy(record['params'], str(save / 'resnest14-0002.params'))
    outputs = _finish(*_start_job(tmp_path, ps_lite_env(), _args(tmp_path, 3, 10) + ['--resume'], {}))
    assert all('updates 9' in t for t in outputs)
    text = '\n'.join(outputs)
    assert 'removed 1 file(s) of incomplete checkpoints (interrupted write or full disk): resnest14-0002.params' \
        in text
    assert 'resuming from %s at epoch 1 batch 0' % (save / 'resnest14-0001.json') in text
    log = (save / 'train_imagenet.log').read_text()
    assert [int(e) for e in re.findall(r'\[Epoch (\d+)\]', log)] == [1, 2, 3]
    assert [r['epoch'] for r in json.load(open(str(save / 'history.json')))] == [0, 1, 2]
    read_checkpoint(str(save / 'resnest14-0003.json'))


@pytest.mark.slow
def test_slow_but_live_job_is_not_stopped(tmp_path, ps_lite_env):
    # Bound 5 s: a 12 s first batch (graph tracing gets 10x), a 2 s step, a 9 s first checkpoint, and
    # (epoch 2 only) a validation of 3 batches x 4 s per worker: longer than 5 s, but each batch is progress.
    fault = {'sleep_step': {'0,0': 12, '1,1': 2}, 'sleep_val': 4, 'sleep_save': 9}
    outputs = _finish(*_start_job(tmp_path, ps_lite_env(), _args(tmp_path, 2, 5) +
                                    ['--eval-frequency', '2'], fault))
    assert all('updates 6' in t for t in outputs)
    assert not any('no progress' in t for t in outputs)
    read_checkpoint(str(tmp_path / 'save' / 'resnest14-0002.json'))
