"""Shared test fixtures and data writers for gluon_resnest (test modules never import each other)."""
import os
import socket

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.data import ImageFolder, pack_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bound on every training subprocess a test starts (scheduler, server, workers, horovodrun).
SUBPROCESS_TIMEOUT = 300

# (height, width) of the images make_image_folder writes per class; odd sizes exercise crop rounding.
SIZES = [(40, 52), (61, 45), (48, 48)]


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (still run in CI)')


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


@pytest.fixture
def subprocess_env():
    """Environment of a training subprocess: this checkout on PYTHONPATH, one OpenMP thread, no DMLC role."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    env.pop('DMLC_ROLE', None)
    return env


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
