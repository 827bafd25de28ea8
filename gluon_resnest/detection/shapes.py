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
           'write_shapes', 'parse_args', 'main']

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


def _annotation(objects, size):
    # VOC counts pixels from 1 (VOCDetection subtracts 1 when reading).
    boxes = ''.join(
        '<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>'
        '<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>' % ((kind,) + tuple(c + 1 for c in box))
        for kind, box in objects)
    return ('<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>%s'
            '</annotation>\n' % (size, size, boxes))


def _sample(photos, size, rng):
    photo = photos[rng.randint(len(photos))]
    # Zoomed out so a crop shows a scene, never less than the crop itself.
    scale = rng.uniform(max(0.3, (size + 1.) / min(photo.shape[:2])), 0.8)
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    y, x = rng.randint(0, photo.shape[0] - size), rng.randint(0, photo.shape[1] - size)
    img = np.ascontiguousarray(photo[y:y + size, x:x + size])
    objects = []
    for box in _place(rng, size, [], rng.randint(1, 4)):
        kind = SHAPES[rng.randint(len(SHAPES))]
        _draw(img, kind, box, tuple(int(c) for c in rng.randint(0, 256, size=3)))
        objects.append((kind, box))
    return img, objects


def _coco_instances(samples):
    """COCO-layout instance annotations of ``samples``: [(image_id, size, objects)].

    Images are addressed as GluonCV's COCO readers take them: the last folder of ``coco_url``
    under the dataset root (here ``VOC2007/JPEGImages``).
    """
    images, annotations = [], []
    for image_id, size, objects in samples:
        number = int(image_id)
        images.append(dict(id=number, width=size, height=size, file_name=image_id + '.jpg',
                           coco_url='VOC2007/JPEGImages/%s.jpg' % image_id))
        for kind, box in objects:
            outline = np.round(shape_polygon(kind, box).astype(np.float64), 2)  # the file's values
            (left, top), (right, bottom) = outline.min(axis=0), outline.max(axis=0)
            x, y = outline[:, 0], outline[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
            annotations.append(dict(
                id=len(annotations) + 1, image_id=number, category_id=SHAPES.index(kind) + 1,
                segmentation=[outline.ravel().tolist()], area=area,
                bbox=[float(left), float(top), float(right - left), float(bottom - top)],
                iscrowd=0))
    categories = [dict(id=k + 1, name=name, supercategory='shape') for k, name in enumerate(SHAPES)]
    return dict(images=images, annotations=annotations, categories=categories)


def write_shapes(outdir, num_train=300, num_val=100, size=160, seed=0):
    """Write the dataset under ``outdir/VOC2007`` (replacing an earlier one only once complete).

    Returns
    -------
    dict
        Number of images per split.
    """
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    if not 64 <= size <= 256:
        raise ValueError('--size must be within 64..256 px, got %d' % size)
    if num_train < 1 or num_val < 1:
        raise ValueError('--num-train and --num-val must be positive')
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
            f.write(_annotation(objects, size))
        split = 'train' if index < num_train else 'val'
        ids[split].append(image_id)
        samples[split].append((image_id, size, objects))
    for split, names in ids.items():
        with open(os.path.join(tmp, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
        with open(os.path.join(tmp, 'annotations', 'instances_%s.json' % split), 'w') as f:
            json.dump(_coco_instances(samples[split]), f)
    final = os.path.join(outdir, 'VOC2007')
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return {split: len(names) for split, names in ids.items()}


def parse_args(argv=None):
    """Command line: OUTDIR [--num-train N] [--num-val N] [--size PX] [--seed S]."""
    parser = cli.ArgumentParser(description='Write the offline shapes detection dataset '
                                                 '(VOC layout).')
    parser.add_argument('outdir')
    parser.add_argument('--num-train', type=int, default=300, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='held-out images')
    parser.add_argument('--size', type=int, default=160, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args(argv)


def _run(argv):
    args = parse_args(argv)
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
