"""Metric inputs: every accepted image form → float64 tensors on the [0, 255] scale, plus luma (Y).

The metrics in this package (PSNR, SSIM, NIQE) are defined on 8-bit pixel values, so they work on a
float64 copy of the image on the [0, 255] scale, in RGB order, never quantised again (except where a
metric's reference implementation rounds, which that metric does itself).

Accepted forms (``images``):
- numpy ``uint8`` HWC RGB (one image) or NHWC (a batch); HW or HW1 grayscale also works;
- torch tensor (C, H, W) or (N, C, H, W), float in [-1, 1] (the package convention), C = 1 or 3;
- a PIL image;
- a list or tuple of the above (images may differ in size).

``as_batches_255`` returns a list of (n, C, H, W) float64 chunks: one chunk for an array/tensor batch,
one chunk per item for a list. Metrics are vectorised inside a chunk and loop over chunks.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..image_utils import pil_to_numpy

# Luma definitions: Y = w_R·R + w_G·G + w_B·B + offset, with R, G, B and Y on the [0, 255] scale.
# "ycbcr": ITU-R BT.601 studio-swing Y in [16, 235], as MATLAB ``rgb2ycbcr`` and basicsr ``test_y_channel``
#          (published coefficients 65.481, 128.553, 24.966 for RGB in [0, 1], output offset 16).
# "yiq":   Y of YIQ (NTSC) = BT.601 full-swing luma 0.299, 0.587, 0.114 (pyiqa's NIQE default).
# "gray":  MATLAB ``rgb2gray`` (first row of the inverse of MATLAB's YIQ→RGB matrix), used by the
#          official MATLAB NIQE scripts.
YCBCR_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
YCBCR_Y_OFFSET = 16.0
YIQ_Y_WEIGHTS = (0.299, 0.587, 0.114)
MATLAB_GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
LUMA = {
    "ycbcr": (YCBCR_Y_WEIGHTS, YCBCR_Y_OFFSET),
    "yiq": (YIQ_Y_WEIGHTS, 0.0),
    "gray": (MATLAB_GRAY_WEIGHTS, 0.0),
}


def _one_to_255(image) -> torch.Tensor:
    """One array/tensor/PIL image (or an array/tensor batch) → (n, C, H, W) float64 on [0, 255]."""
    if isinstance(image, Image.Image):
        image = pil_to_numpy(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(
                f"numpy images must be uint8 HWC RGB (0..255); got dtype {image.dtype} "
                "(convert float images with (x * 255).round().astype(np.uint8) first)"
            )
        if image.ndim == 2:  # HW gray
            image = image[None, ..., None]
        elif image.ndim == 3:  # HWC
            image = image[None]
        if image.ndim != 4 or image.shape[-1] not in (1, 3):
            raise ValueError(
                f"numpy images must be HW, HWC or NHWC with C in (1, 3); got shape {image.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).to(torch.float64)
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float64)
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise ValueError(
                f"tensor images must be (C, H, W) or (N, C, H, W) with C in (1, 3); got {tuple(image.shape)}"
            )
        return (t + 1.0) * 127.5  # [-1, 1] → [0, 255]
    raise TypeError(
        f"unsupported image type {type(image).__name__}; use numpy uint8 HWC, a [-1, 1] tensor or PIL"
    )


def as_batches_255(images) -> list[torch.Tensor]:
    """Any accepted form (see module docstring) → list of (n, C, H, W) float64 chunks on [0, 255]."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given (empty list)")
        return [_one_to_255(im) for im in images]
    return [_one_to_255(images)]


def paired_batches_255(pred, gt) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two image collections of the same length and matching sizes → list of (pred, gt) chunks."""
    pred_chunks, gt_chunks = as_batches_255(pred), as_batches_255(gt)
    n_pred, n_gt = sum(len(c) for c in pred_chunks), sum(len(c) for c in gt_chunks)
    if n_pred != n_gt:
        raise ValueError(f"pred has {n_pred} images but gt has {n_gt}")
    # Re-chunk so that both sides split the same way (one side may be a batch, the other a list).
    if [len(c) for c in pred_chunks] != [len(c) for c in gt_chunks]:
        pred_chunks = [im[None] for c in pred_chunks for im in c]
        gt_chunks = [im[None] for c in gt_chunks for im in c]
    pairs = []
    for i, (p, g) in enumerate(zip(pred_chunks, gt_chunks)):
        if p.shape != g.shape:
            raise ValueError(
                f"image {i}: pred shape {tuple(p.shape[1:])} != gt shape {tuple(g.shape[1:])} (C, H, W)"
            )
        pairs.append((p, g))
    return pairs


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on every side of (n, C, H, W) (basicsr ``crop_border``)."""
    if border < 0:
        raise ValueError(f"crop_border must be >= 0, got {border}")
    if border == 0:
        return x
    if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
        raise ValueError(f"crop_border={border} leaves nothing of a {x.shape[-2]}x{x.shape[-1]} image")
    return x[..., border:-border, border:-border]


def rgb_to_y(x255: torch.Tensor, color_space: str = "ycbcr") -> torch.Tensor:
    """(n, 3, H, W) RGB on [0, 255] → (n, 1, H, W) luma on [0, 255], not rounded (1 channel passes through).

    ``color_space``: "ycbcr" (BT.601 YCbCr Y in [16, 235]; basicsr ``test_y_channel``), "yiq" (0.299 R +
    0.587 G + 0.114 B; pyiqa NIQE's default) or "gray" (MATLAB ``rgb2gray``). See ``LUMA``.
    """
    if color_space not in LUMA:
        raise ValueError(f"color_space must be one of {sorted(LUMA)}, got {color_space!r}")
    if x255.shape[1] == 1:
        return x255
    weights, offset = LUMA[color_space]
    w = torch.tensor(weights, dtype=x255.dtype).view(1, 3, 1, 1)
    return (x255 * w).sum(dim=1, keepdim=True) + offset
