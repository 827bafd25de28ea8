"""Training batches from an indexed RecordIO file through MXNet's C++ pipeline (``mx.io.ImageRecordIter``).

Decoding and the recipe's augmentation (random-resized crop, mirror, colour jitter, PCA lighting, mean/std)
run in C++ threads, about 2.5x faster per core than Gluon's transforms (the OpenCV loader of
:mod:`.opencv_augment`, the trainer's default, is a little faster still). :class:`RecordIOTrainIter` yields
``(data, label)`` NDArray batches like the Gluon ``DataLoader`` of the Python path does.

Determinism. One ``ImageRecordIter`` with several preprocessing threads hands records to whichever thread
is free, and each thread draws from its own random stream, so its augmentation changes from run to run.
Here each of the ``threads`` decoding threads is a single-threaded ``ImageRecordIter`` reading its own part
of this worker's shard, and every batch is the concatenation of one slice from each. The record order of
an epoch is fixed by ``(seed, epoch)`` and each part's augmentation stream by its position, so the same
seed and thread count give the same batches, and an epoch can be replayed from its start up to any batch.

Sharding. The file is split, in file order, into ``num_parts x threads`` contiguous parts of (nearly) equal
record counts, as ``ImageRecordIter``'s ``num_parts`` does; worker ``part_index`` reads parts
``part_index x threads ...``. Records are shuffled within each part every epoch, so pack files shuffled
(``im2rec.py``'s default) when several workers train on them. Every worker trains the same number of
batches per epoch; the few records that do not fill a batch slice are left out of that epoch (a different
few each epoch).
"""
import math

import mxnet as mx
import numpy as np

from .datasets import ImageRecord
from .eval_protocol import MEAN, STD

__all__ = ['RecordIOTrainIter', 'part_sizes']


def part_sizes(num_records, num_parts):
    """Record counts of the contiguous parts ``ImageRecordIter`` reads with ``num_parts`` (ceil-sized steps)."""
    step = int(math.ceil(num_records / float(num_parts)))
    return [max(0, min(num_records, (i + 1) * step) - i * step) for i in range(num_parts)]


def _seed(*values):
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0] % (1 << 31))


def _reason(err):
    return str(err).strip().splitlines()[-1]  # MXNet puts the reason on the last line


