"""ImageNet datasets (folder and RecordIO) and a Gluon DataLoader over them (eval input: eval_loader.py).

Both datasets return ``(image, label)`` with ``image`` an HWC uint8 RGB ``mx.nd.NDArray`` and ``label`` a
Python ``int``, so ``dataset.transform_first(...)`` and :func:`make_loader` work the same on either.

Undecodable images
------------------
Decoding happens lazily (in the loader's workers), so by default a corrupt file is only found when it is
read; it then raises a one-line ``ValueError`` naming the file (never a silent wrong batch). Pass
``verify=True`` to :class:`ImageFolder` to decode every file once at construction instead: undecodable files
are dropped, listed in ``dataset.skipped`` and counted in a warning. That costs one full decode pass, which
is fine for a validation split and slow for the full training split.
"""
import os
import tempfile
import struct
import warnings

import mxnet as mx
from mxnet.gluon.data import DataLoader, Dataset
from mxnet.gluon.data.vision import ImageFolderDataset

from ..procs import children_die_with_this_process

__all__ = ['ImageFolder', 'ImageRecord', 'open_dataset', 'resolve_split_dir', 'make_loader', 'pack_record',
           'IMAGE_EXTENSIONS']

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_REC_MAGIC = 0xced7230a


def _decode(buf, what):
    """Decode an encoded image into HWC uint8 RGB, with a one-line error naming ``what`` on failure."""
    try:
        img = mx.image.imdecode(buf, flag=1)
        img.wait_to_read()  # decoding is asynchronous: surface its error here, not in a later op
    except mx.base.MXNetError as err:
        reason = str(err).strip().splitlines()[-1]  # MXNet puts the reason on the last line
        raise ValueError('cannot decode image %s: %s' % (what, reason)) from err
    return img


def _class_label(header):
    """The class of a RecordIO header: its label, or the first of a multi-label record's labels."""
    label = header.label
    return int(label if isinstance(label, (int, float)) else label[0])


def resolve_split_dir(root, split):
    """``root/split`` if that folder exists, else ``root`` itself (already a split folder).

    So ``--data-dir ~/.mxnet/datasets/imagenet`` (GluonCV's layout, holding ``train/`` and ``val/``) and
    ``--data-dir /data/imagenet/val`` both work.
    """
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise FileNotFoundError('data folder not found: %s' % root)
    candidate = os.path.join(root, split)
    return candidate if os.path.isdir(candidate) else root


def open_dataset(path, what='data'):
    """An :class:`ImageRecord` for a ``.rec`` file, else an :class:`ImageFolder` (``root/<class>/<image>``).

    ``what`` names the data in the one-line ``FileNotFoundError`` when ``path`` is neither.
    """
    path = os.path.expanduser(path)
    if path.endswith('.rec'):
        return ImageRecord(path)
    if os.path.isdir(path):
        return ImageFolder(path)
    raise FileNotFoundError('%s not found (need an image folder or a .rec file): %s' % (what, path))


