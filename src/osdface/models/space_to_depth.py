"""A parameter-free, exactly invertible latent space: space-to-depth (pixel unshuffle) in place of the VAE.

The small OSDFace model (``osdface-mini``) runs the same one-step recipe as the paper's, but on a latent
that needs no training: an S×S RGB face in [-1, 1] becomes a (3·f², S/f, S/f) tensor by moving each
f×f pixel block into channels (``F.pixel_unshuffle``), and decoding moves them back. Why not a small
VAE: a trained autoencoder caps what the generator can reach at its own reconstruction PSNR (in a
colleague's trial run a frozen tiny AutoencoderKL reconstructed the ground truth at 16.8 dB, below the
20.9 dB of the degraded inputs),
while this one reconstructs exactly (∞ dB), costs no training time and no weights, and still gives the
UNet a spatially compressed latent (f = 4: 48 × 32 × 32 for a 128 px face, the SD VAE's 64 × 64 grid
at a quarter of the resolution).

The class speaks the part of ``diffusers.AutoencoderKL``'s interface the pipeline and training use:
``encode(x).latent_dist`` with ``mode()``/``sample()``/``mean``/``std`` (a point mass: std 0),
``decode(z).sample``, ``config.scaling_factor``, ``save_pretrained``/``from_pretrained`` (a config file
and an empty weights file). ``load_vae`` picks this class or ``AutoencoderKL`` from a folder's config.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


class PointPosterior:
    """A deterministic "posterior": every statistic is the latent itself, std 0."""

    def __init__(self, latents: torch.Tensor):
        self.mean = latents
        self.std = torch.zeros_like(latents)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator=None) -> torch.Tensor:
        return self.mean


class SpaceToDepthAutoencoder(ModelMixin, ConfigMixin):
    """(B, C, H, W) in [-1, 1] ↔ (B, C·f², H/f, W/f) latents, scaled by ``scaling_factor``; no weights."""

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, factor: int = 4, in_channels: int = 3, scaling_factor: float = 1.0):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        # diffusers reads a model's dtype/device from its tensors: one empty buffer stands in for weights
        self.register_buffer("dtype_probe", torch.zeros(0), persistent=False)

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels * self.config.factor**2

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        f = self.config.factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"image side {tuple(x.shape[-2:])} is not a multiple of the latent factor {f}")
        posterior = PointPosterior(F.pixel_unshuffle(x, f))  # (B, C·f², H/f, W/f)
        return SimpleNamespace(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        image = F.pixel_shuffle(z, self.config.factor)  # (B, C, H, W)
        return SimpleNamespace(sample=image) if return_dict else (image,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latent_dist.mode()).sample

    # No weights: a folder holds only config.json.
    def save_pretrained(self, save_directory, **_) -> None:
        self.save_config(save_directory)

    @classmethod
    def from_pretrained(cls, folder, subfolder: str | None = None, torch_dtype=None, **_):
        path = Path(folder) / subfolder if subfolder else Path(folder)
        config = cls.load_config(str(path))
        model = cls.from_config(config)
        return torch.nn.Module.to(model, dtype=torch_dtype) if torch_dtype is not None else model


VAE_CLASSES = {"AutoencoderKL": AutoencoderKL, "SpaceToDepthAutoencoder": SpaceToDepthAutoencoder}


def vae_class(folder: str | Path):
    """The autoencoder class a saved ``vae/`` folder holds (by its config's ``_class_name``)."""
    try:
        name = json.loads((Path(folder) / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    except (OSError, ValueError):
        return AutoencoderKL  # let AutoencoderKL.from_pretrained report what is wrong
    return VAE_CLASSES.get(name, AutoencoderKL)


def build_vae(config: dict):
    """An autoencoder from a config mapping: ``{"_class_name": "SpaceToDepthAutoencoder", "factor": 4}`` or
    an ``AutoencoderKL`` config (random weights)."""
    config = dict(config)
    cls = VAE_CLASSES.get(config.pop("_class_name", "AutoencoderKL"))
    if cls is None:
        raise ValueError(f"unknown autoencoder class in {config}; known: {', '.join(VAE_CLASSES)}")
    return cls(**{k: v for k, v in config.items() if not k.startswith("_")})
