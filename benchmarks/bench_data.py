"""Training input speed: the trainer's two loaders, Gluon's transforms and a bare ImageRecordIter, in one run.

Four loaders read the same indexed RecordIO file with the recipe's training augmentation (random-resized
crop, mirror, colour jitter 0.4, PCA lighting 0.1, mean/std) at ``--input-size``:

- ``python``: the trainer's ``--data-backend python`` loader (``T`` worker processes decoding and
  augmenting with OpenCV, ``gluon_resnest.data.opencv_augment``, into reused shared-memory batches,
  ``gluon_resnest.data.shared_batches``);
- ``gluon_transforms``: Gluon's ``DataLoader`` with ``T`` workers and Gluon's ``transforms`` (MXNet's
  decoder and image operators), as GluonCV's ``train_imagenet.py`` without ``--use-rec`` does;
- ``recordio``: the trainer's ``--data-backend recordio`` loader (``RecordIOTrainIter``, ``T`` threads);
- ``bare_imagerecorditer``: one ``mx.io.ImageRecordIter`` with ``preprocess_threads=T`` set up as GluonCV's
  ``train_imagenet.py --use-rec`` does (not reproducible across runs; the yardstick for overhead).

``--auto-aug`` adds AutoAugment's ImageNet policy (first, on the whole decoded image) and times only the
first two loaders (the C++ pipeline has no AutoAugment). From ``--input-size 320`` on, both time the
recipe's >= 320 px pipeline (EfficientNet crop, PIL bicubic resize, PIL colour jitter, lighting), the fast
form against the reference Gluon/PIL transforms; the C++ loaders have no form of it and are left out.

Evaluation input (first table, JSON key ``eval``; not with ``--auto-aug``): the same file through the
evaluation protocol (``EvalTransform(--input-size)``) by the loader of ``eval.py`` and the trainer's
validation (``shared_batches``: ``gluon_resnest.data.eval_loader``) and by Gluon's ``DataLoader`` over
``EvalTransform`` (``dataloader``), ``T`` workers each, timed the same way.

Each figure is images/s over whole passes (the first pass of each loader is a warm-up), the median of
``--runs`` passes, interleaved so that machine load hits all loaders alike. Without ``--rec`` the file is
generated: 640 JPEGs of 500x375 (ImageNet's typical size) cut from scikit-learn's sample photographs.
Peak memory is the growth of this process's peak resident memory while a C++ loader iterates.

Usage::

    python benchmarks/bench_data.py                      # 1, 2 and all threads
    python benchmarks/bench_data.py --threads 2 --json   # one thread count; last line is JSON
    python benchmarks/bench_data.py --rec ~/data/train.rec --batches 50
    python benchmarks/bench_data.py --auto-aug           # the two loaders that apply AutoAugment
    python benchmarks/bench_data.py --input-size 320     # the >= 320 px pipeline (ResNeSt-200/269)
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from types import SimpleNamespace

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import cv2  # noqa: E402
import gluon_resnest  # noqa: E402,F401  (loads MXNet: gluon_resnest_compat.import_mxnet)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_resnest.classification.config import TrainConfig  # noqa: E402
from gluon_resnest.data import MEAN, STD, EvalTransform, ImageRecord, make_loader  # noqa: E402
from gluon_resnest.data.efficientnet_augment import train_pipeline  # noqa: E402
from gluon_resnest.data.eval_loader import make_eval_loader  # noqa: E402
from gluon_resnest.data.recordio import RecordIOTrainIter  # noqa: E402
from gluon_resnest.data.train_transforms import train_transform  # noqa: E402
from gluon_resnest.procs import children_die_with_this_process  # noqa: E402
from gluon_resnest.classification.data import train_loader  # noqa: E402
from gluon_resnest.engine.sampler import ShardedShuffleSampler  # noqa: E402

JITTER, LIGHTING, MIN_AREA = 0.4, 0.1, 0.08


def parse_args(argv=None):
    """Command-line arguments of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('Usage', 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rec', default='', help='time this .rec (its .idx next to it) instead of generating one')
    parser.add_argument('--threads', type=int, default=0, help='one thread count (default: 1, 2 and all cores)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--images', type=int, default=640, help='images in the generated file')
    parser.add_argument('--batches', type=int, default=0, help='batches per pass (default: a whole epoch)')
    parser.add_argument('--runs', type=int, default=3, help='timed passes per loader (median reported)')
    parser.add_argument('--json', action='store_true', help='end with one JSON line: loader -> images/s')
    parser.add_argument('--auto-aug', action='store_true',
                        help='with AutoAugment: only the two loaders that have it (python, gluon_transforms)')
    return parser.parse_args(argv)


def write_photo_rec(path, count, seed=0):
    """``count`` 500x375 JPEG crops (random position, scale, flip) of scikit-learn's sample photographs."""
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    photos = load_sample_images().images  # two 427x640 RGB photographs
    rng = np.random.RandomState(seed)
    writer = mx.recordio.MXIndexedRecordIO(os.path.splitext(path)[0] + '.idx', path, 'w')
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = rng.uniform(0.6, 0.88)  # crop 0.6..0.88 of the height, resized to 375 rows
        h = int(photo.shape[0] * scale)
        w = int(h * 500 / 375.0)
        y, x = rng.randint(0, photo.shape[0] - h + 1), rng.randint(0, photo.shape[1] - w + 1)
        crop = cv2.resize(photo[y:y + h, x:x + w], (500, 375), interpolation=cv2.INTER_AREA)
        if rng.rand() < 0.5:
            crop = crop[:, ::-1]
        jpeg = cv2.imencode('.jpg', np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 10), i, 0), jpeg.tobytes()))
    writer.close()


