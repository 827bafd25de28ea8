"""benchmarks/bench_resnest50.py's bookkeeping: the order of interleaved timed runs and the ratios
its rows report (speed itself is never asserted; no network is built here)."""
import os
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope='module')
def bench():
    # The benchmark sets two MXNet variables for its own process at import; keep them out of the tests'.
    saved = {key: os.environ.get(key) for key in ('OMP_NUM_THREADS', 'MXNET_CPU_TEMP_COPY')}
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    try:
        import bench_resnest50  # pylint: disable=import-outside-toplevel
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return bench_resnest50


def test_rounds_start_with_each_implementation_in_turn(bench):
    calls = []

    def timer(name, rates):
        rates = iter(rates)
        return lambda: calls.append(name) or next(rates)

    timers = {'ours': timer('ours', [1, 2, 3, 4, 5]), 'gluoncv': timer('gluoncv', [6, 7, 8, 9, 10]),
              'torch': timer('torch', [11, 12, 13, 14, 15])}
    rates = bench.interleaved(timers, runs=4, warmup=1)
    assert calls == ['ours', 'gluoncv', 'torch',              # warm-up, untimed
                     'ours', 'gluoncv', 'torch', 'gluoncv', 'torch', 'ours',
                     'torch', 'ours', 'gluoncv', 'ours', 'gluoncv', 'torch']
    assert rates == {'ours': [2, 3, 4, 5], 'gluoncv': [7, 8, 9, 10], 'torch': [12, 13, 14, 15]}


def test_ratios_are_medians_of_per_round_ratios(bench):
    # Load that comes and goes hits both sides of a round: every per-round ratio but one is 0.5, while
    # the ratio of the medians (5 / 8) would be 0.625.
    rates = {'ours': [4.0, 5.0, 2.0, 6.0, 5.0], 'resnet': [8.0, 10.0, 4.0, 12.0, 8.0]}
    row = bench.summarize('training', 8, rates)
    assert row['ours'] == 5.0 and row['resnet'] == 8.0
    assert row['ratios'] == {'resnet': pytest.approx(0.5)}
    assert row['runs'] is rates and row['mode'] == 'training' and row['batch'] == 8
    assert 'ours 0.50x' in bench.format_row(row) and 'resnet50_v1b    8.0' in bench.format_row(row)
