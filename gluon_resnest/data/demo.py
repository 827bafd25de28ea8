"""A small real image dataset for trying the trainer offline: scikit-learn's handwritten digits.

``gluon-resnest-make-demo-data OUTDIR`` (or ``python -m gluon_resnest.data.demo OUTDIR``) writes the
1797 8x8 digit scans, upscaled to 64 px RGB JPEGs, as ``OUTDIR/train/<digit>/*.jpg`` and
``OUTDIR/val/<digit>/*.jpg`` (ImageNet layout; a fixed, stratified 80/20 split) and the same images as
``OUTDIR/train.rec/.idx`` and ``OUTDIR/val.rec/.idx``. scikit-learn ships the images, so nothing is
downloaded. Each image gets a random dark ink colour on a light background so the three channels differ,
like photos.
"""
import os
import shutil
import sys

import cv2
import numpy as np

from .. import cli
from .datasets import ImageFolder, pack_record

__all__ = ['write_demo', 'parse_args', 'main']


def _render(digit, size, rng):
    """8x8 intensities 0..16 -> size x size RGB uint8: ink colour on a light, slightly tinted paper."""
    ink = cv2.resize(digit.astype(np.float32) / 16.0, (size, size), interpolation=cv2.INTER_CUBIC)
    ink = np.clip(ink, 0, 1)[..., None]
    paper = rng.uniform(200, 255, size=3)
    colour = rng.uniform(0, 120, size=3)
    return (paper * (1 - ink) + colour * ink).astype(np.uint8)


def _split(labels, val_fraction, rng):
    """Stratified split: indices of the validation images (the same ones for a given seed)."""
    val = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        val.extend(idx[:int(round(len(idx) * val_fraction))].tolist())
    return set(val)


def write_demo(outdir, size=64, val_fraction=0.2, seed=0):
    """Write the digits dataset (folders and RecordIO) under ``outdir``; returns image counts per split."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    if size < 8:
        raise ValueError('--size must be >= 8, got %d' % size)
    digits = load_digits()
    rng = np.random.RandomState(seed)
    val = _split(digits.target, val_fraction, rng)
    tmp = os.path.join(outdir, '.writing')
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {'train': 0, 'val': 0}
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        split = 'val' if i in val else 'train'
        folder = os.path.join(tmp, split, str(label))
        os.makedirs(folder, exist_ok=True)
        rgb = _render(image, size, rng)
        cv2.imwrite(os.path.join(folder, '%04d.jpg' % i), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        counts[split] += 1
    for split in ('train', 'val'):
        # Replace a previous demo split only once the new one is complete.
        shutil.rmtree(os.path.join(outdir, split), ignore_errors=True)
        os.replace(os.path.join(tmp, split), os.path.join(outdir, split))
        pack_record(ImageFolder(os.path.join(outdir, split)), os.path.join(outdir, split + '.rec'))
    shutil.rmtree(tmp, ignore_errors=True)
    return counts


def parse_args(argv=None):
    """Command line: OUTDIR [--size N] [--val-fraction F] [--seed S]."""
    parser = cli.ArgumentParser(prog='gluon-resnest-make-demo-data',
                                description='Write the offline digits demo dataset (JPEG folders + .rec).')
    parser.add_argument('outdir')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--val-fraction', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        parser.error('--val-fraction must be in (0, 1)')
    return args


def _run(argv):
    args = parse_args(argv)
    counts = write_demo(args.outdir, args.size, args.val_fraction, args.seed)
    print('wrote %d train and %d val images (10 classes, %d px) to %s/{train,val}/ and %s/{train,val}.rec'
          % (counts['train'], counts['val'], args.size, args.outdir, args.outdir))


def main(argv=None):
    """``gluon-resnest-make-demo-data OUTDIR``: write the dataset and print where; returns the exit status."""
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
