"""LPIPS (VGG16 variant), the perceptual loss of the stage-1 VQGAN (taming/DAEFR), without torchvision.

d(x, y) = Σ_l mean_hw( w_l · (f̂_l(x) − f̂_l(y))² ), where f_l are the VGG16 activations relu1_2,
relu2_2, relu3_3, relu4_3, relu5_3, f̂ = f / (‖f‖_channels + 1e-10), and w_l ≥ 0 are the five learned
1×1 "lin" layers. Inputs are in [-1, 1]; LPIPS's ScalingLayer (shift −.030, −.088, −.188, scale
.458, .448, .450) is exactly ImageNet normalisation of (x + 1)/2, which ``VGG16Features`` applies.

Weights come from local files (nothing is downloaded):

- VGG16: torchvision's ``vgg16-397923af.pth`` (``features.*`` keys), via ``load_vgg16_weights``;
- lin layers: the official lpips ``weights/v0.1/vgg.pth`` (also taming's ``vgg.pth``), keys
  ``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1).

Without the lin file the lin weights are all 1 (LPIPS's ``lpips=False`` baseline: the plain sum of
squared differences of unit-normalised features). The module is frozen and always in eval mode (the
lin layers' dropout, active in taming's training because Lightning sets train mode, is off here).

Example::

    lpips = LPIPS.from_pretrained("weights/vgg16-397923af.pth", "weights/lpips_vgg.pth")
    loss = lpips(reconstruction, target).mean()      # (B,) distances
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import read_weights_file
from ..models.vgg import VGG16Features, load_vgg16_weights

LPIPS_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_LIN_FILE = "vgg.pth"  # lpips/weights/v0.1/vgg.pth


class _LinLayer(nn.Module):
    """LPIPS ``NetLinLayer``: Sequential(Dropout, 1×1 conv C → 1 without bias): key ``model.1.weight``."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))
        nn.init.ones_(self.model[1].weight)


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned perceptual distance; ``forward(x, y)`` on (B, 3, H, W) in [-1, 1] → (B,)."""

    def __init__(self):
        super().__init__()
        self.net = VGG16Features(LPIPS_TAPS)
        for k, channels in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{k}", _LinLayer(channels))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # a fixed metric: dropout stays off

    @classmethod
    def from_pretrained(cls, vgg_path: str | Path | None = None, lin_path: str | Path | None = None) -> LPIPS:
        """LPIPS with torchvision VGG16 weights and the official lin weights (either may be None: random
        VGG / unit lin weights, for tests)."""
        model = cls()
        if vgg_path is not None:
            load_vgg16_weights(model.net, vgg_path)
        if lin_path is not None:
            model.load_lin_weights(lin_path)
        return model

    def load_lin_weights(self, path: str | Path) -> None:
        """Load ``lin{k}.model.1.weight`` (k = 0..4) from an lpips ``vgg.pth`` (or safetensors); other keys
        (e.g. ``net.*`` of a full LPIPS state dict) are ignored, missing or misshapen ones are an error."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"LPIPS lin weights not found at {path}: take lpips' weights/v0.1/{LPIPS_LIN_FILE} "
                                       "(pip package 'lpips' or github.com/richzhang/PerceptualSimilarity) and pass its path")
        state = read_weights_file(path)
        expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}
        missing = [k for k in expected if k not in state]
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
        if missing or wrong:
            raise WeightsFormatError(f"{path}: not LPIPS VGG lin weights (missing {missing[:3]}, wrong shapes {wrong[:3]})")
        with torch.no_grad():
            for k in range(len(LPIPS_CHANNELS)):
                getattr(self, f"lin{k}").model[1].weight.copy_(state[f"lin{k}.model.1.weight"])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        feats = self.net((torch.cat([x, y]) + 1) / 2)  # one VGG pass for both, (2B, C_l, H_l, W_l) per tap
        total = x.new_zeros(B)
        for k, tap in enumerate(LPIPS_TAPS):
            fx, fy = _unit_normalize(feats[tap]).split(B)
            diff = getattr(self, f"lin{k}").model((fx - fy).pow(2))  # (B, 1, H_l, W_l)
            total = total + diff.mean(dim=(1, 2, 3))  # spatial average
        return total
