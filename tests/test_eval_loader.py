"""The evaluation loader (eval.py's and the trainer's validation) gives the batches of Gluon's DataLoader over
EvalTransform bit for bit: every image once, in order, the last batch partial, whatever the workers."""
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.data import EvalTransform, ImageFolder, ImageRecord, make_loader, pack_record
from gluon_resnest.data.eval_loader import make_eval_loader

# (height, width) of the photographs cut for the tests: portrait, landscape, square, long, odd.
PHOTO_SIZES = [(75, 100), (100, 63), (57, 57), (120, 90), (41, 130), (91, 67), (64, 85)]


def _photo_crops(count, seed=0):
    """``count`` JPEG-compressible crops of scikit-learn's sample photographs, of PHOTO_SIZES in turn."""
    from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
    photos = load_sample_images().images
    rng = np.random.RandomState(seed)
    crops = []
    for i in range(count):
        photo, (h, w) = photos[i % len(photos)], PHOTO_SIZES[i % len(PHOTO_SIZES)]
        side = rng.randint(max(h, w), 400)  # scaled down from a larger region: detail at every size
        y, x = rng.randint(0, photo.shape[0] - side), rng.randint(0, photo.shape[1] - side)
        crops.append(cv2.resize(photo[y:y + side, x:x + side * w // h], (w, h), interpolation=cv2.INTER_AREA))
    return crops


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """An image folder of 11 JPEG photographs in 2 classes, and the RecordIO file packed from it."""
    root = tmp_path_factory.mktemp('photos')
    for i, crop in enumerate(_photo_crops(11)):
        folder = root / 'val' / ('n%d' % (i % 2))
        os.makedirs(str(folder), exist_ok=True)
        cv2.imwrite(str(folder / ('%02d.jpg' % i)), crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    folder = ImageFolder(str(root / 'val'))
    pack_record(folder, str(root / 'val.rec'))
    return folder, ImageRecord(str(root / 'val.rec'))


def _batches(loader):
    return [(data.asnumpy(), label.asnumpy(), data.dtype, label.dtype) for data, label in loader]


def _assert_same_batches(got, want):
    assert len(got) == len(want)
    for (data, label, dtype, label_dtype), (want_data, want_label, want_dtype, want_label_dtype) in zip(got, want):
        assert (dtype, label_dtype) == (want_dtype, want_label_dtype)
        assert data.shape == want_data.shape
        np.testing.assert_array_equal(data, want_data)  # bit for bit: no tolerance
        np.testing.assert_array_equal(label, want_label)


@pytest.mark.parametrize('workers', [0, 1, 2])
@pytest.mark.parametrize('transform', [EvalTransform(32), EvalTransform(48, crop_ratio=0.8),
                                       EvalTransform(40, normalize=False)], ids=repr)
def test_batches_equal_the_dataloader_path(photos, workers, transform):
    folder, record = photos
    for dataset in (folder, record):
        want = _batches(make_loader(dataset, 4, transform))  # 11 images: batches of 4, 4 and 3
        loader = make_eval_loader(dataset, 4, transform, num_workers=workers)
        assert len(loader) == 3
        for _ in range(2):  # a second pass reuses the buffers
            _assert_same_batches(_batches(loader), want)
        loader.close()
    # The labels are the folder's: every image once, in order.
    assert [int(v) for _, label, _, _ in want for v in label] == [label for _, label in folder.items]


def test_bicubic_rule_batches_equal_the_dataloader_path(photos):
    # Crops of 320 and more: a centre square of the original resized bicubically (here enlarged).
    transform = EvalTransform(320)
    _, record = photos
    loader = make_eval_loader(record, 5, transform, num_workers=2)
    _assert_same_batches(_batches(loader), _batches(make_loader(record, 5, transform, num_workers=1)))
    loader.close()


def _images(seed):
    """Non-square images of many sizes: photographs, noise and flat regions (rounding at .5 of a level)."""
    rng = np.random.RandomState(seed)
    images = _photo_crops(len(PHOTO_SIZES), seed)
    for h, w in [(33, 47), (47, 33), (224, 300), (375, 500), (20, 21), (257, 256)]:
        images.append(rng.randint(0, 256, (h, w, 3)).astype(np.uint8))
    images.append(np.full((50, 70, 3), 128, dtype=np.uint8))
    return images


@pytest.mark.parametrize('crop, crop_ratio', [(32, None), (224, None), (224, 0.9), (56, 1.0), (320, None),
                                              (352, 0.7)])
def test_write_equals_the_mxnet_operators(crop, crop_ratio):
    for normalize in (True, False):
        transform = EvalTransform(crop, crop_ratio, normalize=normalize)
        for image in _images(crop):
            want = transform(mx.nd.array(image, dtype='uint8')).asnumpy()
            out = np.empty_like(want)
            transform.write(image, out)
            np.testing.assert_array_equal(out, want, err_msg='image %s' % (image.shape,))


def test_a_corrupt_image_is_named(photos, tmp_path):
    folder, _ = photos
    broken = ImageFolder(folder.root)
    path = str(tmp_path / 'broken.jpg')
    with open(path, 'wb') as f:
        f.write(b'not a jpeg')
    broken.items = broken.items[:5] + [(path, 0)]
    loader = make_eval_loader(broken, 4, EvalTransform(32), num_workers=1)
    with pytest.raises(ValueError, match='broken.jpg'):
        _batches(loader)
    loader.close()
