"""Shared test fixtures and data writers for gluon_resnest (test modules never import each other)."""
import ctypes
import gc
import os
import sys
import socket
import subprocess

import cv2

# Under pytest-xdist (-n auto) the workers share the cores: one compute thread each unless set otherwise
# (MXNet reads the variable when it loads; more OpenMP threads than cores spin and slow every worker).
if 'PYTEST_XDIST_WORKER' in os.environ:
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import gluon_resnest  # noqa: E402  (first: it loads MXNet, see gluon_resnest_compat.import_mxnet)
import mxnet as mx  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np
import pytest
from gluoncv.data.batchify import MaskRCNNTrainBatchify
from gluoncv.data.transforms.presets.rcnn import MaskRCNNDefaultTrainTransform
from mxnet import autograd, gluon

from gluon_resnest.data import ImageFolder, pack_record
from gluon_resnest.threads import available_cores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bound on every training subprocess a test starts (scheduler, server, workers, horovodrun).
SUBPROCESS_TIMEOUT = 300

# (height, width) of the images make_image_folder writes per class; odd sizes exercise crop rounding.
SIZES = [(40, 52), (61, 45), (48, 48)]


# ---- oneDNN instruction-set levels: tests run again in a subprocess with DNNL_MAX_CPU_ISA set ----

# DNNL_MAX_CPU_ISA value -> (the /proc/cpuinfo flags it needs, oneDNN's name of it in its verbose log).
# oneDNN picks its kernels, and with them the layouts of feature maps, by the widest level allowed.
ISA_LEVELS = {
    'AVX2': (('avx2', 'fma'), 'Intel AVX2'),
    'AVX512_CORE': (('avx512f', 'avx512bw', 'avx512vl', 'avx512dq'),
                    'Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions'),
    'AVX512_CORE_VNNI': (('avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_vnni'),
                         'Intel AVX-512 with Intel DL Boost'),
}
ISA_BANNER = ('import mxnet as mx\n'
              'mx.nd.Convolution(mx.nd.ones((1, 8, 4, 4)), mx.nd.ones((8, 8, 3, 3)), kernel=(3, 3), '
              'num_filter=8, no_bias=True).wait_to_read()\n')


def cpu_flags():
    """The instruction-set flags /proc/cpuinfo lists for this CPU (empty where it cannot be read)."""
    try:
        with open('/proc/cpuinfo') as f:
            lines = [line for line in f if line.startswith('flags')]
    except OSError:
        return set()
    return set(lines[0].split(':', 1)[1].split()) if lines else set()


def isa_level_params():
    """One pytest param per level of :data:`ISA_LEVELS` (id = the level), marked skip, with the missing
    flags named, where this CPU lacks them."""
    flags, params = cpu_flags(), []
    for level, (needs, _) in ISA_LEVELS.items():
        missing = [flag for flag in needs if flag not in flags]
        marks = pytest.mark.skip(reason='%s: this CPU has no %s' % (level, ', '.join(missing))) if missing else ()
        params.append(pytest.param(level, id=level, marks=marks))
    return params


def run_under_isa(level, pytest_args, timeout=900):
    """Run pytest on ``pytest_args`` (test paths or ids) in a subprocess whose oneDNN is limited to
    ``level`` (DNNL_MAX_CPU_ISA); return its summary line. Asserts that oneDNN reports that level (its
    verbose log, in a first short subprocess) and that the run passed, with its output otherwise."""
    from gluon_resnest.procs import preexec_die_with_this_process  # pylint: disable=import-outside-toplevel
    env = dict(os.environ, DNNL_MAX_CPU_ISA=level, PYTHONPATH=REPO)
    env.pop('DNNL_VERBOSE', None)
    banner = subprocess.run([sys.executable, '-c', ISA_BANNER], env=dict(env, DNNL_VERBOSE='1'), timeout=120,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            preexec_fn=preexec_die_with_this_process(), check=True).stdout
    assert 'dnnl_verbose,info,cpu,isa:%s\n' % ISA_LEVELS[level][1] in banner, banner
    run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs'] + list(pytest_args),
                         cwd=REPO, env=env, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, preexec_fn=preexec_die_with_this_process())
    assert run.returncode == 0, 'under DNNL_MAX_CPU_ISA=%s:\n%s' % (level, run.stdout[-20000:])
    summary = run.stdout.strip().splitlines()[-1]
    print('DNNL_MAX_CPU_ISA=%s (%s): %s' % (level, ISA_LEVELS[level][1], summary))
    return summary


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (still run in CI)')
    if hasattr(config.option, 'loadscopereorder'):  # pytest-xdist's --dist loadfile: files in our order
        config.option.loadscopereorder = False


