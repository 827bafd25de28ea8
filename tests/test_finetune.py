"""Fine-tuning (``--pretrained``, ``--new-classifier``, ``--classifier-lr-mult``, ``--linear-probe``,
``--freeze-bn``) and the held-out split of a folder without val/ (``--val-fraction``)."""
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

import train_imagenet
from conftest import QUICK_FLAGS, assert_resumed_as_uninterrupted, command_error, interrupt_training_at
from gluon_resnest import get_model
from gluon_resnest.config import ConfigError, TrainConfig
from gluon_resnest.data.holdout import HELDOUT_FILE, split_folder, stratified_holdout
from gluon_resnest.fileio import sha1_of
from gluon_resnest.train import build_run, train


def _saved(path, classes, gluoncv=False):
    """A resnest14 ``.params`` file with random weights and running statistics (ours, or GluonCV's class)."""
    if gluoncv:
        from gluoncv.model_zoo import get_model as gluoncv_model  # pylint: disable=import-outside-toplevel
        net = gluoncv_model('resnest14', classes=classes)
    else:
        net = get_model('resnest14', classes=classes)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((2, 3, 32, 32)))
    rng = np.random.RandomState(classes)
    for name, param in net.collect_params().items():
        if name.endswith(('running_mean', 'running_var')):  # distinct from a fresh network's 0 and 1
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    net.save_parameters(str(path))
    return str(path)


@pytest.fixture(scope='module')
def ten_class(tmp_path_factory):
    """A 10-class resnest14 file (the pretraining run of another dataset)."""
    return _saved(tmp_path_factory.mktemp('weights') / 'ten.params', 10)


def _config(data, save_dir, **kwargs):
    values = dict(model='resnest14', data_dir=data, input_size=32, batch_size=8, num_data_workers=0, lr=0.004,
                  num_epochs=1, log_interval=0, progress=False, seed=3, save_dir=str(save_dir),
                  min_random_area=0.5, jitter_param=0, lighting_param=0)
    values.update(kwargs)
    return TrainConfig(**values)


def _arrays(net):
    """{path: numpy copy} of every parameter of ``net`` (the first device's)."""
    return {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items()}  # pylint: disable=W0212


def _body_arrays(net):
    # Read before any inference pass: oneDNN reorders convolution weights in place, asynchronously, then.
    return {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items()  # pylint: disable=W0212
            if not k.startswith('fc.')}


def _file_arrays(path):
    return {k.split(':', 1)[-1]: v.asnumpy() for k, v in mx.nd.load(path).items()}


def _body_keys(arrays):
    return [k for k in arrays if not k.startswith('fc.')]


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize('gluoncv', [False, True], ids=['ours', 'gluoncv'])
def test_body_loaded_bit_for_bit_and_classifier_replaced(tiny, tmp_path, gluoncv):
    path = _saved(tmp_path / 'src.params', 10, gluoncv)
    run = build_run(_config(tiny, tmp_path / 'run', pretrained=path))
    got, saved = _body_arrays(run.net), _file_arrays(path)
    assert len(_body_keys(saved)) == len(got) > 100
    differ = [k for k in _body_keys(saved) if not _same_bits(got[k], saved[k])]
    assert not differ, differ[:3]
    run.net(mx.nd.zeros((2, 3, 32, 32)))  # the new classifier's deferred initialisation
    assert run.net.fc.weight.shape == (3, 2048) and run.net.fc.bias.shape == (3,)
    assert run.config.classifier_lr_mult == 10


def test_same_class_count_keeps_the_classifier_unless_asked(tiny, tmp_path):
    path = _saved(tmp_path / 'three.params', 3)
    saved = _file_arrays(path)
    kept = build_run(_config(tiny, tmp_path / 'a', pretrained=path))
    assert _same_bits(_arrays(kept.net)['fc.weight'], saved['fc.weight'])
    assert kept.config.classifier_lr_mult == 1
    new = build_run(_config(tiny, tmp_path / 'b', pretrained=path, new_classifier=True))
    new.net(mx.nd.zeros((2, 3, 32, 32)))
    weight = _arrays(new.net)['fc.weight']
    assert weight.shape == (3, 2048) and not np.allclose(weight, saved['fc.weight'])
    # Xavier's uniform bound for a (3, 2048) weight: sqrt(3 / ((3 + 2048) / 2)).
    assert np.abs(weight).max() <= np.sqrt(3.0 / ((3 + 2048) / 2.0))
    assert new.config.classifier_lr_mult == 10


def _lr_mults(run):
    """{parameter path: its learning rate / the base rate} as the optimizer computes it."""
    # pylint: disable=protected-access
    optimizer = run.trainer._optimizer
    names = {p.name: k for k, p in run.net._collect_params_with_prefix().items()}
    base = optimizer.learning_rate
    return {names[p.name]: optimizer._get_lr(i) / base for i, p in enumerate(run.trainer._params)}


