"""Tests of eval.py and gluon_resnest.classification.evaluation: accuracy, protocol, deployed/INT8 models, bad input.

The checkpoint under test is a resnest14 whose classifier is fitted (least squares on its own features) to
known target scores on a 12-image, 6-class folder: 8 images are ranked first (top-1 hits), 2 second
(top-5 hits only) and 2 last (misses). So every path must report top-1 8/12 and top-5 10/12, and anything
that scrambles images, labels, crops or normalisation changes those numbers.
"""
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import FakeClock
import gluon_resnest
from gluon_resnest import EvalConfig
from gluon_resnest.data import EvalTransform, ImageFolder, pack_record
from gluon_resnest.loading import probe_layout
from gluon_resnest.metrics import count_parameters


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import eval as eval_script  # noqa: E402  pylint: disable=wrong-import-position

CROP = 32
CLASSES = 6
SIZES = [(40, 52), (45, 37)]
TOP1, TOP5 = 8 / 12, 10 / 12  # fractions, as every record reports accuracy
# The paper's parameter counts; resnest50_fast_1s1x64d is listed as 26.3M but GluonCV's ResNeSt class
# with the same settings (radix 1, avd_first) has 26,217,896 parameters, as ours does.
PUBLISHED_PARAMS = {'resnest14': 10.61, 'resnest26': 17.07, 'resnest50': 27.48, 'resnest101': 48.28,
                    'resnest200': 70.20, 'resnest269': 110.93, 'resnest50_fast_1s1x64d': 26.2,
                    'resnest50_fast_2s1x64d': 27.5, 'resnest50_fast_4s1x64d': 31.9,
                    'resnest50_fast_1s2x40d': 25.9, 'resnest50_fast_2s2x40d': 26.9,
                    'resnest50_fast_4s2x40d': 30.4, 'resnest50_fast_1s4x24d': 25.7}


def _targets(labels):
    """Target scores: the true class first (8 images), second (2), or last (2)."""
    targets = np.zeros((len(labels), CLASSES), np.float32)
    for i, label in enumerate(labels):
        if i in (3, 9):       # top-5 only: another class scores higher
            targets[i, label], targets[i, (label + 1) % CLASSES] = 1.0, 2.0
        elif i in (5, 10):    # miss: the true class scores lowest
            targets[i] = 1.0
            targets[i, label] = -1.0
        else:
            targets[i, label] = 1.0
    return targets


def _fit_classifier(net, folder):
    """Set ``net.fc`` so that its scores on ``folder`` (through the eval transform) are :func:`_targets`."""
    transform = EvalTransform(CROP)
    images = mx.nd.stack(*[transform(img) for img, _ in folder])
    feats = net.flat(net.avgpool(net.features(mx.nd, images))).asnumpy().astype(np.float64)
    feats = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    solution = np.linalg.lstsq(feats, _targets([label for _, label in folder.items]), rcond=None)[0]
    net.fc.weight.set_data(mx.nd.array(solution[:-1].T))
    net.fc.bias.set_data(mx.nd.array(solution[-1]))
    return images


def _gluoncv_export_block(*args, **kwargs):
    """GluonCV's ``export_block``, without its lasting side effect on this process.

    It pops ``box_encode`` from ``mx.sym.contrib`` and never puts it back; GluonCV's R-CNN box encoder
    then traces a graph without its ``means``/``stds`` constants, and the first training step of any
    Faster-RCNN built later in the process fails in shape inference.
    """
    from gluoncv.utils import export_block  # pylint: disable=import-outside-toplevel
    saved = mx.sym.contrib.__dict__.get('box_encode')
    try:
        export_block(*args, **kwargs)
    finally:
        if saved is not None:
            mx.sym.contrib.box_encode = saved
    assert 'box_encode' in mx.sym.contrib.__dict__


