"""ArcFace ResNet-18 (``resnet_face18``): the identity network of the Deg. metric and the stage-2 identity loss.

Architecture (ronghuaiyang/arcface-pytorch ``ResNetFace(IRBlock, [2, 2, 2, 2])``, which basicsr/GFPGAN
copied as ``ResNetArcFace``; both name every parameter the same way):

    input (N, 1, 128, 128) gray in [-1, 1]
    conv1 3×3 1→64, bn1, prelu, maxpool 2×2                      → 64 × 64 × 64
    layer1..layer4: 2 IRBlocks each, 64/128/256/512 channels, layers 2–4 start with stride 2
    bn4, dropout (inactive in eval), flatten 512·8·8, fc5 → 512, bn5 (BatchNorm1d)   → (N, 512)

IRBlock: bn0 → conv1 3×3 → bn1 → prelu → conv2 3×3 (stride) → bn2 [→ SE] (+ downsample: 1×1 conv + BN)
→ prelu (the same PReLU module twice, one shared slope per block).

Checkpoints that load by key name (``load_arcface``):
- ``resnet18_110.pth`` (ronghuaiyang; what VQFR's Deg. script uses): saved from ``DataParallel``, so every
  key starts with ``module.``; trained without SE (``use_se=False``).
- ``arcface_resnet18.pth`` (basicsr/GFPGAN/DAEFR ``ResNetArcFace(block='IRBlock', layers=[2, 2, 2, 2],
  use_se=False)``): the same keys, with or without the ``module.`` prefix.
Checkpoints from PyTorch < 0.4.1 have no ``num_batches_tracked`` buffers; those (and only those) may be
absent. Every other missing, unexpected or mis-shaped key is an error that lists them.

``embed`` is differentiable and takes RGB images in [-1, 1] (the package convention), for the identity
loss 1 − cos(f(I_H), f(Î_H)) of stage 2 (``osdface.losses.identity``). Its preprocessing is an option (``ArcFacePreprocess``); the
default is GFPGAN/DAEFR's: gray = 0.2989 R + 0.5870 G + 0.1140 B, bilinear resize to 128×128
(``align_corners=False``). The Deg. metric does not use ``embed``: it reproduces VQFR's file-based
preprocessing in ``osdface.metrics.identity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import check_state_dict_keys, metric_weights_dir, unwrap_state_dict
from ..safe_pickle import safe_torch_load

EMBEDDING_DIM = 512
INPUT_SIZE = 128
# The file names of the public checkpoints, in the order ``default_arcface_path`` looks for them.
ARCFACE_FILES = ("resnet18_110.pth", "arcface_resnet18.pth")
GFPGAN_GRAY = (0.2989, 0.5870, 0.1140)  # GFPGAN / DAEFR / VQFR's load_image_torch


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation (only with ``use_se=True``; the public Deg./identity weights have none)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(n, c)).view(n, c, 1, 1)


class IRBlock(nn.Module):
    """Improved residual block: BN → conv → BN → PReLU → conv(stride) → BN [→ SE], + shortcut, PReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, use_se: bool = False):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, in_ch)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SEBlock(out_ch) if use_se else None
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


@dataclass(frozen=True)
class ArcFacePreprocess:
    """How ``ResNetArcFace.embed`` turns (N, 3, H, W) RGB in [-1, 1] into the network's 1×128×128 input.

    ``gray_weights``: weights of R, G, B (default GFPGAN's 0.2989/0.5870/0.1140; ``(1/3, 1/3, 1/3)`` is the
    channel mean some forks use). ``resize``: "bilinear" (``align_corners=False``, GFPGAN/DAEFR), "area"
    or "bicubic". ``antialias``: antialiased bilinear/bicubic downscaling (off in GFPGAN).
    """

    gray_weights: tuple[float, float, float] = GFPGAN_GRAY
    resize: str = "bilinear"
    antialias: bool = False


