"""benchmarks/profile_int8.py: where an INT8 graph's time goes, counted against the graph file itself."""
import collections
import json
import os
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest import get_model
from gluon_resnest.export import export_int8

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import profile_int8  # noqa: E402  pylint: disable=wrong-import-position


@pytest.mark.parametrize('op, group', [('_sg_mkldnn_conv', 'convolutions'),
                                       ('_sg_mkldnn_fully_connected', 'fully connected'),
                                       ('_contrib_quantized_pooling', 'other INT8 operators'),
                                       ('_contrib_dequantize', 'fp32/INT8 conversions'),
                                       ('_contrib_quantize_v2', 'fp32/INT8 conversions'),
                                       ('broadcast_mul', 'fp32 operators'), ('SliceChannel', 'fp32 operators')])
def test_operator_groups(op, group):
    assert profile_int8.operator_group(op) == group


@pytest.mark.slow
def test_profile_counts_every_operator_of_the_deployed_graph(tmp_path, capsys):
    size, batch = 32, 2
    net = get_model('resnest14', classes=10)
    net.initialize(mx.init.Xavier())
    images = mx.nd.array(np.random.RandomState(0).standard_normal((4, 3, size, size)))
    export_int8(net, str(tmp_path), 'q14', images, batch_size=batch)
    prefix = str(tmp_path / 'q14')
    with open(prefix + '-symbol.json') as f:
        graph = collections.Counter(node['op'] for node in json.load(f)['nodes'] if node['op'] != 'null')
    bulk = os.environ.get('MXNET_EXEC_BULK_EXEC_INFERENCE')
    results = profile_int8.main(['--model', 'resnest14', '--prefix', prefix, '--input-size', str(size),
                                 '--batch-size', str(batch), '--warmup', '1', '--runs', '1',
                                 '--json', str(tmp_path / 'profile.json')])
    assert os.environ.get('MXNET_EXEC_BULK_EXEC_INFERENCE') == bulk  # restored
    # The profiler saw each operator of the file once per pass, each in its group.
    assert {op: v['calls'] for op, v in results['operators'].items()} == dict(graph)
    for group in profile_int8.GROUPS:
        assert results['groups'][group]['calls'] == sum(
            n for op, n in graph.items() if profile_int8.operator_group(op) == group)
    assert sum(g['ms'] for g in results['groups'].values()) == pytest.approx(results['operators_ms'])
    # oneDNN's log of the pass: one convolution primitive per convolution operator, a reorder for every
    # fp32/INT8 conversion (the dequantize and quantize_v2 operators are oneDNN reorders).
    onednn = collections.Counter()
    for row in results['onednn']:
        onednn[row['primitive']] += row['calls']
    assert onednn['convolution'] == graph['_sg_mkldnn_conv'] == 27
    assert onednn['pooling_v2'] + onednn['pooling'] == graph['_contrib_quantized_pooling']
    assert sum(r['calls'] for r in results['reorders']) >= results['groups']['fp32/INT8 conversions']['calls']
    assert results['conv_gmacs_per_s'] > 0
    assert results['convolutions_alone_vs_operators'] == pytest.approx(
        results['operators_ms'] / results['groups']['convolutions']['ms'])
    assert results['convolutions_alone_vs_wall'] == pytest.approx(
        results['wall_ms'] / results['groups']['convolutions']['ms'])
    printed = capsys.readouterr().out
    assert '| convolutions | 27 |' in printed and 'jit' in printed
    with open(str(tmp_path / 'profile.json')) as f:
        assert json.load(f)['operators'] == results['operators']


@pytest.mark.parametrize('argv, message', [
    (['--prefix', 'missing'], 'missing-symbol.json does not exist'),
    (['--pretrained', '--params-file', 'f.params'], 'exactly one of --pretrained and --params-file'),
])
def test_bad_usage_is_one_line_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        profile_int8.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
