"""One screen on every published network: parameters, GFLOPs at its eval crop, published top-1.

Parameters and multiply-accumulates are computed from the networks themselves (traced to a symbol and
shape-inferred; nothing is initialised), so the table cannot drift from the code.

Usage::

    gluon-resnest-summary [MODEL ...]        # or python -m gluon_resnest.summary
"""
import json
import sys

import mxnet as mx

from . import cli
from .config import ConfigError, check_model

from .metrics import count_parameters as count_params  # noqa: E402  (as papers count: no BN statistics)
from .model_zoo import get_model, list_models  # noqa: E402
from .pretrained import PUBLISHED  # noqa: E402

__all__ = ['count_params', 'count_macs', 'summarize', 'main']


def count_macs(net, size):
    """Multiply-accumulates of convolutions and dense layers for one ``size`` x ``size`` image."""
    sym = net(mx.sym.var('data'))
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(data=(1, 3, size, size))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    shapes.update(zip(internals.list_arguments(), arg_shapes))
    nodes = json.loads(sym.tojson())['nodes']
    total = 0
    for node in nodes:
        if node['op'] not in ('Convolution', 'FullyConnected'):
            continue
        weight = shapes[nodes[node['inputs'][1][0]]['name']]
        total += _prod(shapes[node['name'] + '_output']) * _prod(weight[1:])
    return total


def _prod(dims):
    result = 1
    for dim in dims:
        result *= dim
    return result


def summarize(names=None):
    """Rows of (name, params in M, GFLOPs at the eval crop, eval crop, published top-1)."""
    rows = []
    for name in names or list_models():
        net = get_model(name)
        crop = PUBLISHED[name].crop
        rows.append((name, count_params(net) / 1e6, count_macs(net, crop) / 1e9, crop,
                     PUBLISHED[name].top1))
    return rows


def parse_args(argv=None):
    """The command line: model names (default: every published network), checked."""
    parser = cli.ArgumentParser(prog='gluon-resnest-summary', description=__doc__.split('\n')[0])
    parser.add_argument('models', nargs='*', help='model names (default: all of list_models())')
    args = parser.parse_args(argv)
    try:
        args.models = [check_model(m) for m in args.models]
    except ConfigError as err:
        parser.error(str(err))  # names the model, as every entry point does (no flag to name here)
    return args


def _run(argv):
    args = parse_args(argv)
    header = '%-24s %9s %8s %6s %7s' % ('model', 'params(M)', 'GFLOPs', 'crop', 'top-1')
    print(header)
    print('-' * len(header))
    for name, params, gflops, crop, top1 in summarize(args.models):
        print('%-24s %9.2f %8.2f %6d %7.2f' % (name, params, gflops, crop, top1))


def main(argv=None):
    """``gluon-resnest-summary``: print the table for the models in ``argv`` (None: ``sys.argv[1:]``);
    returns the exit status."""
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
