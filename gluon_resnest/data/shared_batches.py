"""Training batches made by worker processes straight into a ring of reused shared-memory buffers.

Gluon's ``DataLoader`` with workers stacks each batch and copies it into a new shared-memory segment,
which the kernel maps in page by page (4 KiB pages: shared memory gets no transparent huge pages): for a
batch of 32 float32 224 px images that is ~25 ms of page faults per batch, about 0.8 ms per image, as
much as a third of what decoding and augmenting the image costs. Here the buffers are mapped once, before
the workers are forked, and reused for every batch: a worker writes each image in place
(``dataset.write(key, out)``), the training process copies the finished batch into an NDArray (~2 ms)
and hands the buffer to the next batch.

Batches come out in the sampler's order whatever the number of workers; what a batch holds depends only
on its keys (the dataset's draws are keyed by them), so any ``num_workers`` gives the same batches.
"""
import mmap
import multiprocessing
import pickle
import queue
import signal
import weakref

import mxnet as mx
import numpy as np

__all__ = ['SharedBatchLoader']


class SharedBatchLoader(object):
    """Batches of ``batch_size`` keys of ``sampler``, as ``(float32 data, label)`` NDArrays on the CPU.

    Parameters
    ----------
    dataset : object
        ``dataset.write(key, out) -> label`` writes the sample of ``key`` into ``out`` (a float32 array of
        ``sample_shape``) and returns its label.
    sampler : iterable
        Keys, in training order; a last partial batch is dropped.
    batch_size : int
    sample_shape : tuple of int
    num_workers : int, default 0
        Worker processes (forked here, at construction); 0 makes the batches in the calling process.
    prefetch : int, optional
        Batches in flight (buffers); default twice the workers, as Gluon's ``DataLoader``. Memory:
        ``prefetch`` x batch_size x prod(sample_shape) x 4 bytes of shared memory, held while the loader lives.
    """

    def __init__(self, dataset, sampler, batch_size, sample_shape, num_workers=0, prefetch=None):
        if batch_size < 1:
            raise ValueError('batch size must be >= 1, got %d' % batch_size)
        if num_workers < 0:
            raise ValueError('number of data workers must be >= 0, got %d' % num_workers)
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        slots = max(1, prefetch or 2 * num_workers)
        shape = (slots, batch_size) + tuple(sample_shape)
        if num_workers:
            self._memory = mmap.mmap(-1, int(np.prod(shape)) * 4)  # MAP_SHARED: the forked workers write it
            self._buffers = np.frombuffer(self._memory, dtype=np.float32).reshape(shape)
        else:
            self._buffers = np.empty(shape, dtype=np.float32)
        self._seq = 0  # batches submitted so far, over all epochs
        self._in_flight = 0
        self._workers = []
        if num_workers:
            context = multiprocessing.get_context('fork')
            self._tasks, self._results = context.SimpleQueue(), context.Queue()
            for _ in range(num_workers):
                worker = context.Process(target=_work, args=(dataset, self._buffers, self._tasks, self._results),
                                         daemon=True)
                worker.start()
                self._workers.append(worker)
            self._finalizer = weakref.finalize(self, _stop, self._workers, self._tasks)

    def __len__(self):
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        self._drain()
        if not self._workers:
            yield from self._in_process()
            return
        keys, free, done = iter(self.sampler), list(range(len(self._buffers))), {}
        first = self._seq
        while True:
            while free:
                batch = [key for _, key in zip(range(self.batch_size), keys)]
                if len(batch) < self.batch_size:
                    break
                self._tasks.put((self._seq, free.pop(), batch))
                self._seq, self._in_flight = self._seq + 1, self._in_flight + 1
            if first == self._seq:
                return
            while first not in done:
                seq, slot, labels, error = self._result()
                done[seq] = slot, labels, error
            slot, labels, error = done.pop(first)
            if error is not None:
                raise error
            data, label = mx.nd.array(self._buffers[slot]), _labels(labels)
            free.append(slot)
            first += 1
            yield data, label

    def _in_process(self):
        keys, out = iter(self.sampler), self._buffers[0]
        while True:
            batch = [key for _, key in zip(range(self.batch_size), keys)]
            if len(batch) < self.batch_size:
                return
            labels = [self.dataset.write(key, out[i]) for i, key in enumerate(batch)]
            yield mx.nd.array(out), _labels(labels)

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
        # Batches of an epoch left early (Ctrl-C, an error): wait until their buffers are free again.
        while self._in_flight:
            self._result()

    def close(self):
        """Stop the worker processes (also done when the loader is garbage-collected)."""
        if self._workers:
            self._finalizer()


def _labels(labels):
    labels = np.asarray(labels)
    return mx.nd.array(labels, dtype=labels.dtype)


def _work(dataset, buffers, tasks, results):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    while True:
        task = tasks.get()
        if task is None:
            return
        seq, slot, keys = task
        try:
            labels = [dataset.write(key, buffers[slot, i]) for i, key in enumerate(keys)]
            results.put((seq, slot, labels, None))
        except Exception as exc:  # pylint: disable=broad-except
            results.put((seq, slot, None, _picklable(exc)))  # raised in the training process when this batch is due


def _picklable(exc):
    # An exception that does not pickle would be lost in the queue's feeder thread, and the batch with it.
    try:
        pickle.dumps(exc)
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
