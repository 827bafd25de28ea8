"""Convert the official PyTorch ResNeSt checkpoints (``.pth`` state dicts) to gluon_resnest ``.params``.

The official networks (``resnest50/101/200/269`` and the seven ``resnest50_fast_*`` ablation models;
resnest14/26 convert the same way) have the same module tree as ours, so names map 1:1 except:
the split-attention BatchNorm is ``conv2.bn0`` there and ``conv2.bn`` here, BatchNorm ``weight``/``bias``
are ``gamma``/``beta`` here, and PyTorch's ``num_batches_tracked`` counters have no counterpart. Tensor
layouts (OIHW convolutions, (out, in) linear) and the radix-major channel order are the same.

Two routes, so torch is not needed at run time:

* numpy: save the state dict as ``.npz`` once, anywhere torch is installed::

      python -c "import torch, numpy as np; sd = torch.load('resnest50-528c19ca.pth', map_location='cpu'); \\
                 np.savez('resnest50.npz', **{k: v.numpy() for k, v in sd.items()})"

  then ``gluon-resnest-convert-torch --model resnest50 --input resnest50.npz --output resnest50.params``
  (or ``python -m gluon_resnest.export.torch_convert``);
* torch (optional): ``--input resnest50.pth`` imports torch lazily to read the file.
"""
import argparse
import os
import re
import sys

import mxnet as mx
import numpy as np

from .. import cli
from ..fileio import atomic_write
from ..model_zoo import get_model, model_key
from ..pretrained import check_fits, load_weights

__all__ = ['read_state_dict', 'official_to_gluon', 'convert_state_dict', 'convert_file', 'parse_args',
           'main']

_SPLIT_BN = re.compile(r'(^|\.)conv2\.bn0\.')
_BN_NAMES = {'weight': 'gamma', 'bias': 'beta'}


def read_state_dict(path):
    """Name -> numpy array from a ``.npz`` (numpy route) or ``.pth``/``.pt`` (needs torch)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('state dict file not found: %s' % path)
    if path.endswith('.npz'):
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    if path.endswith(('.pth', '.pt')):
        return _read_torch(path)
    raise ValueError('unsupported state dict file %s: expected .npz (numpy) or .pth/.pt (torch)' % path)


def _read_torch(path):
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise ValueError('reading %s needs PyTorch (pip install torch), or convert it to .npz where '
                         'torch is installed (see python -m gluon_resnest.export.torch_convert -h)'
                         % path) from err
    state = torch.load(path, map_location='cpu')
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']  # training checkpoints wrap the weights
    return {key: value.detach().cpu().numpy() for key, value in state.items()
            if hasattr(value, 'detach')}


def official_to_gluon(state_dict):
    """Rename an official state dict to gluon_resnest parameter paths; returns a new dict.

    ``module.`` prefixes (DataParallel checkpoints) and ``num_batches_tracked`` are dropped.
    """
    state = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}
    # A module is a BatchNorm exactly when it has running statistics.
    norms = {k[:-len('.running_mean')] for k in state if k.endswith('.running_mean')}
    renamed = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition('.')
        if leaf == 'num_batches_tracked':
            continue
        if module in norms:
            leaf = _BN_NAMES.get(leaf, leaf)
        # never liked this name, but the official split-attention BatchNorm is bn0 (ours: bn).
        renamed[_SPLIT_BN.sub(r'\1conv2.bn.', '.'.join(filter(None, (module, leaf))))] = value
    return renamed


def convert_state_dict(state_dict, model):
    """Official state dict (name -> array) -> ``{path: float32 array}`` that fits ``get_model(model)``.

    The number of classes is taken from ``fc.weight``. Raises a one-line ValueError when the state dict
    is not a ``model`` (missing, unexpected or misshapen tensors).
    """
    model = model_key(model)
    params = official_to_gluon(state_dict)
    if 'fc.weight' not in params:
        raise ValueError('state dict has no fc.weight: not a ResNeSt classification checkpoint')
    net = get_model(model, classes=int(params['fc.weight'].shape[0]))
    check_fits(net._collect_params_with_prefix(), params, 'state dict', model)  # pylint: disable=protected-access
    return {key: np.asarray(value, dtype=np.float32) for key, value in params.items()}


def convert_file(src, dst, model):
    """Convert the state dict file ``src`` (.npz or .pth) to the ``.params`` file ``dst`` for ``model``.

    The file is written under a temporary name, loaded back strictly into ``model`` and only then moved
    to ``dst``, so a failed conversion leaves nothing behind. Returns the number of tensors written.
    """
    params = convert_state_dict(read_state_dict(src), model)
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise FileNotFoundError('output folder not found: %s' % folder)

    def _write_checked(tmp):
        mx.nd.save(tmp, {key: mx.nd.array(value) for key, value in params.items()})
        load_weights(get_model(model, classes=int(params['fc.weight'].shape[0])), tmp)
    try:
        atomic_write(dst, _write_checked)
    except PermissionError as err:
        raise ValueError('cannot write to %s: %s' % (folder, err.strerror)) from err
    return len(params)


def parse_args(argv=None):
    """Command-line arguments of the converter."""
    parser = cli.ArgumentParser(
        prog='gluon-resnest-convert-torch',
        description='Convert an official PyTorch ResNeSt state dict (.npz, or .pth with torch) to a '
                    'gluon_resnest .params file.', epilog='Two routes' + __doc__.split('Two routes', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model(parser, required=True)
    parser.add_argument('--input', required=True, help='state dict: .npz (numpy) or .pth/.pt (torch)')
    parser.add_argument('--output', required=True, help='.params file to write')
    args = parser.parse_args(argv)
    args.model = cli.model_flag(parser, args.model)
    return args


def _run(argv):
    args = parse_args(argv)
    count = convert_file(args.input, args.output, args.model)
    print('wrote %s (%d tensors, %s)' % (os.path.abspath(args.output), count, args.model))


def main(argv=None):
    """``gluon-resnest-convert-torch``: convert as the command line ``argv`` says (None: ``sys.argv[1:]``);
    returns the exit status (:func:`gluon_resnest.cli.run_command`)."""
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