def python_loader(rec, batch_size, input_size, threads, auto_aug=False):
    """The trainer's Python loader (``--data-backend python``), one worker."""
    config = TrainConfig(model='resnest50', rec_train=rec, rec_val=rec, input_size=input_size,
                         min_random_area=MIN_AREA, jitter_param=JITTER, lighting_param=LIGHTING,
                         batch_size=batch_size, num_data_workers=threads, auto_aug=auto_aug)
    loader, sampler = train_loader(ImageRecord(rec), config, SimpleNamespace(num_workers=1, rank=0), batch_size)
    return loader, sampler.set_epoch


def gluon_transforms_loader(rec, batch_size, input_size, threads, auto_aug=False):
    """Gluon's DataLoader with Gluon's transforms on MXNet-decoded images."""
    dataset = ImageRecord(rec)
    transform = train_transform(input_size, min_random_area=MIN_AREA, jitter=JITTER, lighting=LIGHTING,
                                auto_aug=auto_aug)
    sampler = ShardedShuffleSampler(len(dataset), batch_size)
    with children_die_with_this_process():
        loader = mx.gluon.data.DataLoader(dataset.transform_first(transform), batch_size=batch_size,
                                          sampler=sampler, num_workers=threads, last_batch='discard')
    return loader, sampler.set_epoch


def recordio_loader(rec, batch_size, input_size, threads):
    """The trainer's C++ loader (``--data-backend recordio``), one worker."""
    it = RecordIOTrainIter(rec, None, batch_size=batch_size, input_size=input_size, min_random_area=MIN_AREA,
                           jitter=JITTER, lighting=LIGHTING, threads=threads)
    return it, it.set_epoch


class BareIter(object):
    """One ImageRecordIter with ``preprocess_threads``, as GluonCV's ``--use-rec`` sets it up."""

    def __init__(self, rec, batch_size, input_size, threads):
        self.it = mx.io.ImageRecordIter(
            path_imgrec=rec, path_imgidx=os.path.splitext(rec)[0] + '.idx', data_shape=(3, input_size, input_size),
            batch_size=batch_size, shuffle=True, random_resized_crop=True, min_random_area=MIN_AREA,
            max_random_area=1, min_aspect_ratio=3 / 4.0, max_aspect_ratio=4 / 3.0, rand_mirror=True,
            brightness=JITTER, contrast=JITTER, saturation=JITTER, pca_noise=LIGHTING,
            mean_r=255 * MEAN[0], mean_g=255 * MEAN[1], mean_b=255 * MEAN[2], std_r=255 * STD[0],
            std_g=255 * STD[1], std_b=255 * STD[2], preprocess_threads=threads, round_batch=False, verbose=False)

    def set_epoch(self, epoch):  # pylint: disable=unused-argument
        """Start the next pass."""
        self.it.reset()

    def __iter__(self):
        for batch in self.it:
            yield batch.data[0], batch.label[0]


def _peak_kib():
    with open('/proc/self/status') as f:
        return {k: int(v.split()[0]) for k, v in (line.split(':', 1) for line in f) if k in ('VmHWM', 'VmRSS')}


def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident size (Linux >= 4.0)
    except OSError:
        pass


def time_pass(loader, set_epoch, epoch, batches):
    """(images/s of one pass over ``batches`` batches, peak resident growth in MiB)."""
    set_epoch(epoch)
    _reset_peak()
    base = _peak_kib()['VmRSS']
    images, tic = 0, time.time()
    for i, (data, _) in enumerate(loader):
        data.wait_to_read()
        images += data.shape[0]
        if i + 1 == batches:
            break
    speed = images / (time.time() - tic)
    return speed, (_peak_kib()['VmHWM'] - base) / 1024.0


def bench_threads(rec, args, threads, batches):
    """Median images/s (and peak memory growth) of each loader at one thread count, interleaved."""
    if _python_only(args):  # no C++ form of AutoAugment or of the >= 320 px pipeline
        makers = {'python': partial(python_loader, auto_aug=args.auto_aug),
                  'gluon_transforms': partial(gluon_transforms_loader, auto_aug=args.auto_aug)}
    else:
        makers = {'python': python_loader, 'gluon_transforms': gluon_transforms_loader, 'recordio': recordio_loader,
                  'bare_imagerecorditer': lambda *a: (lambda it: (it, it.set_epoch))(BareIter(*a))}
    loaders = {name: make(rec, args.batch_size, args.input_size, threads) for name, make in makers.items()}
    results = {name: [] for name in loaders}
    for run in range(args.runs + 1):  # run 0: warm-up
        for name, (loader, set_epoch) in loaders.items():
            measured = time_pass(loader, set_epoch, run, batches)
            if run:
                results[name].append(measured)
    return {name: (statistics.median(s for s, _ in runs), max(m for _, m in runs)) for name, runs in results.items()}


