"""The evaluation loader: every image once, in order, through the protocol's transform, in worker processes.

``eval.py`` (:func:`gluon_resnest.evaluate`) and the trainer's validation load through
:func:`make_eval_loader`. Its workers decode with MXNet's decoder (the datasets') and crop, resize and
normalise with :meth:`EvalTransform.write` (OpenCV and numpy, the same values bit for bit as
:class:`EvalTransform`'s MXNet operators, which Gluon's ``DataLoader`` over
``dataset.transform_first(EvalTransform(...))``, :func:`make_loader`, runs). They write each image into
reused shared-memory batches (:class:`~gluon_resnest.data.shared_batches.SharedBatchLoader`) instead of
pickling it and copying every batch into a new shared-memory segment.

Each worker runs MXNet's operators on one thread, so ``-j N`` workers use N cores rather than competing
for all of them: MXNet's handler for a fork turns OpenMP off in the child and leaves MXNet's own OpenCV
without threads (``MXNET_MP_OPENCV_NUM_THREADS``, default 0). The ``cv2`` module's thread count is left
as it is, as in the training loader: setting it in a process forked from one whose OpenCV threads had
run can deadlock.
"""
import numpy as np

from .shared_batches import SharedBatchLoader

__all__ = ['make_eval_loader', 'EvalSamples']


class EvalSamples(object):
    """``dataset``'s images through ``transform``, written in place (the interface of
    :class:`~gluon_resnest.data.shared_batches.SharedBatchLoader`).

    Parameters
    ----------
    dataset : Dataset
        ``dataset[i]`` is ``(HWC uint8 image NDArray, int label)`` (:class:`ImageFolder`,
        :class:`ImageRecord`, or a slice of one).
    transform : EvalTransform

    Attributes
    ----------
    sample_shape : tuple of int
        ``(3, crop, crop)`` normalised, ``(crop, crop, 3)`` with ``transform.normalize`` False.
    dtype : str
        'float32' normalised, else 'uint8' (what the transform returns).
    """

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform
        crop = transform.crop
        self.sample_shape = (3, crop, crop) if transform.normalize else (crop, crop, 3)
        self.dtype = 'float32' if transform.normalize else 'uint8'

    def write(self, key, out):
        """Write image ``key`` into ``out``; returns its label."""
        image, label = self.dataset[key]
        self.transform.write(image.asnumpy(), out)
        return int(label)

    def __len__(self):
        return len(self.dataset)


def make_eval_loader(dataset, batch_size, transform, num_workers=0):
    """Batches of ``dataset`` in order, through ``transform``, the last one partial if need be.

    Parameters
    ----------
    dataset : Dataset
        ``(HWC uint8 image, int label)`` samples (:class:`ImageFolder`, :class:`ImageRecord`).
    batch_size : int
    transform : EvalTransform
    num_workers : int, default 0
        Worker processes (``-j``), forked here; they end with the calling process, even by SIGKILL
        (:mod:`gluon_resnest.procs`). 0 loads in the calling process.

    Returns
    -------
    SharedBatchLoader
        Iterating it gives ``(data, label)`` NDArrays: data ``(n, 3, crop, crop)`` float32 (or
        ``(n, crop, crop, 3)`` uint8 unnormalised), labels int64; ``close()`` stops the workers.
    """
    samples = EvalSamples(dataset, transform)
    return SharedBatchLoader(samples, np.arange(len(samples)).tolist(), batch_size, samples.sample_shape,
                             num_workers=num_workers, last_batch='keep', dtype=samples.dtype)