@pytest.mark.parametrize('asked, expected', [(None, 10.0), (3.0, 3.0)])
def test_classifier_learns_at_its_multiple_of_the_rate(tiny, tmp_path, ten_class, asked, expected):
    run = build_run(_config(tiny, tmp_path, pretrained=ten_class, classifier_lr_mult=asked))
    mults = _lr_mults(run)
    assert mults['fc.weight'] == mults['fc.bias'] == expected
    assert {mults[k] for k in _body_keys(mults)} == {1.0}


def _train_one_epoch(tiny, tmp_path, path, **kwargs):
    run = build_run(_config(tiny, tmp_path, pretrained=path, **kwargs))
    train(run)
    return _arrays(run.net)


def test_linear_probe_trains_the_classifier_alone(tiny, tmp_path, ten_class):
    got, saved = _train_one_epoch(tiny, tmp_path, ten_class, linear_probe=True), _file_arrays(ten_class)
    differ = [k for k in _body_keys(saved) if not _same_bits(got[k], saved[k])]
    assert not differ, differ[:3]  # weights and running statistics
    assert got['fc.weight'].shape == (3, 2048)
    first = build_run(_config(tiny, tmp_path / 'fresh', pretrained=ten_class, linear_probe=True))
    first.net(mx.nd.zeros((2, 3, 32, 32)))
    assert not np.allclose(_arrays(first.net)['fc.weight'], got['fc.weight'])  # the classifier trained


def test_freeze_bn_keeps_running_statistics(tiny, tmp_path, ten_class):
    got, saved = _train_one_epoch(tiny, tmp_path, ten_class, freeze_bn=True), _file_arrays(ten_class)
    stats = [k for k in saved if k.endswith(('running_mean', 'running_var'))]
    assert len(stats) > 30 and all(_same_bits(got[k], saved[k]) for k in stats)
    assert not _same_bits(got['conv1.0.weight'], saved['conv1.0.weight'])  # the body trains
    unfrozen = _train_one_epoch(tiny, tmp_path / 'plain', ten_class)
    assert not _same_bits(unfrozen['bn1.running_mean'], saved['bn1.running_mean'])


def test_published_weights_by_name(tiny, tmp_path, monkeypatch):
    # What get_model(..., pretrained=True) finds: {MXNET_HOME}/models/resnest14-{sha1[:8]}.params, verified.
    from gluon_resnest import pretrained  # pylint: disable=import-outside-toplevel
    source = _saved(tmp_path / 'made.params', 1000)
    entry = pretrained.PUBLISHED['resnest14']._replace(sha1=sha1_of(source))
    monkeypatch.setitem(pretrained.PUBLISHED, 'resnest14', entry)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'home'))
    os.makedirs(str(tmp_path / 'home' / 'models'))
    shutil.copy(source, str(tmp_path / 'home' / 'models' / ('resnest14-%s.params' % entry.sha1[:8])))
    run = build_run(_config(tiny, tmp_path / 'run', pretrained=True))
    assert _same_bits(_arrays(run.net)['layer4.0.conv3.weight'], _file_arrays(source)['layer4.0.conv3.weight'])


def test_body_mismatch_is_one_line_naming_the_parameter(tiny, tmp_path, ten_class, capsys):
    arrays = mx.nd.load(ten_class)
    arrays['layer2.0.conv1.weight'] = mx.nd.zeros((7, 3, 1, 1))
    bad = str(tmp_path / 'bad.params')
    mx.nd.save(bad, arrays)
    args = QUICK_FLAGS + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', str(tmp_path / 'run')]
    status, line = command_error(train_imagenet.main, args + ['--pretrained', bad], capsys)
    assert status == 2
    assert line.startswith('error: --pretrained %s does not fit' % bad) and 'layer2.0.conv1.weight' in line
    del arrays['layer2.0.conv1.weight']
    mx.nd.save(bad, arrays)
    status, line = command_error(train_imagenet.main, args + ['--pretrained', bad], capsys)
    assert status == 2 and 'missing layer2.0.conv1.weight' in line


def test_resume_params_of_other_classes_points_to_pretrained(tiny, tmp_path, ten_class, capsys):
    args = QUICK_FLAGS + ['--data-dir', tiny, '--num-epochs', '1', '--save-dir', str(tmp_path)]
    status, line = command_error(train_imagenet.main, args + ['--resume-params', ten_class], capsys)
    assert status == 2 and 'fc.weight has shape (10, 2048) in the file, (3, 2048)' in line
    assert line.endswith('use --pretrained instead')


@pytest.mark.parametrize('extra, named', [
    (['--pretrained', 'F', '--resume-params', 'F'], '--pretrained and --resume-params both give'),
    (['--pretrained', 'F', '--resume-states', 'F'], '--pretrained starts a new run; --resume-states continues'),
    (['--linear-probe'], '--new-classifier/--linear-probe need --pretrained'),
    (['--pretrained', 'F', '--classifier-lr-mult', '0'], '--classifier-lr-mult must be positive'),
    (['--pretrained', 'missing.params'], '--pretrained file not found: missing.params'),
    (['--val-fraction', '1'], '--val-fraction must be in [0, 1)'),
])
def test_conflicting_or_bad_flags_are_one_line(tiny, tmp_path, ten_class, capsys, extra, named):
    args = QUICK_FLAGS + ['--data-dir', tiny, '--save-dir', str(tmp_path)]
    status, line = command_error(train_imagenet.main, args + [ten_class if a == 'F' else a for a in extra], capsys)
    assert status == 2 and named in line


