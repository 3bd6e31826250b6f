"""Edge-aware DISTS (OSDFace Eq. 14, after DFOSD): EA-DISTS(x, y) = DISTS(x, y) + DISTS(S(x), S(y)).

S is the Sobel gradient magnitude of the official code (SPEC §5.2):

- grayscale first (a choice, both ship in the official repo): ``"mean"`` = channel mean
  (``edge_aware_dists_demo.py``) or ``"luma"`` = 0.2989 R + 0.587 G + 0.114 B
  (torchvision ``Grayscale``, ``utils/others.py``);
- Gx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], Gy = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]] as a
  cross-correlation (``conv2d``) with zero padding 1;
- S = sqrt((Gx ⋆ g)² + (Gy ⋆ g)² + 1e-6), shape (B, 1, H, W), not clipped (up to ≈ 5.7 for [0, 1] input).

**Input range: RGB in [0, 1]**, as pyiqa's DISTS (which the official code calls on the images and then on
the edge maps, summing both with equal weight). The result is the batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dists import DISTS

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale
GRAY_MODES = ("mean", "luma")


def to_gray(images: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """(B, 3, H, W) → (B, 1, H, W) by channel mean or luma weights; 1-channel input passes through."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")
    if mode == "mean":
        return images.mean(dim=1, keepdim=True)
    if mode == "luma":
        w = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * w).sum(dim=1, keepdim=True)
    raise ValueError(f"gray mode must be one of {GRAY_MODES}, got {mode!r}")


def sobel_magnitude(images: torch.Tensor, gray: str = "mean", eps: float = 1e-6) -> torch.Tensor:
    """Sobel gradient magnitude sqrt(gx² + gy² + eps) of the grayscale image: (B, 1, H, W)."""
    g = to_gray(images, gray)
    kernels = torch.tensor((SOBEL_X, SOBEL_Y), dtype=g.dtype, device=g.device)[:, None]  # (2, 1, 3, 3)
    grad = F.conv2d(g, kernels, padding=1)  # (B, 2, H, W): gx, gy
    return (grad[:, :1] ** 2 + grad[:, 1:] ** 2 + eps).sqrt()


class EdgeAwareDISTS(nn.Module):
    """EA-DISTS(pred, target) = DISTS(pred, target) + DISTS(S(pred), S(target)); inputs RGB in [0, 1].

    ``forward`` returns the batch mean; ``terms`` returns both parts separately (for logging).
    """

    def __init__(self, dists: DISTS, gray: str = "mean"):
        super().__init__()
        if gray not in GRAY_MODES:
            raise ValueError(f"gray must be one of {GRAY_MODES}, got {gray!r}")
        self.dists, self.gray = dists, gray

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_term = self.dists(pred, target)
        edge_term = self.dists(sobel_magnitude(pred, self.gray), sobel_magnitude(target, self.gray))
        return image_term, edge_term

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        image_term, edge_term = self.terms(pred, target)
        return image_term + edge_term