class RecordIOTrainIter(object):  # pylint: disable=too-many-instance-attributes
    """This worker's training batches of an indexed ``.rec``, decoded and augmented in C++.

    Parameters
    ----------
    path_imgrec, path_imgidx : str
        The record file and its index (``path_imgidx`` None: ``.rec`` -> ``.idx``).
    batch_size : int
        Images per batch (this worker's, over all its devices).
    input_size : int
        Side of the square crops.
    min_random_area : float
        Smallest random-resized crop area as a fraction of the image (aspect ratio 3/4..4/3).
    random_mirror : bool
    jitter : float
        Brightness, contrast and saturation jitter (0: off).
    lighting : float
        PCA lighting noise (0: off).
    classes : int or None
        Labels must lie in ``0..classes-1``; a record outside is a one-line ``ValueError``.
    num_parts, part_index : int
        Number of workers and this worker's rank.
    seed : int
    threads : int
        Decoding threads (at most ``batch_size`` are used). The batches depend on it.

    Use like the Python path's sampler and loader together: ``set_epoch(epoch, start_batch)``, then
    iterate; ``batches_per_epoch`` is the same on every worker.
    """

    def __init__(self, path_imgrec, path_imgidx=None, batch_size=32, input_size=224, min_random_area=0.08,
                 random_mirror=True, jitter=0.4, lighting=0.1, classes=None, num_parts=1, part_index=0,
                 seed=0, threads=4):
        if not 0 < min_random_area <= 1:
            raise ValueError('--min-random-area must be in (0, 1], got %r' % (min_random_area,))
        self.record = ImageRecord(path_imgrec, path_imgidx)  # existence and .rec/.idx consistency
        self.batch_size, self.classes, self.seed = batch_size, classes, seed
        self.num_parts, self.part_index = num_parts, part_index
        self.threads = max(1, min(int(threads), batch_size))
        self.slices = [batch_size // self.threads + (t < batch_size % self.threads) for t in range(self.threads)]
        sizes = part_sizes(len(self.record), num_parts * self.threads)
        self.batches_per_epoch = min(sizes[p] // self.slices[p % self.threads] for p in range(len(sizes)))
        if self.batches_per_epoch < 1:
            raise ValueError('%d training records are fewer than one batch of %d on each of %d worker(s)'
                             % (len(self.record), batch_size, num_parts))
        self.epoch, self.start_batch = 0, 0
        self._options = dict(
            path_imgrec=self.record.rec, path_imgidx=self.record.idx, data_shape=(3, input_size, input_size),
            shuffle=True, random_resized_crop=True, min_random_area=min_random_area,
            max_random_area=1.0, min_aspect_ratio=3.0 / 4, max_aspect_ratio=4.0 / 3,
            rand_mirror=bool(random_mirror), brightness=jitter, contrast=jitter, saturation=jitter,
            pca_noise=lighting, mean_r=255 * MEAN[0], mean_g=255 * MEAN[1], mean_b=255 * MEAN[2],
            std_r=255 * STD[0], std_g=255 * STD[1], std_b=255 * STD[2], num_parts=num_parts * self.threads,
            preprocess_threads=1, round_batch=False, verbose=False,
            # Plain host memory: the default pins it for GPU 0, which would open a CUDA context on GPU 0
            # in every Horovod process; batches are copied (joined) on the host anyway.
            device_id=-1)

    def set_epoch(self, epoch, start_batch=0):
        """Read ``epoch``'s order from batch ``start_batch`` on (earlier batches are decoded and dropped)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self):
        return self.batches_per_epoch - self.start_batch

    def _part(self, thread):
        return self.part_index * self.threads + thread

    def _open(self, thread):
        """The single-threaded iterator of one part for this epoch."""
        part = self._part(thread)
        try:
            return mx.io.ImageRecordIter(batch_size=self.slices[thread], part_index=part,
                                         seed=_seed(self.seed, self.epoch, part), **self._options)
        except mx.base.MXNetError as err:
            raise self._failure(thread, err) from err

    def __iter__(self):
        iters = [self._open(t) for t in range(self.threads)]
        for batch in range(self.batches_per_epoch):
            pieces = [self._next(it, t) for t, it in enumerate(iters)]
            if batch < self.start_batch:
                continue  # replayed so that the augmentation streams reach this batch as they did before
            data = mx.nd.concat(*[p.data[0] for p in pieces], dim=0) if len(pieces) > 1 \
                else pieces[0].data[0].copy()  # the iterator reuses its buffers
            labels = np.concatenate([p.label[0].asnumpy() for p in pieces])
            self._check_labels(labels, batch)
            yield data, mx.nd.array(labels, dtype='int64')

    def _next(self, it, thread):
        try:
            piece = it.next()
            piece.data[0].wait_to_read()  # a decoding error surfaces here, not in a later op
        except mx.base.MXNetError as err:
            raise self._failure(thread, err) from err
        return piece

    def _check_labels(self, labels, batch):
        bad = (labels < 0) | (labels != np.floor(labels))
        if self.classes:
            bad |= labels >= self.classes
        if bad.any():
            raise self._failure(None, 'label %g in epoch %d batch %d is not a class index 0..%s'
                                % (labels[bad][0], self.epoch + 1, batch + 1,
                                   self.classes - 1 if self.classes else 'N'))

    def _part_keys(self, thread):
        """Index keys of a part's records, in the file order ``ImageRecordIter`` partitions by."""
        offsets = self.record.offsets
        keys = sorted(offsets, key=offsets.get)
        sizes = part_sizes(len(keys), self.num_parts * self.threads)
        start = sum(sizes[:self._part(thread)])
        return keys[start:start + sizes[self._part(thread)]]

    def _failure(self, thread, err):
        """A one-line ValueError naming the record behind a failure, found by reading the part(s) again.

        ``thread`` None (a bad label): every part of this worker, headers only; else that thread's part,
        decoding each image as the C++ reader does.
        """
        threads = [thread] if thread is not None else range(self.threads)
        for key in (k for t in threads for k in self._part_keys(t)):
            label = self.record.read(key, decode=thread is not None)[1]  # raises on an undecodable image
            if label < 0 or (self.classes and label >= self.classes):
                return ValueError('%s record %s has label %d, outside 0..%d (--classes %d)'
                                  % (self.record.rec, key, label, self.classes - 1, self.classes))
        return ValueError('reading %s failed: %s' % (self.record.rec,
                                                      err if isinstance(err, str) else _reason(err)))
