"""Published weights and evaluation settings per model, and resolving weight files.

One table holds every published fact per model name: the weight file's sha1, which store serves it, the
evaluation crop and the published top-1. Files are kept as GluonCV keeps them,
``{root}/{name}-{sha1[:8]}.params`` with root ``~/.mxnet/models`` (or ``$MXNET_HOME/models``), so a file
GluonCV already downloaded is reused and vice versa.
"""
import os
import shutil
import tempfile
import zipfile
from collections import namedtuple

import mxnet as mx

from .fileio import sha1_of

__all__ = ['PUBLISHED', 'Published', 'eval_crop', 'default_root', 'weight_url', 'get_model_file',
           'load_weights', 'read_params', 'params_by_path', 'classes_in_params', 'check_fits']

Published = namedtuple('Published', 'sha1 store crop top1')

_GLUONCV_REPO = 'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/'
_OFFICIAL_REPO = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step2/'

PUBLISHED = {
    'resnest14': Published('7e0b0cae2fd7e9084d1e498b858af1429a6eb1cb', 'gluoncv', 224, 75.75),
    'resnest26': Published('364590740605b6a2b95f5bb77436d781a817436f', 'gluoncv', 224, 78.68),
    'resnest50': Published('bcfefe1dd1dd1ef5cfed5563123c1490ea37b42e', 'gluoncv', 224, 81.04),
    'resnest101': Published('5da943b3230f071525a98639945a6b3b3a45ac95', 'gluoncv', 256, 82.81),
    'resnest200': Published('0c5d117df664ace220aa6fc2922c094bb079d381', 'gluoncv', 320, 83.88),
    'resnest269': Published('11ae7f5da2bcdbad05ba7e84f9b74383e717f3e3', 'gluoncv', 416, 84.53),
    'resnest50_fast_1s1x64d': Published('5e16dbe56f1fba8e1bc2faddd91f874bfbd74193', 'official', 224, 80.35),
    'resnest50_fast_2s1x64d': Published('85eb779a5e313d74b5e5390dae02aa8082a0f469', 'official', 224, 80.65),
    'resnest50_fast_4s1x64d': Published('3f215532c6d8e07a10df116309993d4479fc3e4b', 'official', 224, 80.90),
    'resnest50_fast_1s2x40d': Published('af3514c2ec757a3a9666a75b82f142ed47d55bee', 'official', 224, 80.72),
    'resnest50_fast_2s2x40d': Published('2db13245aa4967cf5e8617cb4911880dd41628a4', 'official', 224, 80.84),
    'resnest50_fast_4s2x40d': Published('b24d515797832e02da4da9c8a15effd5e44cfb56', 'official', 224, 81.17),
    'resnest50_fast_1s4x24d': Published('7318153ddb5e542a20cc6c58192f3c6209cff9ed', 'official', 224, 80.97),
}


def eval_crop(name):
    """Published evaluation crop of model ``name`` (224/224/224/256/320/416 for 14..269, 224 otherwise)."""
    entry = PUBLISHED.get(str(name).lower())
    return entry.crop if entry else 224


def default_root():
    """``$MXNET_HOME/models`` if set, else ``~/.mxnet/models`` (where GluonCV keeps its files)."""
    return os.path.join(os.environ.get('MXNET_HOME', os.path.join('~', '.mxnet')), 'models')


def _short_name(name):
    return '%s-%s' % (name, PUBLISHED[name].sha1[:8])


def weight_url(name):
    """Download address of ``name``'s published weights (a zip holding the .params file)."""
    entry = PUBLISHED[name]
    if entry.store == 'gluoncv':
        repo = os.environ.get('MXNET_GLUON_REPO', _GLUONCV_REPO)
        if not repo.endswith('/'):
            repo += '/'
        return '%sgluon/models/%s.zip' % (repo, _short_name(name))
    return '%s%s.zip' % (_OFFICIAL_REPO, _short_name(name))


def get_model_file(name, root=None):
    """Path of ``name``'s published weights under ``root``, downloading and verifying them if absent.

    A file that is present but whose sha1 differs is never overwritten: it is reported and left for the
    user to inspect or delete.
    """
    if name not in PUBLISHED:
        raise ValueError('no published weights for %r; models with weights: %s'
                         % (name, ', '.join(sorted(PUBLISHED))))
    root = os.path.expanduser(root or default_root())
    path = os.path.join(root, _short_name(name) + '.params')
    expected = PUBLISHED[name].sha1
    if os.path.exists(path):
        actual = sha1_of(path)
        if actual != expected:
            raise ValueError('weight file %s has sha1 %s, expected %s for %s: delete or move it to '
                             'download the published file' % (path, actual, expected, name))
        return path
    os.makedirs(root, exist_ok=True)
    _download(name, path, expected)
    return path


