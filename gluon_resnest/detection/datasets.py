"""Detection datasets of users' own folders, checked when they are opened.

Two layouts, as labelling tools export them:

- a VOC-layout folder (:func:`open_voc_folder`): ``Annotations/{id}.xml``, ``JPEGImages/{id}.jpg`` and
  ``ImageSets/Main/{split}.txt`` (one image id a line), any class names (the annotations' ``<name>``
  tags, sorted, unless a class list is given) and any split names;
- a COCO-format pair of JSON files (:func:`open_coco_json`): ``file_name`` relative to an image folder
  (no ``coco_url``), categories with any ids and names, mapped to the classes 0..N-1 in the order of
  their ids (or of a given class list), boxes and polygon masks.

Every record is checked up front from the annotation files and the image headers (no image is
decoded): an image that is missing or not an image, a box outside its image or with zero area, a class
name not in the list, a category id the JSON does not declare, an empty split. A bad record raises
:class:`DataError`, one line naming the file (and the object or annotation); with ``skip_bad`` the
record's image is left out instead and the message is kept in the dataset's ``skipped`` list.

The datasets yield what GluonCV's R-CNN transforms take: the image (NDArray, HWC, uint8, RGB) and the
label (N, 6) float32 ``[xmin, ymin, xmax, ymax, class, difficult]`` in GluonCV's pixel convention
(VOC's 1-based corners less one; COCO's ``[x, y, w, h]`` as ``[x, y, x + w - 1, y + h - 1]``), and for
mask training also the objects' polygons, as ``COCOInstance``.
"""
import json
import os
import struct
import xml.etree.ElementTree as ET

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon.data import Dataset

from ..cli import DataError

__all__ = ['DataError', 'DetectionImages', 'image_size', 'read_class_list', 'is_voc_folder',
           'open_voc_folder', 'open_coco_json', 'log_skipped', 'check_classes']

_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG frame headers (hold the size)


def image_size(path):
    """(width, height) of an image file from its header (JPEG, PNG); other formats are decoded.

    Raises
    ------
    DataError
        The file is missing or not a readable image.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
            if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
                return struct.unpack('>II', head[16:24])
            if head[:2] == b'\xff\xd8':
                f.seek(2)
                size = _jpeg_size(f)
                if size:
                    return size
                raise DataError('%s: not a readable image (a JPEG without a frame header)' % path)
    except FileNotFoundError:
        raise DataError('%s: image file not found' % path) from None
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError('%s: not a readable image' % path)
    return img.shape[1], img.shape[0]


def _jpeg_size(f):
    """(width, height) from the first frame header of a JPEG stream after its SOI, or None."""
    while True:
        byte = f.read(1)
        while byte == b'\xff':  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        length = f.read(2)
        if len(length) < 2:
            return None
        if marker in _SOF_MARKERS:
            data = f.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack('>xHH', data)
            return (width, height) if width and height else None
        f.seek(struct.unpack('>H', length)[0] - 2, os.SEEK_CUR)


class DetectionImages(Dataset):
    """Images with their labels (and polygons): what the opened datasets are.

    Parameters
    ----------
    paths : list of str
    labels : list of numpy.ndarray
        (N, 6) float32 per image.
    sizes : list of (int, int)
        (width, height) per image, from the headers.
    classes : list of str
    polygons : list, optional
        Per image, per object, a list of (K, 2) float32 polygons: items then are (image, label, polygons).
    skipped : list of str
        The messages of the records left out (``skip_bad``).
    """

    def __init__(self, paths, labels, sizes, classes, polygons=None, skipped=()):
        super(DetectionImages, self).__init__()
        self.paths, self.labels, self.sizes = list(paths), list(labels), list(sizes)
        self.classes, self.polygons, self.skipped = list(classes), polygons, list(skipped)

    def __len__(self):
        return len(self.paths)

    def get_im_aspect_ratio(self):
        """Width over height of every image (what the orientation batch sampler reads)."""
        return [width / float(height) for width, height in self.sizes]

    def __getitem__(self, index):
        path = self.paths[index]
        # OpenCV says when a file does not decode (MXNet's imread returns an image of the header's size).
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError('%s: the image does not decode' % path)
        img = mx.nd.array(np.ascontiguousarray(img[:, :, ::-1]), dtype=np.uint8)
        if self.polygons is not None:
            return img, self.labels[index], self.polygons[index]
        return img, self.labels[index]


def read_class_list(value):
    """Class names from ``'a,b,c'`` or a file with one name a line; None stays None.

    Raises
    ------
    DataError
        A name given twice, or an empty list.
    """
    if value is None or isinstance(value, (list, tuple)):
        names = None if value is None else [str(v).strip() for v in value]
    elif os.path.isfile(value):
        with open(value) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [name.strip() for name in value.split(',') if name.strip()]
    if names is None:
        return None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if not names or repeated:
        raise DataError('class list %s: %s' % (value, 'names given twice: %s' % ', '.join(repeated)
                                               if repeated else 'no names'))
    return names


class _Records(object):
    """Collects the good records of one split and, with ``skip_bad``, the messages of the bad ones."""

    def __init__(self, skip_bad):
        self.skip_bad, self.skipped = skip_bad, []
        self.paths, self.labels, self.sizes, self.polygons = [], [], [], []

    def bad(self, message):
        """Raise ``message`` as a DataError, or remember it when skipping."""
        if not self.skip_bad:
            raise DataError(message)
        self.skipped.append(message)

    def add(self, path, label, size, polygons=None):
        self.paths.append(path)
        self.labels.append(np.asarray(label, np.float32).reshape((-1, 6)))
        self.sizes.append(size)
        self.polygons.append(polygons)

    def dataset(self, classes, where, with_polygons=False):
        """The split's :class:`DetectionImages`; an empty split is an error even when skipping."""
        if not self.paths:
            raise DataError('%s: no usable image in the split%s' % (
                where, ' (%d bad records skipped)' % len(self.skipped) if self.skipped else ''))
        return DetectionImages(self.paths, self.labels, self.sizes, classes,
                               self.polygons if with_polygons else None, self.skipped)


