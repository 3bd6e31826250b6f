"""A small ×2 super-resolution network for the photo background at ``--upscale`` > 1.

ESPCN-style: 3×3 convolutions at the low resolution, a pixel shuffle to ×2, and the result added to a
bicubic ×2 of the input (the network predicts only the residual, and starts as plain bicubic with its
last layer at zero). The input is padded once by replication (``reach`` pixels) and the convolutions
are unpadded, so image borders see no dark frame and a tile read with its neighbours' pixels gives
exactly the whole image's result.

    net = BackgroundSR.from_pretrained(background_sr_dir())      # the weights that ship in the package
    out = upscale_image(net, photo, 3.0)                         # HWC uint8 RGB → ×3, tiled

Other factors than 2: ``upscale_image`` runs the ×2 network ``round(log2(s))`` times (at least once) and
fits the result to the exact size asked (INTER_AREA down, or Lanczos-4 up by at most √2). The image is
processed in tiles with a margin wider than the network's reach, so tiling does not change the result
(beyond float rounding). Training: ``osdface.training.background_sr`` (``scripts/train_background_sr.sh``).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

WEIGHTS_NAME = "background_sr"  # osdface/weights/background_sr: config.json + diffusion_pytorch_model.safetensors


def background_sr_dir() -> Path:
    """Where the shipped weights live inside the installed package."""
    return Path(str(resources.files("osdface"))) / "weights" / WEIGHTS_NAME


class BackgroundSR(ModelMixin, ConfigMixin):
    """``(B, 3, h, w)`` RGB in [0, 1] → ``(B, 3, scale·h, scale·w)`` (not clamped).

    ``channels``: width of the hidden layers; ``num_layers``: hidden 3×3 layers between the first and
    the last one; ``scale``: the pixel-shuffle factor (the shipped weights: 2).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, channels: int = 32, num_layers: int = 4, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3)
        self.body = nn.ModuleList(nn.Conv2d(channels, channels, 3) for _ in range(num_layers))
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)  # starts as plain bicubic
        nn.init.zeros_(self.tail.bias)

    @property
    def reach(self) -> int:
        """Input pixels each side that one output pixel depends on: one per 3×3 layer (at least the 2 bicubic needs)."""
        return len(self.body) + 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scale, r = self.config.scale, self.reach
        base = F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)  # (B, 3, sH, sW)
        x = F.pad(image - 0.5, (r, r, r, r), mode="replicate")  # (B, 3, H + 2r, W + 2r)
        x = F.relu(self.head(x))  # (B, C, H + 2r - 2, W + 2r - 2)
        for layer in self.body:
            x = F.relu(layer(x))
        return base + self.shuffle(self.tail(x))  # (B, 3, sH, sW)


@torch.inference_mode()
def upscale_pass(net: BackgroundSR, image: np.ndarray, tile: int = 512) -> np.ndarray:
    """One pass of the network: HWC uint8 RGB (h, w) → (scale·h, scale·w), in tiles of ``tile`` input
    pixels, each read with a margin of ``net.reach`` + 2 pixels so the tiles join exactly."""
    h, w = image.shape[:2]
    s, margin = net.config.scale, net.reach + 2
    device, dtype = net.device, net.dtype
    out = np.empty((h * s, w * s, 3), np.uint8)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            # 1. The tile and its margin (clipped at the image's edges, where the layers replicate)
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + tile + margin), min(w, x + tile + margin)
            patch = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).to(device)
            patch = patch.permute(2, 0, 1)[None].to(dtype) / 255.0  # (1, 3, th, tw) in [0, 1]
            # 2. The network, then the tile's own part of the result
            pred = net(patch)[0]  # (3, s·th, s·tw)
            ty, tx = min(tile, h - y), min(tile, w - x)
            pred = pred[:, (y - y0) * s:(y - y0 + ty) * s, (x - x0) * s:(x - x0 + tx) * s]
            pred = (pred.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
            out[y * s:(y + ty) * s, x * s:(x + tx) * s] = pred.cpu().numpy()
    return out


def upscale_image(net: BackgroundSR, image: np.ndarray, upscale: float, tile: int = 512) -> np.ndarray:
    """HWC uint8 RGB → ``upscale``× its size (rounded as ``FaceRestorer`` rounds). ``upscale`` ≤ 1 is a
    plain Lanczos-4 resize; otherwise ``round(log2(upscale))`` network passes (at least one), then the
    exact size by INTER_AREA (down) or Lanczos-4 (up, by at most √2)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * upscale)), max(1, round(h * upscale)))  # cv2 order: (width, height)
    if upscale <= 1:
        return cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
    scale = net.config.scale
    out = image
    for _ in range(max(1, round(math.log(upscale, scale)))):
        out = upscale_pass(net, out, tile)
    if out.shape[1::-1] == size:
        return out
    down = out.shape[0] * out.shape[1] > size[0] * size[1]
    return cv2.resize(out, size, interpolation=cv2.INTER_AREA if down else cv2.INTER_LANCZOS4)
