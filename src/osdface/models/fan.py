"""AWing FAN: the 98-point (WFLW) landmark network of the LMD metric (SPEC §7.4).

The network of facexlib's ``awing_fan`` and VQFR's ``vqfr/archs/awing_arch.py`` (``FAN(num_modules=4,
num_landmarks=98)``), written so that ``alignment_WFLW_4HG.pth`` (``checkpoint['state_dict']``) loads by
key name:

    input (N, 3, 256, 256) RGB in [0, 1]
    conv1: CoordConv 7×7 stride 2 (input + x, y, r channels) → bn1 → ReLU              → 64 × 128 × 128
    conv2: ConvBlock 64→128, avg-pool 2; conv3: ConvBlock 128→128; conv4: ConvBlock 128→256 → 256 × 64 × 64
    4 stacks i = 0..3:  m{i} hourglass (CoordConv 1×1 first, depth 4) → top_m_{i} ConvBlock
        → conv_last{i} 1×1 → bn_end{i} → ReLU → l{i} 1×1 → 99 heatmaps (98 landmarks + 1 boundary map)
        between stacks: previous + bl{i}(features) + al{i}(heatmaps)

CoordConv: the coordinate channels are appended in this order: "xx" (varies along the rows, i.e. the y
axis: values −1..1 top to bottom), "yy" (varies along the columns), r = sqrt(xx² + yy²) / max; from the
second stack on, also xx and yy masked where the previous stack's boundary heatmap (clamped to [0, 1]) is
above 0.05. (The names follow the original code, whose "x" is the row index.)

ConvBlock(in, out): three pre-activation 3×3 convs (BN → ReLU → conv) with out/2, out/4, out/4 channels,
concatenated, plus the input (through BN → ReLU → 1×1 conv when in ≠ out).

``calculate_points`` turns heatmaps into landmark coordinates exactly as the AWing code does (arg-max
plus a quarter-pixel step towards the larger neighbour, + 0.5), including its quirks (see there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import check_state_dict_keys, metric_weights_dir, unwrap_state_dict
from ..safe_pickle import safe_torch_load

FAN_FILE = "alignment_WFLW_4HG.pth"
NUM_LANDMARKS = 98
INPUT_SIZE = 256
BOUNDARY_THRESHOLD = 0.05


def coordinate_channels(n: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W): xx (row coordinate), yy (column coordinate), both in [−1, 1], and r = |(xx, yy)| / max."""
    # i / (size − 1) · 2 − 1, computed as the original (not linspace, whose float32 values differ by an ulp)
    rows = torch.arange(height, dtype=like.dtype, device=like.device) / (height - 1) * 2 - 1
    cols = torch.arange(width, dtype=like.dtype, device=like.device) / (width - 1) * 2 - 1
    xx = rows.view(height, 1).expand(height, width)
    yy = cols.view(1, width).expand(height, width)
    rr = torch.sqrt(xx * xx + yy * yy)
    rr = rr / rr.max()
    return torch.stack([xx, yy, rr])[None].expand(n, 3, height, width)


class CoordConv(nn.Module):
    """Conv2d over [input, xx, yy, r] (+ [xx, yy] masked by the boundary heatmap when ``with_boundary``)."""

    def __init__(self, in_channels: int, out_channels: int, with_boundary: bool, **conv):
        super().__init__()
        self.with_boundary = with_boundary
        extra = 3 + (2 if with_boundary else 0)
        self.conv = nn.Conv2d(in_channels + extra, out_channels, **conv)

    def forward(self, x: torch.Tensor, heatmaps: torch.Tensor | None = None) -> torch.Tensor:
        coords = coordinate_channels(x.shape[0], x.shape[2], x.shape[3], x)
        parts = [x, coords]
        if self.with_boundary:
            if heatmaps is None:
                raise ValueError("this CoordConv needs the previous stack's heatmaps")
            boundary = heatmaps[:, -1:].clamp(0.0, 1.0)  # (n, 1, H, W)
            parts.append(torch.where(boundary > BOUNDARY_THRESHOLD, coords[:, :2], torch.zeros_like(coords[:, :2])))
        return self.conv(torch.cat(parts, dim=1))


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation multi-scale residual block (Bulat & Tzimiropoulos): out/2 + out/4 + out/4 channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, out_ch // 2)
        self.bn2 = nn.BatchNorm2d(out_ch // 2)
        self.conv2 = _conv3x3(out_ch // 2, out_ch // 4)
        self.bn3 = nn.BatchNorm2d(out_ch // 4)
        self.conv3 = _conv3x3(out_ch // 4, out_ch // 4)
        self.downsample = None
        if in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_ch), nn.ReLU(True), nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([out1, out2, out3], dim=1) + shortcut


class HourGlass(nn.Module):
    """CoordConv 1×1, then a recursive hourglass of ``depth`` levels (modules b1_L, b2_L, b2_plus_1, b3_L)."""

    def __init__(self, depth: int, features: int, first: bool):
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(features, features, with_boundary=not first, kernel_size=1)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return upper + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, heatmaps: torch.Tensor | None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, heatmaps))


class FAN(nn.Module):
    """AWing FAN: (N, 3, S, S) RGB in [0, 1] → list of ``num_stacks`` heatmap tensors (N, L + 1, S/4, S/4).

    Defaults are the public 4-stack, 98-landmark network (S = 256, base width 64 → 256 features,
    hourglass depth 4). ``width``, ``depth``, ``num_stacks`` and ``input_size`` exist for tiny test
    networks; ``input_size`` must be divisible by 4·2^depth.
    """

    def __init__(
        self,
        num_stacks: int = 4,
        num_landmarks: int = NUM_LANDMARKS,
        width: int = 64,
        depth: int = 4,
        input_size: int = INPUT_SIZE,
        end_relu: bool = False,
    ):
        super().__init__()
        if input_size % (4 * 2**depth):
            raise ValueError(f"input_size {input_size} must be divisible by 4·2^depth = {4 * 2**depth}")
        self.num_stacks, self.num_landmarks = num_stacks, num_landmarks
        self.input_size, self.end_relu = input_size, end_relu
        c, features = width, 4 * width
        self.conv1 = CoordConv(3, c, with_boundary=False, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = ConvBlock(c, 2 * c)
        self.conv3 = ConvBlock(2 * c, 2 * c)
        self.conv4 = ConvBlock(2 * c, features)
        for i in range(num_stacks):
            self.add_module(f"m{i}", HourGlass(depth, features, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, num_landmarks + 1, kernel_size=1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks + 1, features, kernel_size=1))

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1:] != (3, self.input_size, self.input_size):
            raise ValueError(f"FAN input must be (N, 3, {self.input_size}, {self.input_size}); got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        outputs, heatmaps = [], None
        for i in range(self.num_stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous, heatmaps))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)))
            heatmaps = self._modules[f"l{i}"](features)
            if self.end_relu:
                heatmaps = F.relu(heatmaps)
            outputs.append(heatmaps)
            if i < self.num_stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return outputs

    def landmark_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """The last stack's landmark heatmaps (boundary map dropped): (N, L, S/4, S/4)."""
        return self(x)[-1][:, :-1]


