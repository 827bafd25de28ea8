"""How far the trainer's fast loader is from the recipe's reference training pipeline, in image statistics.

Each photograph of a generated RecordIO (``bench_data.write_photo_rec``: 500x375 JPEGs cut from
scikit-learn's sample photographs) is augmented ``--draws`` times at ``--input-size`` by

- ``reference_a``, ``reference_b``: the reference Gluon/PIL transforms (``train_transform``: GluonCV's
  ``EfficientNetRandomCrop``, PIL's resize and enhancers, Gluon's lighting from 320 px; Gluon's
  transforms below), two independent samples;
- ``fast``: the trainer's OpenCV loader augmentation (``TrainAugment``) with its default pipeline;
- ``fast_inception``: the same with the below-320 pipeline forced (what the trainer ran at every size
  before the >= 320 pipeline existed).

For each, the per-channel mean and std of the normalised images. The figure reported for a pair is the
largest absolute difference over the six numbers: two reference samples give the noise of the
measurement itself.

Usage::

    python benchmarks/pipeline_statistics.py --input-size 320 --images 160 --draws 6 --json
"""
import argparse
import json
import os
import random
import sys
import tempfile

import gluon_resnest  # noqa: F401  (loads MXNet: gluon_resnest_compat.import_mxnet)
import mxnet as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import write_photo_rec  # noqa: E402  pylint: disable=wrong-import-position
from gluon_resnest.data import ImageRecord  # noqa: E402
from gluon_resnest.data.opencv_augment import TrainAugment  # noqa: E402
from gluon_resnest.data.train_transforms import train_transform  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('Usage', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input-size', type=int, default=320)
    parser.add_argument('--images', type=int, default=160, help='photographs in the generated file')
    parser.add_argument('--draws', type=int, default=6, help='augmentations of each photograph per sample')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', action='store_true', help='end with one JSON line of the figures')
    return parser.parse_args(argv)


class ChannelStats(object):
    """Running per-channel mean and std of normalised CHW images (the images themselves are not kept)."""

    def __init__(self):
        self.sums, self.squares, self.count = np.zeros(3), np.zeros(3), 0

    def add(self, image):
        """Count one CHW image in."""
        image = np.asarray(image, dtype=np.float64)
        self.sums += image.sum((1, 2))
        self.squares += (image ** 2).sum((1, 2))
        self.count += image[0].size

    def result(self):
        """The 6 numbers: per-channel mean, then per-channel std."""
        mean = self.sums / self.count
        return np.concatenate([mean, np.sqrt(np.maximum(self.squares / self.count - mean ** 2, 0))])


def samples(rec, args):
    """{sample name: channel statistics}."""
    dataset = ImageRecord(rec)
    reference = train_transform(args.input_size)
    fast = TrainAugment(args.input_size)
    fast_inception = TrainAugment(args.input_size, pipeline='inception')
    mx.random.seed(args.seed)
    random.seed(args.seed)
    out = {name: ChannelStats() for name in ('reference_a', 'reference_b', 'fast', 'fast_inception')}
    for index in range(len(dataset)):
        buf, _, _ = dataset.read_encoded(index)
        image = mx.image.imdecode(buf)
        for draw in range(args.draws):
            for name in ('reference_a', 'reference_b'):
                out[name].add(reference(image).asnumpy())
            rng_key = [args.seed, index, draw]
            out['fast'].add(fast(buf, np.random.Generator(np.random.PCG64(rng_key))))
            out['fast_inception'].add(fast_inception(buf, np.random.Generator(np.random.PCG64(rng_key))))
    return {name: stats.result() for name, stats in out.items()}


def main(argv=None):
    """Print the differences (and the JSON line)."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rec = os.path.join(tmp, 'photos.rec')
        write_photo_rec(rec, args.images)
        stats = samples(rec, args)
    pairs = {'reference_a vs reference_b': ('reference_a', 'reference_b'),
             'fast vs reference_a': ('fast', 'reference_a'),
             'fast_inception vs reference_a': ('fast_inception', 'reference_a')}
    print('%d photographs x %d draws at %d px; largest |difference| of the per-channel mean and std of the '
          'normalised images:' % (args.images, args.draws, args.input_size))
    figures = {}
    for label, (one, other) in pairs.items():
        diff = np.abs(stats[one] - stats[other])
        figures[label] = {'mean': round(float(diff[:3].max()), 4), 'std': round(float(diff[3:].max()), 4)}
        print('| %s | mean %.3f | std %.3f |' % (label, figures[label]['mean'], figures[label]['std']))
    if args.json:
        print(json.dumps(figures))


if __name__ == '__main__':
    main()
