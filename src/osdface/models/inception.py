"""Inception-v3 for FID: the TensorFlow 2015-12-05 graph as ported by pytorch-fid, 2048-d pool features.

``FIDInceptionV3`` has torchvision's ``Inception3`` layout and parameter names (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, …, ``fc.weight``; no ``AuxLogits``), with the four changes
pytorch-fid makes so that the network computes what the TensorFlow FID graph computes:

- Mixed_5b/5c/5d (InceptionA), Mixed_6b–6e (InceptionC) and Mixed_7b (first InceptionE): the 3×3 average
  pool of the pool branch ignores the zero padding (``count_include_pad=False``, as TensorFlow);
- Mixed_7c (second InceptionE): a 3×3 MAX pool in the pool branch (a quirk of the 2015 graph);
- ``fc`` has 1008 outputs (the 2015 graph's classes); it is loaded but unused;
- BatchNorm eps 0.001 in every BasicConv2d (as torchvision).

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict; the file basicsr's and
VQFR's ``load_patched_inception_v3`` load too) loads by key name with ``load_fid_inception``.

Input of ``features``: (N, 3, 299, 299) RGB, already normalised to the network's range [-1, 1]; resizing and
normalisation belong to the FID preprocessing (``osdface.metrics.fid``), because they differ between FID
implementations. Output: (N, 2048), the global average pool of Mixed_7c.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import check_state_dict_keys, metric_weights_dir, unwrap_state_dict
from ..safe_pickle import safe_torch_load

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
FEATURE_DIM = 2048
INPUT_SIZE = 299
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm (eps 0.001) → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, bias=False, **conv)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3×3, stride 1, 'same' average pool that ignores the padding (TensorFlow's)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1 (64 + 64 + 96 + pool_features channels)."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_ch, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_ch, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_ch, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], dim=1)


class InceptionB(nn.Module):
    """35→17 reduction: 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2 (384 + 96 + in channels)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_ch, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (4 × 192 channels)."""

    def __init__(self, in_ch: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_ch, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_ch, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_ch, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = self._modules[f"branch7x7dbl_{i}"](bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_tf_avg_pool(x))], dim=1)


class InceptionD(nn.Module):
    """17→8 reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2 (320 + 192 + in channels)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_ch, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_ch, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = self._modules[f"branch7x7x3_{i}"](b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8×8 block with split 1×3/3×1 convolutions (320 + 768 + 768 + 192 = 2048 channels).

    ``pool``: "avg" (TensorFlow average pool without padding, Mixed_7b) or "max" (Mixed_7c of the FID graph).
    """

    def __init__(self, in_ch: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_ch, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_ch, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_ch, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (see module docstring); ``features`` gives the 2048-d pool features."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, num_classes)  # in the weight file; not used for FID

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [-1, 1] (H, W ≥ 75; 299 for FID) → (N, 2048) pool features."""
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < 75:
            raise ValueError(f"Inception input must be (N, 3, H, W) with H, W >= 75; got {tuple(x.shape)}")
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = self._modules[f"Mixed_{name}"](x)
        return x.mean(dim=(2, 3))  # adaptive average pool to 1×1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# ----------------------------------------------------------------------------- loading


def default_inception_path(weights_dir: str | Path | None = None) -> Path:
    """``weights_dir/pt_inception-2015-12-05-6726825d.pth`` (default folder ``$OSDFACE_HOME/metrics``)."""
    return metric_weights_dir(weights_dir) / INCEPTION_FILE


def missing_inception_message(path: Path) -> str:
    return (
        f"FID Inception weights not found: {path}. FID needs pytorch-fid's {INCEPTION_FILE} ({INCEPTION_URL}). "
        f"Put it in {path.parent} (or pass --weights-dir DIR / an explicit path)."
    )


def inception_state_dict(checkpoint, expected: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """A plain (optionally ``module.``-prefixed or 'state_dict'-wrapped) state dict → checked state dict."""
    state = unwrap_state_dict(checkpoint, expected, source, "Inception", wrappers=("state_dict",),
                              skip_prefixes=("AuxLogits.",))
    try:
        check_state_dict_keys(state, expected, source)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{err}; expected pytorch-fid's FID Inception ({INCEPTION_FILE})") from None
    return state


def load_fid_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """Build ``FIDInceptionV3`` and load ``path`` strictly; eval mode, no gradients.
    ``path`` None → ``default_inception_path()``. Missing file → WeightsNotFoundError."""
    path = Path(path).expanduser() if path is not None else default_inception_path()
    if not path.is_file():
        raise WeightsNotFoundError(missing_inception_message(path))
    model = FIDInceptionV3()
    model.load_state_dict(inception_state_dict(safe_torch_load(path), model.state_dict(), str(path)))
    return model.eval().requires_grad_(False).to(device)
