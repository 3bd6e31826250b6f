"""Prompt adapter: VRE tokens (B, 77, 512) → UNet cross-attention context (B, 77, 1024).

The release's ``TwoLayerConv1x1``: two 1×1 Conv1d layers over the token axis with SiLU after *both*
(so every prompt value is ≥ −0.2785). Keys ``conv1.*`` / ``conv2.*`` match
``embedding_change_weights.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PromptAdapter(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, in_dim: int = 512, hidden_dim: int = 256, out_dim: int = 1024):
        super().__init__()
        self.conv1 = nn.Conv1d(in_dim, hidden_dim, kernel_size=1)
        self.conv2 = nn.Conv1d(hidden_dim, out_dim, kernel_size=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens.transpose(1, 2)  # (B, in_dim, T)
        x = F.silu(self.conv2(F.silu(self.conv1(x))))  # (B, out_dim, T)
        return x.transpose(1, 2)  # (B, T, out_dim)