class ImageFolder(Dataset):
    """ImageNet-layout folder: ``root/<class>/<image>``; classes sorted by name give labels 0..C-1.

    Parameters
    ----------
    root : str
        The split folder (e.g. ``imagenet/val``), holding one sub-folder per class.
    verify : bool, default False
        Decode every image now; drop undecodable ones (listed in ``skipped``, counted in a warning).
        Without it a corrupt image raises ``ValueError`` naming the file when it is read.

    Attributes
    ----------
    synsets : list of str
        Class folder names; ``synsets[label]`` is the class of ``label``.
    items : list of (str, int)
        Image paths and labels.
    skipped : list of str
        Files dropped by ``verify``.
    """

    def __init__(self, root, verify=False):
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise FileNotFoundError('image folder not found: %s' % root)
        with warnings.catch_warnings():
            # Gluon warns once per non-image file; we report what matters below instead.
            warnings.simplefilter('ignore')
            listing = ImageFolderDataset(root)
        if not listing.synsets:
            raise ValueError('no class folders in %s (expected %s/<class>/<image>.JPEG)' % (root, root))
        counts = [0] * len(listing.synsets)
        for _, label in listing.items:
            counts[label] += 1
        empty = [name for name, count in zip(listing.synsets, counts) if count == 0]
        if empty:
            raise ValueError('class folder %s has no images (%s) in %s%s'
                             % (empty[0], '/'.join(IMAGE_EXTENSIONS), root,
                                '' if len(empty) == 1 else ' (and %d more empty)' % (len(empty) - 1)))
        self.root = root
        self.synsets = list(listing.synsets)
        self.items = list(listing.items)
        self.skipped = []
        if verify:
            self._drop_undecodable()

    def _drop_undecodable(self):
        kept = []
        for path, label in self.items:
            try:
                self._read(path)
            except ValueError:
                self.skipped.append(path)
                continue
            kept.append((path, label))
        if self.skipped:
            warnings.warn('skipped %d undecodable image(s) in %s, e.g. %s'
                          % (len(self.skipped), self.root, self.skipped[0]))
        self.items = kept

    @staticmethod
    def _read(path):
        with open(path, 'rb') as f:
            return _decode(f.read(), path)

    def read_encoded(self, idx):
        """``(encoded bytes, label, path)`` of image ``idx``, undecoded."""
        path, label = self.items[idx]
        with open(path, 'rb') as f:
            return f.read(), label, path

    @property
    def num_classes(self):
        """Number of class folders."""
        return len(self.synsets)

    def __getitem__(self, idx):
        path, label = self.items[idx]
        return self._read(path), label

    def __len__(self):
        return len(self.items)


