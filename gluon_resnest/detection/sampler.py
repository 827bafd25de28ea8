"""Batches of images of one orientation, as detectron2's aspect-ratio grouping makes them.

A device that takes several images pads them to the largest height and the largest width among them:
a landscape and a portrait image together make a square mostly of padding. Grouping landscape
(width > height) and portrait (width <= height) images into separate batches avoids it.
"""
import xml.etree.ElementTree as ET

import numpy as np
from mxnet.gluon.data import Sampler

__all__ = ['AspectRatioBatchSampler', 'image_orientations']


def _voc_landscape(path):
    size = ET.parse(path).find('size')
    if size is None:
        raise ValueError('annotation %s has no <size>, so its orientation is unknown' % path)
    return float(size.find('width').text) > float(size.find('height').text)


def image_orientations(dataset):
    """Whether each image of ``dataset`` is landscape (width > height), in the dataset's order.

    Reads GluonCV's ``get_im_aspect_ratio()`` (COCO) or, for a VOC-layout dataset, each annotation's
    ``<size>`` (no image is decoded).

    Raises
    ------
    ValueError
        The dataset gives neither.
    """
    if hasattr(dataset, 'get_im_aspect_ratio'):
        return [ratio > 1 for ratio in dataset.get_im_aspect_ratio()]
    anno_path = getattr(dataset, '_anno_path', None)
    if anno_path is None:
        raise ValueError('%s gives no image sizes (no get_im_aspect_ratio() and no VOC annotations)'
                         % type(dataset).__name__)
    return [_voc_landscape(anno_path.format(*item))
            for item in dataset._items]  # pylint: disable=protected-access


class AspectRatioBatchSampler(Sampler):
    """This worker's batches of a seeded per-epoch shuffle in which each step's images share one orientation.

    Each epoch shuffles the images (seeded by ``seed`` and the epoch), splits the order into landscape
    and portrait images, cuts each into steps of ``batch_size x num_parts`` images and shuffles the steps;
    a worker takes its ``batch_size`` images of every step. Every image appears at most once per epoch;
    the fewer than one step of each orientation left over sit the epoch out (other images each epoch).
    Every worker gets the same number of batches, which synchronous training needs.

    Parameters
    ----------
    landscape : sequence of bool
        Per image: width > height (see :func:`image_orientations`).
    batch_size : int
        Images per batch of this worker.
    num_parts, part_index : int
        Number of workers and this worker's rank.
    seed : int
    """

    def __init__(self, landscape, batch_size, num_parts=1, part_index=0, seed=0):
        if batch_size < 1 or not 0 <= part_index < num_parts:
            raise ValueError('need batch_size >= 1 and 0 <= part_index < num_parts, got %d, %d, %d'
                             % (batch_size, part_index, num_parts))
        self.landscape = np.asarray(landscape, dtype=bool)
        self.batch_size, self.num_parts, self.part_index = batch_size, num_parts, part_index
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        """Select the shuffle of ``epoch`` and skip its first ``start_batch`` batches (a resumed epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def batches_per_epoch(self):
        """Number of batches each worker trains on per epoch."""
        span = self.batch_size * self.num_parts
        wide = int(self.landscape.sum())
        return wide // span + (len(self.landscape) - wide) // span

    def _steps(self):
        rng = np.random.RandomState([self.seed, self.epoch])
        order = rng.permutation(len(self.landscape))
        span = self.batch_size * self.num_parts
        steps = []
        for orientation in (True, False):
            group = order[self.landscape[order] == orientation]
            steps.extend(group[:len(group) // span * span].reshape(-1, span))
        return [steps[i] for i in rng.permutation(len(steps))]

    def __iter__(self):
        for step in self._steps()[self.start_batch:]:
            yield step[self.part_index::self.num_parts].tolist()

    def __len__(self):
        return self.batches_per_epoch - self.start_batch