class ResNetArcFace(nn.Module):
    """ArcFace ``resnet_face18``: (N, 1, S, S) gray in [-1, 1] → (N, 512) identity embedding (not normalised).

    ``channels`` and ``input_size`` exist for tiny test networks; the public weights need the defaults
    (64, 128, 256, 512) and 128. ``forward`` takes the network input directly; ``embed`` takes RGB.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        use_se: bool = False,
        channels: tuple[int, ...] = (64, 128, 256, 512),
        input_size: int = INPUT_SIZE,
        embedding_dim: int = EMBEDDING_DIM,
    ):
        super().__init__()
        if len(layers) != 4 or len(channels) != 4:
            raise ValueError("layers and channels need four entries (layer1..layer4)")
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (maxpool + 3 strided layers), got {input_size}")
        self.input_size, self.use_se = input_size, use_se
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        in_ch = channels[0]
        for i, (n_blocks, out_ch) in enumerate(zip(layers, channels)):
            stride = 1 if i == 0 else 2
            blocks = [IRBlock(in_ch, out_ch, stride, use_se)]
            blocks += [IRBlock(out_ch, out_ch, 1, use_se) for _ in range(1, n_blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.bn4 = nn.BatchNorm2d(in_ch)
        self.dropout = nn.Dropout()
        side = input_size // 16
        self.fc5 = nn.Linear(in_ch * side * side, embedding_dim)
        self.bn5 = nn.BatchNorm1d(embedding_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) gray in [-1, 1] → (N, 512)."""
        if x.shape[1:] != (1, self.input_size, self.input_size):
            raise ValueError(
                f"ArcFace input must be (N, 1, {self.input_size}, {self.input_size}); got {tuple(x.shape)} "
                "(use embed() for RGB images of any size)"
            )
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))

    def to_network_input(self, images: torch.Tensor, preprocess: ArcFacePreprocess | None = None) -> torch.Tensor:
        """(N, 3, H, W) RGB in [-1, 1] → (N, 1, S, S) gray in [-1, 1] (differentiable)."""
        p = preprocess or ArcFacePreprocess()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"embed() takes (N, 3, H, W) RGB in [-1, 1]; got {tuple(images.shape)}")
        w = torch.tensor(p.gray_weights, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        gray = (images * w).sum(dim=1, keepdim=True)  # (N, 1, H, W)
        size = (self.input_size, self.input_size)
        if gray.shape[-2:] == size:
            return gray
        if p.resize == "area":
            return F.interpolate(gray, size=size, mode="area")
        if p.resize not in ("bilinear", "bicubic"):
            raise ValueError(f"resize must be 'bilinear', 'bicubic' or 'area', got {p.resize!r}")
        return F.interpolate(gray, size=size, mode=p.resize, align_corners=False, antialias=p.antialias)

    def embed(self, images: torch.Tensor, preprocess: ArcFacePreprocess | None = None) -> torch.Tensor:
        """(N, 3, H, W) RGB in [-1, 1] → (N, 512) embeddings; differentiable (call ``eval()`` first)."""
        param = next(self.parameters())
        return self(self.to_network_input(images.to(param.device, param.dtype), preprocess))


# ----------------------------------------------------------------------------- loading


def default_arcface_path(weights_dir: str | Path | None = None) -> Path:
    """The first of ``ARCFACE_FILES`` found in ``weights_dir`` (default ``$OSDFACE_HOME/metrics``), else
    the path of the first name (which then does not exist)."""
    folder = metric_weights_dir(weights_dir)
    for name in ARCFACE_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / ARCFACE_FILES[0]


def missing_arcface_message(path: Path) -> str:
    return (
        f"ArcFace weights not found: {path}. Deg. (and the stage-2 identity loss) need ResNet-18 ArcFace "
        f"weights: {ARCFACE_FILES[0]} (ronghuaiyang/arcface-pytorch, as used by VQFR's "
        f"metric_paper/calculate_cos_dist.py) or {ARCFACE_FILES[1]} (GFPGAN/basicsr). Put either file in "
        f"{path.parent} (or pass --weights-dir DIR / an explicit path)."
    )


def arcface_state_dict(checkpoint, expected: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """A loaded checkpoint object (plain, ``module.``-prefixed, or under 'state_dict'/'params'/'params_ema')
    → a state dict with exactly the keys of ``expected`` (``num_batches_tracked`` filled in when absent)."""
    state = unwrap_state_dict(checkpoint, expected, source, "ArcFace")
    try:
        check_state_dict_keys(state, expected, source)
    except WeightsFormatError as err:
        has_se = any(".se." in k for k in state)
        hint = ""
        if has_se != any(".se." in k for k in expected):
            hint = f" (the file {'has' if has_se else 'has no'} SE blocks: pass use_se={has_se})"
        raise WeightsFormatError(f"{err}{hint}; expected ResNet-18 ArcFace (resnet_face18) keys") from None
    return state


def load_arcface(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    use_se: bool = False,
    **arch,
) -> ResNetArcFace:
    """Build ``ResNetArcFace(use_se, **arch)`` and load ``path`` strictly (see module docstring); eval mode,
    no gradients. ``path`` None → ``default_arcface_path()``. Missing file → WeightsNotFoundError."""
    path = Path(path).expanduser() if path is not None else default_arcface_path()
    if not path.is_file():
        raise WeightsNotFoundError(missing_arcface_message(path))
    model = ResNetArcFace(use_se=use_se, **arch)
    state = arcface_state_dict(safe_torch_load(path), model.state_dict(), str(path))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)
