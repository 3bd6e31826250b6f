"""NIQE (Mittal, Soundararajan & Bovik 2013, "Making a completely blind image quality analyzer").

No-reference, lower is better. This is the MATLAB-compatible NIQE that pyiqa 0.1.12 computes for
``pyiqa.create_metric('niqe')`` (default options ``test_y_channel=True``), reproduced from the published
algorithm, and checked against pyiqa's calibration numbers (tests/test_metrics_niqe.py):

1. Luma: pyiqa 0.1.12 ignores ``test_y_channel`` and uses its ``color_space='yiq'`` default, i.e.
   Y = 0.299 R + 0.587 G + 0.114 B on [0, 255], rounded to integers (half to even). Other choices:
   ``"ycbcr"`` (BT.601 YCbCr Y in [16, 235], the luma of basicsr's ``calculate_niqe(convert_to='y')``) and
   ``"gray"`` (MATLAB ``rgb2gray``, the luma of the official MATLAB NIQE runs in pyiqa's calibration).
2. Crop ``crop_border`` pixels, then crop to whole 96×96 blocks (bottom/right remainder dropped).
3. Two scales. At each: local mean/contrast normalisation (MSCN) with the 7×7 Gaussian window
   (σ = 7/6, replicate padding): (y − μ) / (σ + 1), σ = sqrt(|E[y²] − μ²|); then per block (96 px at
   scale 1, 48 px at scale 2) 18 features: AGGD shape α and mean of (β_l, β_r) of the MSCN values, and
   for the products with the neighbour at circular shifts (0,1), (1,0), (1,1), (1,−1) inside the block:
   α, mean η = (β_r − β_l)·Γ(2/α)/Γ(1/α), β_l, β_r. AGGD α is found on the grid 0.2:0.001:10 by
   moment matching (Lasmar et al. 2009). Scale 2 is MATLAB ``imresize(y, 0.5)`` (bicubic, antialiased,
   symmetric borders), not rounded.
4. Fit a Gaussian to the (blocks × 36) features (mean ignores NaN; covariance over blocks without NaN),
   and NIQE = sqrt((μ_p − μ_d)ᵀ pinv((Σ_p + Σ_d)/2) (μ_p − μ_d)) against the pristine model (μ_p, Σ_p).

Numerics (``numerics``). With ``"pyiqa"`` (default) two float32 roundings of pyiqa 0.1.12 are kept,
because NIQE is sensitive to them: the luma is computed in float32 from [0, 1] values before rounding (this
decides pixels that fall on a .5 tie), and the 7×7 window is rounded to float32, so it sums to 1 only within
~1e-8; E[y²] − μ² is then no longer ~0 on flat areas, σ there is ~0.01–0.1 instead of ~0, and the MSCN of
flat regions changes. On pyiqa's calibration images this moves NIQE by up to 0.05; with these roundings the
scores match pyiqa 0.1.12's own code within 1e-3 and its published calibration values within 0.003.
``"float64"`` keeps everything in float64: it equals MATLAB's NIQE (with ``color_space="gray"``) to 1e-12
on images without perfectly flat areas; on flat areas (saturated or clipped regions) the MSCN values are
rounding noise whose signs differ between any two implementations (MATLAB, basicsr and pyiqa disagree there
by up to 0.4).

The pristine model is ``data/niqe_pris_params.npz`` (from the basicsr 1.4.2 source package, Apache-2.0;
the numbers are the MATLAB NIQE release's ``modelparameters.mat``; see ``data/NOTICE.md``).

Input: any form of ``image_input`` (uint8 HWC RGB arrays, [-1, 1] NCHW tensors, PIL, lists), RGB or gray,
at least 96×96 pixels after ``crop_border`` (and at least two usable blocks, else the score is NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from .image_input import LUMA, as_batches_255, rgb_to_y
from .image_input import crop_border as _crop

BLOCK_SIZE = 96
MSCN_C = 1.0  # the constant added to σ in the MSCN denominator
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals
PARAMS_FILE = "niqe_pris_params.npz"


@dataclass(frozen=True)
class NIQEParams:
    """The pristine natural-image model: feature mean (36,), covariance (36, 36), 7×7 MSCN window."""

    mu: torch.Tensor
    cov: torch.Tensor
    window: torch.Tensor


def load_niqe_params(path: str | Path | None = None) -> NIQEParams:
    """Load the pristine model from ``path`` (an ``.npz`` with ``mu_pris_param``, ``cov_pris_param``,
    ``gaussian_window``) or, by default, from the copy shipped in ``osdface/metrics/data``."""
    if path is None:
        with resources.as_file(resources.files("osdface.metrics") / "data" / PARAMS_FILE) as p:
            return _read_params(p)
    return _read_params(Path(path))


def _read_params(path: Path) -> NIQEParams:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NIQE pristine-model file not found")
    with np.load(path, allow_pickle=False) as d:
        missing = {"mu_pris_param", "cov_pris_param", "gaussian_window"} - set(d.files)
        if missing:
            raise ValueError(f"{path}: not a NIQE parameter file (missing {sorted(missing)})")
        mu = torch.from_numpy(d["mu_pris_param"].astype(np.float64).reshape(-1))
        cov = torch.from_numpy(d["cov_pris_param"].astype(np.float64))
        window = torch.from_numpy(d["gaussian_window"].astype(np.float64))
    if mu.shape != (36,) or cov.shape != (36, 36) or window.shape != (7, 7):
        raise ValueError(
            f"{path}: unexpected shapes mu {tuple(mu.shape)}, cov {tuple(cov.shape)}, "
            f"window {tuple(window.shape)}"
        )
    return NIQEParams(mu=mu, cov=cov, window=window)


@lru_cache(maxsize=1)
def _default_params() -> NIQEParams:
    return load_niqe_params()


# ----------------------------------------------------------------------------- MATLAB imresize


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB ``imresize`` 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return torch.where(ax <= 1, inner, torch.where(ax <= 2, outer, torch.zeros_like(ax)))


def imresize_weights(in_len: int, scale: float) -> torch.Tensor:
    """(out_len, in_len) float64 matrix M so that ``M @ x`` is MATLAB ``imresize(x, scale)`` along one axis.

    Bicubic, antialiased when shrinking (kernel stretched by 1/scale), output length ceil(in_len·scale),
    borders mirrored with the edge sample repeated (MATLAB 'symmetric').
    """
    out_len = math.ceil(in_len * scale)
    stretch = scale if scale < 1 else 1.0  # antialiasing: widen the kernel when downsampling
    kernel_width = 4.0 / stretch
    # 0-based input coordinate of each output sample's centre.
    centre = (torch.arange(out_len, dtype=torch.float64) + 0.5) / scale - 0.5  # (out,)
    first = torch.floor(centre - kernel_width / 2.0)  # first tap (MATLAB: left = floor(x - width/2))
    taps = first[:, None] + torch.arange(math.ceil(kernel_width) + 2, dtype=torch.float64)[None]  # (out, P)
    w = stretch * _cubic(stretch * (centre[:, None] - taps))
    w = w / w.sum(dim=1, keepdim=True)
    # Mirror tap indices into [0, in_len): period 2·in_len, edge sample repeated.
    idx = torch.remainder(taps.long(), 2 * in_len)
    idx = torch.where(idx >= in_len, 2 * in_len - 1 - idx, idx)
    m = torch.zeros(out_len, in_len, dtype=torch.float64)
    m.scatter_add_(1, idx, w)
    return m


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB-style bicubic ``imresize`` of (n, C, H, W) float64 by ``scale`` (no rounding, no clipping)."""
    mh = imresize_weights(x.shape[-2], scale)  # (H', H)
    mw = imresize_weights(x.shape[-1], scale)  # (W', W)
    return mh @ x @ mw.T  # (n, C, H', W')


