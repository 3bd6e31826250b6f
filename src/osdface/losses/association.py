"""The stage-1 association loss between HQ and LQ features (OSDFace Eq. 9–11, DAEFR's code form).

Both branches' pre-quantisation features h (B, C, H, W) are flattened over batch *and* positions
into K = B·H·W rows, each L2-normalised. M = exp(s)·ĥ_HQ ĥ_LQᵀ is K×K; row i (the HQ feature at
position p of image b) should match column i (the LQ feature at the same p of the same b). The loss
is the mean of the cross-entropies along both axes (CLIP's symmetric loss):

    L = ( CE(M, arange K) + CE(Mᵀ, arange K) ) / 2

The logit scale s starts at log(1/0.07); DAEFR never puts it in an optimizer, so it stays fixed
(``learnable=False``, the default here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def flatten_features(h: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B·H·W, C), rows in (b, h, w) order, each divided by its L2 norm."""
    rows = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])  # (K, C)
    return F.normalize(rows, dim=1, eps=1e-12)


def association_loss(h_hq: torch.Tensor, h_lq: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric cross-entropy over the K×K similarity of HQ and LQ features (computed in float32)."""
    if h_hq.shape != h_lq.shape:
        raise ValueError(f"HQ and LQ features must have the same shape, got {tuple(h_hq.shape)} and {tuple(h_lq.shape)}")
    with torch.autocast(device_type=h_hq.device.type, enabled=False):
        hq, lq = flatten_features(h_hq.float()), flatten_features(h_lq.float())
        scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=hq.device).exp()
        logits_hq = scale * hq @ lq.t()  # (K, K): HQ rows against LQ columns
        labels = torch.arange(logits_hq.shape[0], device=hq.device)
        return (F.cross_entropy(logits_hq, labels) + F.cross_entropy(logits_hq.t(), labels)) / 2


class AssociationLoss(nn.Module):
    """``association_loss`` with its logit scale log(1/temperature): a buffer (fixed, DAEFR) or a parameter."""

    def __init__(self, temperature: float = 0.07, learnable: bool = False):
        super().__init__()
        init = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    def forward(self, h_hq: torch.Tensor, h_lq: torch.Tensor) -> torch.Tensor:
        return association_loss(h_hq, h_lq, self.logit_scale)
