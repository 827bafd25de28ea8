"""The one-screen summary is computed from the networks."""
from gluon_resnest import summary


def test_summary_prints_every_model(capsys):
    assert summary.main(['resnest14', 'resnest50_fast_1s4x24d']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['model', 'params(M)', 'GFLOPs', 'crop', 'top-1']
    assert lines[2].split() == ['resnest14', '10.61', '2.75', '224', '75.75']
    assert lines[3].split()[:2] == ['resnest50_fast_1s4x24d', '25.68']


def test_macs_scale_with_input_area():
    net = summary.get_model('resnest14')
    # convolutions dominate; the classifier is constant, so 2x the side is a little under 4x the work
    ratio = summary.count_macs(net, 256) / summary.count_macs(net, 128)
    assert 3.9 < ratio < 4.0


def test_unknown_model_is_a_clear_error(capsys):
    assert summary.main(['resnest7']) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'resnest7'; valid names: resnest14")
