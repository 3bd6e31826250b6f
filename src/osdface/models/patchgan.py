"""PatchGAN discriminator of the stage-1 VQGAN (pix2pix ``NLayerDiscriminator``, as taming/DAEFR use it).

4×4 convs: ndf (stride 2) → ndf·2 … (stride 2, ``n_layers − 1`` of them) → ndf·2^n_layers (stride 1)
→ 1 channel (stride 1); BatchNorm (so no conv bias) and LeakyReLU(0.2) in between, channel
multipliers capped at 8. Conv weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), biases 0.
Keys are ``main.{i}.*`` as in DAEFR's ``loss.discriminator.main.*``.

A 512×512 input gives a (B, 1, 62, 62) map of patch logits (70×70 receptive field at n_layers 3).
"""

from __future__ import annotations

import torch
from torch import nn


def init_patchgan_weights(module: nn.Module) -> None:
    """The pix2pix/taming initialisation, applied to every conv and BatchNorm of ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)  # taming leaves the default bias init; zero is the pix2pix choice
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class PatchDiscriminator(nn.Module):
    """Images (B, in_channels, H, W) in [-1, 1] → patch logits (B, 1, H', W')."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        init_patchgan_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)