def calculate_points(heatmaps: np.ndarray, quirks: bool = True) -> np.ndarray:
    """(B, N, H, W) heatmaps → (B, N, 2) float64 (x, y) in heatmap pixels (pixel centres at +0.5).

    Arg-max (first maximum in row-major order), then a step of ±0.25 px along x and y towards the larger
    of the two neighbours (0 when they are equal), then + 0.5.

    ``quirks=True`` (default) reproduces AWing/facexlib/VQFR ``calculate_points`` exactly for one image
    (B = 1, as VQFR's LMD script calls it), image by image:
    - the x neighbours are the previous/next elements of the flattened map, so at the left/right edge they
      come from the neighbouring row (index −1 wraps to the last element);
    - if ANY landmark of the image has its maximum on the last row, the "y + 1" neighbour of EVERY landmark
      is the map's last element; if any has it on the first row (or at index W), the "y − 1" neighbour of
      every landmark is the first element.
    The one case where the original raises (maximum at the very last element) uses that element itself.
    ``quirks=False``: the neighbours of each landmark in its own row/column, clamped at the borders.
    """
    heatmaps = np.asarray(heatmaps)
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w)
    last = h * w - 1
    index = flat.argmax(axis=2)  # (B, N)

    def take(i: np.ndarray) -> np.ndarray:  # flat[b, n, i[b, n]]; negative indices count from the end
        return np.take_along_axis(flat, i[..., None], axis=2)[..., 0]

    if quirks:
        x_next = take(np.minimum(index + 1, last))
        x_prev = take(index - 1)  # −1 → last element, as numpy indexing in the original
        bottom = ((index + w) > last).any(axis=1, keepdims=True)  # per image, as the original with B = 1
        top = ((index - w) <= 0).any(axis=1, keepdims=True)
        y_next = np.where(bottom, flat[:, :, last], take(np.minimum(index + w, last)))
        y_prev = np.where(top, flat[:, :, 0], take(np.maximum(index - w, 0)))
    else:
        row, col = index // w, index % w
        x_next = take(row * w + np.minimum(col + 1, w - 1))
        x_prev = take(row * w + np.maximum(col - 1, 0))
        y_next = take(np.minimum(row + 1, h - 1) * w + col)
        y_prev = take(np.maximum(row - 1, 0) * w + col)
    preds = np.stack([index % w, index // w], axis=2).astype(np.float64)
    preds += 0.25 * np.sign(np.stack([x_next - x_prev, y_next - y_prev], axis=2))
    return preds + 0.5


# ----------------------------------------------------------------------------- loading


def default_fan_path(weights_dir: str | Path | None = None) -> Path:
    """``weights_dir/alignment_WFLW_4HG.pth`` (default folder ``$OSDFACE_HOME/metrics``)."""
    return metric_weights_dir(weights_dir) / FAN_FILE


def missing_fan_message(path: Path) -> str:
    return (
        f"FAN landmark weights not found: {path}. LMD needs the AWing 4-stack WFLW model {FAN_FILE} "
        f"(facexlib release v0.1.0, also VQFR's experiments/pretrained_models/metric_weights/). Put it in "
        f"{path.parent} (or pass --weights-dir DIR / an explicit path)."
    )


def fan_state_dict(checkpoint, expected: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``{'state_dict': ...}`` (the public file) or a plain state dict → checked state dict."""
    state = unwrap_state_dict(checkpoint, expected, source, "FAN", wrappers=("state_dict",))
    try:
        check_state_dict_keys(state, expected, source)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{err}; expected the AWing FAN (4 hourglass stacks, 98 landmarks)") from None
    return state


def load_fan(path: str | Path | None = None, device: str | torch.device = "cpu", **arch) -> FAN:
    """Build ``FAN(**arch)`` and load ``path`` strictly; eval mode, no gradients.
    ``path`` None → ``default_fan_path()``. Missing file → WeightsNotFoundError."""
    path = Path(path).expanduser() if path is not None else default_fan_path()
    if not path.is_file():
        raise WeightsNotFoundError(missing_fan_message(path))
    model = FAN(**arch)
    model.load_state_dict(fan_state_dict(safe_torch_load(path), model.state_dict(), str(path)))
    return model.eval().requires_grad_(False).to(device)
