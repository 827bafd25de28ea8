"""GluonCV's DeepLabV3, FCN and PSPNet on our backbones.

Shapes, output stride, training, SyncBN, DropBlock, GluonCV checkpoints.
"""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.loss import MixSoftmaxCrossEntropyLoss
from gluoncv.model_zoo import get_model as gcv_get_model
from gluoncv.model_zoo.segbase import get_segmentation_model
from gluoncv.nn.dropblock import DropBlock as GluonCVDropBlock
from mxnet import autograd, gluon
from mxnet.gluon.contrib.nn import SyncBatchNorm

from gluon_resnest import gluoncv as plugin
from gluon_resnest import list_models
from gluon_resnest.resnest import Bottleneck

CROP = 128
NCLASS = 21  # pascal_voc, GluonCV's default segmentation dataset


def _initialize(net):
    """Initialise what GluonCV left uninitialised (the backbone), as its training script does."""
    for param in net.collect_params().values():
        if param._data is None:  # pylint: disable=protected-access
            param.initialize(default_init=mx.init.Xavier())


def _segmentation(model, backbone, **kwargs):
    kwargs.setdefault('crop_size', CROP)
    net = get_segmentation_model(model=model, backbone=backbone, pretrained_base=False, aux=True,
                                 **kwargs)
    _initialize(net)
    return net


@pytest.mark.parametrize('backbone', ['resnest14', 'resnest50'])
@pytest.mark.parametrize('model', ['deeplab', 'fcn', 'psp'])
def test_forward_shapes(model, backbone):
    net = _segmentation(model, backbone)
    assert isinstance(net.layer3[0], Bottleneck)
    x = mx.nd.random.uniform(shape=(1, 3, CROP, CROP))
    c3, c4 = net.base_forward(x)
    assert c3.shape == (1, 1024, CROP // 8, CROP // 8)
    assert c4.shape == (1, 2048, CROP // 8, CROP // 8)
    outputs = net(x)
    assert len(outputs) == 2
    for out in outputs:
        assert out.shape == (1, NCLASS, CROP, CROP)
        assert np.isfinite(out.asnumpy()).all()


@pytest.mark.parametrize('backbone', list_models())
def test_every_backbone_is_dilated_to_stride_8(backbone):
    net = get_segmentation_model(model='fcn', backbone=backbone, pretrained_base=False,
                                 crop_size=64, aux=False)
    assert isinstance(net.layer1[0], Bottleneck)
    c3, c4 = net.base_forward(mx.sym.var('data'))
    shapes = mx.sym.Group([c3, c4]).infer_shape(data=(1, 3, 64, 64))[1]
    assert shapes == [(1, 1024, 8, 8), (1, 2048, 8, 8)]


def _toy_batch():
    """Two images whose left half is bright and labelled 1, right half dark and labelled 2."""
    x = np.zeros((2, 3, CROP, CROP), dtype='float32')
    x[:, :, :, :CROP // 2] = 1.5
    x += np.random.uniform(-0.1, 0.1, size=x.shape).astype('float32')
    label = np.full((2, CROP, CROP), 2, dtype='float32')
    label[:, :, :CROP // 2] = 1
    return mx.nd.array(x), mx.nd.array(label)


@pytest.mark.slow
@pytest.mark.parametrize('model', ['deeplab', 'fcn', 'psp'])
def test_training_steps_lower_the_loss(model):
    net = _segmentation(model, 'resnest14')
    net.hybridize()
    criterion = MixSoftmaxCrossEntropyLoss(aux=True, aux_weight=0.5)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4})
    x, label = _toy_batch()
    losses = []
    for _ in range(3):
        with autograd.record(True):
            loss = criterion(*net(x), label).mean()
        loss.backward()
        trainer.step(1)
        losses.append(loss.asscalar())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses


def test_syncbn_reaches_every_backbone_norm_layer():
    net = _segmentation('deeplab', 'resnest14', norm_layer=SyncBatchNorm,
                        norm_kwargs={'num_devices': 1})
    backbone_norms = [block for name in ('bn1', 'layer1', 'layer2', 'layer3', 'layer4')
                      for block in _descendants(getattr(net, name))
                      if isinstance(block, (mx.gluon.nn.BatchNorm, SyncBatchNorm))]
    assert len(backbone_norms) > 10
    assert all(isinstance(block, SyncBatchNorm) for block in backbone_norms)
    x, label = _toy_batch()
    with autograd.record(True):
        loss = MixSoftmaxCrossEntropyLoss(aux=True)(*net(x), label).mean()
    loss.backward()
    grad = net.layer1[0].conv1.weight.grad()
    assert np.isfinite(loss.asscalar()) and grad.abs().sum().asscalar() > 0


def _descendants(block):
    yield block
    for child in block._children.values():  # pylint: disable=protected-access
        yield from _descendants(child)


@pytest.mark.parametrize('name', ['resnest50', 'resnest269', 'resnest50_fast_4s2x40d'])
def test_dropblock_is_off_in_segmentation(name):
    net = get_segmentation_model(model='deeplab', backbone=name, pretrained_base=False, crop_size=64)
    drops = [block for block in _descendants(net) if isinstance(block, GluonCVDropBlock)]
    # Stages 3 and 4 carry the DropBlock layers (3 per block), all at probability 0; GluonCV's
    # set_drop_prob reaches them because they subclass its DropBlock.
    assert len(drops) == 3 * (len(net.layer3) + len(net.layer4))
    assert {block.drop_prob for block in drops} == {0.0}


def test_deeplab_resnest50_ade_checkpoint_from_gluoncv_loads_strictly(tmp_path):
    x = mx.nd.random.uniform(shape=(1, 3, CROP, CROP))
    try:
        plugin.unregister()
        theirs = gcv_get_model('deeplab_resnest50_ade', pretrained_base=False, crop_size=CROP)
    finally:
        plugin.register()
    assert not isinstance(theirs.layer1[0], Bottleneck)
    _initialize(theirs)
    expected = [out.asnumpy() for out in theirs(x)]
    path = str(tmp_path / 'deeplab_resnest50_ade.params')
    theirs.save_parameters(path)

    ours = gcv_get_model('deeplab_resnest50_ade', pretrained_base=False, crop_size=CROP)
    assert isinstance(ours.layer1[0], Bottleneck)
    ours.load_parameters(path)  # strict: no missing, no extra keys
    for got, want in zip(ours(x), expected):
        assert got.shape == (1, 150, CROP, CROP)
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-4, atol=1e-5)


def test_deeplab_ade_pretrained_resolves_gluoncv_checkpoint_name(tmp_path, monkeypatch):
    """``pretrained=True`` asks GluonCV's store for the published DeepLab file by its GluonCV name."""
    source = gcv_get_model('deeplab_resnest50_ade',
                           pretrained_base=False, crop_size=64)
    _initialize(source)
    path = str(tmp_path / 'deeplab.params')
    source.save_parameters(path)
    asked = []
    from gluoncv.model_zoo import model_store  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(model_store, 'get_model_file',
                        lambda name, tag=None, root=None: asked.append(name) or path)
    net = gcv_get_model('deeplab_resnest50_ade', pretrained=True, crop_size=64, root=str(tmp_path))
    assert asked == ['deeplab_resnest50_ade']
    np.testing.assert_array_equal(net.head.block[-1].weight.data().asnumpy(),
                                  source.head.block[-1].weight.data().asnumpy())