class ImageRecord(Dataset):
    """Images packed in an indexed RecordIO file pair (``.rec`` + ``.idx``, as ``im2rec.py`` writes them).

    Parameters
    ----------
    rec : str
        The ``.rec`` file.
    idx : str, optional
        Its index; default: ``rec`` with the extension replaced by ``.idx``.

    The index is checked against the record file at construction (the last offset and 32 evenly spaced
    ones must start a record that fits in the file): a truncated copy or an index of another file raises a
    one-line ``ValueError``.
    """

    def __init__(self, rec, idx=None):
        rec = os.path.expanduser(rec)
        idx = os.path.expanduser(idx) if idx else os.path.splitext(rec)[0] + '.idx'
        for path, what in ((rec, 'record file'), (idx, 'record index')):
            if not os.path.isfile(path):
                raise FileNotFoundError('%s not found: %s' % (what, path))
        self.rec, self.idx = rec, idx
        self._record = mx.recordio.MXIndexedRecordIO(idx, rec, 'r')
        if not self._record.keys:
            raise ValueError('record index %s is empty' % idx)
        self._check_offsets()

    def _check_offsets(self):
        """Raise unless records start at the last and at evenly spaced sampled offsets of the index.

        Catches a truncated ``.rec`` and an index of another file without reading the whole file.
        """
        offsets = sorted(self._record.idx.values())
        size = os.path.getsize(self.rec)
        sample = offsets[::max(1, len(offsets) // 32)] + offsets[-1:]
        with open(self.rec, 'rb') as f:
            for offset in sample:
                f.seek(offset)
                header = f.read(8)
                if len(header) == 8:
                    magic, lrecord = struct.unpack('<II', header)
                    # The low 29 bits hold the length; the top 3 flag multi-part records.
                    if magic == _REC_MAGIC and offset + 8 + (lrecord & ((1 << 29) - 1)) <= size:
                        continue
                raise ValueError('%s does not match index %s: the index points at offset %d but the record '
                                 'file has %d bytes or no record there (truncated .rec or mismatched .idx)'
                                 % (self.rec, self.idx, offset, size))

    @property
    def offsets(self):
        """``{index key: byte offset in the .rec}``."""
        return self._record.idx

    def read(self, key, decode=True):
        """``(image or None, int label)`` of the record with index key ``key``.

        ``decode=False`` reads only the record's header. An image that does not decode raises a one-line
        ``ValueError`` naming the file and key.
        """
        if decode:
            header, buf = mx.recordio.unpack(self._record.read_idx(key))
        else:
            with open(self.rec, 'rb') as f:
                f.seek(self.offsets[key] + 8)  # after the RecordIO magic and length
                head = f.read(24)  # IRHeader: flag, label, id, id2
                flag = struct.unpack('<I', head[:4])[0] if len(head) == 24 else 0
                header, _ = mx.recordio.unpack(head + f.read(4 * flag))  # flag > 0: that many labels follow
        return (_decode(buf, self._name(key)) if decode else None), _class_label(header)

    def _name(self, key):
        return '%s record %s' % (self.rec, key)

    def read_encoded(self, idx):
        """``(encoded bytes, label, name)`` of the ``idx``-th record, undecoded."""
        key = self._record.keys[idx]
        header, buf = mx.recordio.unpack(self._record.read_idx(key))
        return buf, _class_label(header), self._name(key)

    def __getitem__(self, idx):
        return self.read(self._record.keys[idx])

    def __len__(self):
        return len(self._record.keys)


def check_loader_settings(batch_size, num_workers):
    """One-line ``ValueError`` unless ``batch_size`` >= 1 and ``num_workers`` (``-j``) >= 0."""
    if batch_size < 1:
        raise ValueError('batch size must be >= 1, got %d' % batch_size)
    if num_workers < 0:
        raise ValueError('number of data workers must be >= 0, got %d' % num_workers)


def make_loader(dataset, batch_size, transform=None, shuffle=False, num_workers=0, last_batch='keep'):
    """A ``gluon.data.DataLoader`` over ``dataset`` with ``transform`` applied to the images.

    Parameters
    ----------
    dataset : ImageFolder or ImageRecord (or any dataset of (image, label))
    batch_size : int
    transform : callable, optional
        Applied to each image (``transform_first``), e.g. :class:`~gluon_resnest.data.EvalTransform`.
    shuffle : bool, default False
    num_workers : int, default 0
        Worker processes decoding images (``-j``), forked here; they exit when the calling process ends,
        even by SIGKILL (:mod:`gluon_resnest.procs`). 0 decodes in the calling process.
    last_batch : {'keep', 'discard', 'rollover'}
        'keep' (evaluation sees every image); training usually passes 'discard'.
    """
    check_loader_settings(batch_size, num_workers)
    if transform is not None:
        dataset = dataset.transform_first(transform)
    with children_die_with_this_process():  # the loader's multiprocessing.Pool forks its workers here
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                          last_batch=last_batch)


def pack_record(folder, rec, idx=None):
    """Pack an :class:`ImageFolder` into an indexed RecordIO pair, keeping each file's bytes as they are.

    The encoded files are stored unchanged (no re-encoding, unlike ``im2rec.py`` with resizing), so the
    records decode to exactly the images the folder gives. Both files are written under temporary names
    and moved into place at the end.

    Parameters
    ----------
    folder : ImageFolder
    rec : str
        The ``.rec`` to write.
    idx : str, optional
        Its index; default ``rec`` with extension ``.idx``.
    """
    idx = idx or os.path.splitext(rec)[0] + '.idx'
    outdir = os.path.dirname(os.path.abspath(rec))
    handle, tmp_rec = tempfile.mkstemp(suffix='.rec', prefix='.pack-', dir=outdir)
    os.close(handle)
    tmp_idx = tmp_rec[:-len('.rec')] + '.idx'
    try:
        writer = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, 'w')
        for i, (path, label) in enumerate(folder.items):
            with open(path, 'rb') as f:
                writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), f.read()))
        writer.close()
        os.replace(tmp_rec, rec)
        os.replace(tmp_idx, idx)
    finally:
        for path in (tmp_rec, tmp_idx):
            if os.path.exists(path):
                os.remove(path)