def test_config_errors_name_the_fields(tiny, ten_class):
    with pytest.raises(ConfigError, match='^pretrained and resume_params both give'):
        TrainConfig(data_dir=tiny, pretrained=ten_class, resume_params=ten_class)
    with pytest.raises(ConfigError, match='^new_classifier/linear_probe need pretrained'):
        TrainConfig(data_dir=tiny, new_classifier=True)


# ---- the held-out split ----

def test_holdout_is_stratified_and_seeded():
    labels = [0] * 10 + [1] * 21 + [2] * 7 + [3] * 2
    held = stratified_holdout(labels, 0.2, seed=5)
    assert held == stratified_holdout(list(labels), 0.2, seed=5)
    counts = np.bincount(np.asarray(labels)[held], minlength=4)
    assert counts.tolist() == [2, 4, 1, 1]  # round(0.2 n), at least one, never the whole class
    assert held != stratified_holdout(labels, 0.2, seed=6)
    # A class's split does not depend on the other classes.
    alone = stratified_holdout([1] * 21, 0.2, seed=5)
    assert [i - 10 for i in held if labels[i] == 1] == alone


def _flat_folder(tiny, root):
    shutil.copytree(os.path.join(tiny, 'train'), str(root))
    return str(root)


def test_split_is_the_same_on_every_worker_and_run(tiny, tmp_path):
    folder = _flat_folder(tiny, tmp_path / 'flat')
    rank0 = split_folder(folder, 0.25, 3, str(tmp_path / 'run0'), write=True)
    rank1 = split_folder(folder, 0.25, 3, str(tmp_path / 'run1'), write=False)
    again = split_folder(folder, 0.25, 3, str(tmp_path / 'run2'), write=True)
    assert rank0[1].items == rank1[1].items == again[1].items
    assert not os.path.exists(str(tmp_path / 'run1' / HELDOUT_FILE))
    assert len(rank0[1]) == 12 and len(rank0[0]) == 36
    assert np.bincount([label for _, label in rank0[1].items]).tolist() == [4, 4, 4]
    assert not {p for p, _ in rank0[0].items} & {p for p, _ in rank0[1].items}
    listed = open(str(tmp_path / 'run0' / HELDOUT_FILE)).read().split()
    assert listed == [os.path.relpath(p, folder) for p, _ in rank0[1].items]
    # A resumed run keeps its list even when the folder gains images.
    shutil.copy(rank0[0].items[0][0], os.path.join(folder, 'class0', 'added.jpg'))
    resumed = split_folder(folder, 0.25, 3, str(tmp_path / 'run0'), resumed=True)
    assert resumed[1].items == rank0[1].items and len(resumed[0]) == 37


@pytest.mark.slow
def test_fine_tuning_resumes_as_uninterrupted(tiny, tmp_path, ten_class, monkeypatch):
    folder, weights = _flat_folder(tiny, tmp_path / 'flat'), str(tmp_path / 'weights.params')
    shutil.copy(ten_class, weights)
    args = QUICK_FLAGS + ['--data-dir', folder, '--val-fraction', '0.25', '--num-epochs', '2', '--save-frequency',
                          '1', '--pretrained', weights, '--classifier-lr-mult', '5']
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'a')]) == 0
    interrupt_training_at(monkeypatch, 6)  # the 2nd batch of the 2nd epoch (4 batches an epoch)
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'b')]) == 130
    monkeypatch.undo()
    os.remove(weights)  # the resumed run continues from its checkpoint, never from the pretrained file
    assert train_imagenet.main(args + ['--save-dir', str(tmp_path / 'b'), '--resume']) == 0
    checkpoint = assert_resumed_as_uninterrupted(str(tmp_path / 'a'), str(tmp_path / 'b'))
    assert (checkpoint['epoch'], checkpoint['num_update']) == (2, 8)
    assert checkpoint['config']['classifier_lr_mult'] == 5
    assert open(str(tmp_path / 'a' / HELDOUT_FILE)).read() == open(str(tmp_path / 'b' / HELDOUT_FILE)).read()


def test_recipe_holds_the_tutorial_values_and_flags_override_it(ten_class):
    config = train_imagenet.parse_args(['--config', 'finetune'])
    assert (config.model, config.pretrained, config.classifier_lr_mult) == ('resnest50', True, 10.0)
    assert (config.lr, config.momentum, config.wd, config.batch_size) == (0.001, 0.9, 1e-4, 64)
    assert (config.lr_mode, config.lr_decay, config.lr_decay_epoch) == ('step', 0.75, (10, 20, 30))
    assert config.num_epochs == 40
    assert (config.jitter_param, config.lighting_param, config.min_random_area) == (0.4, 0.1, 0.08)
    mine = train_imagenet.parse_args(['--config', 'finetune', '--model', 'resnest14', '--pretrained', ten_class])
    assert (mine.model, mine.pretrained) == ('resnest14', ten_class)