def _python_only(args):
    """Whether only the two Python loaders run: with AutoAugment or from 320 px on."""
    return args.auto_aug or train_pipeline(args.input_size) == 'efficientnet'


def eval_loaders(rec, batch_size, input_size, threads):
    """{name: (loader, set_epoch)}: the evaluation loader and Gluon's DataLoader over EvalTransform."""
    dataset, transform = ImageRecord(rec), EvalTransform(input_size)
    with children_die_with_this_process():
        dataloader = make_loader(dataset, batch_size, transform, num_workers=threads)
    return {'shared_batches': (make_eval_loader(dataset, batch_size, transform, num_workers=threads), _no_epoch),
            'dataloader': (dataloader, _no_epoch)}


def _no_epoch(epoch):  # pylint: disable=unused-argument
    """Evaluation passes are all alike."""


def bench_eval(rec, args, counts, batches):
    """Print the evaluation loaders' table; {threads: {loader: median images/s}}, interleaved passes."""
    print('| eval workers | shared batches (eval.py, validation) img/s | Gluon DataLoader img/s | '
          'shared / DataLoader |')
    print('|---|---|---|---|')
    by_threads = {}
    for threads in counts:
        loaders = eval_loaders(rec, args.batch_size, args.input_size, threads)
        speeds = {name: [] for name in loaders}
        for run in range(args.runs + 1):  # run 0: warm-up
            for name, (loader, set_epoch) in loaders.items():
                speed, _ = time_pass(loader, set_epoch, run, batches)
                if run:
                    speeds[name].append(speed)
        loaders['shared_batches'][0].close()
        medians = {name: statistics.median(runs) for name, runs in speeds.items()}
        by_threads[threads] = {name: round(speed, 1) for name, speed in medians.items()}
        print('| %d | %.1f | %.1f | %.2fx |' % (threads, medians['shared_batches'], medians['dataloader'],
                                                medians['shared_batches'] / medians['dataloader']))
        sys.stdout.flush()
    return by_threads


def main(argv=None):
    """Run the benchmark and print the table (and the JSON line)."""
    args = parse_args(argv)
    counts = [args.threads] if args.threads else sorted({1, 2, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory() as tmp:
        rec = args.rec or os.path.join(tmp, 'photos.rec')
        if not args.rec:
            write_photo_rec(rec, args.images)
        batches = args.batches or len(ImageRecord(rec)) // args.batch_size
        print('%s: %d images, batch %d, %d px, %d batches per pass, median of %d passes; %s, %d cores, '
              'OMP_NUM_THREADS=%s' % (os.path.basename(rec), len(ImageRecord(rec)), args.batch_size,
                                      args.input_size, batches, args.runs, platform.processor() or 'cpu',
                                      os.cpu_count(), os.environ.get('OMP_NUM_THREADS')))
        evaluation = None if args.auto_aug else bench_eval(rec, args, counts, batches)
        if _python_only(args):
            what = ('%s pipeline' % train_pipeline(args.input_size)) + (' + AutoAugment' if args.auto_aug else '')
            print('| threads | python (OpenCV, %s) img/s | Gluon transforms (%s) img/s | python / Gluon |'
                  % (what, what))
            print('|---|---|---|---|')
        else:
            print('| threads | python (OpenCV) img/s | Gluon transforms img/s | recordio (C++) img/s | '
                  'bare ImageRecordIter img/s | python / Gluon | recordio / Gluon | recordio / bare | '
                  'recordio peak MiB | bare peak MiB |')
            print('|---|---|---|---|---|---|---|---|---|---|')
        by_threads = {}
        for threads in counts:
            res = bench_threads(rec, args, threads, batches)
            by_threads[threads] = {name: round(speed, 1) for name, (speed, _) in res.items()}
            py, gl = res['python'][0], res['gluon_transforms'][0]
            if _python_only(args):
                print('| %d | %.1f | %.1f | %.2fx |' % (threads, py, gl, py / gl))
            else:
                cc, bare = res['recordio'][0], res['bare_imagerecorditer'][0]
                print('| %d | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2fx | %.2f | %.0f | %.0f |' % (
                    threads, py, gl, cc, bare, py / gl, cc / gl, cc / bare, res['recordio'][1],
                    res['bare_imagerecorditer'][1]))
            sys.stdout.flush()
    if args.json:
        top = by_threads[counts[-1]]
        record = dict(top, threads=counts[-1], by_threads=by_threads)
        if evaluation is not None:
            record['eval'] = dict(evaluation[counts[-1]], by_threads=evaluation)
        print(json.dumps(record))


if __name__ == '__main__':
    main()