@pytest.fixture(scope='module')
def assets(tmp_path_factory, image_folder):
    """Folder, .rec/.idx, checkpoint, and fp32 / folded-preprocessing / INT8 exports of the same net."""
    base = tmp_path_factory.mktemp('eval')
    folder = image_folder(base / 'val', classes=CLASSES, sizes=SIZES)
    dataset = ImageFolder(folder)
    pack_record(dataset, str(base / 'val.rec'))
    mx.random.seed(0)
    net = gluon_resnest.get_model('resnest14', classes=CLASSES)
    net.initialize(mx.init.Xavier())
    images = _fit_classifier(net, dataset)
    net.save_parameters(str(base / 'r14.params'))
    net.hybridize()
    net(images)
    net.export(str(base / 'r14'))
    _gluoncv_export_block(str(base / 'r14nhwc'), net, data_shape=(CROP, CROP, 3), preprocess=True)
    from mxnet.contrib.quantization import quantize_net  # pylint: disable=import-outside-toplevel
    qnet = quantize_net(net, quantized_dtype='auto', calib_mode='naive', ctx=mx.cpu(),
                        calib_data=mx.io.NDArrayIter(images, batch_size=len(images)),
                        num_calib_examples=len(images))
    qnet(images)
    qnet.export(str(base / 'r14int8'))
    return {'dir': str(base), 'folder': folder, 'rec': str(base / 'val.rec'),
            'idx': str(base / 'val.idx'), 'params': str(base / 'r14.params'),
            'prefix': str(base / 'r14'), 'nhwc': str(base / 'r14nhwc'),
            'int8': str(base / 'r14int8')}


def cli_eval(argv):
    """The record of eval.py's command line ``argv`` (its flags parsed as the command parses them)."""
    return gluon_resnest.evaluate(eval_script.parse_args(argv))


def run_eval(*argv):
    """:func:`cli_eval` with tiny crop and batches, no workers, no bar."""
    base = ['--crop-size', str(CROP), '--batch-size', '5', '-j', '0', '--no-progress']
    return cli_eval(list(argv) + base)


def api_eval(**fields):
    """gluon_resnest.evaluate with the same small settings as :func:`run_eval`."""
    settings = dict(input_size=CROP, batch_size=5, num_data_workers=0, progress=False)
    settings.update(fields)
    return gluon_resnest.evaluate(EvalConfig(**settings))


# ---- eval.py end to end ---------------------------------------------------------------------------

def test_folder_accuracy(assets):
    result = run_eval('--model', 'resnest14', '--params-file', assets['params'],
                      '--data-dir', assets['dir'])
    assert result.top1 == pytest.approx(TOP1) and result.top5 == pytest.approx(TOP5)
    assert not hasattr(result, 'top1_err')  # the error is 1 - top1; reports print both
    assert result.num_images == 12 and result.params == count_parameters(
        gluon_resnest.get_model('resnest14', classes=CLASSES, pretrained=assets['params']))


def test_record_gives_same_accuracy_as_folder(assets):
    by_folder = run_eval('--model', 'resnest14', '--params-file', assets['params'],
                         '--data-dir', assets['folder'])
    by_record = run_eval('--model', 'resnest14', '--params-file', assets['params'],
                         '--rec-val', assets['rec'], '--rec-val-idx', assets['idx'])
    assert (by_record.top1, by_record.top5, by_record.num_images) == \
        (by_folder.top1, by_folder.top5, by_folder.num_images)
    assert (by_folder.top1, by_folder.top5) == (pytest.approx(TOP1), pytest.approx(TOP5))


def test_worker_processes_give_same_result(assets):
    result = cli_eval([
        '--model', 'resnest14', '--params-file', assets['params'], '--rec-val', assets['rec'],
        '--crop-size', str(CROP), '--batch-size', '4', '-j', '2', '--no-progress'])
    assert (result.top1, result.top5) == (pytest.approx(TOP1), pytest.approx(TOP5))


def test_other_crop_changes_the_answer(assets):
    # The classifier was fitted at crop 32: another protocol must not reproduce its numbers.
    result = cli_eval([
        '--model', 'resnest14', '--params-file', assets['params'], '--data-dir', assets['folder'],
        '--crop-size', str(CROP), '--crop-ratio', '0.5', '-j', '0', '--no-progress'])
    assert result.top1 != pytest.approx(TOP1) or result.top5 != pytest.approx(TOP5)


def test_float16_needs_gpu(assets):
    # MXNet 1.9 has no float16 GEMM on CPU; the CPU run must say so rather than fail deep inside.
    with pytest.raises(ValueError, match='dtype float16 needs gpus'):
        api_eval(model='resnest14', params_file=assets['params'], data_dir=assets['folder'], dtype='float16')


@pytest.mark.parametrize('key, layout', [('prefix', 'NCHW'), ('nhwc', 'NHWC')])
def test_deploy_matches_checkpoint(assets, key, layout):
    assert probe_layout(mx.sym.load(assets[key] + '-symbol.json'), 'data', CROP) == (layout, CLASSES)
    result = run_eval('--deploy', '--model-prefix', assets[key], '--data-dir', assets['folder'])
    assert (result.top1, result.top5) == (pytest.approx(TOP1), pytest.approx(TOP5))
    assert result.num_images == 12 and not result.quantized
    assert result.params == count_parameters(
        gluon_resnest.get_model('resnest14', classes=CLASSES, pretrained=assets['params']))


