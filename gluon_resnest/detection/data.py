"""Detection data: the data sets (VOC, COCO, shapes; instances for mask detectors), the training order and
loaders (augmentation seeded by the batch's position), and the held-out loader.
"""
import os

import mxnet as mx
from mxnet import gluon

from ..engine.loop import seed_everything
from ..engine.sampler import ShardedShuffleSampler
from ..procs import children_die_with_this_process
from .datasets import DataError, is_voc_folder, open_coco_json, open_voc_folder, read_class_list
from .masks import load_instance_datasets, train_pipeline
from .registry import detector
from .sampler import AspectRatioBatchSampler, image_orientations

__all__ = ['load_datasets', 'load_box_datasets', 'train_loaders', 'val_loader', 'ValTransform', 'device_shards']

def load_box_datasets(name, root=None):
    """(train, val, classes) of 'voc', 'coco' or 'shapes' under ``root``, with boxes (for box detectors).

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        A training image has no boxes.
    """
    from gluoncv import data as gdata  # pylint: disable=import-outside-toplevel
    from .shapes import ShapesDetection  # pylint: disable=import-outside-toplevel
    root = _dataset_root(name, root)
    if name == 'coco':
        train = gdata.COCODetection(root, splits='instances_train2017', use_crowd=False)
        val = gdata.COCODetection(root, splits='instances_val2017', skip_empty=False)
        return train, val, val.classes
    if name == 'voc':
        train = gdata.VOCDetection(root, splits=[(2007, 'trainval'), (2012, 'trainval')])
        val = gdata.VOCDetection(root, splits=[(2007, 'test')])
    else:
        train = ShapesDetection(root, splits=[(2007, 'train')])
        val = ShapesDetection(root, splits=[(2007, 'val')])
    _check_boxes(train)
    return train, val, val.classes

def _dataset_root(name, root):
    """``root`` (default ``~/.mxnet/datasets/{name}``), which must exist."""
    root = os.path.expanduser(root or os.path.join('~', '.mxnet', 'datasets', name))
    if not os.path.isdir(root):
        raise FileNotFoundError('dataset folder %s does not exist' % root)
    return root

def load_datasets(config):
    """(train, val, classes) of ``config``: a user's VOC-layout folder or COCO-format files, or a named dataset
    (instances, boxes and polygons, for a mask detector; else boxes)."""
    own = _own_datasets(config)
    if own is not None:
        return own
    if detector(config.detector).masks:
        return load_instance_datasets(config.dataset, _dataset_root(config.dataset, config.dataset_root))
    return load_box_datasets(config.dataset, config.dataset_root)

def _own_datasets(config):
    """(train, val, classes) of a user's VOC-layout folder or COCO-format files (None for the named
    datasets), checked as :mod:`~gluon_resnest.detection.datasets` checks them."""
    classes = read_class_list(config.classes)
    if config.dataset == 'coco' and config.val_json:
        return open_coco_json(config.train_json, config.val_json, config.image_root, classes, config.skip_bad,
                              masks=detector(config.detector).masks)
    if config.dataset == 'voc' and is_voc_folder(config.dataset_root):
        return open_voc_folder(config.dataset_root, config.train_split, config.val_split, classes,
                               config.skip_bad)
    if classes is not None or config.skip_bad:
        raise DataError('--classes and --skip-bad read a VOC-layout folder (--dataset-root holding Annotations/, '
                        'JPEGImages/, ImageSets/Main/) or COCO-format files (--train-json, --val-json)')
    return None


def _check_boxes(dataset):
    """R-CNN training needs a box in every image; VOC-layout labels are cheap to read."""
    for index, (_, image_id) in enumerate(dataset._items):  # pylint: disable=protected-access
        if len(dataset._load_label(index)) == 0:  # pylint: disable=protected-access
            raise ValueError('image %s has no boxes (no <object> in its annotation); remove it from '
                             'the split file or annotate it' % image_id)

