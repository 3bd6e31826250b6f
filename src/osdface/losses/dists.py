"""DISTS (Ding et al., 2020): structure and texture similarity on VGG16 features, as a loss.

Re-implements ``pyiqa``'s ``DISTS`` (the version OSDFace pins, 0.1.12; the same as the authors'
``DISTS_pytorch``) without torchvision:

- VGG16 ``features`` up to relu5_3 with every 2×2 max pool replaced by *L2 pooling*
  (sqrt of a 3×3 Hann-window blur of x², stride 2, padding 1);
- six feature sets: the raw input (3 channels) and relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
  (64, 128, 256, 512, 512 channels), 1475 channels in all;
- per channel, texture S1 = (2·μx·μy + c1) / (μx² + μy² + c1) and structure
  S2 = (2·σxy + c2) / (σx² + σy² + c2) over the spatial positions (c1 = c2 = 1e-6);
- DISTS = 1 − Σ_k (α_k·S1_k + β_k·S2_k) / (Σα + Σβ), with the learned α, β (each (1, 1475, 1, 1)).

**Input range: RGB in [0, 1]** (ImageNet mean/std normalisation happens inside, as in pyiqa). One-channel
inputs (e.g. Sobel edge maps, whose values exceed 1) broadcast exactly as in pyiqa: the normalised
input becomes 3 channels and the raw-input term's S1/S2 is weighted by all three α/β of that stage.

Weights (none are downloaded): VGG16 from torchvision's ``vgg16-397923af.pth`` (``load_vgg16_weights``)
and α/β from the DISTS release (``weights.pt`` of DISTS_pytorch or pyiqa's ``DISTS_weights-f5e65c96.pth``,
keys ``alpha``/``beta``). A full pyiqa DISTS state dict (``stage1.0.weight`` …) also loads, VGG included.
Without weights α, β are drawn as pyiqa does (N(0.1, 0.01)): fine for tests, meaningless as a metric.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import read_weights_file
from ..models.vgg import IMAGENET_MEAN, IMAGENET_STD, load_vgg16_weights, make_vgg16_features

DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
DISTS_FILE = "DISTS_weights-f5e65c96.pth"
# Indices of torchvision's VGG16 ``features`` that end each DISTS stage (relu1_2 … relu5_3), and the
# max pools (replaced by L2 pooling) that start stages 2–5.
_STAGE_ENDS = (3, 8, 15, 22, 29)
_POOLS = {4: 64, 9: 128, 16: 256, 23: 512}
_PYIQA_KEY = re.compile(r"^stage[1-5]\.(\d+)\.(weight|bias)$")


class L2Pooling(nn.Module):
    """sqrt(blur(x²) + 1e-12), depthwise 3×3 Hann window (hanning(5)[1:-1], normalised), stride 2."""

    def __init__(self, channels: int, filter_size: int = 5, stride: int = 2):
        super().__init__()
        self.stride, self.padding = stride, (filter_size - 2) // 2
        a = np.hanning(filter_size)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        g = g / g.sum()
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter.to(x.dtype), stride=self.stride, padding=self.padding, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS(x, y) per image pair; x, y (B, C, H, W) RGB in [0, 1] (C = 3, or 1 for edge maps).

    ``forward(x, y, reduction="mean")`` returns a scalar (pyiqa's ``as_loss=True`` value);
    ``reduction="none"`` gives (B,). Lower is more similar; DISTS(x, x) = 0 up to rounding. The
    network is frozen (``requires_grad=False``) and stays in eval mode; gradients flow to the inputs.
    """

    def __init__(self):
        super().__init__()
        features = make_vgg16_features()[:30]  # up to relu5_3
        for index, channels in _POOLS.items():
            features[index] = L2Pooling(channels)
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        total = sum(DISTS_CHANNELS)
        self.alpha = nn.Parameter(torch.empty(1, total, 1, 1).normal_(0.1, 0.01))
        self.beta = nn.Parameter(torch.empty(1, total, 1, 1).normal_(0.1, 0.01))
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)  # a fixed metric: never in training mode

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3] (L2-pooled VGG16)."""
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)  # (B, 3, H, W), also for 1-channel x
        feats = [x]
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _STAGE_ENDS:
                feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"DISTS needs inputs of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        fx = self.stage_features(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and y.requires_grad):
            fy = self.stage_features(y)
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, DISTS_CHANNELS, dim=1)
        beta = torch.split(self.beta / w_sum, DISTS_CHANNELS, dim=1)
        dist1 = dist2 = 0
        for k in range(len(DISTS_CHANNELS)):
            x_mean = fx[k].mean([2, 3], keepdim=True)  # (B, C_k, 1, 1)
            y_mean = fy[k].mean([2, 3], keepdim=True)
            s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
            dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
            x_var = ((fx[k] - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((fy[k] - y_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (fx[k] * fy[k]).mean([2, 3], keepdim=True) - x_mean * y_mean
            s2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
            dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
        score = 1 - (dist1 + dist2).flatten()  # (B,)
        return score.mean() if reduction == "mean" else score


def _read_state(path: Path) -> dict:
    state = read_weights_file(path)
    for wrapper in ("params", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsFormatError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def load_dists_weights(model: DISTS, path: str | Path) -> bool:
    """Load α/β (and VGG16, if the file is a full pyiqa DISTS state dict) into ``model``.

    Returns True when the file also held the VGG16 convolutions. Raises WeightsNotFoundError /
    WeightsFormatError with what is missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"DISTS weights not found at {path}: get the α/β file ({DISTS_FILE} from "
                                   "pyiqa's releases, or weights.pt of DISTS_pytorch) and pass its path")
    state = _read_state(path)
    total = sum(DISTS_CHANNELS)
    for key in ("alpha", "beta"):
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.numel() != total:
            raise WeightsFormatError(f"{path}: no DISTS '{key}' of {total} values (keys: {sorted(state)[:6]})")
    with torch.no_grad():
        model.alpha.copy_(state["alpha"].reshape(1, total, 1, 1))
        model.beta.copy_(state["beta"].reshape(1, total, 1, 1))
    vgg = {f"{m[1]}.{m[2]}": v for k, v in state.items() if (m := _PYIQA_KEY.match(k))}
    if not vgg:
        return False
    expected = {k: v for k, v in model.features.state_dict().items()}
    if set(vgg) != set(expected) or any(vgg[k].shape != expected[k].shape for k in expected):
        raise WeightsFormatError(f"{path}: its stage*.* VGG16 tensors do not match DISTS's "
                                 f"({len(vgg)} found, {len(expected)} expected)")
    model.features.load_state_dict(vgg)
    return True


def make_dists(dists_weights: str | Path | None = None, vgg16_weights: str | Path | None = None,
               allow_random: bool = False) -> DISTS:
    """A frozen DISTS with real weights: α/β from ``dists_weights`` and VGG16 from ``vgg16_weights``
    (not needed when ``dists_weights`` is a full pyiqa state dict). ``allow_random=True`` lets missing
    paths fall back to random weights (tests, benchmarks); otherwise a missing path is an error."""
    model = DISTS()
    has_vgg = False
    if dists_weights is not None:
        has_vgg = load_dists_weights(model, dists_weights)
    elif not allow_random:
        raise WeightsNotFoundError(f"DISTS needs its α/β weights ({DISTS_FILE}): set their path "
                                   "(losses.dists_weights) or allow random weights for a test run")
    if vgg16_weights is not None:
        load_vgg16_weights(model, vgg16_weights)
    elif not has_vgg and not allow_random:
        raise WeightsNotFoundError("DISTS needs ImageNet VGG16 weights (torchvision's vgg16-397923af.pth): "
                                   "set their path (losses.vgg16_weights)")
    return model.requires_grad_(False).eval()
