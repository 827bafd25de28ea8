"""Every command and API takes a network name the same way: case-insensitive, one message when unknown."""
import pytest

import gluon_resnest
from gluon_resnest import config, loading, summary
from gluon_resnest.export import torch_convert
from gluon_resnest.detection import train as detection_train
from gluon_resnest.detection import fpn
from gluon_resnest.gluoncv import segmentation


def _summary(name):
    args = summary.parse_args([name])
    assert summary.main([name]) == 0
    return args.models[0]


# Each entry point with what it calls the name; all return or use the lower-case key.
ENTRY_POINTS = {
    'get_model': (lambda name: gluon_resnest.get_model(name).model_name, 'model'),
    'config.check_model': (config.check_model, 'model'),
    'loading.load_network': (lambda name: loading.load_network(name).model_name, 'model'),
    'summary': (_summary, 'model'),
    'segmentation backbone': (lambda name: segmentation._check_ours(name) or name.lower(),  # pylint: disable=W0212
                              'ResNeSt backbone'),
    'detection backbone': (fpn.check_backbone, 'ResNeSt backbone'),
    'detection command': (lambda name: detection_train.DetectionConfig(network=name).network, 'network'),
}


@pytest.mark.parametrize('entry', sorted(ENTRY_POINTS))
def test_mixed_case_name_is_the_published_network(entry):
    call, _ = ENTRY_POINTS[entry]
    assert call('ResNeSt14') == 'resnest14'


@pytest.mark.parametrize('entry', sorted(ENTRY_POINTS))
def test_unknown_name_gives_one_message(entry):
    call, role = ENTRY_POINTS[entry]
    with pytest.raises((ValueError, SystemExit)) as err:
        call('resnest7')
    message = str(err.value)
    assert '\n' not in message
    assert ("unknown %s 'resnest7'; valid names: %s" % (role, ', '.join(gluon_resnest.list_models()))
            in message)


def test_torch_converter_checks_the_name_first():
    with pytest.raises(ValueError, match="^unknown model 'resnest7'; valid names: resnest14, "):
        torch_convert.convert_state_dict({}, 'resnest7')
    # a mixed-case name is accepted and reaches the state-dict check
    with pytest.raises(ValueError, match='no fc.weight'):
        torch_convert.convert_state_dict({}, 'ResNeSt14')
