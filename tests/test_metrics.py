"""gluon_resnest.metrics: top-1/top-5 arithmetic on a fake model, parameter counts, the benchmark's median."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.data import ArrayDataset, DataLoader

from conftest import FakeClock
import gluon_resnest
from gluon_resnest.metrics import accuracy as evaluate, benchmark, count_parameters



# Scores are the data itself (identity "model"); 7 classes; label rank per sample:
# rank 1 for samples 0-3, rank 3 for 4-5, rank 6 for 6, rank 7 (last) for 7-9.
_SCORES = np.tile(np.arange(7, 0, -1, dtype=np.float32), (10, 1))  # class 0 best ... class 6 worst
_LABELS = np.array([0, 0, 0, 0, 2, 2, 5, 6, 6, 6], np.int32)


@pytest.mark.parametrize('ctx, batch', [([mx.cpu()], 3), ([mx.cpu(0), mx.cpu(1)], 4), ([mx.cpu()], 10),
                                        ([mx.cpu(0), mx.cpu(1), mx.cpu(2)], 3)])
def test_evaluate_known_answers(ctx, batch):
    loader = DataLoader(ArrayDataset(mx.nd.array(_SCORES), mx.nd.array(_LABELS)), batch_size=batch)
    seen = []
    result = evaluate(lambda x: x, loader, ctx=ctx, progress=seen.append)
    assert result['top1'] == pytest.approx(0.4)
    assert result['top5'] == pytest.approx(0.6)
    assert result['num_images'] == 10 and sum(seen) == 10
    assert result['images_per_sec'] > 0


def test_evaluate_fewer_than_five_classes():
    scores = np.array([[3, 2, 1], [3, 2, 1], [1, 2, 3]], np.float32)
    loader = DataLoader(ArrayDataset(mx.nd.array(scores), mx.nd.array([1, 0, 0])), batch_size=2)
    result = evaluate(lambda x: x, loader)
    assert result['top1'] == pytest.approx(1 / 3.0) and result['top5'] == pytest.approx(1.0)


def test_evaluate_rejects_labels_beyond_classes():
    loader = DataLoader(ArrayDataset(mx.nd.array(_SCORES[:, :5]), mx.nd.array(_LABELS)), batch_size=4)
    with pytest.raises(ValueError, match='the data has label 6 but the network outputs 5 classes'):
        evaluate(lambda x: x, loader)


def test_count_parameters_matches_published():
    net = gluon_resnest.get_model('resnest14')
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    assert count_parameters(net) == 10611688  # 10.61M in the paper's table


def test_benchmark_reports_median(monkeypatch):
    net = gluon_resnest.get_model('resnest14', classes=4)
    net.initialize()
    seen = []

    def counted(x):
        seen.append(x.shape)
        return net(x)
    monkeypatch.setattr(gluon_resnest.metrics, 'clock', FakeClock([0.5, 0.1, 0.25]))
    result = benchmark(counted, batch_size=2, crop=32, warmup=1, iters=3)
    # 1 warm-up + 3 timed calls on (2, 3, 32, 32); the median batch took 0.25 s: 2 / 0.25 = 8 images/s.
    assert seen == [(2, 3, 32, 32)] * 4
    assert result == {'images_per_sec': 8.0, 'iters': 3, 'batch_size': 2, 'crop': 32}

