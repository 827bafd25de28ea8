"""Tests of gluon_resnest.data: folder and RecordIO datasets, the loader and the evaluation protocol."""
import math
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.data import (MEAN, STD, EvalTransform, ImageFolder, ImageRecord, crop_box,
                                make_loader, pack_record, resolve_split_dir)
from gluon_resnest.pretrained import eval_crop

@pytest.fixture
def folder(tmp_path, image_folder):
    return image_folder(tmp_path / 'val')


@pytest.fixture
def record(folder, tmp_path):
    rec = str(tmp_path / 'val.rec')
    pack_record(ImageFolder(folder), rec)
    return rec, str(tmp_path / 'val.idx')


def test_folder_lists_sorted_classes_and_labels(folder):
    data = ImageFolder(folder)
    assert data.synsets == ['n00000000', 'n00000001', 'n00000002']
    assert len(data) == 9
    assert [label for _, label in data.items] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    img, label = data[4]
    assert img.dtype == np.uint8 and img.shape == (61, 45, 3) and label == 1


def test_folder_image_is_rgb(tmp_path):
    folder = tmp_path / 'split' / 'a'
    folder.mkdir(parents=True)
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(folder / 'x.png'), bgr)
    img, _ = ImageFolder(str(tmp_path / 'split'))[0]
    assert img.asnumpy()[0, 0].tolist() == [0, 0, 200]


def test_record_equals_folder(folder, record):
    by_folder, by_record = ImageFolder(folder), ImageRecord(*record)
    assert len(by_record) == len(by_folder)
    for i in range(len(by_folder)):
        (a, la), (b, lb) = by_folder[i], by_record[i]
        assert la == lb and isinstance(lb, int)
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


def test_record_index_defaults_to_sibling(record):
    assert len(ImageRecord(record[0])) == 9