def _download(name, path, expected_sha1):
    """Download, unzip and verify into a temporary folder next to ``path``, then move atomically."""
    url = weight_url(name)
    workdir = tempfile.mkdtemp(prefix='.download-', dir=os.path.dirname(path))
    try:
        archive = os.path.join(workdir, os.path.basename(path)[:-len('.params')] + '.zip')
        try:
            mx.gluon.utils.download(url, path=archive, overwrite=True)
        except Exception as err:  # any transport failure becomes one message naming the address
            raise RuntimeError('could not download weights of %s from %s: %s' % (name, url, err)) \
                from err
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(workdir)
        extracted = os.path.join(workdir, os.path.basename(path))
        if not os.path.exists(extracted) or sha1_of(extracted) != expected_sha1:
            raise RuntimeError('downloaded weights of %s from %s do not match sha1 %s'
                               % (name, url, expected_sha1))
        os.replace(extracted, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def read_params(path):
    """The named arrays of a ``.params`` file, keys without their ``arg:``/``aux:`` prefix (one-line errors)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('params file not found: %s' % path)
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise ValueError('%s is not an MXNet .params file: %s'
                         % (path, str(err).strip().splitlines()[0])) from err
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError('%s holds no named parameters' % path)
    return {k.split(':', 1)[-1]: v for k, v in loaded.items()}


def classes_in_params(path):
    """Number of classes of the classifier saved in a ``.params`` file (None if it has no ``fc``)."""
    for key, value in read_params(path).items():
        # save_parameters() keys by path ('fc.weight'); the older save_params() by name ('..._dense0_weight').
        if key == 'fc.weight' or (key.endswith('dense0_weight') and len(value.shape) == 2):
            return int(value.shape[0])
    return None


def params_by_path(net, path):
    """The arrays of a ``.params`` file keyed by ``net``'s parameter paths (``layer1.0.conv1.weight``).

    Files written by the older ``save_params()`` key parameters by symbol name; those names are mapped to
    ``net``'s paths (a name ``net`` does not have stays as it is).
    """
    loaded = read_params(path)
    if not any('.' in key for key in loaded):
        by_name = {param.name: key for key, param in net._collect_params_with_prefix().items()}  # pylint: disable=W0212
        loaded = {by_name.get(key, key): value for key, value in loaded.items()}
    return loaded


def load_weights(net, path, ctx=None, fresh_imagenet_classifier=False):
    """Load a ``.params`` file into ``net`` strictly, naming any missing or unexpected keys.

    With ``fresh_imagenet_classifier``, a file whose classifier has the 1000 ImageNet classes loaded into
    a network with another number of classes keeps the backbone and gets a freshly initialised ``fc``
    (fine-tuning). A classifier of any other size must match the network's.
    """
    ctx = ctx or mx.cpu()
    loaded = params_by_path(net, path)
    expected = net._collect_params_with_prefix()  # pylint: disable=protected-access
    skip_classifier = (fresh_imagenet_classifier and 'fc.weight' in loaded
                       and loaded['fc.weight'].shape[0] == 1000 and net.fc.weight.shape[0] != 1000)
    if skip_classifier:
        loaded = {k: v for k, v in loaded.items() if not k.startswith('fc.')}
        expected = {k: v for k, v in expected.items() if not k.startswith('fc.')}
    check_fits(expected, loaded, path)
    for key, param in expected.items():
        param._load_init(loaded[key], ctx)  # pylint: disable=protected-access
    if skip_classifier:
        net.fc.initialize(ctx=ctx, force_reinit=True)


def check_fits(expected, arrays, what, target='this network'):
    """Raise a one-line ValueError unless ``arrays`` has exactly the keys and shapes of ``expected``.

    Parameters
    ----------
    expected : dict of str to Parameter
        ``net._collect_params_with_prefix()`` (shapes not yet inferred are not compared).
    arrays : dict of str to array
        What is to be loaded, keyed by the same paths.
    what, target : str
        Named in the message: ``'<what> does not fit <target>: ...'``.
    """
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ValueError('%s does not fit %s: missing %s; unexpected %s' % (what, target, _few(missing), _few(extra)))
    for key, param in expected.items():
        if param.shape and 0 not in param.shape and tuple(param.shape) != tuple(arrays[key].shape):
            raise ValueError('%s does not fit %s: %s has shape %s in the file, %s in the network'
                             % (what, target, key, tuple(arrays[key].shape), tuple(param.shape)))


def _few(keys, limit=5):
    if not keys:
        return 'none'
    shown = ', '.join(keys[:limit])
    return shown + (' and %d more' % (len(keys) - limit) if len(keys) > limit else '')
