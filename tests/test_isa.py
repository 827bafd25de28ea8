"""Training under every oneDNN instruction-set level this CPU offers.

oneDNN picks its kernels by the widest instruction set allowed, and with them the channel blocking of
feature maps and gradients (16 channels with AVX-512 where a convolution's groups allow it, 8 with AVX2):
a graph that trains at one level can fail at another. Each test here runs tests in a subprocess with
``DNNL_MAX_CPU_ISA`` set to one level: AVX2, and AVX512_CORE and AVX512_CORE_VNNI where /proc/cpuinfo
lists them (a skip names the missing flags otherwise). Every level prints the summary of its run (``-s``)
and the skips say which levels this machine could not run (``-rs``).
"""
import pytest

from conftest import isa_level_params, run_under_isa

import gluon_resnest
from gluon_resnest.inference import fusion_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fusion_available(),
                                 reason='the fused training graph is for MXNet oneDNN builds')]

# The tests that compare the CPU training graph (BatchNorm+ReLU fused) with the same layers run eagerly:
# values, every gradient and the running statistics.
TRAINING_GRAPH_TESTS = ['tests/test_training_graph.py',
                        'tests/test_split_attention.py::test_pooling_the_splits_first_equals_pooling_the_output']


@pytest.mark.parametrize('level', isa_level_params())
def test_training_graphs_equal_eager_layers_at(level):
    summary = run_under_isa(level, TRAINING_GRAPH_TESTS)
    assert ' passed' in summary and 'failed' not in summary and 'error' not in summary, summary


@pytest.mark.parametrize('level', isa_level_params())
def test_inference_form_equals_the_trained_network_at(level):
    # The split attention's inference form (the graph INT8 export quantizes), eager and hybridized, and
    # its INT8 graph.
    summary = run_under_isa(level, ['tests/test_attention_inference.py'])
    assert summary.startswith('7 passed'), summary


@pytest.mark.parametrize('level', isa_level_params())
def test_every_network_trains_fused_and_unfused_at(level):
    summary = run_under_isa(level, ['tests/isa_training_steps.py'])
    assert summary.startswith('%d passed' % len(gluon_resnest.list_models())), summary
