"""VGG16 feature extractor with torchvision's parameter names, without torchvision.

``features.{i}.weight/bias`` match ``torchvision.models.vgg16().state_dict()`` (the ``classifier.*``
keys of a full checkpoint are ignored), so the ImageNet weights load from a local file
(``vgg16-397923af.pth``, safetensors or a plain state_dict). LPIPS (stage 1) taps relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3; DISTS (stage 2) rebuilds the same stages with L2 pooling.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import read_weights_file

# torchvision's "D" configuration: widths, "M" = 2×2 max pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_RELU_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_FILE = "vgg16-397923af.pth"


def make_vgg16_features() -> nn.Sequential:
    """The 31 modules of ``torchvision.models.vgg16().features`` (conv3×3 + ReLU, max pools)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """Input (B, 3, H, W) in [0, 1] RGB (ImageNet-normalised inside) → dict of ReLU activations."""

    def __init__(self, taps: tuple[str, ...] = tuple(VGG16_RELU_TAPS)):
        super().__init__()
        self.features = make_vgg16_features()
        self.taps = {VGG16_RELU_TAPS[t]: t for t in taps}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images_01: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (images_01 - self.mean) / self.std
        out = {}
        last = max(self.taps)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out[self.taps[i]] = h
            if i == last:
                break
        return out


def load_vgg16_weights(module: nn.Module, path: str | Path) -> None:
    """Load torchvision VGG16 weights (``features.*``) into ``module.features``; strict on those keys."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"VGG16 weights not found at {path}: download torchvision's {VGG16_FILE} "
                                   "(ImageNet) and pass its path")
    state = read_weights_file(path)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    expected = module.features.state_dict()
    missing = sorted(set(expected) - set(features))
    wrong = [k for k in expected if k in features and features[k].shape != expected[k].shape]
    if missing or wrong:
        raise WeightsFormatError(f"{path}: not torchvision VGG16 weights (missing {missing[:3]}, wrong shapes {wrong[:3]})")
    module.features.load_state_dict({k: features[k] for k in expected})