# A worker's memory peaks at several GiB (the module fixtures' networks, MXNet's operator caches), and the
# loader processes it forks copy what they touch.
GIB_PER_WORKER = 8
# The slowest files (measured 2026-12-07; test_docs.py is a third of the suite) start first and the many short
# ones fill in after them, so that the workers end together.
FIRST = ('test_docs.py', 'test_cascade_rcnn.py', 'test_export.py', 'test_recordio_loader.py',
         'test_watchdog_dist_sync.py', 'test_isa.py', 'test_install.py', 'test_loop_determinism.py', 'test_loop.py',
         'test_classification_command.py')


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """The files of :data:`FIRST` first, in its order, then the others in theirs."""
    rank = {name: index for index, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(FIRST)))


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except AttributeError:
        return None


_MALLOC_TRIM = _malloc_trim()


@pytest.fixture(autouse=True, scope='module')
def _release_memory_after_each_file():
    """After each test file, its garbage collected and the freed heap handed back to the system: without
    it a pytest process keeps the peak of every file it ran (13 GiB by the end of the suite, against
    4-8 GiB with it), which the machine's 24 GiB must hold twice under ``-n auto``."""
    yield
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def pytest_xdist_auto_num_workers(config):  # pylint: disable=unused-argument
    """``-n auto`` (pytest-xdist): a worker per core this process may run on, at most one per
    :data:`GIB_PER_WORKER` GiB of the machine's memory, at least one."""
    with open('/proc/meminfo') as meminfo:
        total_kib = int(next(line for line in meminfo if line.startswith('MemTotal:')).split()[1])
    return max(1, min(available_cores(), total_kib // (GIB_PER_WORKER * 2 ** 20)))


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture
def tmp_root(tmp_path):
    """A private weights folder, so no test touches ~/.mxnet."""
    root = tmp_path / 'models'
    root.mkdir()
    return str(root)


# Small and fast: 3 classes of 40 px images, resnest14 at 32 px, batch 8 (6 batches per epoch), no data
# workers; mild augmentation so a few epochs learn the colours.
QUICK_FLAGS = ['--model', 'resnest14', '--input-size', '32', '--batch-size', '8', '-j', '0', '--no-progress',
               '--log-interval', '0', '--lr', '0.004', '--seed', '3', '--min-random-area', '0.5',
               '--jitter-param', '0', '--lighting-param', '0']


def make_image_folder(root, classes=3, sizes=None, seed=0):
    """Write an ImageNet-layout folder of PNGs (lossless, so decoded pixels are known) and return it."""
    rng = np.random.RandomState(seed)
    sizes = sizes or SIZES
    for c in range(classes):
        folder = os.path.join(str(root), 'n%08d' % c)
        os.makedirs(folder)
        for i, (h, w) in enumerate(sizes):
            img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
            cv2.imwrite(os.path.join(folder, 'img%d.png' % i), img)
    return str(root)


def write_tiny_dataset(root, classes=3, train_per_class=16, val_per_class=4, size=40, seed=0):
    """ImageNet-layout folders of coloured-square images (class = colour), plus train/val .rec/.idx."""
    rng = np.random.RandomState(seed)
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40)][:classes]
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for label, colour in enumerate(colours):
            folder = os.path.join(root, split, 'class%d' % label)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                img = rng.randint(90, 160, size=(size, size, 3)).astype(np.uint8)
                y, x = rng.randint(0, size // 3, size=2)
                img[y:y + size // 2, x:x + size // 2] = colour
                cv2.imwrite(os.path.join(folder, '%d.jpg' % i), img[..., ::-1])
        pack_record(ImageFolder(os.path.join(root, split)), os.path.join(root, split + '.rec'))
    return root


@pytest.fixture(scope='session')
def image_folder():
    """``make_image_folder(root, classes=3, sizes=None, seed=0)``: PNG class folders of known pixels."""
    return make_image_folder


@pytest.fixture(scope='session')
def tiny_dataset():
    """``write_tiny_dataset(root, ...)``: coloured-square train/val folders plus .rec/.idx."""
    return write_tiny_dataset


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """One tiny dataset per test module (3 classes, 48 train / 12 val images of 40 px)."""
    return write_tiny_dataset(str(tmp_path_factory.mktemp('tiny')))


@pytest.fixture
def quick():
    """train_imagenet.py flags of a quick run on :func:`tiny` (resnest14 at 32 px, batch 8, no workers)."""
    return list(QUICK_FLAGS)


def training_env():
    """Environment of a training subprocess: this checkout on PYTHONPATH, one OpenMP thread, no DMLC role."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    env.pop('DMLC_ROLE', None)
    return env


@pytest.fixture
def subprocess_env():
    """:func:`training_env` as a fixture."""
    return training_env()


# train_imagenet.py's command with faults injected through FAULT (a JSON dict) by the loop's hooks
# (gluon_resnest.engine.loop.Hooks); batches are counted from the start of their epoch, also in a resumed run.
# 'kill' = [epoch, batch] at which rank 'kill_rank' (default 1) SIGKILLs itself (before that step); 'sigint' =
# [epoch, batch] after which the process sends itself SIGINT (Ctrl-C); 'sleep_step' = {"epoch,batch": seconds};
# 'sleep_val' (per validation batch) and 'sleep_save' (rank 0, before the first checkpoint's files are written)
# in seconds; 'drain_before_update': every queued operation finishes before the optimizer's are queued (other
# timing, the same computation).
FAULT_WORKER = '''
import json, os, signal, sys, time
sys.path.insert(0, {root!r})
import train_imagenet
import mxnet as mx
from gluon_resnest.engine.loop import Hooks, hooks_installed
fault = json.loads(os.environ.get('FAULT', '{{}}'))

def drain_then(update):
    def drained(*args):
        mx.nd.waitall()
        return update(*args)
    return drained

def before_step(run, epoch, batch):
    if fault.pop('drain_before_update', False):
        run.trainer.step = drain_then(run.trainer.step)
    if run.dist.rank == fault.get('kill_rank', 1) and fault.get('kill') == [epoch, batch]:
        print('KILLED AT', time.time(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(fault.get('sleep_step', {{}}).get('%d,%d' % (epoch, batch), 0))

def after_step(run, epoch, batch, loss):
    if fault.get('sigint') == [epoch, batch]:
        os.kill(os.getpid(), signal.SIGINT)

hooks = Hooks(before_step=[before_step], after_step=[after_step],
              validation_batch=[lambda run: time.sleep(fault.get('sleep_val', 0))],
              before_save=[lambda run, prefix: time.sleep(fault.pop('sleep_save', 0))])
from gluon_resnest import cli
from gluon_resnest.train import build_run, train
runs = []  # the command's exit status (1 failed, 130 Ctrl-C), and the Run when it finished
with hooks_installed(hooks):
    status = cli.run_command(lambda argv: runs.append(train(build_run(train_imagenet.parse_args(argv)))),
                             sys.argv[1:])
for run in runs:
    print('rank', run.dist.rank, 'updates', run.trainer.optimizer.num_update, flush=True)
sys.exit(status)
'''


def write_fault_worker(folder):
    """Write :data:`FAULT_WORKER` (train_imagenet.py's arguments, faults from ``FAULT``) into ``folder``;
    returns its path."""
    script = os.path.join(str(folder), 'fault_worker.py')
    with open(script, 'w') as f:
        f.write(FAULT_WORKER.format(root=REPO))
    return script


@pytest.fixture
def ps_lite_env(subprocess_env):
    """``ps_lite_env()``: ``subprocess_env`` plus ps-lite's variables for a scheduler, one server and two
    workers on loopback, on a port free at the time of the call (each job gets its own)."""
    def make():
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        return dict(subprocess_env, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(port),
                    DMLC_NUM_SERVER='1', DMLC_NUM_WORKER='2', DMLC_INTERFACE='lo', DMLC_NODE_HOST='127.0.0.1')
    return make


def assert_ranks_identical(out, save_dir):
    """Both ranks of a 2-worker run saved identical parameters to ``out``, and rank 0 alone wrote ``save_dir``."""
    ranks = [{k: v.asnumpy() for k, v in mx.nd.load(os.path.join(str(out), 'rank%d.params' % r)).items()}
             for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1])
    for name in ranks[0]:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
    files = sorted(os.listdir(save_dir))  # written by rank 0 only, once
    assert 'resnest14-0002.params' in files and 'history.json' in files


# ---- detection: a two-image VOC set and GluonCV's training preparation (R-CNN tests) ----

# Small proposal counts keep the RCNN heads cheap on CPU; everything else is the published recipe.
# Two images per step: the split attention's BatchNorm sees one value per image and channel, and a
# variance needs more than one.
DETECTION_SMALL = dict(short=128, max_size=160, rpn_train_pre_nms=300, rpn_train_post_nms=100, num_sample=64,
             rpn_test_pre_nms=200, rpn_test_post_nms=50, per_device_batch_size=2)
IMAGES = [[('dog', (20, 30, 90, 110)), ('car', (80, 20, 150, 100))],
          [('cat', (10, 10, 70, 60)), ('person', (60, 40, 140, 120))]]


def interrupt_training_at(step, before=None):
    """A ``with`` block in which the ``step``-th training step (counted over the run) of a run ends with
    Ctrl-C (SIGINT to this process), after ``before(run)`` if given."""
    import signal  # pylint: disable=import-outside-toplevel
    from gluon_resnest.engine.loop import Hooks, hooks_installed  # pylint: disable=import-outside-toplevel
    calls = []

    def after_step(run, epoch, batch, loss):  # pylint: disable=unused-argument
        calls.append(epoch)
        if len(calls) == step:
            if before is not None:
                before(run)
            os.kill(os.getpid(), signal.SIGINT)
    return hooks_installed(Hooks(after_step=[after_step]))


def stepped_trainer(net, optimizer='nag', **params):
    """``net`` initialised and a trainer of it after one step on a batch of ones (an optimizer state per
    parameter, ready to save). ``params``: the optimizer's, learning rate 0.1 and momentum 0.9 by default."""
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), optimizer, dict(dict(learning_rate=0.1, momentum=0.9), **params))
    in_units = [p for p in net.collect_params().values() if p.name.endswith('weight')][0].shape[1]
    with autograd.record():
        loss = net(mx.nd.ones((2, in_units))).sum()
    loss.backward()
    trainer.step(2)
    return trainer


def command_error(main, argv, capsys):
    """(exit status, last stderr line) of a command's ``main(argv)`` that fails: the status it returns or
    exits with (``sys.exit('error: ...')`` is status 1 with that line)."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
        if isinstance(status, str):
            print(status, file=sys.stderr)
            status = 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert status not in (0, None) and lines, (status, lines)
    return status, lines[-1]


def assert_same_parameters(path_a, path_b):
    """Two ``.params`` files hold the same parameters, bit for bit."""
    first, second = mx.nd.load(str(path_a)), mx.nd.load(str(path_b))
    assert sorted(first) == sorted(second)
    differ = [name for name in sorted(first) if first[name].asnumpy().tobytes() != second[name].asnumpy().tobytes()]
    assert not differ, '%d of %d parameters differ, e.g. %s' % (len(differ), len(first), differ[:3])


def assert_resumed_as_uninterrupted(uninterrupted, resumed, model='resnest14'):
    """The last checkpoints of two runs' save folders hold the same position and the same weights, bit for
    bit (same seed, flags and compute threads: see README, Reproducibility)."""
    from gluon_resnest.train import latest_checkpoint  # pylint: disable=import-outside-toplevel
    a, b = latest_checkpoint(uninterrupted, model), latest_checkpoint(resumed, model)
    assert (a['epoch'], a['num_update']) == (b['epoch'], b['num_update'])
    assert_same_parameters(a['params'], b['params'])
    return a


def voc_image(index):
    """Image ``index`` of the two-image detection set: shaded boxes on dark noise (uint8 HWC)."""
    rng = np.random.RandomState(index)
    img = rng.randint(0, 60, size=(128, 160, 3)).astype('uint8')
    for shade, (_, (x0, y0, x1, y1)) in zip((200, 140), IMAGES[index]):
        img[y0:y1, x0:x1] = shade
    return img


def _voc_annotation(objects):
    boxes = ''.join(
        '<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>'
        '<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>' % ((name,) + box)
        for name, box in objects)
    return ('<annotation><size><width>160</width><height>128</height><depth>3</depth></size>%s'
            '</annotation>' % boxes)


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    """A two-image dataset in PASCAL VOC's folder layout and XML format."""
    root = tmp_path_factory.mktemp('voc')
    base = root / 'VOC2007'
    for folder in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        (base / folder).mkdir(parents=True)
    ids = ['%06d' % (index + 1) for index in range(len(IMAGES))]
    for index, image_id in enumerate(ids):
        cv2.imwrite(str(base / 'JPEGImages' / (image_id + '.jpg')), voc_image(index)[:, :, ::-1])
        (base / 'Annotations' / (image_id + '.xml')).write_text(_voc_annotation(IMAGES[index]))
    (base / 'ImageSets' / 'Main' / 'train.txt').write_text('\n'.join(ids) + '\n')
    return str(root)


@pytest.fixture(scope='module')
def frozen_base(tmp_path_factory):
    """A resnest14 backbone file whose BatchNorm statistics fit its weights, as published ones do.

    With momentum 0 one training-mode pass stores each layer's batch statistics as its running ones.
    """
    net = gluon_resnest.get_model('resnest14', norm_kwargs={'momentum': 0.0})
    net.initialize(mx.init.Xavier())
    images = np.stack([voc_image(index) for index in range(len(IMAGES))]).transpose(0, 3, 1, 2)
    with autograd.record():
        net(mx.nd.array(images / 255.0 - 0.45) / 0.225)
    path = str(tmp_path_factory.mktemp('base') / 'resnest14.params')
    net.save_parameters(path)
    return path


def prepare_for_training(net):
    """What GluonCV's train_faster_rcnn.py does before its loop."""
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize()
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    net.hybridize()  # the script's default (no --static-alloc)
    return gluon.Trainer(net.collect_train_params(), 'sgd',
                         {'learning_rate': 0.01, 'wd': 1e-4, 'momentum': 0.9})


def first_shard(batch):
    """train_faster_rcnn.py's split_and_load for one CPU device."""
    return [(data[0] if isinstance(data, (list, tuple)) else data).as_in_context(mx.cpu())
            for data in batch]


def mask_sample(index):
    """(image, label, polygons) of image ``index`` as GluonCV's Mask R-CNN transform takes them."""
    objects = IMAGES[index]
    label = np.array([list(box) + [k, 0] for k, (_, box) in enumerate(objects)], 'float32')
    polygons = [[np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], 'float32')]
                for _, (x0, y0, x1, y1) in objects]
    return mx.nd.array(voc_image(index), dtype='uint8'), label, polygons


