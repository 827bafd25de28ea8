"""Tiny datasets and a quick-run argument list shared by the train_imagenet.py tests."""
import os

import cv2
import numpy as np

from gluon_resnest.data import ImageFolder, pack_record

# Small and fast: 3 classes of 40 px images, resnest14 at 32 px, batch 8 (6 batches per epoch), no data
# workers; mild augmentation so a few epochs learn the colours.
QUICK = ['--model', 'resnest14', '--input-size', '32', '--batch-size', '8', '-j', '0', '--no-progress',
         '--log-interval', '0', '--lr', '0.004', '--seed', '3', '--min-random-area', '0.5',
         '--jitter-param', '0', '--lighting-param', '0']


def write_tiny_dataset(root, classes=3, train_per_class=16, val_per_class=4, size=40, seed=0):
    """ImageNet-layout folders of coloured-square images (class = colour), plus train/val .rec/.idx."""
    rng = np.random.RandomState(seed)
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40)][:classes]
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for label, colour in enumerate(colours):
            folder = os.path.join(root, split, 'class%d' % label)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                img = rng.randint(90, 160, size=(size, size, 3)).astype(np.uint8)
                y, x = rng.randint(0, size // 3, size=2)
                img[y:y + size // 2, x:x + size // 2] = colour
                cv2.imwrite(os.path.join(folder, '%d.jpg' % i), img[..., ::-1])
        pack_record(ImageFolder(os.path.join(root, split)), os.path.join(root, split + '.rec'))
    return root


def test_tiny_dataset_layout(tmp_path):
    root = write_tiny_dataset(str(tmp_path))
    train = ImageFolder(os.path.join(root, 'train'))
    assert train.synsets == ['class0', 'class1', 'class2']
    assert len(train) == 48
    assert sorted(os.listdir(root)) == ['train', 'train.idx', 'train.rec', 'val', 'val.idx', 'val.rec']
