"""Identity loss (OSDFace Eq. 13): L_ID = 1 − cos(F(I_H), F(Î_H)) with a frozen ArcFace F.

**Input range: RGB in [-1, 1]**, (B, 3, H, W) of any size; ``ResNetArcFace.embed`` turns it into the
network's 1×128×128 gray input (GFPGAN/DAEFR preprocessing by default, an ``ArcFacePreprocess`` option).
The network runs in eval mode (BatchNorm uses its running statistics), so every sample is embedded on
its own: the loss does not depend on the batch order or size. Returns the batch mean (``reduction="none"``:
(B,)). Identical inputs give 0; the range is [0, 2].

Which ArcFace OSDFace used is unknown (SPEC §5.3); ``osdface.models.arcface.load_arcface`` reads both
public ResNet-18 checkpoints (``resnet18_110.pth``, ``arcface_resnet18.pth``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..models.arcface import ArcFacePreprocess, ResNetArcFace


class IdentityLoss(nn.Module):
    def __init__(self, arcface: ResNetArcFace, preprocess: Optional[ArcFacePreprocess] = None):
        super().__init__()
        self.arcface = arcface.requires_grad_(False).eval()
        self.preprocess = preprocess

    def train(self, mode: bool = True):
        return super().train(False)  # BatchNorm must keep its running statistics

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"identity loss needs inputs of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
        f_pred = self.arcface.embed(pred, self.preprocess)  # (B, 512)
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            f_target = self.arcface.embed(target, self.preprocess)
        loss = 1.0 - F.cosine_similarity(f_pred.float(), f_target.float(), dim=1)  # (B,)
        if reduction == "none":
            return loss
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return loss.mean()
