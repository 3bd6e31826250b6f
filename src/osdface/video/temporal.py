"""Motion-compensated temporal averaging of one face over its neighbouring frames.

A face track gives, for frame t, an aligned crop (the model's input) and the model's restored crop; the
same face in frames t ± 1 … t ± r differs from it by real motion (a mouth, an eye, a head the landmarks
follow imperfectly) and by what the degradation and the model add afresh each frame (JPEG blocks, the
model's own texture): flicker. ``TemporalFilter`` averages a crop with its neighbours after warping each
onto it by dense optical flow, so that the real motion is compensated and what is left to average is
the flicker:

1. flow ``F_k`` from the crop ``c`` to its neighbour ``n_k`` (DIS, on grey levels): ``c(x) ≈ n_k(x + F_k(x))``;
2. the warped neighbour ``ñ_k(x) = n_k(x + F_k(x))`` (bilinear, borders replicated);
3. a per-pixel weight ``w_k = max(0, 1 − d_k / gate)``, with ``d_k`` the channel-mean |ñ_k − c| averaged
   over 5 × 5 pixels: where the flow could not explain the change (an occlusion, a new expression, a
   cut the tracker missed) the neighbour differs by more than ``gate`` levels and drops out;
4. ``out = (c + Σ_k w_k·ñ_k) / (1 + Σ_k w_k)``.

On a still crop (all neighbours equal) the output is the crop. ``video.restorer`` filters each face three
times over ± 2 frames: its input crop (gate 32), its restored crop and its region of the pasted frame (gate
24). On the real talking head of ``benchmarks/bench_video.py --clean`` (×0.25, JPEG q25 + H.264 CRF 38)
that takes the temporal error against the clean clip below 0.9× the input's, with the faces' PSNR up
(README, "Video").
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

INPUT_GATE = 32.0  # levels: the model's input crops (compression flicker is large)
OUTPUT_GATE = 24.0  # levels: the restored crops


class TemporalFilter:
    """``filter(crop, neighbours)``: the crop (HWC uint8 RGB) averaged with its neighbours (same shape),
    each warped onto it by optical flow and weighted by how well the warp matches (see module)."""

    def __init__(self, gate: float):
        if not gate > 0:
            raise ValueError(f"gate must be > 0; got {gate}")
        self.gate = float(gate)
        self._flow = None
        self._grid: np.ndarray | None = None

    def flow(self, gray: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Dense flow (H, W, 2) from ``gray`` to ``other``: gray(x) ≈ other(x + flow(x))."""
        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return self._flow.calc(gray, other, None)

    def warp(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``image`` (HWC) sampled at x + flow(x), float32."""
        h, w = flow.shape[:2]
        if self._grid is None or self._grid.shape[:2] != (h, w):
            self._grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
        where = self._grid + flow
        return cv2.remap(image.astype(np.float32), where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def __call__(self, crop: np.ndarray, neighbours: Sequence[np.ndarray]) -> np.ndarray:
        if not neighbours:
            return crop
        current = crop.astype(np.float32)
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        total, weight = current.copy(), np.ones(crop.shape[:2] + (1,), np.float32)
        for other in neighbours:
            # 1–2. warp the neighbour onto the crop
            warped = self.warp(other, self.flow(gray, cv2.cvtColor(other, cv2.COLOR_RGB2GRAY)))
            # 3. weight by how well it matches, 5 × 5 neighbourhood
            distance = cv2.blur(np.abs(warped - current).mean(axis=2), (5, 5))
            w = np.clip(1 - distance / self.gate, 0, 1)[..., None]
            total += w * warped
            weight += w
        # 4. the weighted mean
        return np.clip(np.rint(total / weight), 0, 255).astype(np.uint8)
