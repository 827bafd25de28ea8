"""The detection command under Horovod: two CPU ranks on loopback train one model."""
import importlib.util
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import SUBPROCESS_TIMEOUT
from gluon_resnest.detection import shapes

# Runs the command and then saves the network each rank ended with, so the test can compare them.
SCRIPT = '''
import os, sys
from gluon_resnest.detection import task, train
nets, build = [], task.DetectionTask.network
def keep_network(self, *args, **kwargs):
    nets.append(build(self, *args, **kwargs))
    return nets[-1]
task.DetectionTask.network = keep_network
assert train.main(sys.argv[2:]) == 0
import horovod.mxnet as hvd
nets[0].save_parameters(os.path.join(sys.argv[1], 'rank%d.params' % hvd.rank()))
'''


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
    log = open(prefix + '_train.log').read()  # rank 0's
    assert 'on each of 2 workers' in log
    # 8 images, 4 per step over both ranks: each rank trains 2 batches of 2 images.
    assert 'epoch 1 batch 2/2:' in log and 'epoch 1 batch 3/' not in log
    assert 'mAP@0.5=' in log and sorted(os.listdir(os.path.dirname(prefix))) == [
        'cascade-0001.json', 'cascade-0001.params', 'cascade-0001.states', 'cascade_history.json',
        'cascade_train.log']
    ranks = [mx.nd.load(str(tmp_path / ('rank%d.params' % r))) for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1])
    moved = 0
    saved = mx.nd.load(prefix + '-0001.params')
    for name in ranks[0]:  # weights (averaged gradients) and BatchNorm statistics (averaged) agree
        np.testing.assert_array_equal(ranks[0][name].asnumpy(), ranks[1][name].asnumpy(), err_msg=name)
        np.testing.assert_array_equal(saved[name].asnumpy(), ranks[0][name].asnumpy(), err_msg=name)
        moved += name.endswith(('running_mean', 'moving_mean')) and np.abs(saved[name].asnumpy()).max() > 0
    assert moved > 0