def mask_training_batch(net):
    """GluonCV's training preparation of Mask R-CNN-style ``net``: (trainer, one batch of both images).

    The batch is what ``MaskRCNNTrainBatchify`` gives for the two images with their box masks, as
    ``train_mask_rcnn.py`` prepares it (not yet split over devices: see :func:`first_shard`).
    """
    trainer = prepare_for_training(net)
    transform = MaskRCNNDefaultTrainTransform(net.short, net.max_size, net, ashape=net.ashape, multi_stage=True)
    return trainer, MaskRCNNTrainBatchify(net, 1)([transform(*mask_sample(k)) for k in range(2)])


def randomize_batchnorm(net):
    """Initialise ``net`` (Xavier) with random BatchNorm statistics and affine terms, so that BatchNorm
    does not act as the identity (equivalence and folding tests would not see it otherwise)."""
    net.initialize(mx.init.Xavier(magnitude=2))
    for name, param in net.collect_params().items():
        if name.endswith(('running_var', 'gamma')):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, param.shape))
        elif name.endswith(('running_mean', 'beta')):
            param.set_data(mx.nd.random.normal(0, 0.1, param.shape))
    return net


# ---- the official PyTorch state dict naming (converter tests, docs examples) ----

def to_official_names(params):
    """Our parameter paths -> the official PyTorch names (the official state dict's naming, written out
    again independently of the converter): BatchNorm gamma/beta -> weight/bias, conv2.bn -> conv2.bn0, and a
    num_batches_tracked counter per BatchNorm."""
    official = {}
    for key, value in params.items():
        module, leaf = key.rsplit('.', 1)
        if module.endswith('conv2.bn'):
            module = module[:-len('bn')] + 'bn0'
        leaf = {'gamma': 'weight', 'beta': 'bias'}.get(leaf, leaf)
        official['%s.%s' % (module, leaf)] = value
        if leaf == 'running_mean':
            official[module + '.num_batches_tracked'] = np.array(1000, dtype=np.int64)
    return official


class FakeClock(object):
    """A clock under which the i-th timed call lasts ``durations[i]`` seconds."""

    def __init__(self, durations):
        self.readings = [t for d in durations for t in (0.0, d)]

    def __call__(self):
        return self.readings.pop(0)