def log_skipped(log, *datasets):
    """Log each record ``skip_bad`` left out of ``datasets`` (None ones ignored), and their count; returns it."""
    messages = [m for dataset in datasets if dataset is not None for m in getattr(dataset, 'skipped', ())]
    for message in messages:
        log.warning('skipped %s', message)
    if messages:
        log.warning('skipped %d bad records (--skip-bad)', len(messages))
    return len(messages)


def check_classes(record, classes):
    """A checkpoint ``record``'s classes (when it lists them) must be ``classes``, in the same order.

    Raises
    ------
    DataError
        They differ.
    """
    recorded = (record or {}).get('classes')
    if recorded is not None and list(recorded) != list(classes):
        raise DataError('checkpoint %s was trained on the classes %s; the data gives %s (--classes sets names '
                        'and order)' % (record['json'], ','.join(recorded), ','.join(classes)))


def is_voc_folder(root):
    """True when ``root`` holds a VOC-layout dataset itself (``Annotations/`` beside ``ImageSets/``)."""
    return bool(root) and os.path.isdir(os.path.join(os.path.expanduser(root), 'Annotations'))


def open_voc_folder(root, train_split='train', val_split='val', classes=None, skip_bad=False):
    """(train, val, classes) of a VOC-layout folder ``root``.

    Parameters
    ----------
    root : str
        The folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``.
    train_split, val_split : str
        Names of split files under ``ImageSets/Main/`` (without ``.txt``).
    classes : list of str, optional
        The class names in index order; None: every ``<name>`` of both splits, sorted.
    skip_bad : bool
        Leave bad records out (their messages in each dataset's ``skipped``) instead of raising.

    Raises
    ------
    DataError
        A bad record (without ``skip_bad``), or a split without a usable image.
    """
    root = os.path.expanduser(root)
    records = {split: _Records(skip_bad) for split in ('train', 'val')}
    parsed = {kind: _parse_voc_split(root, split, records[kind])
              for kind, split in (('train', train_split), ('val', val_split))}
    if classes is None:
        classes = sorted({name for items in parsed.values() for item in items for name, _, _ in item[3]})
    for kind, items in parsed.items():
        for xml, image, size, objects in items:
            try:
                label = _voc_label(xml, image, size, objects, classes)
                if kind == 'train' and not label:
                    raise DataError('%s: no <object>: a training image needs a box (remove its id from the '
                                    'split file or annotate it)' % xml)
            except DataError as err:
                records[kind].bad(str(err))
                continue
            records[kind].add(image, label or [[-1] * 6], size)  # -1: no object (the metrics skip it)
    where = {kind: os.path.join(root, 'ImageSets', 'Main', split + '.txt')
             for kind, split in (('train', train_split), ('val', val_split))}
    return (records['train'].dataset(classes, where['train']), records['val'].dataset(classes, where['val']),
            classes)


