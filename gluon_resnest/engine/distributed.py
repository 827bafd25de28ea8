"""One interface over the three ways train_imagenet.py runs: one process, MXNet's kvstore, Horovod.

The training loop only asks: which rank am I, how many workers are there, make me a trainer, sum these
numbers over all workers, average these arrays over all workers. ``setup_distributed`` answers them for
``--kv-store local|device|dist_sync|dist_device_sync|horovod``.
"""
import mxnet as mx
from mxnet import gluon

__all__ = ['KV_STORES', 'setup_distributed', 'Distributed']

from ..config import KV_STORES

# Keys for our own reductions on a dist kvstore; gluon.Trainer uses 0..num_params-1.
_REDUCE_KEY_BASE = 1 << 24


class Distributed(object):
    """The distributed context of this process.

    Attributes
    ----------
    kv_store : str
    rank, num_workers : int
    local_rank : int
        Rank among the workers of this machine (Horovod; 0 otherwise): picks this worker's GPU.
    kvstore : mxnet.kvstore.KVStore or None
        The MXNet kvstore (None for Horovod).
    """

    def __init__(self, kv_store, rank, num_workers, kvstore=None, hvd=None, local_rank=0):
        self.kv_store = kv_store
        self.rank = rank
        self.local_rank = local_rank
        self.num_workers = num_workers
        self.kvstore = kvstore
        self._hvd = hvd
        self._keys = {}

    @property
    def is_root(self):
        """Only rank 0 writes files (checkpoints, logs, plots)."""
        return self.rank == 0

    def make_trainer(self, net, optimizer, optimizer_params, params=None):
        """A gluon Trainer whose ``step(per_worker_batch)`` applies the mean gradient over all workers.

        ``params`` (default: all of ``net``'s) are the parameters it updates; under Horovod all of
        ``net``'s parameters start from rank 0's values.
        """
        params = net.collect_params() if params is None else params
        if self._hvd is not None:
            # Horovod broadcasts rank 0's initial weights and averages gradients itself.
            self._hvd.broadcast_parameters(net.collect_params(), root_rank=0)
            return self._hvd.DistributedTrainer(params, optimizer, optimizer_params)
        if self.kvstore is not None and 'dist' in self.kvstore.type:
            # Updating on the workers keeps the optimizer states local, so save_states works.
            return gluon.Trainer(params, optimizer, optimizer_params, kvstore=self.kvstore,
                                 update_on_kvstore=False)
        # By name, Gluon skips the kvstore altogether on a single device.
        return gluon.Trainer(params, optimizer, optimizer_params, kvstore=self.kv_store)

    @property
    def step_scale(self):
        """Factor for ``trainer.step``'s batch size: a dist kvstore sums gradients over workers."""
        return self.num_workers if self.kvstore is not None else 1

    def allreduce_sum(self, values, name):
        """Sum a list of floats over all workers; all call it in the same order with the same ``name``."""
        if self.num_workers == 1:
            return [float(v) for v in values]
        arr = mx.nd.array(values, dtype='float32')  # exact for counts below 2**24
        if self._hvd is not None:
            out = self._hvd.allreduce(arr, average=False, name='sum_' + name)
        else:
            out = self._kv_sum('sum_' + name, arr)
        return [float(v) for v in out.asnumpy()]

    def average_arrays(self, arrays, name):
        """Average NDArrays in place over all workers (e.g. BatchNorm running statistics)."""
        if self.num_workers == 1:
            return
        for i, arr in enumerate(arrays):
            key = '%s_%d' % (name, i)
            if self._hvd is not None:
                self._hvd.allreduce_(arr, average=True, name=key)
            else:
                arr[:] = self._kv_sum(key, arr) / self.num_workers

    def broadcast_arrays(self, arrays, name):
        """Overwrite NDArrays in place with rank 0's values, bit for bit."""
        if self.num_workers == 1:
            return
        for i, arr in enumerate(arrays):
            key = '%s_%d' % (name, i)
            if self._hvd is not None:
                self._hvd.broadcast_(arr, root_rank=0, name=key)
            else:
                # The servers sum what is pushed: rank 0's values plus zeros from everyone else.
                arr[:] = self._kv_sum(key, arr if self.is_root else mx.nd.zeros_like(arr))

    def barrier(self):
        """Wait for every worker."""
        if self.num_workers > 1:
            self.allreduce_sum([0.0], 'barrier')

    def _kv_sum(self, name, arr):
        # A dist kvstore with no optimizer on the servers stores the sum of what the workers push.
        # Each name gets one integer key (gluon.Trainer uses 0..num_params-1), initialised once.
        if name not in self._keys:
            self._keys[name] = _REDUCE_KEY_BASE + len(self._keys)
            self.kvstore.init(self._keys[name], mx.nd.zeros(arr.shape, dtype=arr.dtype))
        out = mx.nd.zeros(arr.shape, dtype=arr.dtype)
        self.kvstore.push(self._keys[name], arr)
        self.kvstore.pull(self._keys[name], out=out)
        return out


def setup_distributed(kv_store):
    """Create the kvstore (or initialise Horovod) named by ``--kv-store``.

    Raises
    ------
    ValueError
        Unknown kvstore name.
    ImportError
        ``horovod`` requested but Horovod is not installed (one line, with the install hint).
    """
    if kv_store not in KV_STORES:
        raise ValueError('unknown --kv-store %r (choose from %s)' % (kv_store, ', '.join(KV_STORES)))
    if kv_store == 'horovod':
        try:
            import horovod.mxnet as hvd  # pylint: disable=import-outside-toplevel
        except ImportError as err:
            raise ImportError('--kv-store horovod needs Horovod: run bash scripts/setup.d/50-horovod.sh (%s)'
                              % err) from err
        hvd.init()
        return Distributed(kv_store, hvd.rank(), hvd.size(), hvd=hvd, local_rank=hvd.local_rank())
    if not kv_store.startswith('dist'):
        return Distributed(kv_store, 0, 1)
    kvstore = mx.kv.create(kv_store)
    return Distributed(kv_store, kvstore.rank, kvstore.num_workers, kvstore=kvstore)