@pytest.mark.parametrize('workers', [0, 2])
def test_loader_batches_transformed_images(record, workers):
    loader = make_loader(ImageRecord(*record), batch_size=4, transform=EvalTransform(32),
                         num_workers=workers)
    batches = list(loader)
    assert [x.shape for x, _ in batches] == [(4, 3, 32, 32), (4, 3, 32, 32), (1, 3, 32, 32)]
    labels = np.concatenate([y.asnumpy() for _, y in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_resolve_split_dir(folder, tmp_path):
    assert resolve_split_dir(str(tmp_path), 'val') == folder
    assert resolve_split_dir(folder, 'val') == folder
    with pytest.raises(FileNotFoundError, match='data folder not found'):
        resolve_split_dir(str(tmp_path / 'nope'), 'val')


def test_folder_errors(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match='image folder not found: .*missing'):
        ImageFolder(str(tmp_path / 'missing'))
    (tmp_path / 'flat').mkdir()
    (tmp_path / 'flat' / 'a.jpg').write_bytes(b'x')
    with pytest.raises(ValueError, match='no class folders in'):
        ImageFolder(str(tmp_path / 'flat'))
    image_folder(tmp_path / 'one', classes=1)
    (tmp_path / 'one' / 'n_empty').mkdir()
    with pytest.raises(ValueError, match='class folder n_empty has no images'):
        ImageFolder(str(tmp_path / 'one'))


def test_corrupt_image_raises_naming_file(folder):
    bad = os.path.join(folder, 'n00000001', 'img1.png')
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG not really')
    data = ImageFolder(folder)
    assert len(data) == 9
    with pytest.raises(ValueError, match='cannot decode image .*img1.png'):
        data[4]  # pylint: disable=pointless-statement


def test_verify_skips_and_counts_corrupt_images(folder):
    bad = os.path.join(folder, 'n00000002', 'img0.png')
    with open(bad, 'wb') as f:
        f.write(b'garbage')
    with pytest.warns(UserWarning, match='skipped 1 undecodable image'):
        data = ImageFolder(folder, verify=True)
    assert data.skipped == [bad] and len(data) == 8
    assert all(path != bad for path, _ in data.items)


def test_record_errors(record, tmp_path):
    rec, idx = record
    with pytest.raises(FileNotFoundError, match='record file not found'):
        ImageRecord(str(tmp_path / 'nope.rec'), idx)
    with pytest.raises(FileNotFoundError, match='record index not found'):
        ImageRecord(rec, str(tmp_path / 'nope.idx'))
    truncated = str(tmp_path / 'cut.rec')
    with open(rec, 'rb') as src, open(truncated, 'wb') as dst:
        dst.write(src.read()[:os.path.getsize(rec) - 10])
    with pytest.raises(ValueError, match='does not match index .*truncated'):
        ImageRecord(truncated, idx)


# The protocol: for a 300x400 (HxW) image, crop 224 resizes the short side to ceil(224/0.875) = 256
# (256x341), and crops at floor((341-224)/2) = 58, floor((256-224)/2) = 16; crop 256 resizes to
# ceil(256/0.875) = 293 (293x390) and crops at 67, 18. Crop 320 keeps a square of
# side 300*320/352 = 272.73 at rounded corners (64, 14) .. (337, 287): 273 px, then bicubic to 320.
@pytest.mark.parametrize('crop, expected', [
    (224, (256, (58, 16, 224, 224), 1)),
    (256, (293, (67, 18, 256, 256), 1)),
    (320, (None, (64, 14, 273, 273), 2)),
    (416, (None, (61, 11, 279, 279), 2)),
])
def test_crop_box(crop, expected):
    assert crop_box(300, 400, crop) == expected


def test_crop_ratio_override():
    assert crop_box(300, 400, 224, crop_ratio=1.0)[0] == 224
    assert crop_box(300, 400, 320, crop_ratio=0.5)[1] == (125, 75, 150, 150)


@pytest.mark.parametrize('name, crop', [('resnest14', 224), ('resnest50', 224), ('resnest101', 256),
                                        ('resnest200', 320), ('resnest269', 416),
                                        ('resnest50_fast_4s2x40d', 224), ('ResNeSt200', 320)])
def test_eval_crop(name, crop):
    assert eval_crop(name) == crop


def _expected_small_path(img, crop):
    """Reference for crop < 320 with OpenCV directly: bilinear short-side resize, floor centre crop."""
    h, w = img.shape[:2]
    short = int(math.ceil(crop / 0.875))
    nh, nw = (short * h // w, short) if h > w else (short, short * w // h)
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    y0, x0 = (nh - crop) // 2, (nw - crop) // 2
    return resized[y0:y0 + crop, x0:x0 + crop]


def _expected_large_path(img, crop):
    """Reference for crop >= 320: PIL-rounded centre square of side short*crop/(crop+32), bicubic."""
    h, w = img.shape[:2]
    side = crop / (crop + 32.0) * min(h, w)
    top, left = int(round((h - side) / 2)), int(round((w - side) / 2))
    square = img[top:int(round(top + side)), left:int(round(left + side))]
    return cv2.resize(square, (crop, crop), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize('shape, crop, reference', [
    ((300, 400), 224, _expected_small_path),
    ((401, 333), 256, _expected_small_path),
    ((300, 400), 320, _expected_large_path),
    ((451, 380), 416, _expected_large_path),
])
def test_transform_pixels(shape, crop, reference):
    # Float noise: a crop one pixel off changes every output value, and float resizing agrees across
    # OpenCV builds (uint8 bicubic rounds differently in MXNet's bundled OpenCV and cv2).
    img = np.random.RandomState(1).uniform(0, 255, shape + (3,)).astype(np.float32)
    raw = EvalTransform(crop, normalize=False)(mx.nd.array(img)).asnumpy()
    np.testing.assert_allclose(raw, reference(img, crop), atol=0.02)
    out = EvalTransform(crop)(mx.nd.array(img)).asnumpy()
    assert out.shape == (3, crop, crop) and out.dtype == np.float32
    expected = (raw / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)


def test_transform_uint8_small_path_is_exact():
    img = np.random.RandomState(2).randint(0, 256, (300, 400, 3)).astype(np.uint8)
    raw = EvalTransform(224, normalize=False)(mx.nd.array(img, dtype='uint8')).asnumpy()
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, _expected_small_path(img, 224))


@pytest.mark.parametrize('kwargs, message', [({'crop': 0}, 'crop size must be positive'),
                                             ({'crop_ratio': 1.5}, r'crop ratio must be in \(0, 1\]')])
def test_transform_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalTransform(**kwargs)
