"""benchmarks/bench_data.py on a small generated RecordIO: its loaders deliver real batches and its
table and JSON line report the same figures (speed itself is never asserted)."""
import json
import os
import sys

import numpy as np

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import bench_data  # noqa: E402  pylint: disable=wrong-import-position


def test_loaders_deliver_normalised_batches_of_the_file(tmp_path):
    rec = str(tmp_path / 'photos.rec')
    bench_data.write_photo_rec(rec, 24)
    labels = set()
    for make in (bench_data.python_loader, bench_data.gluon_transforms_loader, bench_data.recordio_loader):
        loader, set_epoch = make(rec, 8, 32, 1)
        set_epoch(0)
        batches = list(loader)
        assert len(batches) == 3
        for data, label in batches:
            assert data.shape == (8, 3, 32, 32) and data.dtype == np.float32
            # Normalised photographs: centred near 0, spread near 1, not raw 0..255 pixels.
            assert -3 < float(data.mean().asscalar()) < 3 and float(data.abs().max().asscalar()) < 6
            labels.update(int(v) for v in label.asnumpy())
    assert labels == set(range(10))  # the generator labels image i with i % 10


def test_table_and_json_line_agree(capsys):
    bench_data.main(['--images', '32', '--threads', '1', '--batch-size', '8', '--input-size', '32',
                     '--runs', '1', '--json'])
    lines = capsys.readouterr().out.strip().splitlines()
    row = [cell.strip() for cell in lines[-2].strip('|').split('|')]
    record = json.loads(lines[-1])
    assert record['threads'] == 1 and row[0] == '1'
    speeds = [float(row[i]) for i in (1, 2, 3, 4)]
    assert speeds == [record['python'], record['gluon_transforms'], record['recordio'], record['bare_imagerecorditer']]
    # The ratios are of the unrounded speeds, printed to 0.01; the speeds above are rounded to 0.1.
    assert abs(float(row[5].rstrip('x')) - speeds[0] / speeds[1]) <= 0.01
    assert abs(float(row[6].rstrip('x')) - speeds[2] / speeds[1]) <= 0.01
    assert abs(float(row[7]) - speeds[2] / speeds[3]) <= 0.01


def test_auto_aug_mode_times_the_two_loaders_with_autoaugment(capsys):
    bench_data.main(['--images', '16', '--threads', '1', '--batch-size', '8', '--input-size', '32',
                     '--runs', '1', '--json', '--auto-aug'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert 'AutoAugment' in lines[-4] and len(lines[-2].strip('|').split('|')) == 4
    record = json.loads(lines[-1])
    assert sorted(record['by_threads']['1']) == ['gluon_transforms', 'python']
    row = [float(cell.strip().rstrip('x')) for cell in lines[-2].strip('|').split('|')]
    assert row[1:3] == [record['python'], record['gluon_transforms']]
    assert abs(row[3] - row[1] / row[2]) <= 0.01


def test_eval_loaders_deliver_the_same_batches_and_are_reported(tmp_path, capsys):
    rec = str(tmp_path / 'photos.rec')
    bench_data.write_photo_rec(rec, 10)
    batches = {}
    for name, (loader, set_epoch) in bench_data.eval_loaders(rec, 4, 32, 1).items():
        set_epoch(0)
        batches[name] = [(d.asnumpy(), l.asnumpy()) for d, l in loader]
    assert [len(d) for d, _ in batches['shared_batches']] == [4, 4, 2]
    for (data, label), (want, want_label) in zip(batches['shared_batches'], batches['dataloader']):
        np.testing.assert_array_equal(data, want)
        np.testing.assert_array_equal(label, want_label)
    bench_data.main(['--rec', rec, '--threads', '1', '--batch-size', '4', '--input-size', '32', '--runs', '1',
                     '--json'])
    lines = capsys.readouterr().out.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith('| eval workers'))
    row = [cell.strip() for cell in lines[header + 2].strip('|').split('|')]
    record = json.loads(lines[-1])['eval']
    assert row[0] == '1' and [float(row[1]), float(row[2])] == [record['shared_batches'], record['dataloader']]
    assert record['by_threads'] == {'1': {'shared_batches': record['shared_batches'],
                                          'dataloader': record['dataloader']}}


def test_320_mode_times_the_two_loaders_with_the_efficientnet_pipeline(capsys):
    bench_data.main(['--images', '8', '--threads', '1', '--batch-size', '4', '--input-size', '320',
                     '--runs', '1', '--json'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert 'efficientnet pipeline' in lines[-4] and len(lines[-2].strip('|').split('|')) == 4
    record = json.loads(lines[-1])
    assert sorted(record['by_threads']['1']) == ['gluon_transforms', 'python']
    row = [float(cell.strip().rstrip('x')) for cell in lines[-2].strip('|').split('|')]
    assert row[1:3] == [record['python'], record['gluon_transforms']]


def test_pipeline_statistics_reports_each_pair(capsys):
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    import pipeline_statistics  # pylint: disable=import-outside-toplevel
    pipeline_statistics.main(['--images', '4', '--draws', '1', '--input-size', '32', '--json'])
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    assert sorted(record) == ['fast vs reference_a', 'fast_inception vs reference_a', 'reference_a vs reference_b']
    for label, figures in record.items():
        row = next(line for line in lines if line.startswith('| %s |' % label))
        assert row == '| %s | mean %.3f | std %.3f |' % (label, figures['mean'], figures['std'])
        assert 0 <= figures['mean'] < 3 and 0 <= figures['std'] < 3
    # Below 320 the default pipeline is the inception one: the two fast samples are the same images.
    assert record['fast vs reference_a'] == record['fast_inception vs reference_a']
