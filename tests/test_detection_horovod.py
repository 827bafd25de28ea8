"""The detection command under Horovod: two CPU ranks on loopback train one model."""
import importlib.util
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import SUBPROCESS_TIMEOUT
from gluon_resnest.detection import shapes

# Runs the command; the loop's hooks save each rank's trainable weights after its first step and after its
# last one (before the end of the epoch broadcasts rank 0's weights), then the network each rank ended with.
SCRIPT = '''
import os, sys
import mxnet as mx
from gluon_resnest.detection import train
from gluon_resnest.engine.loop import Hooks, hooks_installed
import horovod.mxnet as hvd
nets = []

def save_trainable(run, name):
    params = run.net._collect_params_with_prefix()
    mx.nd.save(os.path.join(sys.argv[1], 'rank%d-%s.params' % (hvd.rank(), name)),
               {k: p.data(run.ctx[0]) for k, p in params.items() if p.grad_req != 'null'})

def after_step(run, epoch, batch, loss):
    if batch == 0:
        save_trainable(run, 'first_step')
    if batch + 1 == run.sampler.batches_per_epoch:
        save_trainable(run, 'last_step')
        nets.append(run.net)

hooks = Hooks(after_step=[after_step])
with hooks_installed(hooks):
    assert train.main(sys.argv[2:]) == 0
nets[0].save_parameters(os.path.join(sys.argv[1], 'rank%d.params' % hvd.rank()))
'''


def _load(path):
    return {name: value.asnumpy() for name, value in mx.nd.load(str(path)).items()}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('horovod') is None,
                    reason='Horovod is not installed (bash scripts/setup.d/50-horovod.sh builds it)')
def test_two_horovod_ranks_train_one_detector(tmp_path, subprocess_env):
    pytest.importorskip('horovod.mxnet', reason='horovod is installed without its MXNet extension')
    root = str(tmp_path / 'shapes')
    shapes.write_shapes(root, num_train=8, num_val=2, size=96)
    script = tmp_path / 'run.py'
    script.write_text(SCRIPT)
    prefix = str(tmp_path / 'runs' / 'cascade')
    # --backbone: horovodrun would take --network for its own --network-interface.
    argv = ['--horovod', '--detector', 'cascade_rcnn', '--backbone', 'resnest14', '--dataset', 'shapes',
            '--dataset-root', root, '--no-pretrained-base', '--short', '96', '--max-size', '96',
            '--num-sample', '16', '--rpn-train-post-nms', '64', '--rpn-test-post-nms', '20',
            '--norm-layer', 'bn', '--box-head', '2fc', '--box-head-units', '32', '--batch-size', '4',
            '--lr-warmup', '1', '--epochs', '1', '--no-progress', '--save-prefix', prefix, '--log-interval', '1']
    horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    cmd = [horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', '--network-interface', 'lo',
           sys.executable, str(script), str(tmp_path)] + argv
    proc = subprocess.run(cmd, env=subprocess_env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(prefix + '-0001.json') as f:
        record = json.load(f)  # rank 0's
    # 8 images, 4 per step over both ranks: each rank trains 2 batches of 2 images.
    assert (record['num_workers'], record['iters_per_epoch'], record['num_update']) == (2, 2, 2)
    assert 0 <= record['val']['mAP@0.5'] <= 1 and sorted(os.listdir(os.path.dirname(prefix))) == [
        'cascade-0001.json', 'cascade-0001.params', 'cascade-0001.states', 'cascade_history.json',
        'cascade_train.log']
    # After each step, before any broadcast: both ranks applied the same averaged gradients (each saw other
    # images), so their weights agree up to the rounding of the reductions; the second step moved them.
    first, last = ([_load(tmp_path / ('rank%d-%s.params' % (rank, when))) for rank in (0, 1)]
                   for when in ('first_step', 'last_step'))
    assert sorted(last[0]) == sorted(last[1]) == sorted(first[0]) and len(last[0]) > 50
    for name in last[0]:
        np.testing.assert_allclose(first[0][name], first[1][name], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(last[0][name], last[1][name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert sum(not np.array_equal(first[0][name], last[0][name]) for name in last[0]) > len(last[0]) // 2
    ranks = [mx.nd.load(str(tmp_path / ('rank%d.params' % r))) for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1])
    moved = 0
    saved = mx.nd.load(prefix + '-0001.params')
    for name in ranks[0]:  # weights (averaged gradients) and BatchNorm statistics (averaged) agree
        np.testing.assert_array_equal(ranks[0][name].asnumpy(), ranks[1][name].asnumpy(), err_msg=name)
        np.testing.assert_array_equal(saved[name].asnumpy(), ranks[0][name].asnumpy(), err_msg=name)
        moved += name.endswith(('running_mean', 'moving_mean')) and np.abs(saved[name].asnumpy()).max() > 0
    assert moved > 0