def train_loaders(net, train_set, val, config, ctx, dist):
    """(training loader, its sampler, held-out loader or None without ``val``)."""
    batch_size = config.batch_size // dist.num_workers
    order, sampler = _train_order(train_set, batch_size, len(ctx), dist, config.seed)
    transform, batchify = train_pipeline(net, len(ctx), detector(config.detector).masks)
    with children_die_with_this_process():  # each loader's multiprocessing.Pool forks its workers here
        loader = gluon.data.DataLoader(train_set.transform(transform), num_workers=config.num_workers,
                                          batchify_fn=batchify, **order)
    loader = _PositionSeededLoader(loader, sampler, config.seed, dist.rank)
    if val is None:
        return loader, sampler, None
    return loader, sampler, val_loader(net, val, len(ctx), config.num_workers)

class _PositionSeededLoader(object):
    """Seeds NumPy's and Python's generators from the batch's position before each batch is made.

    GluonCV's training transform draws its flips and random short sides from them: a batch then gets the
    same augmentation however the run got there (resumed, or after a validation). With loader processes
    (``--num-workers`` > 0) the transforms draw from the processes' own generators instead.
    """

    def __init__(self, loader, sampler, seed, rank):
        self._loader, self._sampler, self._seed, self._rank = loader, sampler, seed, rank

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        epoch, batch = self._sampler.epoch, self._sampler.start_batch
        batches = iter(self._loader)
        while True:
            seed_everything(self._seed, epoch, batch, self._rank, mxnet=False)
            try:
                item = next(batches)
            except StopIteration:
                return
            yield item
            batch += 1

def _train_order(train_set, batch_size, num_devices, dist, seed):
    """DataLoader arguments of the training order and its resumable sampler.

    With several images per device, each batch holds images of one orientation
    (:class:`AspectRatioBatchSampler`); otherwise a seeded shuffle (:class:`ShardedShuffleSampler`).
    With several workers, each trains on its own share, the same number of batches.
    """
    if batch_size > num_devices:
        sampler = AspectRatioBatchSampler(image_orientations(train_set), batch_size, dist.num_workers,
                                          dist.rank, seed)
        if len(sampler) < 1:
            raise ValueError('%d training images give no batch of %d images of one orientation on each '
                             'of %d workers' % (len(train_set), batch_size, dist.num_workers))
        return dict(batch_sampler=sampler), sampler
    sampler = ShardedShuffleSampler(len(train_set), batch_size, dist.num_workers, dist.rank, seed)
    if sampler.batches_per_epoch < 1:
        raise ValueError('%d training images are fewer than one batch of %d on each of %d workers'
                         % (len(train_set), batch_size, dist.num_workers))
    return dict(batch_size=batch_size, last_batch='discard', sampler=sampler), sampler

def val_loader(net, val, num_devices, num_workers=0):
    """Held-out loader for :func:`evaluate`: one image per device, resized to the net's test
    short side (the largest of a multi-scale ``net.short``), with its original size."""
    from gluoncv.data.batchify import Append, Tuple  # pylint: disable=import-outside-toplevel
    short = max(net.short) if isinstance(net.short, (tuple, list)) else net.short
    with children_die_with_this_process():  # the loader's multiprocessing.Pool forks its workers here
        return gluon.data.DataLoader(
            val.transform(ValTransform(short, net.max_size)), num_devices, shuffle=False,
            last_batch='keep', num_workers=num_workers,
            batchify_fn=Tuple(*[Append() for _ in range(3)]))

class ValTransform(object):
    """GluonCV's ``FasterRCNNDefaultValTransform`` that also returns the original (height, width).

    Returns ``(image, label, size)``: the image resized as GluonCV's, the label with boxes in the
    resized image's coordinates (as GluonCV's), and ``size`` (2,) the image's original height and
    width, from which :func:`evaluate` scales each axis back exactly (GluonCV's ``im_scale`` is
    the height's ratio only).
    """

    def __init__(self, short, max_size):
        # pylint: disable=import-outside-toplevel
        from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
        self._transform = FasterRCNNDefaultValTransform(short, max_size)

    def __call__(self, src, label):
        img, bbox, _ = self._transform(src, label)
        return img, bbox, mx.nd.array(src.shape[:2])

def device_shards(batch, ctx):
    """One batch of the training loader as one list of inputs per device of ``ctx``."""
    return [[(part[k] if isinstance(part, (list, tuple)) else part).as_in_context(c)
             for part in batch] for k, c in enumerate(ctx)]