# ----------------------------------------------------------------------------- features


def _filter_replicate(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D correlation of a float64 (H, W) image with ``window``, replicate borders, same size."""
    return cv2.filter2D(img, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE)


def mscn(y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients of (n, 1, H, W) luma (replicate padding).

    μ = w ∗ y, σ = sqrt(|w ∗ y² − μ²|), MSCN = (y − μ) / (σ + 1). cv2.filter2D computes the same
    float64 correlation as a padded conv2d, ~100× faster on CPU.
    """
    win = window.numpy()
    out = []
    for img in y[:, 0].numpy():  # (H, W) float64
        mu = _filter_replicate(img, win)
        sigma = np.sqrt(np.abs(_filter_replicate(img * img, win) - mu * mu))
        out.append((img - mu) / (sigma + MSCN_C))
    return torch.from_numpy(np.stack(out))[:, None]  # (n, 1, H, W)


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[torch.Tensor, torch.Tensor]:
    """The α grid 0.2:0.001:10 and ρ(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α)) on it."""
    alpha = 0.2 + 0.001 * torch.arange(9801, dtype=torch.float64)
    rho = torch.exp(2 * torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha))
    return alpha, rho


def fit_aggd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric generalised Gaussian fit by moment matching, over the last dim of (..., m).

    Returns (α, β_l, β_r), each of shape (...). A side with no samples gives NaN.
    """
    neg, pos = x < 0, x > 0
    sigma_l = ((x * x * neg).sum(-1) / neg.sum(-1)).sqrt()
    sigma_r = ((x * x * pos).sum(-1) / pos.sum(-1)).sqrt()
    gamma_hat = sigma_l / sigma_r
    r_hat = x.abs().mean(-1) ** 2 / (x * x).mean(-1)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    grid, rho = _aggd_table()
    alpha = grid[(rho - r_hat_norm[..., None]).abs().argmin(-1)]  # NaN r_hat_norm → index 0; fixed below
    alpha = torch.where(torch.isnan(r_hat_norm), torch.full_like(alpha, math.nan), alpha)
    ratio = torch.exp(torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).sqrt()
    return alpha, sigma_l * ratio, sigma_r * ratio


def block_features(coeffs: torch.Tensor, block: int) -> torch.Tensor:
    """(n, 1, H, W) MSCN coefficients, H and W multiples of ``block`` → (n, blocks, 18) features."""
    n, _, h, w = coeffs.shape
    bh, bw = h // block, w // block
    blocks = coeffs.view(n, bh, block, bw, block).permute(0, 1, 3, 2, 4).reshape(n, bh * bw, block, block)
    alpha, beta_l, beta_r = fit_aggd(blocks.flatten(-2))  # (n, nb)
    feats = [alpha, (beta_l + beta_r) / 2]
    for shift in SHIFTS:
        prod = blocks * torch.roll(blocks, shifts=shift, dims=(-2, -1))  # circular within each block
        alpha, beta_l, beta_r = fit_aggd(prod.flatten(-2))
        eta = (beta_r - beta_l) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
        feats += [alpha, eta, beta_l, beta_r]
    return torch.stack(feats, dim=-1)  # (n, nb, 18)


def niqe_distance(feats: torch.Tensor, params: NIQEParams) -> float:
    """NIQE of one image from its (blocks, 36) features; NaN when fewer than two blocks are usable."""
    mu_d = torch.nanmean(feats, dim=0)
    rows = feats[~torch.isnan(feats).any(dim=1)]
    if rows.shape[0] < 2:
        return math.nan
    cov_d = torch.cov(rows.T)  # (36, 36), unbiased, as MATLAB nancov
    diff = (params.mu - mu_d)[None]  # (1, 36)
    inv = torch.linalg.pinv((params.cov + cov_d) / 2)
    return float((diff @ inv @ diff.T).squeeze().sqrt())


# ----------------------------------------------------------------------------- public

NUMERICS = ("pyiqa", "float64")


def niqe_luma(x255: torch.Tensor, color_space: str = "yiq", numerics: str = "pyiqa") -> torch.Tensor:
    """(n, 3 or 1, H, W) float64 on [0, 255] → (n, 1, H, W) float64 integer-valued luma (see module doc)."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    if numerics == "float64" or x255.shape[1] == 1:
        return torch.round(rgb_to_y(x255, color_space))
    if color_space not in LUMA:
        raise ValueError(f"color_space must be one of {sorted(LUMA)}, got {color_space!r}")
    # pyiqa: float32 RGB in [0, 1] times float32 weights, summed over channels, back to [0, 255], rounded.
    # pyiqa writes this as a matmul; a BLAS kernel's summation order (and FMA use) depends on the CPU's
    # instruction set, and a pixel that lands on a .5 tie rounds differently. Elementwise float32 ops in
    # the fixed order (R·w_r + G·w_g) + B·w_b, each rounded (no FMA), reproduce pyiqa's scores on every CPU.
    weights, offset = LUMA[color_space]
    x01 = (x255 / 255.0).to(torch.float32)  # (n, 3, H, W)
    if color_space == "ycbcr":  # pyiqa's rgb2ycbcr: (x @ [65.481, 128.553, 24.966] + 16) / 255
        weights = [c * 255.0 for c in weights]
    w = [torch.tensor(c, dtype=torch.float32) for c in weights]
    y = (x01[:, 0:1] * w[0] + x01[:, 1:2] * w[1]) + x01[:, 2:3] * w[2]  # (n, 1, H, W) float32
    y = (y + offset) / 255.0 * 255.0 if color_space == "ycbcr" else y * 255.0
    return torch.round(y).to(torch.float64)