def _parse_voc_split(root, split, records):
    """[(xml, image, (width, height), objects)] of a split; unreadable records go to ``records.bad``."""
    path = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        there = sorted(name[:-4] for name in os.listdir(folder) if name.endswith('.txt')) \
            if os.path.isdir(folder) else []
        raise DataError('%s: no such split file (splits there: %s)' % (path, ', '.join(there) or 'none'))
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise DataError('%s: empty split (no image ids)' % path)
    items = []
    for image_id in ids:
        xml = os.path.join(root, 'Annotations', image_id + '.xml')
        try:
            objects, filename = _read_voc_xml(xml)
            image = _voc_image(root, image_id, filename, xml)
            items.append((xml, image, image_size(image), objects))
        except DataError as err:
            records.bad(str(err))
    return items


def _read_voc_xml(path):
    """([(name, (xmin, ymin, xmax, ymax), difficult)], <filename>) of one annotation file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DataError('%s: annotation file not found (its image id is in the split file)' % path) from None
    except ET.ParseError as err:
        raise DataError('%s: not readable XML (%s)' % (path, err)) from None
    objects = []
    for number, obj in enumerate(tree.getroot().iter('object'), 1):
        name = (obj.findtext('name') or '').strip()
        box = obj.find('bndbox')
        try:
            corners = tuple(float(box.findtext(tag)) for tag in ('xmin', 'ymin', 'xmax', 'ymax'))
            difficult = int(float(obj.findtext('difficult') or 0))
        except (AttributeError, TypeError, ValueError):
            raise DataError('%s: object %d (%s) needs <name> and a <bndbox> of numbers xmin, ymin, xmax, '
                            'ymax (and <difficult> 0 or 1)' % (path, number, name or 'no name')) from None
        if not name:
            raise DataError('%s: object %d has no <name>' % (path, number))
        objects.append((name, corners, difficult))
    return objects, (tree.getroot().findtext('filename') or '').strip()


def _voc_image(root, image_id, filename, xml):
    """``JPEGImages/{id}.jpg``, or the annotation's ``<filename>`` in ``JPEGImages/``."""
    folder = os.path.join(root, 'JPEGImages')
    for name in (image_id + '.jpg', filename):
        if name and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DataError('%s: no image %s%s in %s' % (xml, image_id + '.jpg', ' or %s' % filename if filename else '',
                                                 folder))


def _voc_label(xml, image, size, objects, classes):
    """The (N, 6) rows of one annotation, VOC's 1-based corners less one (as GluonCV's VOCDetection)."""
    width, height = size
    rows = []
    for number, (name, (xmin, ymin, xmax, ymax), difficult) in enumerate(objects, 1):
        what = '%s: object %d (%s)' % (xml, number, name)
        if name not in classes:
            raise DataError('%s: class not in the class list (%s)' % (what, ', '.join(classes)))
        if not (xmin < xmax and ymin < ymax):
            raise DataError('%s: box (%g, %g, %g, %g) has zero area' % (what, xmin, ymin, xmax, ymax))
        if xmin < 1 or ymin < 1 or xmax > width or ymax > height:
            raise DataError('%s: box (%g, %g, %g, %g) outside its %dx%d image %s (VOC corners count pixels '
                            'from 1)' % (what, xmin, ymin, xmax, ymax, width, height, os.path.basename(image)))
        rows.append([xmin - 1, ymin - 1, xmax - 1, ymax - 1, classes.index(name), difficult])
    return rows


