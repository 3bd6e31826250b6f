"""Colour augmentations applied to the LQ image after the blur/resize/noise/JPEG chain.

These reproduce the *semantics* of the GFPGAN training options (``color_jitter_prob``,
``color_jitter_shift``, ``color_jitter_pt_prob``, ``gray_prob``):

- ``shift_color``: add one random offset per RGB channel (offsets on the 0-255 scale);
- ``jitter_bcsh``: brightness, contrast, saturation and hue factors applied in a random order,
  with the meaning torchvision's ``adjust_*`` functions give them (written here in numpy);
- ``to_gray``: ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) replicated to three channels.

All functions take HWC RGB images. Float inputs are float32 in [0, 1]; ``to_gray`` also accepts
uint8 (0..255) and returns the same dtype. Outputs are clipped to the valid range.
"""

from __future__ import annotations

import cv2
import numpy as np

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # R, G, B
BCSH_OPS = ("brightness", "contrast", "saturation", "hue")


def to_gray(image: np.ndarray) -> np.ndarray:
    """HWC RGB (float32 [0, 1] or uint8) → the same shape and dtype, all three channels = luma."""
    luma = image.astype(np.float32) @ LUMA_WEIGHTS
    if image.dtype == np.uint8:
        luma = np.clip(np.round(luma), 0, 255).astype(np.uint8)
    else:
        luma = luma.astype(image.dtype, copy=False)
    return np.repeat(luma[..., None], 3, axis=2)


def shift_color(image: np.ndarray, shift_rgb: list[float]) -> np.ndarray:
    """Add ``shift_rgb`` (three offsets on the 0-255 scale) to a float [0, 1] RGB image, then clip."""
    offsets = np.asarray(shift_rgb, dtype=np.float32) / 255.0
    return np.clip(image + offsets, 0.0, 1.0)


def sample_bcsh(
    rng: np.random.Generator,
    brightness: tuple[float, float],
    contrast: tuple[float, float],
    saturation: tuple[float, float],
    hue: tuple[float, float],
) -> dict:
    """Draw the four factors (uniform in their ranges) and a random order; JSON-serialisable."""
    order = [BCSH_OPS[i] for i in rng.permutation(len(BCSH_OPS))]
    return {
        "order": order,
        "brightness": float(rng.uniform(*brightness)),
        "contrast": float(rng.uniform(*contrast)),
        "saturation": float(rng.uniform(*saturation)),
        "hue": float(rng.uniform(*hue)),
    }


def jitter_bcsh(image: np.ndarray, params: dict) -> np.ndarray:
    """Apply the factors of ``sample_bcsh`` to a float32 [0, 1] RGB image, in ``params["order"]``.

    - brightness f: ``x * f``;
    - contrast f: blend with the mean luma of the whole image, ``f * x + (1 - f) * mean``;
    - saturation f: blend with the per-pixel luma, ``f * x + (1 - f) * luma`` (0 gives gray);
    - hue h (in turns, -0.5..0.5): rotate the HSV hue by ``h * 360`` degrees.
    Each step clips to [0, 1], as torchvision does.
    """
    out = image.astype(np.float32, copy=True)
    for op in params["order"]:
        f = params[op]
        if op == "brightness":
            out = out * f
        elif op == "contrast":
            out = f * out + (1.0 - f) * float((out @ LUMA_WEIGHTS).mean())
        elif op == "saturation":
            out = f * out + (1.0 - f) * (out @ LUMA_WEIGHTS)[..., None]
        elif op == "hue":
            hsv = cv2.cvtColor(np.clip(out, 0.0, 1.0), cv2.COLOR_RGB2HSV)  # float32: H in [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + f * 360.0, 360.0)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        else:
            raise ValueError(f"unknown colour op {op!r}; expected one of {BCSH_OPS}")
        out = np.clip(out, 0.0, 1.0)
    return out
