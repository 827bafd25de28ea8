"""Training batches made by worker processes straight into a few reused shared-memory buffers.

Gluon's ``DataLoader`` with workers stacks each batch and copies it into a new shared-memory segment,
which the kernel maps in page by page (4 KiB pages: shared memory gets no transparent huge pages): for a
batch of 32 float32 224 px images that is ~25 ms of page faults per batch, about 0.8 ms per image, as
much as a third of what decoding and augmenting the image costs. Here the buffers are mapped once, before
the workers are forked, and reused for every batch: the workers write the images of a batch in place
(``dataset.write(key, out)``), each a chunk of it, the training process copies the finished batch out
(2-3 ms) and hands the buffer to a later batch.

Batches come out in the sampler's order whatever the number of workers; what a batch holds depends only
on its keys (the dataset's draws are keyed by them), so any ``num_workers`` gives the same batches.
Training drops the last partial batch; evaluation keeps it (``last_batch='keep'``), so that every key is
seen exactly once.
"""
import itertools
import mmap
import multiprocessing
import os
import pickle
import queue
import signal
import weakref

import mxnet as mx
import numpy as np

from ..procs import die_with_parent
from .datasets import check_loader_settings

__all__ = ['SharedBatchLoader']


class SharedBatchLoader(object):
    """Batches of ``batch_size`` keys of ``sampler``, as ``(data, int64 label)`` NDArrays on the CPU.

    The workers share each batch: it is cut into ``num_workers`` chunks of consecutive keys, so a batch is
    ready about ``num_workers`` times sooner than if one worker made it, and the batches in flight (the
    buffers) need not grow with the workers.

    Parameters
    ----------
    dataset : object
        ``dataset.write(key, out) -> label`` writes the sample of ``key`` into ``out`` (an array of
        ``sample_shape`` and ``dtype``) and returns its integer label.
    sampler : iterable
        Keys, in the order of the batches.
    batch_size : int
    sample_shape : tuple of int
    num_workers : int, default 0
        Worker processes (forked here, at construction; they exit when the process that made them ends,
        even by SIGKILL: :mod:`gluon_resnest.procs`); 0 makes the batches in the calling process.
    buffers : int, optional
        Batches in flight; default 3, more where a batch has fewer chunks than twice the workers (at least
        two chunks per worker in flight). Memory: ``buffers`` x batch_size x prod(sample_shape) x the
        dtype's size of shared memory, held while the loader lives.
    last_batch : {'discard', 'keep'}, default 'discard'
        What becomes of the last keys when they do not fill a batch: dropped (training), or handed out as
        a smaller batch (evaluation: every key exactly once, nothing padded).
    dtype : str, default 'float32'
        The samples' type (e.g. 'uint8' for cropped, unnormalised images).
    """

    def __init__(self, dataset, sampler, batch_size, sample_shape, num_workers=0, buffers=None,
                 last_batch='discard', dtype='float32'):
        check_loader_settings(batch_size, num_workers)
        if last_batch not in ('discard', 'keep'):
            raise ValueError("last_batch must be 'discard' or 'keep', got %r" % (last_batch,))
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        self.last_batch, dtype = last_batch, np.dtype(dtype)
        self.chunk = -(-batch_size // max(1, num_workers))
        chunks = -(-batch_size // self.chunk)
        slots = (buffers or max(3, -(-2 * num_workers // chunks))) if num_workers else 1
        shape = (slots, batch_size) + tuple(sample_shape)
        if num_workers:
            # MAP_SHARED and anonymous: the forked workers write it; not a /dev/shm file, so not bounded by
            # that file system's size (64 MiB in a default Docker container).
            self._memory = mmap.mmap(-1, int(np.prod(shape)) * dtype.itemsize)
            self._buffers = np.frombuffer(self._memory, dtype=dtype).reshape(shape)
        else:
            self._buffers = np.empty(shape, dtype=dtype)
        self._seq = 0  # batches submitted so far, over all epochs
        self._in_flight = 0  # chunks submitted and not yet returned
        self._workers = []
        if num_workers:
            context = multiprocessing.get_context('fork')
            self._tasks, self._results = context.SimpleQueue(), context.Queue()
            for _ in range(num_workers):
                worker = context.Process(target=_work, daemon=True,
                                         args=(dataset, self._buffers, self._tasks, self._results, os.getpid()))
                worker.start()
                self._workers.append(worker)
            self._finalizer = weakref.finalize(self, _stop, self._workers, self._tasks)

    def __len__(self):
        if self.last_batch == 'keep':
            return -(-len(self.sampler) // self.batch_size)
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        self._drain()
        if not self._workers:
            yield from self._in_process()
            return
        key_batches, free, pending = self._key_batches(), list(range(len(self._buffers))), {}
        first = self._seq
        while True:
            while free:
                keys = next(key_batches, None)
                if keys is None:
                    break
                slot = free.pop()
                pending[self._seq] = _Batch(slot, len(keys))
                for start in range(0, len(keys), self.chunk):
                    self._tasks.put((self._seq, slot, start, keys[start:start + self.chunk]))
                    self._in_flight += 1
                self._seq += 1
            if first == self._seq:
                return
            batch = pending[first]
            while batch.missing:
                seq, start, labels, error = self._result()
                done = pending[seq]
                done.missing -= min(self.chunk, len(done.labels) - start)
                if error is not None:
                    done.error = done.error or error
                else:
                    done.labels[start:start + len(labels)] = labels
            del pending[first]
            if batch.error is not None:
                raise batch.error
            data, labels = _handed_out(self._buffers[batch.slot, :len(batch.labels)], batch.labels)
            free.append(batch.slot)
            first += 1
            yield data, labels

    def _in_process(self):
        out = self._buffers[0]
        for keys in self._key_batches():
            labels = np.array([self.dataset.write(key, out[i]) for i, key in enumerate(keys)], dtype=np.int64)
            yield _handed_out(out[:len(keys)], labels)

    def _key_batches(self):
        # The sampler's keys in batches; a last partial batch only with last_batch='keep'.
        keys = iter(self.sampler)
        while True:
            batch = list(itertools.islice(keys, self.batch_size))
            if len(batch) == self.batch_size or (batch and self.last_batch == 'keep'):
                yield batch
            if len(batch) < self.batch_size:
                return

    def _result(self):
        while True:
            try:
                result = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [w for w in self._workers if not w.is_alive()]
                if dead:
                    raise RuntimeError('data loader process %d exited with code %s while making batches'
                                       % (dead[0].pid, dead[0].exitcode)) from None
                continue
            self._in_flight -= 1
            return result

    def _drain(self):
        # Chunks of an epoch left early (Ctrl-C, an error): wait until their buffers are free again.
        while self._in_flight:
            self._result()

    def close(self):
        """Stop the worker processes (also done when the loader is garbage-collected)."""
        if self._workers:
            self._finalizer()


def _handed_out(buffer, labels):
    """A finished batch as the training process gets it: NDArrays of its own, the buffer free again.

    The images are copied through numpy, which asks for huge pages for a large new array (madvise):
    2-3 ms for a batch of 32 at 224 px wherever the memory comes from. mx.nd.array's new memory is
    faulted in 4 KiB pages whenever the heap has no free block that size: 14 ms a batch over its first
    ten calls in a fresh process, and with other loaders in the same process (bench_data.py) the OpenCV
    loader at -j 2 gave 698-879 img/s instead of 891-990 (five runs each).
    """
    return mx.nd.from_numpy(np.array(buffer), zero_copy=True), mx.nd.array(labels, dtype=labels.dtype)


class _Batch(object):
    # A batch in flight: its buffer, its labels so far, how many of its samples are still being made.
    __slots__ = ('slot', 'labels', 'missing', 'error')

    def __init__(self, slot, size):
        self.slot, self.labels, self.missing, self.error = slot, np.zeros(size, dtype=np.int64), size, None


def _work(dataset, buffers, tasks, results, parent):
    die_with_parent(parent)  # a killed training process takes its workers with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    while True:
        task = tasks.get()
        if task is None:
            return
        seq, slot, start, keys = task
        try:
            labels = [dataset.write(key, buffers[slot, start + i]) for i, key in enumerate(keys)]
            results.put((seq, start, labels, None))
        except Exception as exc:  # pylint: disable=broad-except
            results.put((seq, start, None, _picklable(exc)))  # raised in the training process when this batch is due


def _picklable(exc):
    # An exception that does not pickle would be lost in the queue's feeder thread, and the batch with it;
    # one that does not unpickle would raise the unpickling error in the training process instead.
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # pylint: disable=broad-except
        return RuntimeError('%s: %s' % (type(exc).__name__, exc))


def _stop(workers, tasks):
    for _ in workers:
        tasks.put(None)
    for worker in workers:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()
