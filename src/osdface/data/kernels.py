"""Gaussian blur kernels for the blind-face degradation model.

A kernel is a (size, size) float32 array that sums to 1, centred on the middle pixel. Two families
are used by the GFPGAN / CodeFormer / DifFace pipelines:

- **isotropic**: one sigma for both axes (circular footprint);
- **anisotropic**: independent sigmas along two orthogonal axes, rotated by an angle theta
  (elliptic footprint). theta is in radians, measured from the image x axis (columns) towards the
  y axis (rows, i.e. downwards on screen).

The density is exp(-0.5 * d^T S^-1 d) with covariance S = R diag(sigma_x^2, sigma_y^2) R^T and
d = (x, y) the pixel offset from the centre. It is evaluated on the whole grid at once (numpy).
Sigmas are in pixels of the image the kernel is applied to.
"""

from __future__ import annotations

import math

import numpy as np

KERNEL_TYPES = ("iso", "aniso")


def gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, rotation: float = 0.0
) -> np.ndarray:
    """A normalised 2-D Gaussian kernel.

    Args:
        size: odd kernel side in pixels (e.g. 41).
        sigma_x: standard deviation along the kernel's first principal axis, pixels, > 0.
        sigma_y: standard deviation along the second axis; ``None`` means isotropic (= sigma_x).
        rotation: angle of the first axis in radians (irrelevant when the kernel is isotropic).

    Returns:
        (size, size) float32 array, non-negative, summing to 1.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    if sigma_y is None:
        sigma_y = sigma_x
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be > 0, got ({sigma_x}, {sigma_y})")
    radius = size // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    x = offsets[None, :]  # column offset, broadcast over rows
    y = offsets[:, None]  # row offset, broadcast over columns
    cos_t, sin_t = math.cos(rotation), math.sin(rotation)
    u = cos_t * x + sin_t * y  # coordinate along the first principal axis
    v = -sin_t * x + cos_t * y  # coordinate along the second principal axis
    density = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (density / density.sum()).astype(np.float32)


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """The 1-D factor of an isotropic kernel: ``np.outer(g, g) == gaussian_kernel(size, sigma)`` (up to
    float rounding). Lets isotropic blurs run as two 1-D passes (``cv2.sepFilter2D``), ~5x faster."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"kernel sigma must be > 0, got {sigma}")
    radius = size // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    density = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (density / density.sum()).astype(np.float32)


def kernel_covariance(sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    """The 2x2 covariance matrix (in (x, y) pixel coordinates) of the Gaussian described above.

    Handy to check a kernel's shape: the second moments of ``gaussian_kernel`` approach it when
    the kernel window is large compared with the sigmas.
    """
    rot = np.array([[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]])
    return rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T


def kernel_moments(kernel: np.ndarray) -> np.ndarray:
    """Empirical 2x2 covariance (x, y) of a kernel treated as a probability mass on its grid."""
    radius = kernel.shape[0] // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    x, y = np.meshgrid(offsets, offsets)  # x varies along columns, y along rows
    k = kernel.astype(np.float64) / kernel.sum()
    mx, my = (k * x).sum(), (k * y).sum()
    cxx = (k * (x - mx) ** 2).sum()
    cyy = (k * (y - my) ** 2).sum()
    cxy = (k * (x - mx) * (y - my)).sum()
    return np.array([[cxx, cxy], [cxy, cyy]])
