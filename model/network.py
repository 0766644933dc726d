"""The lesion embedding network: VGG-16, multi-scale RoI features, multi-crop, 1408-D unit vectors.

Design, after Yan et al., *Deep Lesion Graphs in the Wild* (CVPR 2018):

- **Backbone.** torchvision's VGG-16 convolutional part (13 conv layers, 5 blocks), cut after the
  ReLU of conv5_3 (pool5 and the classifier are not used). ``backbone="vgg16_bn"`` (the default)
  is the same architecture with batch normalisation after each convolution: ImageNet weights cannot
  be downloaded at run time, and from a random start VGG-16 without normalisation trains poorly in
  the few hundred steps a CPU allows. ``backbone="vgg16"`` matches the paper exactly and takes
  torchvision's ImageNet file (``vgg16-397923af.pth``) through ``backbone_weights``.
- **Multi-scale.** The lesion box is RoI-aligned (:func:`torchvision.ops.roi_align`, ``aligned``)
  on the outputs of conv2_2, conv3_3, conv4_3 and conv5_3 (strides 2, 4, 8, 16; 128 + 256 + 512 +
  512 channels), so shallow layers contribute texture and edges and deep layers shape and context.
  Each RoI grid is average-pooled to one vector per layer, and each layer's vector is L2-normalised
  so the 128-channel layer weighs as much as the 512-channel ones.
- **Multi-crop.** The input pipeline (:mod:`lesionkg.model.transforms`) gives every lesion several
  crops centred on it at different mm/pixel (a tight one and a context one); the box is RoI-aligned
  in each, and the per-crop vectors are averaged. The context crop sees the organ around the lesion.
- **Output.** The 1408-D concatenation, L2-normalised: Euclidean distance between embeddings is in
  [0, 2] and the triplet margin is on that scale.

Input: float tensors ``(N, C, 3, S, S)`` (N lesions, C crops, 3 adjacent slices as channels,
S pixels) already windowed and normalised, and boxes ``(N, C, 4)`` (x1, y1, x2, y2 in crop pixels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers
from torchvision.ops import roi_align

from lesionkg.core.errors import ModelError

#: VGG-16 layers whose ReLU outputs are pooled, with their channel count and stride
FEATURE_LAYERS: dict[str, tuple[int, int]] = {
    "conv2_2": (128, 2),
    "conv3_3": (256, 4),
    "conv4_3": (512, 8),
    "conv5_3": (512, 16),
}
EMBEDDING_DIM = sum(channels for channels, _ in FEATURE_LAYERS.values())  # 1408
BACKBONES = ("vgg16_bn", "vgg16")


def vgg16_features(backbone: str = "vgg16_bn") -> tuple[nn.Sequential, dict[str, int]]:
    """VGG-16's convolutional layers up to the ReLU of conv5_3, randomly initialised.

    Returns the module and, for each ``conv{block}_{n}`` name, the index of its ReLU in it.
    """
    if backbone not in BACKBONES:
        raise ModelError(f"backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
    # make_layers builds the convolutional part alone: the full model's 102M-parameter classifier,
    # never used here, costs over a second to initialise.
    features = make_layers(vgg_cfgs["D"], batch_norm=backbone == "vgg16_bn")
    for layer in features:  # torchvision's own VGG initialisation
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:  # make_layers gives every convolution a bias
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    taps: dict[str, int] = {}
    block, conv = 1, 0
    for index, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            conv += 1
        elif isinstance(layer, nn.ReLU):
            taps[f"conv{block}_{conv}"] = index
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    # Drop pool5: nothing after conv5_3 is used.
    return features[: taps["conv5_3"] + 1], taps


def load_backbone_weights(features: nn.Sequential, path: Path) -> None:
    """Load torchvision VGG-16 weights (a state_dict file) into ``features``.

    Accepts a full torchvision model state_dict (keys ``features.0.weight`` ...) or one of the
    features module alone; the classifier's keys are ignored. Mismatched shapes are an error.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: backbone weights file not found") from exc
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelError(f"{path}: cannot load a state_dict: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state_dict (mapping of tensor names to tensors)")
    if any(key.startswith("features.") for key in state):
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
    own = features.state_dict()
    wanted = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(wanted))
    if missing:
        raise ModelError(
            f"{path}: not VGG-16 weights for this backbone: missing {', '.join(missing[:4])}"
            + (" ..." if len(missing) > 4 else "")
        )
    for key, value in wanted.items():
        if value.shape != own[key].shape:
            raise ModelError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, "
                f"expected {tuple(own[key].shape)}"
            )
    features.load_state_dict(wanted)


@dataclass(frozen=True)
class NetworkConfig:
    """What builds the network; stored as plain JSON in the checkpoint."""

    backbone: str = "vgg16_bn"
    #: RoI-align output grid per layer before average pooling (cells per side)
    roi_grid: int = 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class LesionEmbedder(nn.Module):
    """VGG-16 with multi-scale RoI pooling over multi-crop inputs; see the module docstring."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        self.features, taps = vgg16_features(self.config.backbone)
        self._taps = {taps[name]: name for name in FEATURE_LAYERS}

    def layer_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps ``(B, channels, S / stride, S / stride)`` of the four layers."""
        maps: dict[str, torch.Tensor] = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            name = self._taps.get(index)
            if name is not None:
                maps[name] = x
        return maps

    def forward(self, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(N, 1408)`` of crops ``(N, C, 3, S, S)``, boxes ``(N, C, 4)``."""
        n, c = crops.shape[:2]
        maps = self.layer_maps(crops.flatten(0, 1))
        flat_boxes = boxes.flatten(0, 1).to(crops.dtype)
        rois = torch.cat(
            [torch.arange(n * c, device=crops.device, dtype=crops.dtype)[:, None], flat_boxes], 1
        )
        parts = []
        grid = self.config.roi_grid
        for name, (_, stride) in FEATURE_LAYERS.items():
            pooled = roi_align(
                maps[name],
                rois,
                (grid, grid),
                spatial_scale=1.0 / stride,
                sampling_ratio=2,
                aligned=True,
            ).mean(dim=(2, 3))
            parts.append(nn.functional.normalize(pooled, dim=1))
        per_crop = torch.cat(parts, dim=1).view(n, c, EMBEDDING_DIM)
        return nn.functional.normalize(per_crop.mean(dim=1), dim=1)
