"""Bringing face images to the square training size.

FFHQ / FFHQR / CelebA-HQ faces are already aligned and square; other folders may hold any size.
``fit_square`` centre-crops a non-square image to a square (the aligned face sits in the centre)
and resizes it: INTER_AREA when shrinking (anti-aliased, e.g. FFHQ 1024 → 512), INTER_CUBIC when
enlarging (e.g. a 128 px LQ brought to 512). Images are HWC uint8 RGB in and out.
"""

from __future__ import annotations

import cv2
import numpy as np


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an HWC image (a view, no copy)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def fit_square(image: np.ndarray, size: int | None) -> np.ndarray:
    """Centre-crop to square and resize to (size, size); ``size=None`` returns the image unchanged."""
    if size is None:
        return image
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    square = center_crop_square(image)
    side = square.shape[0]
    if side == size:
        return np.ascontiguousarray(square)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(square), (size, size), interpolation=interp)


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right (contiguous copy, so it converts to a tensor without negative strides)."""
    return np.ascontiguousarray(image[:, ::-1])