def test_quantized(assets):
    result = run_eval('--quantized', '--model-prefix', assets['int8'], '--data-dir', assets['folder'])
    assert result.quantized and result.num_images == 12
    # The target scores have margins of >= 1, which INT8 rounding does not flip.
    assert (result.top1, result.top5) == (pytest.approx(TOP1), pytest.approx(TOP5))


@pytest.fixture(scope='module')
def project_exports(assets):
    """The same checkpoint exported by gluon_resnest.export (fp32 and INT8, with and without folded
    preprocessing), as users of the export tools get it."""
    from gluon_resnest.export import export_int8, export_mxnet  # pylint: disable=import-outside-toplevel
    from gluon_resnest.export.int8_export import calibration_images  # pylint: disable=import-outside-toplevel
    net = gluon_resnest.get_model('resnest14', classes=CLASSES)
    net.load_parameters(assets['params'])
    out = os.path.join(assets['dir'], 'exports')
    prefixes = {}
    for preprocess in (False, True):
        tag = 'raw' if preprocess else 'nchw'
        export_mxnet(net, out, 'fp32-' + tag, input_size=CROP, preprocess=preprocess)
        images = calibration_images(assets['folder'], CROP, 12, preprocess=preprocess)
        export_int8(net, out, 'int8-' + tag, images, batch_size=12, preprocess=preprocess)
        for name in ('fp32-' + tag, 'int8-' + tag):
            prefixes[name] = os.path.join(out, name)
    return prefixes


@pytest.mark.slow
@pytest.mark.parametrize('name', ['fp32-nchw', 'fp32-raw', 'int8-nchw', 'int8-raw'])
def test_project_exports(assets, project_exports, name):
    flag = '--quantized' if name.startswith('int8') else '--deploy'
    result = run_eval(flag, '--model-prefix', project_exports[name], '--rec-val', assets['rec'])
    assert result.quantized == name.startswith('int8') and result.num_images == 12
    assert (result.top1, result.top5) == (pytest.approx(TOP1), pytest.approx(TOP5))


def test_quantized_flag_rejects_float_graph(assets):
    with pytest.raises(ValueError, match='has no INT8 operators'):
        api_eval(quantized=True, model_prefix=assets['prefix'], data_dir=assets['folder'])


def test_json_output(assets, tmp_path, capsys):
    out = tmp_path / 'sub' / 'result.json'
    result = run_eval('--model', 'resnest14', '--params-file', assets['params'], '--rec-val', assets['rec'],
                      '--json', str(out))
    saved = json.loads(out.read_text())
    assert saved == result.to_dict()  # the record gluon_resnest.evaluate returns is the file
    assert saved['top1'] == pytest.approx(TOP1) and saved['top5'] == pytest.approx(TOP5)
    assert saved['model'] == 'resnest14' and saved['crop'] == CROP and saved['num_images'] == 12
    assert os.listdir(str(out.parent)) == ['result.json']
    assert saved['top1'] == result.top1 and 0 <= saved['top1'] <= 1


