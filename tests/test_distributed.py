"""Two-worker training on this machine: Horovod (Gloo) and MXNet's dist_sync kvstore, loopback only.

Both runs must end with identical parameters on every worker (gradients are averaged, BatchNorm running
statistics are averaged at each epoch end, rank 0 writes the checkpoint). Every process is bounded by a
timeout. The Horovod test skips only when Horovod is not importable (scripts/setup.d/50-horovod.sh builds it).
"""
import importlib.util
import os
import subprocess
import sys

import pytest


from conftest import REPO, SUBPROCESS_TIMEOUT, assert_ranks_identical

# Runs train_imagenet.py's command in this worker, then saves this rank's final parameters for comparison.
WORKER = '''
import os, sys
sys.path.insert(0, {root!r})
import train_imagenet
from gluon_resnest.train import build_run, train
run = train(build_run(train_imagenet.parse_args(sys.argv[1:])))
run.net.save_parameters(os.path.join({out!r}, 'rank%d.params' % run.dist.rank))
print('rank', run.dist.rank, 'of', run.dist.num_workers, 'lr', run.trainer.learning_rate,
      'updates', run.trainer.optimizer.num_update)
'''


def _setup(tmp_path, tiny_dataset, quick):
    data = tiny_dataset(str(tmp_path / 'data'))
    out = tmp_path / 'out'
    out.mkdir()
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(root=REPO, out=str(out)))
    # 48 images / (2 workers x batch 8) = 3 batches per worker and epoch.
    args = quick + ['--data-dir', data, '--num-epochs', '2', '--save-dir', str(tmp_path / 'save'),
                    '--warmup-epochs', '1', '--dropblock-prob', '0.05']
    return script, out, args


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('horovod') is None,
                    reason='Horovod is not installed (bash scripts/setup.d/50-horovod.sh builds it)')
def test_horovod_two_ranks_end_identical(tmp_path, tiny_dataset, quick, subprocess_env):
    pytest.importorskip('horovod.mxnet', reason='horovod is installed without its MXNet extension')
    script, out, args = _setup(tmp_path, tiny_dataset, quick)
    horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    cmd = [horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', '--network-interface', 'lo',
           sys.executable, str(script)] + args + ['--kv-store', 'horovod']
    proc = subprocess.run(cmd, env=subprocess_env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # lr follows the number of workers (peak 2 x 0.02, cosine to 0 at the end); 2 epochs x 3 updates each.
    assert 'rank 0 of 2 lr 0.0 updates 6' in proc.stdout and 'rank 1 of 2 lr 0.0 updates 6' in proc.stdout
    assert_ranks_identical(out, str(tmp_path / 'save'))


@pytest.mark.slow
def test_dist_sync_two_workers_on_loopback_end_identical(tmp_path, tiny_dataset, quick, ps_lite_env):
    script, out, args = _setup(tmp_path, tiny_dataset, quick)
    base = ps_lite_env()
    procs = []
    try:
        for role in ('scheduler', 'server'):
            # Importing mxnet with DMLC_ROLE set runs the scheduler/server loop until the workers finish.
            procs.append(subprocess.Popen([sys.executable, '-c', 'import mxnet'], env=dict(base, DMLC_ROLE=role),
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        workers = [subprocess.Popen([sys.executable, str(script)] + args + ['--kv-store', 'dist_sync'],
                                    env=dict(base, DMLC_ROLE='worker'), cwd=str(tmp_path),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for _ in range(2)]
        procs += workers
        outputs = [w.communicate(timeout=SUBPROCESS_TIMEOUT)[0] for w in workers]
        for worker, text in zip(workers, outputs):
            assert worker.returncode == 0, text[-3000:]
        for server in procs[:2]:
            server.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert any('rank 0 of 2' in t for t in outputs) and any('rank 1 of 2' in t for t in outputs)
    assert all('updates 6' in t for t in outputs)
    assert_ranks_identical(out, str(tmp_path / 'save'))
