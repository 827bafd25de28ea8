"""A small offline detection dataset: coloured shapes on photo crops, in PASCAL VOC's layout.

``python -m gluon_resnest.detection.shapes OUTDIR`` writes ``OUTDIR/VOC2007/{JPEGImages,Annotations,
ImageSets/Main/{train,val}.txt}``: each image is a random crop of scikit-learn's two sample photos
(nothing is downloaded) with 1-3 filled circles, squares and triangles of random colour and size, and
one VOC XML file per image giving each shape's class and tight box. :class:`ShapesDetection` reads
it with GluonCV's ``VOCDetection``. The same images have instance annotations in COCO's layout,
``OUTDIR/VOC2007/annotations/instances_{train,val}.json`` (each shape's polygon, box and area), which
:class:`ShapesInstance` (GluonCV's ``COCOInstance``, for Mask R-CNN training) and
:class:`ShapesCOCODetection` (``COCODetection``, for COCO box and mask evaluation) read.
"""
import json
import os
import shutil
import sys

import cv2
import numpy as np
from gluoncv.data import COCODetection, COCOInstance, VOCDetection

from .. import cli

__all__ = ['SHAPES', 'ShapesDetection', 'ShapesInstance', 'ShapesCOCODetection', 'shape_polygon',
           'write_shapes', 'write_export', 'EXPORT_CLASSES', 'EXPORT_CATEGORY_IDS', 'EXPORT_SPLITS',
           'parse_args', 'main']

SHAPES = ('circle', 'square', 'triangle')


class ShapesDetection(VOCDetection):
    """The shapes dataset (or any VOC-layout folder with these three classes)."""
    CLASSES = SHAPES

    def __init__(self, root, splits=((2007, 'train'),), **kwargs):
        if not os.path.isdir(os.path.join(root, 'VOC2007')):
            raise FileNotFoundError('no shapes dataset at %r (expected %s); write one with '
                                    'python -m gluon_resnest.detection.shapes %s'
                                    % (root, os.path.join(root, 'VOC2007'), root))
        super(ShapesDetection, self).__init__(root=root, splits=splits, **kwargs)


def _coco_root(root, split):
    """The folder of the COCO-layout annotations of ``split`` under a shapes dataset ``root``."""
    folder = os.path.join(root, 'VOC2007')
    if not os.path.isfile(os.path.join(folder, 'annotations', split + '.json')):
        raise FileNotFoundError('no instance annotations %s under %r; write the dataset again with '
                                'python -m gluon_resnest.detection.shapes %s'
                                % (os.path.join('VOC2007', 'annotations', split + '.json'), root, root))
    return folder


class ShapesInstance(COCOInstance):
    """The shapes dataset's instances (image, boxes, polygons), as GluonCV's ``COCOInstance``."""
    CLASSES = list(SHAPES)  # GluonCV compares it with a list of names

    def __init__(self, root, splits=('instances_train',), **kwargs):
        splits = [splits] if isinstance(splits, str) else list(splits)
        super(ShapesInstance, self).__init__(root=_coco_root(root, splits[0]), splits=splits,
                                             **kwargs)


class ShapesCOCODetection(COCODetection):
    """The shapes dataset's boxes read from its COCO-layout annotations (GluonCV's
    ``COCODetection``; what COCO box and mask evaluation needs)."""
    CLASSES = list(SHAPES)  # GluonCV compares it with a list of names

    def __init__(self, root, splits=('instances_val',), **kwargs):
        splits = [splits] if isinstance(splits, str) else list(splits)
        super(ShapesCOCODetection, self).__init__(root=_coco_root(root, splits[0]), splits=splits,
                                                  **kwargs)