def open_coco_json(train_json, val_json, image_root, classes=None, skip_bad=False, masks=False):
    """(train, val, classes) of a COCO-format pair of annotation files.

    Parameters
    ----------
    train_json, val_json : str
        COCO-format files (no ``train_json``: no training set, None): ``images`` (``id``, ``file_name``
        relative to ``image_root``, optional ``width`` and ``height``, which must then be the image's),
        ``annotations`` (``bbox`` ``[x, y, w, h]``, ``category_id``, ``segmentation`` polygons for masks) and
        ``categories`` (any ids and names).
    image_root : str
    classes : list of str, optional
        Class names in index order; None: the training file's category names in the order of their ids.
    skip_bad : bool
        Leave bad images out (messages in each dataset's ``skipped``) instead of raising.
    masks : bool
        The training set yields each object's polygons too (Mask R-CNN).

    Returns
    -------
    (DetectionImages, DetectionImages, list of str)
        Training images (those with a box; crowd boxes are not trained on, as GluonCV's ``COCODetection``)
        and held-out images (all, in the order of their ids) with ``coco`` (pycocotools' ``COCO`` of the
        file, less skipped images) and ``contiguous_id_to_json`` (what GluonCV's COCO metrics read).

    Raises
    ------
    DataError
        A bad record (without ``skip_bad``), or a file without a usable image.
    """
    files = [('train', train_json)] if train_json else []
    files.append(('val', val_json))
    docs = {kind: _read_coco(path) for kind, path in files}
    categories = {kind: _coco_categories(path, docs[kind]) for kind, path in files}
    if classes is None:
        first = categories[files[0][0]]
        classes = [first[k] for k in sorted(first)]
    train = _coco_split(train_json, docs['train'], categories['train'], classes, image_root, skip_bad,
                        masks=masks, training=True)[0] if train_json else None
    val, kept = _coco_split(val_json, docs['val'], categories['val'], classes, image_root, skip_bad)
    val.coco = _coco_index(docs['val'], dict(zip(kept, val.sizes)))
    val.contiguous_id_to_json = {classes.index(name): k for k, name in categories['val'].items()
                                 if name in classes}
    return train, val, classes


def _read_coco(path):
    """The parsed file, which must hold lists ``images``, ``annotations`` and ``categories``."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DataError('%s: annotation file not found' % path) from None
    except ValueError as err:  # json.JSONDecodeError, or bytes that are not text
        raise DataError('%s: not valid JSON (%s)' % (path, err)) from None
    missing = [key for key in ('images', 'annotations', 'categories')
               if not isinstance(doc, dict) or not isinstance(doc.get(key), list)]
    if missing:
        raise DataError('%s: not a COCO-format file (no list %s)' % (path, ', '.join(missing)))
    return doc


def _coco_categories(path, doc):
    """{category id: name}; ids and names must be unique."""
    categories = {}
    for number, cat in enumerate(doc['categories'], 1):
        if not (isinstance(cat, dict) and isinstance(cat.get('id'), int) and isinstance(cat.get('name'), str)):
            raise DataError('%s: category %d needs an integer id and a name' % (path, number))
        if cat['id'] in categories or cat['name'] in categories.values():
            raise DataError('%s: category %d (id %d, %s) repeats an id or a name'
                            % (path, number, cat['id'], cat['name']))
        categories[cat['id']] = cat['name']
    if not categories:
        raise DataError('%s: no categories' % path)
    return categories


def _coco_split(path, doc, categories, classes, image_root, skip_bad, masks=False, training=False):
    """(DetectionImages, kept image ids) of one file, images in the order of their ids."""
    records = _Records(skip_bad)
    images = {}
    for number, entry in enumerate(doc['images'], 1):
        if not (isinstance(entry, dict) and isinstance(entry.get('id'), int)
                and isinstance(entry.get('file_name'), str)):
            raise DataError('%s: image record %d needs an integer id and a file_name' % (path, number))
        if entry['id'] in images:
            raise DataError('%s: image record %d repeats the id %d' % (path, number, entry['id']))
        images[entry['id']] = entry
    by_image = {}
    for ann in doc['annotations']:
        if not isinstance(ann, dict) or ann.get('image_id') not in images:
            records.bad('%s: annotation %s refers to image id %r, which the file does not declare'
                        % (path, ann.get('id') if isinstance(ann, dict) else '?',
                           ann.get('image_id') if isinstance(ann, dict) else None))
            continue
        by_image.setdefault(ann['image_id'], []).append(ann)
    kept = []
    for image_id in sorted(images):
        entry = images[image_id]
        image = os.path.join(os.path.expanduser(image_root), entry['file_name'])
        try:
            size = _coco_image_size(path, entry, image)
            label, polygons = _coco_label(path, entry, by_image.get(image_id, []), categories, classes, size,
                                          masks)
        except DataError as err:
            records.bad(str(err))
            continue
        if training and not label:
            continue  # nothing to train on (GluonCV's COCODetection skips such images too)
        records.add(image, label or [[-1] * 6], size, polygons)
        kept.append(image_id)
    return records.dataset(classes, path, with_polygons=masks), kept


def _coco_image_size(path, entry, image):
    """(width, height) from the image's header; a declared size must agree."""
    width, height = image_size(image)
    declared = (entry.get('width'), entry.get('height'))
    if declared != (None, None) and declared != (width, height):
        raise DataError('%s: image %s (id %d) is declared %sx%s but is %dx%d'
                        % (path, entry['file_name'], entry['id'], declared[0], declared[1], width, height))
    return width, height


