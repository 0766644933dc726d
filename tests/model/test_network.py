"""The VGG-16 multi-scale, multi-crop embedding network."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lesionkg.core.errors import ModelError
from lesionkg.model.network import (
    EMBEDDING_DIM,
    FEATURE_LAYERS,
    LesionEmbedder,
    NetworkConfig,
    load_backbone_weights,
    vgg16_features,
)


def _inputs(n: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    crops = torch.randn(n, 2, 3, size, size, generator=gen)
    boxes = torch.tensor([[8.0, 10.0, 20.0, 22.0], [12.0, 13.0, 18.0, 19.0]]).expand(n, 2, 4)
    return crops, boxes


def test_embedding_is_1408_d_and_unit_norm():
    assert EMBEDDING_DIM == 128 + 256 + 512 + 512 == 1408
    torch.manual_seed(0)
    net = LesionEmbedder().eval()
    with torch.no_grad():
        out = net(*_inputs())
    assert out.shape == (3, 1408)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(("backbone", "last"), [("vgg16", 29), ("vgg16_bn", 42)])
def test_feature_taps_are_the_relus_of_the_named_convs(backbone, last):
    features, taps = vgg16_features(backbone)
    assert taps["conv5_3"] == last == len(features) - 1
    for name in FEATURE_LAYERS:
        assert isinstance(features[taps[name]], torch.nn.ReLU)
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13


def test_layer_maps_have_the_documented_channels_and_strides():
    net = LesionEmbedder(NetworkConfig(backbone="vgg16")).eval()
    with torch.no_grad():
        maps = net.layer_maps(torch.zeros(1, 3, 64, 64))
    for name, (channels, stride) in FEATURE_LAYERS.items():
        assert maps[name].shape == (1, channels, 64 // stride, 64 // stride)


def test_embedding_depends_on_the_box():
    torch.manual_seed(0)
    net = LesionEmbedder().eval()
    crops, boxes = _inputs(1)
    other = boxes.clone()
    other[..., :2] -= 6
    with torch.no_grad():
        a, b = net(crops, boxes), net(crops, other)
    assert torch.linalg.vector_norm(a - b) > 1e-3


def test_unknown_backbone_is_an_error():
    with pytest.raises(ModelError, match="backbone 'resnet'"):
        vgg16_features("resnet")


def test_loads_torchvision_vgg16_weights(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    features, _ = vgg16_features("vgg16")
    load_backbone_weights(features, path)
    torch.testing.assert_close(features[28].weight, reference.features[28].weight)
    torch.testing.assert_close(features[0].bias, reference.features[0].bias)


def test_rejects_weights_of_another_network(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    features, _ = vgg16_features("vgg16")
    with pytest.raises(ModelError, match=r"resnet\.pth: not VGG-16 weights"):
        load_backbone_weights(features, path)
    with pytest.raises(ModelError, match=r"missing\.pth: backbone weights file not found"):
        load_backbone_weights(features, tmp_path / "missing.pth")
