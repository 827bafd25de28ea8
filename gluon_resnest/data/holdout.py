"""A held-out validation split of one folder of class folders (``--val-fraction``).

The split depends only on the seed and the sorted file list: every worker and every run of the same seed
holds out the same images, whatever its rank. The held-out list is written to the run folder
(``val_images.txt``, one ``class/file`` path a line) and a resumed run reads it back, so images added to
the folder later never move between the splits of a run.
"""
import copy
import os

import numpy as np

from ..fileio import atomic_write
from .datasets import ImageFolder

__all__ = ['HELDOUT_FILE', 'stratified_holdout', 'split_folder']

HELDOUT_FILE = 'val_images.txt'


def stratified_holdout(labels, fraction, seed):
    """Indices to hold out: ``round(fraction x n)`` of each class's ``n`` images (at least 1, at most n - 1).

    Parameters
    ----------
    labels : sequence of int
        The label of each image, in the order of the sorted file list.
    fraction : float
        In (0, 1).
    seed : int

    Returns
    -------
    list of int
        Sorted indices into ``labels``; the same for the same labels, fraction and seed.
    """
    labels = np.asarray(labels)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * len(members)))
        if len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        # One stream per class: a class's split does not change when another class gains images.
        order = np.random.RandomState([seed, int(label)]).permutation(len(members))
        held.extend(members[order[:count]].tolist())
    return sorted(held)


def _relative(folder, path):
    return os.path.relpath(path, folder.root).replace(os.sep, '/')


def _read_list(path, folder):
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    index = {_relative(folder, p): i for i, (p, _) in enumerate(folder.items)}
    missing = [n for n in names if n not in index]
    if missing:
        raise FileNotFoundError('%s lists %d image(s) no longer in %s, e.g. %s'
                                % (path, len(missing), folder.root, missing[0]))
    return sorted(index[n] for n in names)


def _write_text(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _subset(folder, indices):
    part = copy.copy(folder)
    part.items = [folder.items[i] for i in indices]
    return part


def split_folder(root, fraction, seed, run_dir, resumed=False, write=True):
    """(train, val) :class:`ImageFolder` s of one folder of class folders, ``fraction`` of each class held out.

    Parameters
    ----------
    root : str
        ``root/<class>/<image>``.
    fraction : float
        Held-out fraction of each class, in (0, 1).
    seed : int
    run_dir : str
        The run folder: ``run_dir/val_images.txt`` lists the held-out images.
    resumed : bool
        Read the held-out list of ``run_dir`` (a resumed run) instead of drawing it.
    write : bool
        Write the list (rank 0; the other workers draw the same one).
    """
    folder = ImageFolder(root)
    path = os.path.join(run_dir, HELDOUT_FILE)
    if resumed and os.path.isfile(path):
        held = _read_list(path, folder)
    else:
        held = stratified_holdout([label for _, label in folder.items], fraction, seed)
        if write:
            lines = ''.join(_relative(folder, folder.items[i][0]) + '\n' for i in held)
            os.makedirs(run_dir, exist_ok=True)
            atomic_write(path, lambda tmp: _write_text(tmp, lines))
    kept = sorted(set(range(len(folder.items))) - set(held))
    if not kept or not held:
        raise ValueError('--val-fraction %s of %d images in %s leaves an empty split' % (fraction, len(folder), root))
    return _subset(folder, kept), _subset(folder, held)