def _draw(img, kind, box, colour):
    x0, y0, x1, y1 = box
    if kind == 'circle':
        cv2.circle(img, ((x0 + x1) // 2, (y0 + y1) // 2), (x1 - x0) // 2, colour, -1, cv2.LINE_AA)
    elif kind == 'square':
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    else:
        points = np.array([[(x0 + x1) // 2, y0], [x0, y1], [x1, y1]], np.int32)
        cv2.fillPoly(img, [points], colour, cv2.LINE_AA)


def shape_polygon(kind, box):
    """The outline of the shape ``_draw`` fills, in COCO's continuous pixel coordinates.

    OpenCV puts pixel ``i``'s centre at ``i``, COCO at ``i + 0.5``, hence the half-pixel shift; a
    square covers its pixels ``x0..x1`` whole, and the anti-aliased circle and triangle cover, at
    over half strength, the pixels up to half a pixel outside their outline, so their outline
    grows by half a pixel.

    Returns
    -------
    numpy.ndarray
        (K, 2) float32 vertices (x, y).
    """
    x0, y0, x1, y1 = box
    if kind == 'square':
        return np.array([[x0, y0], [x1 + 1, y0], [x1 + 1, y1 + 1], [x0, y1 + 1]], np.float32)
    if kind == 'circle':
        angles = np.deg2rad(np.arange(0, 360, 10))
        radius = (x1 - x0) // 2 + 0.5
        points = np.stack([(x0 + x1) // 2 + radius * np.cos(angles),
                           (y0 + y1) // 2 + radius * np.sin(angles)], axis=1)
    else:
        points = np.array([[(x0 + x1) // 2, y0], [x0, y1], [x1, y1]], np.float64)
        sides = np.linalg.norm(np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0), axis=1)
        centre = sides.dot(points) / sides.sum()  # the incentre: every side moves out alike
        inradius = abs(np.cross(points[1] - points[0], points[2] - points[0])) / sides.sum()
        points = centre + (points - centre) * (inradius + 0.5) / inradius
    return (points + 0.5).astype(np.float32)


def _place(rng, size, placed, count):
    """Up to ``count`` square boxes inside the image, each overlapping the others by IoU < 0.1."""
    boxes = list(placed)
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        side = int(rng.uniform(0.15, 0.45) * size)
        x0, y0 = rng.randint(0, size - side, size=2)
        box = (x0, y0, x0 + side - 1, y0 + side - 1)
        if all(_iou(box, other) < 0.1 for other in boxes):
            boxes.append(box)
    return boxes


def _iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def _annotation(objects, width, height, names=None):
    # VOC counts pixels from 1 (VOCDetection subtracts 1 when reading).
    names = names or {}
    boxes = ''.join(
        '<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>'
        '<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>' % ((names.get(kind, kind),) + tuple(c + 1 for c in box))
        for kind, box in objects)
    return ('<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>%s'
            '</annotation>\n' % (width, height, boxes))


def _sample(photos, size, rng, width=None):
    """An image ``size`` high and ``width`` (default ``size``) wide; the shapes lie in its left square."""
    width = width or size
    photo = photos[rng.randint(len(photos))]
    # Zoomed out so a crop shows a scene, never less than the crop itself.
    scale = rng.uniform(max(0.3, (max(size, width) + 1.) / min(photo.shape[:2])), 0.8)
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    y, x = rng.randint(0, photo.shape[0] - size), rng.randint(0, photo.shape[1] - width)
    img = np.ascontiguousarray(photo[y:y + size, x:x + width])
    objects = []
    for box in _place(rng, size, [], rng.randint(1, 4)):
        kind = SHAPES[rng.randint(len(SHAPES))]
        _draw(img, kind, box, tuple(int(c) for c in rng.randint(0, 256, size=3)))
        objects.append((kind, box))
    return img, objects


def _coco_instances(samples, category_ids=(1, 2, 3), names=SHAPES, url_folder='VOC2007/JPEGImages'):
    """COCO-layout instance annotations of ``samples``: [(image id, file_name, (width, height), objects)].

    The categories are ``names`` (one per shape of :data:`SHAPES`) with ``category_ids``. With a
    ``url_folder``, images are also addressed as GluonCV's COCO readers take them: the last folder of
    ``coco_url`` under the dataset root (the shapes dataset's ``VOC2007/JPEGImages``).
    """
    images, annotations = [], []
    for number, file_name, (width, height), objects in samples:
        images.append(dict(id=number, width=width, height=height, file_name=file_name))
        if url_folder:
            images[-1]['coco_url'] = '%s/%s' % (url_folder, file_name)
        for kind, box in objects:
            outline = np.round(shape_polygon(kind, box).astype(np.float64), 2)  # the file's values
            (left, top), (right, bottom) = outline.min(axis=0), outline.max(axis=0)
            x, y = outline[:, 0], outline[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
            annotations.append(dict(
                id=len(annotations) + 1, image_id=number, category_id=category_ids[SHAPES.index(kind)],
                segmentation=[outline.ravel().tolist()], area=area,
                bbox=[float(left), float(top), float(right - left), float(bottom - top)],
                iscrowd=0))
    categories = [dict(id=k, name=name, supercategory='shape') for k, name in zip(category_ids, names)]
    return dict(images=images, annotations=annotations, categories=categories)


def write_shapes(outdir, num_train=300, num_val=100, size=160, seed=0):
    """Write the dataset under ``outdir/VOC2007`` (replacing an earlier one only once complete).

    Returns
    -------
    dict
        Number of images per split.
    """
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    _check_sizes(size, num_train, num_val)
    rng = np.random.RandomState(seed)
    photos = load_sample_images().images
    tmp = os.path.join(outdir, '.writing')
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main'), 'annotations'):
        os.makedirs(os.path.join(tmp, folder))
    ids = {'train': [], 'val': []}
    samples = {'train': [], 'val': []}
    for index in range(num_train + num_val):
        image_id = '%06d' % index
        img, objects = _sample(photos, size, rng)
        cv2.imwrite(os.path.join(tmp, 'JPEGImages', image_id + '.jpg'), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        with open(os.path.join(tmp, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write(_annotation(objects, size, size))
        split = 'train' if index < num_train else 'val'
        ids[split].append(image_id)
        samples[split].append((index, image_id + '.jpg', (size, size), objects))
    for split, names in ids.items():
        with open(os.path.join(tmp, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
        with open(os.path.join(tmp, 'annotations', 'instances_%s.json' % split), 'w') as f:
            json.dump(_coco_instances(samples[split]), f)
    final = os.path.join(outdir, 'VOC2007')
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return {split: len(names) for split, names in ids.items()}


# The labelling-tool-style copy (--export): other class names, split names and category ids.
EXPORT_CLASSES = {'circle': 'disc', 'square': 'tile', 'triangle': 'wedge'}
EXPORT_CATEGORY_IDS = (7, 3, 42)
EXPORT_SPLITS = ('fit', 'holdout')


def write_export(outdir, num_train=300, num_val=100, size=160, seed=0):
    """Write shapes as labelling tools export them: ``outdir/voc`` and ``outdir/coco`` (replaced once complete).

    ``voc``: ``Annotations/``, ``JPEGImages/shape_NNNN.jpg``, ``ImageSets/Main/{fit,holdout}.txt``, classes
    disc, tile and wedge (:data:`EXPORT_CLASSES`). ``coco``: ``train.json`` and ``val.json`` whose
    ``file_name`` is ``{fit,holdout}/shape_NNNN.jpg`` relative to ``coco/images``, no ``coco_url``, image
    ids from 1000, categories disc, tile, wedge with ids 7, 3, 42, box and polygon per object. Images are
    ``size`` high and 5/4 of it wide.

    Returns
    -------
    dict
        Number of images per split.
    """
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    _check_sizes(size, num_train, num_val)
    rng, photos = np.random.RandomState(seed), load_sample_images().images
    tmp = os.path.join(outdir, '.writing-export')
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in ['voc/JPEGImages', 'voc/Annotations', 'voc/ImageSets/Main'] + \
            ['coco/images/' + split for split in EXPORT_SPLITS]:
        os.makedirs(os.path.join(tmp, folder))
    samples = {split: [] for split in EXPORT_SPLITS}
    for index in range(num_train + num_val):
        split, name = EXPORT_SPLITS[index >= num_train], 'shape_%04d' % index
        img, objects = _sample(photos, size, rng, width=size * 5 // 4)
        for path in ('voc/JPEGImages/%s.jpg' % name, 'coco/images/%s/%s.jpg' % (split, name)):
            cv2.imwrite(os.path.join(tmp, path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        with open(os.path.join(tmp, 'voc', 'Annotations', name + '.xml'), 'w') as f:
            f.write(_annotation(objects, img.shape[1], img.shape[0], EXPORT_CLASSES))
        samples[split].append((1000 + index, '%s/%s.jpg' % (split, name), img.shape[1::-1], objects))
    for split, json_name in zip(EXPORT_SPLITS, ('train.json', 'val.json')):
        with open(os.path.join(tmp, 'voc', 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write(''.join(name.split('/')[1][:-4] + '\n' for _, name, _, _ in samples[split]))
        with open(os.path.join(tmp, 'coco', json_name), 'w') as f:
            json.dump(_coco_instances(samples[split], EXPORT_CATEGORY_IDS,
                                      [EXPORT_CLASSES[kind] for kind in SHAPES], url_folder=None), f)
    for folder in ('voc', 'coco'):
        shutil.rmtree(os.path.join(outdir, folder), ignore_errors=True)
        os.replace(os.path.join(tmp, folder), os.path.join(outdir, folder))
    os.rmdir(tmp)
    return {split: len(items) for split, items in samples.items()}


def _check_sizes(size, num_train, num_val):
    if not 64 <= size <= 256:
        raise ValueError('--size must be within 64..256 px, got %d' % size)
    if num_train < 1 or num_val < 1:
        raise ValueError('--num-train and --num-val must be positive')


def parse_args(argv=None):
    """Command line: OUTDIR [--num-train N] [--num-val N] [--size PX] [--seed S] [--export]."""
    parser = cli.ArgumentParser(description='Write the offline shapes detection dataset '
                                                 '(VOC layout).')
    parser.add_argument('outdir')
    parser.add_argument('--num-train', type=int, default=300, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='held-out images')
    parser.add_argument('--size', type=int, default=160, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--export', action='store_true',
                        help='write OUTDIR/voc and OUTDIR/coco as labelling tools export them (classes %s; '
                             'splits %s; COCO category ids %s, file_names relative to OUTDIR/coco/images)'
                        % (', '.join(EXPORT_CLASSES.values()), ', '.join(EXPORT_SPLITS),
                           ', '.join(map(str, EXPORT_CATEGORY_IDS))))
    return parser.parse_args(argv)


def _run(argv):
    args = parse_args(argv)
    if args.export:
        counts = write_export(args.outdir, args.num_train, args.num_val, args.size, args.seed)
        print('wrote %d %s and %d %s images (%s) to %s and %s'
              % (counts[EXPORT_SPLITS[0]], EXPORT_SPLITS[0], counts[EXPORT_SPLITS[1]], EXPORT_SPLITS[1],
                 ', '.join(EXPORT_CLASSES.values()), os.path.join(args.outdir, 'voc'),
                 os.path.join(args.outdir, 'coco')))
        return
    counts = write_shapes(args.outdir, args.num_train, args.num_val, args.size, args.seed)
    print('wrote %d train and %d val images (%s, %d px) to %s'
          % (counts['train'], counts['val'], ', '.join(SHAPES), args.size,
             os.path.join(args.outdir, 'VOC2007')))


def main(argv=None):
    """``gluon-resnest-make-shapes-data OUTDIR``: write the dataset and print where; returns the exit
    status (:func:`gluon_resnest.cli.run_command`)."""
    return cli.run_command(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