def _coco_label(path, entry, anns, categories, classes, size, masks):
    """The (N, 6) rows and, with ``masks``, the polygons of one image's annotations (crowd ones left out)."""
    from gluoncv.utils.bbox import bbox_clip_xyxy, bbox_xywh_to_xyxy  # pylint: disable=import-outside-toplevel
    width, height = size
    rows, polygons = [], []
    for ann in anns:
        what = '%s: annotation %s (image %s)' % (path, ann.get('id'), entry['file_name'])
        if ann.get('category_id') not in categories:
            raise DataError('%s: category id %r is not declared in categories (ids %s)' % (
                what, ann.get('category_id'), ', '.join(map(str, sorted(categories)))))
        name = categories[ann['category_id']]
        if name not in classes:
            raise DataError('%s: class %s not in the class list (%s)' % (what, name, ', '.join(classes)))
        box = ann.get('bbox')
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise DataError('%s: bbox must be [x, y, width, height], got %r' % (what, box))
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise DataError('%s: box [%g, %g, %g, %g] has zero area' % (what, x, y, w, h))
        if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:  # within a pixel: clipped
            raise DataError('%s: box [%g, %g, %g, %g] outside its %dx%d image' % (what, x, y, w, h, width, height))
        if ann.get('iscrowd', 0):
            continue
        rows.append(list(bbox_clip_xyxy(bbox_xywh_to_xyxy(box), width, height)) + [classes.index(name), 0])
        if masks:
            polygons.append(_polygons(what, ann.get('segmentation')))
    return rows, polygons if masks else None


def _polygons(what, segmentation):
    """(K, 2) float32 arrays of an annotation's polygon segmentation (what Mask R-CNN trains on)."""
    if not (isinstance(segmentation, list) and segmentation
            and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation)):
        raise DataError('%s: mask training needs polygons (lists of x, y, at least 3 points) in '
                        'segmentation' % what)
    return [np.asarray(p, np.float32).reshape(-1, 2) for p in segmentation]


def _coco_index(doc, kept):
    """pycocotools' ``COCO`` of ``doc`` less the images not in ``kept`` ({id: (width, height)}); missing
    sizes, areas and crowd flags filled in (from the image header, the box, 0) as COCOeval needs them."""
    import contextlib  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    from pycocotools.coco import COCO  # pylint: disable=import-outside-toplevel
    images = [dict(entry) for entry in doc['images'] if entry['id'] in kept]
    for entry in images:
        entry.setdefault('width', kept[entry['id']][0])
        entry.setdefault('height', kept[entry['id']][1])
    annotations = []
    for number, ann in enumerate(doc['annotations'], 1):
        if isinstance(ann, dict) and ann.get('image_id') in kept:
            ann = dict(ann)
            ann.setdefault('id', number)
            ann.setdefault('area', float(ann['bbox'][2] * ann['bbox'][3]))
            ann.setdefault('iscrowd', 0)
            annotations.append(ann)
    coco = COCO()
    coco.dataset = dict(images=images, annotations=annotations, categories=list(doc['categories']))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco
