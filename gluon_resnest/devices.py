"""Devices: the MXNet contexts named by ``gpus`` (``'0,1'``, ``[0, 1]``; empty: the CPU)."""
import mxnet as mx

from .config import parse_devices

__all__ = ['contexts', 'as_contexts']


def contexts(gpus):
    """``'0,1'`` or ``[0, 1]`` -> [gpu(0), gpu(1)]; empty or None -> [cpu()].

    Raises ``ValueError`` for ids that are not integers or GPUs this machine does not have.
    """
    ids = parse_devices(gpus)
    if not ids:
        return [mx.cpu()]
    available = mx.context.num_gpus()
    if max(ids) >= available:
        raise ValueError('gpus %s: MXNet %s sees %d GPU(s), so there is no GPU %d'
                         % (','.join(map(str, ids)), mx.__version__, available, max(ids)))
    return [mx.gpu(i) for i in ids]


def as_contexts(ctx):
    """A list of contexts from None (CPU), one context or a list of them."""
    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
