"""PSNR and SSIM, batched, with basicsr's ``crop_border`` and ``test_y_channel`` options.

Inputs (``pred``, ``gt``): any form of ``image_input`` — numpy uint8 HWC/NHWC RGB, (N, 3, H, W) tensors in
[-1, 1], PIL images, or lists of these (sizes may differ between pairs, not within a pair). Both are turned
into float64 RGB on the [0, 255] scale; nothing is rounded. Each function returns one value per image pair
as a float64 numpy array of shape (N,).

Definitions (as basicsr 1.4.2 ``calculate_psnr`` / ``calculate_ssim``, the scripts VQFR/DAEFR use):
- ``crop_border``: drop that many pixels on every side before measuring.
- ``test_y_channel``: measure on the Y of BT.601 YCbCr in [16, 235] (MATLAB ``rgb2ycbcr``), not rounded;
  otherwise on the three RGB channels.
- PSNR = 10·log10(255² / MSE), MSE over all pixels and channels of one image. Identical images give
  ``inf`` (no cap), exactly as basicsr.
- SSIM (Wang et al. 2004): 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255, population
  (biased) local statistics, SSIM map over the "valid" region only (no padding; 5 px lost on each side),
  mean of the map per channel, then mean over channels.

Differences from basicsr: basicsr computes the Y channel in float32 (we use float64; differences are
below 1e-4 dB / 1e-6 SSIM), and basicsr's numpy path expects BGR while we take RGB (same Y).
skimage ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=-1)`` computes the same SSIM (its 3.5σ truncation also gives an 11-tap window).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .image_input import crop_border as _crop
from .image_input import paired_batches_255, rgb_to_y

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0


def _prepare(pred, gt, crop_border: int, test_y_channel: bool):
    """Yield (pred, gt) float64 (n, C, H, W) chunks on [0, 255], cropped and optionally reduced to Y."""
    for p, g in paired_batches_255(pred, gt):
        p, g = _crop(p, crop_border), _crop(g, crop_border)
        if test_y_channel:
            if p.shape[1] != 3:
                raise ValueError("test_y_channel=True needs RGB (3-channel) images")
            p, g = rgb_to_y(p, "ycbcr"), rgb_to_y(g, "ycbcr")  # (n, 1, H, W)
        yield p, g


def compute_psnr(pred, gt, crop_border: int = 0, test_y_channel: bool = False) -> np.ndarray:
    """PSNR in dB per image pair, (N,) float64; ``inf`` for identical images. Higher is better.

    Input range: 8-bit scale (uint8 arrays, or [-1, 1] tensors mapped to [0, 255]); colour space RGB, or
    the BT.601 YCbCr Y channel with ``test_y_channel=True``.
    """
    out = []
    for p, g in _prepare(pred, gt, crop_border, test_y_channel):
        mse = ((p - g) ** 2).mean(dim=(1, 2, 3))  # (n,)
        with np.errstate(divide="ignore"):
            out.append(10.0 * np.log10(DATA_RANGE**2 / mse.numpy()))  # mse == 0 → inf
    return np.concatenate(out)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian, (size,) float64; its outer product is the 2-D SSIM window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering of (n, C, H, W), 'valid' region only → (n, C, H-k+1, W-k+1)."""
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)  # along W
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)  # along H


def ssim_map(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """SSIM map of float64 (n, C, H, W) images on [0, 255] → (n, C, H-10, W-10)."""
    if min(p.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(p.shape[-2:])}"
        )
    win = gaussian_window_1d()
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mu_p, mu_g = _filter_valid(p, win), _filter_valid(g, win)
    var_p = _filter_valid(p * p, win) - mu_p**2
    var_g = _filter_valid(g * g, win) - mu_g**2
    cov = _filter_valid(p * g, win) - mu_p * mu_g
    num = (2 * mu_p * mu_g + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_g**2 + c1) * (var_p + var_g + c2)
    return num / den


def compute_ssim(pred, gt, crop_border: int = 0, test_y_channel: bool = False) -> np.ndarray:
    """SSIM per image pair, (N,) float64 in [-1, 1]; 1 for identical images. Higher is better.

    Input range: 8-bit scale (uint8 arrays, or [-1, 1] tensors mapped to [0, 255]); colour space RGB (mean
    of the per-channel SSIMs), or the BT.601 YCbCr Y channel with ``test_y_channel=True``.
    """
    out = []
    for p, g in _prepare(pred, gt, crop_border, test_y_channel):
        out.append(ssim_map(p, g).mean(dim=(2, 3)).mean(dim=1).numpy())  # (n,)
    return np.concatenate(out)
