"""eval.py on a checkpoint of train_imagenet.py reproduces the validation accuracy the trainer logged.

Both use gluon_resnest.data (datasets, EvalTransform) and gluon_resnest.evaluation.evaluate, so this
checks the wiring: the checkpoint file, the crop, the class order and the metric agree end to end.
"""
import json
import os
import sys

import pytest

from test_data import make_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import eval as eval_script  # noqa: E402  pylint: disable=wrong-import-position

train_script = pytest.importorskip('train_imagenet', reason='train_imagenet.py is not in this checkout')

SIZES = [(40, 52), (45, 37), (36, 36)]


@pytest.mark.slow
def test_checkpoint_evaluates_to_logged_accuracy(tmp_path):
    data = tmp_path / 'imagenet'
    make_image_folder(data / 'train', classes=6, sizes=SIZES * 2, seed=1)
    make_image_folder(data / 'val', classes=6, sizes=SIZES, seed=2)
    save_dir = tmp_path / 'run'
    run = train_script.main(train_script.parse_args([
        '--model', 'resnest14', '--data-dir', str(data), '--input-size', '32', '--batch-size', '6',
        '--num-epochs', '1', '--lr', '0.05', '-j', '0', '--save-dir', str(save_dir), '--no-progress',
        '--log-interval', '0', '--seed', '3']))
    logged = json.loads((save_dir / 'resnest14-0001.json').read_text())
    assert logged['classes'] == 6
    record = [r for r in run.history.records if r['epoch'] == 0][0]  # the first (only) epoch
    result = eval_script.main(eval_script.parse_args([
        '--model', 'resnest14', '--params-file', str(save_dir / 'resnest14-0001.params'),
        '--data-dir', str(data), '--crop-size', '32', '--batch-size', '5', '-j', '0', '--no-progress']))
    assert result['num_images'] == 18
    assert result['top1'] == pytest.approx(100 * record['val-top1'], abs=1e-9)
    assert result['top5'] == pytest.approx(100 * record['val-top5'], abs=1e-9)