def test_cli_prints_percent_and_writes_fractions(assets, tmp_path, capsys):
    out = tmp_path / 'result.json'
    status = eval_script.main(['--model', 'resnest14', '--params-file', assets['params'], '--rec-val', assets['rec'],
                               '--crop-size', str(CROP), '-j', '0', '--no-progress', '--json', str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and 'top-1: %.2f%% (error %.2f%%)' % (100 * TOP1, 100 - 100 * TOP1) in printed
    assert 'top-5: %.2f%%' % (100 * TOP5) in printed and 'images/s' in printed
    assert json.loads(out.read_text())['top1'] == pytest.approx(TOP1)


def test_benchmark_cli(capsys):
    argv = ['--model', 'resnest14', '--benchmark', '--crop-size', '32', '--batch-size', '2', '--warmup', '1',
            '--iters', '2']
    result = cli_eval(argv)
    assert result.images_per_sec > 0 and result.params == 10611688 and result.top1 is None
    assert eval_script.main(argv) == 0
    assert 'median of 2 batches of 2' in capsys.readouterr().out


@pytest.mark.parametrize('key', ['prefix', 'nhwc', 'int8'])
def test_benchmark_deployed(assets, key, monkeypatch):
    monkeypatch.setattr(gluon_resnest.metrics, 'clock', FakeClock([0.4, 0.1, 0.2]))
    result = cli_eval([
        '--deploy', '--model-prefix', assets[key], '--benchmark', '--crop-size', str(CROP),
        '--batch-size', '2', '--warmup', '1', '--iters', '3'])
    # Median 0.2 s per batch of 2; the deployed graph's parameters are the checkpoint's.
    assert result.images_per_sec == pytest.approx(10.0) and result.quantized == (key == 'int8')
    assert result.source == assets[key] and result.crop == CROP
    if key != 'int8':
        assert result.params == count_parameters(
            gluon_resnest.get_model('resnest14', classes=CLASSES, pretrained=assets['params']))


@pytest.mark.parametrize('name, crop', [('resnest14', 224), ('resnest101', 256), ('resnest200', 320),
                                        ('resnest269', 416)])
def test_default_crop_is_published(name, crop):
    assert EvalConfig(model=name, benchmark=True).input_size == crop
    assert eval_script.parse_args(['--model', name, '--benchmark']).input_size == crop
    assert eval_script.parse_args(['--model', name, '--benchmark', '--crop-size', '64']).input_size == 64


# ---- bad input ---------------------------------------------------------------------------------

def test_params_of_another_model(assets):
    with pytest.raises(ValueError, match='does not fit this network: missing .*another model than resnest26'):
        api_eval(model='resnest26', params_file=assets['params'], data_dir=assets['folder'])


def test_params_with_other_class_count(assets):
    with pytest.raises(ValueError, match='has a 6-class classifier but 1000 classes were asked for'):
        api_eval(model='resnest14', params_file=assets['params'], classes=1000, data_dir=assets['folder'])


def test_data_with_other_class_count(assets, tmp_path, image_folder):
    other = image_folder(tmp_path / 'val', classes=3, sizes=SIZES)
    with pytest.raises(ValueError, match='the data has 3 classes but the network outputs 6.*class_subset'):
        api_eval(model='resnest14', params_file=assets['params'], data_dir=other)


def test_class_subset_scores_the_first_outputs(assets, tmp_path):
    # The first 3 classes of the 6-class folder, with their labels: scored on outputs 0-2 only.
    subset = tmp_path / 'val'
    subset.mkdir()
    for synset in sorted(os.listdir(assets['folder']))[:3]:
        os.symlink(os.path.join(assets['folder'], synset), str(subset / synset))
    result = api_eval(model='resnest14', params_file=assets['params'], data_dir=str(subset), class_subset=True)
    # Independent reference: the checkpoint's scores on the same crops, restricted to classes 0-2.
    net = gluon_resnest.get_model('resnest14', classes=CLASSES, pretrained=assets['params'])
    folder = ImageFolder(str(subset))
    images = mx.nd.stack(*[EvalTransform(CROP)(img) for img, _ in folder])
    scores = net(images)[:, :3].asnumpy()
    labels = np.array([label for _, label in folder.items])
    assert result.num_images == len(labels)
    assert result.top1 == pytest.approx(np.mean(scores.argmax(axis=1) == labels))
    assert result.top5 == pytest.approx(1.0)  # top-min(5, 3) of 3 classes


@pytest.mark.parametrize('argv, message', [
    (['--data-dir', '{dir}/missing'], 'data folder not found: .*missing'),
    (['--rec-val', '{dir}/missing.rec'], 'record file not found'),
    (['--rec-val', '{rec}', '--rec-val-idx', '{dir}/missing.idx'], 'record index not found'),
])
def test_missing_data(assets, argv, message, capsys):
    # A file named on the command line that is missing is bad usage: status 2, one line.
    argv = [a.format(**assets) for a in argv]
    assert eval_script.main(['--model', 'resnest14', '--params-file', assets['params'], '-j', '0'] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match('error: ' + message, err[0])


def test_missing_params_and_exports(assets):
    with pytest.raises(FileNotFoundError, match='params file not found'):
        api_eval(model='resnest14', params_file=assets['dir'] + '/nope.params', data_dir=assets['folder'])
    with pytest.raises(FileNotFoundError, match='exported model file not found: .*nope-symbol.json'):
        api_eval(deploy=True, model_prefix=assets['dir'] + '/nope', data_dir=assets['folder'])


def test_crop_too_small(assets):
    with pytest.raises(ValueError, match='input_size must be >= 32'):
        EvalConfig(model='resnest14', params_file=assets['params'], data_dir=assets['folder'], input_size=16)
    with pytest.raises(ValueError, match='input_size must be >= 32'):
        EvalConfig(deploy=True, model_prefix=assets['prefix'], data_dir=assets['folder'], input_size=16)


@pytest.mark.parametrize('argv, message', [
    (['--model', 'resnest15', '--pretrained', '--data-dir', 'x'], "unknown --model 'resnest15'"),
    (['--model', 'resnest14', '--pretrained'], 'exactly one of --data-dir and --rec-val'),
    (['--model', 'resnest14', '--benchmark', '--gpus', '0,a'], 'comma-separated GPU ids'),
    (['--model', 'resnest14', '--benchmark', '--crop-size', '16'], '--input-size must be >= 32'),
    (['--model', 'resnest14', '--pretrained', '--data-dir', 'x', '--rec-val', 'y'], 'exactly one of'),
    (['--model', 'resnest14', '--data-dir', 'x'], 'pass --pretrained or --params-file'),
    (['--pretrained', '--data-dir', 'x'], '--model is required'),
    (['--deploy', '--data-dir', 'x'], 'need --model-prefix'),
    (['--deploy', '--model-prefix', 'p', '--params-file', 'f', '--data-dir', 'x'], 'drop --pretrained'),
    (['--quantized', '--model-prefix', 'p', '--data-dir', 'x', '--dtype', 'float16'], 'float32 input'),
    (['--model', 'resnest14', '--benchmark', '--batch-size', '0'], '--batch-size must be >= 1'),
    (['--model', 'resnest14', '--pretrained', '--params-file', 'f', '--data-dir', 'x'],
     'give exactly one of --pretrained and --params-file'),
    (['--model', 'resnest14', '--benchmark', '--iters', 'two'], "argument --iters: invalid int value: 'two'"),
])
def test_bad_arguments(capsys, argv, message):
    assert eval_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]


def test_flags_map_onto_the_config():
    config = eval_script.parse_args(['--model', 'ResNeSt50', '--params-file', 'f.params', '--rec-val', 'v.rec',
                                     '--crop-size', '64', '--crop-ratio', '0.5', '--batch-size', '3', '-j', '2',
                                     '--num-gpus', '0', '--json', 'r.json', '--no-progress', '--class-subset'])
    assert config == EvalConfig(model='resnest50', params_file='f.params', rec_val='v.rec', input_size=64,
                                crop_ratio=0.5, batch_size=3, num_data_workers=2, gpus=(), json='r.json',
                                progress=False, class_subset=True)
    assert eval_script.parse_args(['--model', 'resnest14', '--benchmark']).progress is None


def test_cli_reports_one_line_error(assets):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval.py'), '--model', 'resnest26',
                           '--params-file', assets['params'], '--data-dir', assets['folder']],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'another model than resnest26' in last


def test_pretrained_uses_published_store(monkeypatch, tmp_path):
    net = gluon_resnest.get_model('resnest14')
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    saved = str(tmp_path / 'resnest14-7e0b0cae.params')
    net.save_parameters(saved)
    calls = []

    def fake_store(name, root=None):
        calls.append((name, root))
        return saved

    monkeypatch.setattr(gluon_resnest.model_zoo, 'get_model_file', fake_store)
    result = cli_eval([
        '--model', 'resnest14', '--pretrained', '--model-root', str(tmp_path), '--benchmark',
        '--crop-size', '32', '--batch-size', '1', '--warmup', '0', '--iters', '1'])
    assert calls == [('resnest14', str(tmp_path))]
    assert result.source == 'published' and result.params == 10611688


def test_pretrained_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')
    with pytest.raises(RuntimeError, match='could not download weights of resnest14'):
        api_eval(model='resnest14', pretrained=True, model_root=str(tmp_path), benchmark=True)


@pytest.mark.parametrize('gpus, message', [('99', 'gpus 99: MXNet .* sees .* GPU'),
                                            ('0,a', 'gpus takes comma-separated GPU ids')])
def test_bad_gpus_are_a_clear_error(gpus, message):
    with pytest.raises(ValueError, match=message):
        api_eval(model='resnest14', benchmark=True, gpus=gpus)


@pytest.mark.slow
@pytest.mark.parametrize('name', gluon_resnest.list_models())
def test_every_model_runs(name):
    result = cli_eval([
        '--model', name, '--benchmark', '--crop-size', '32', '--batch-size', '1', '--warmup', '0',
        '--iters', '1'])
    assert result.images_per_sec > 0
    # The published parameter counts, to the digits published (0.01M, 0.1M for the fast models).
    digits = 1 if 'fast' in name else 2
    assert round(result.params / 1e6, digits) == pytest.approx(PUBLISHED_PARAMS[name])