def compute_niqe(
    images,
    crop_border: int = 0,
    color_space: str = "yiq",
    numerics: str = "pyiqa",
    block_size: int = BLOCK_SIZE,
    params: NIQEParams | None = None,
) -> np.ndarray:
    """NIQE per image, (N,) float64. Lower is better. No reference image.

    Input range: 8-bit scale (uint8 HWC RGB arrays, or [-1, 1] tensors mapped to [0, 255]); colour space
    RGB (reduced to luma, see ``color_space``: "yiq" = pyiqa 0.1.12 'niqe', "ycbcr" = basicsr, "gray" =
    MATLAB rgb2gray) or 1-channel gray.
    ``numerics``: "pyiqa" (default, matches pyiqa's scores) or "float64" (see module docstring).
    Images must be at least ``block_size`` pixels on each side after ``crop_border``.
    """
    params = params or _default_params()
    if block_size % 2:
        raise ValueError(f"block_size must be even (it is halved for the second scale), got {block_size}")
    window = params.window.to(torch.float32).to(torch.float64) if numerics == "pyiqa" else params.window
    out = []
    for chunk in as_batches_255(images):
        y = niqe_luma(_crop(chunk, crop_border), color_space, numerics)  # (n, 1, H, W) on [0, 255]
        h, w = y.shape[-2:]
        if h < block_size or w < block_size:
            raise ValueError(f"NIQE needs images of at least {block_size}x{block_size} pixels, got {h}x{w}")
        y = y[..., : h // block_size * block_size, : w // block_size * block_size]
        feats1 = block_features(mscn(y, window), block_size)  # (n, nb, 18)
        y2 = imresize(y, 0.5)  # (n, 1, H/2, W/2)
        feats2 = block_features(mscn(y2, window), block_size // 2)  # (n, nb, 18)
        feats = torch.cat([feats1, feats2], dim=-1)  # (n, nb, 36)
        out.extend(niqe_distance(f, params) for f in feats)
    return np.asarray(out, dtype=np.float64)
