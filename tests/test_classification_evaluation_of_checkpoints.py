"""eval.py on checkpoints of train_imagenet.py reproduces the validation accuracy the trainer logged.

Both use gluon_resnest.data (datasets, EvalTransform) and gluon_resnest.metrics.accuracy, so this
checks the wiring end to end: the checkpoint files, the crop, the class order and the metric agree.
"""
import os
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import eval as eval_script  # noqa: E402  pylint: disable=wrong-import-position
from gluon_resnest import evaluate  # noqa: E402
from gluon_resnest.train import fit  # noqa: E402

train_script = pytest.importorskip('train_imagenet', reason='train_imagenet.py is not in this checkout')

# One colour per class plus noise: learnable in a few steps, so the logged accuracies move between epochs.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def make_colour_folder(root, per_class, seed):
    rng = np.random.RandomState(seed)
    for label, colour in enumerate(COLOURS):
        folder = os.path.join(str(root), 'c%d' % label)
        os.makedirs(folder)
        for i in range(per_class):
            h, w = rng.randint(36, 56, 2)
            noise = rng.randint(0, 77, (h, w, 3))
            img = np.clip(np.array(colour)[None, None, :] * 0.7 + noise, 0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(folder, '%d.png' % i), img)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp('trained')
    make_colour_folder(base / 'data' / 'train', 6, seed=1)
    make_colour_folder(base / 'data' / 'val', 3, seed=2)
    run = fit(train_script.parse_args([
        '--model', 'resnest14', '--data-dir', str(base / 'data'), '--input-size', '32',
        '--batch-size', '6', '--num-epochs', '3', '--lr', '0.02', '-j', '0', '--save-frequency', '1',
        '--save-dir', str(base / 'run'), '--no-progress', '--log-interval', '0', '--seed', '3']))
    return base, {r['epoch'] + 1: r for r in run.history}


@pytest.mark.slow
@pytest.mark.parametrize('epoch', [1, 2, 3])
def test_checkpoint_evaluates_to_logged_accuracy(trained, epoch):
    base, logged = trained
    params = base / 'run' / ('resnest14-%04d.params' % epoch)
    result = evaluate(eval_script.parse_args([
        '--model', 'resnest14', '--params-file', str(params), '--data-dir', str(base / 'data'),
        '--crop-size', '32', '--batch-size', '5', '-j', '0', '--no-progress']))
    assert result.num_images == 18
    assert result.top1 == pytest.approx(logged[epoch]['val-top1'], abs=1e-9)
    assert result.top5 == pytest.approx(logged[epoch]['val-top5'], abs=1e-9)
