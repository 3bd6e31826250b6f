"""Shot cuts: where the picture changes to another scene from one frame to the next.

Each frame is reduced to a 64-px-wide copy; two consecutive frames are a **cut** when both

- their HSV colour histograms (8 hue × 4 saturation × 4 value bins, normalised) differ by a total
  variation ``½·Σ|p − q|`` of at least ``hist_threshold`` (0..1; default 0.4), and
- their grey levels differ by a mean absolute difference of at least ``luma_threshold`` (0..255;
  default 20).

The histogram ignores motion (a pan or a turning head moves pixels, not colours); the pixel difference
ignores a colour change of the whole picture that leaves it in place. Measured on the real talking head
(``../shared/data/video/talking_head.mp4``, 200 frames, no cut): at most 0.14 and 11.7 between
consecutive frames; a splice onto another scene (the talking head → the astronaut scene): 0.71 and 55.6;
the whole frame brightened by 1.3× in one step: 0.32 and 28 (not a cut). A jump cut within one scene
(same person, same background, 6 s later: 0.12 and 19.9) is not found: the tracker's own matching
(centre distance and size) still ends a track whose face jumps.
"""

from __future__ import annotations

import cv2
import numpy as np


class CutDetector:
    """``detector(rgb)`` → True when this frame starts a new shot (never for the first frame fed)."""

    def __init__(self, hist_threshold: float = 0.4, luma_threshold: float = 20.0, width: int = 64):
        self.hist_threshold, self.luma_threshold, self.width = hist_threshold, luma_threshold, width
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def features(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(normalised HSV histogram (128,), grey copy (h, 64) float32) of an HWC uint8 RGB frame."""
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        return hist / max(hist.sum(), 1.0), cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def distances(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        """(histogram total variation, mean grey difference) between two frames' ``features``."""
        return 0.5 * float(np.abs(a[0] - b[0]).sum()), float(np.abs(a[1] - b[1]).mean())

    def __call__(self, rgb: np.ndarray) -> bool:
        current = self.features(rgb)
        previous, self._previous = self._previous, current
        if previous is None or previous[1].shape != current[1].shape:
            return False
        hist, luma = self.distances(previous, current)
        return hist >= self.hist_threshold and luma >= self.luma_threshold
