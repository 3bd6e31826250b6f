"""The Stable Diffusion 2.1-base parts OSDFace uses: VAE, UNet and the noise schedule.

Only ``vae/``, ``unet/`` and ``scheduler/`` of a diffusers folder are read (no text encoder). The
configs of SD 2.1-base ship with the package (``osdface/configs/sd21base``), so the full-size
architecture can be built offline with random weights for benchmarks and tests.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from ..errors import WeightsNotFoundError

SD_HUB_ID = "stabilityai/stable-diffusion-2-1-base"
SD_FOLDER_NAME = "stable-diffusion-2-1-base"


def weights_home() -> Path:
    """Where weights live by default: ``$OSDFACE_HOME``, else ``~/.cache/osdface``."""
    return Path(os.environ.get("OSDFACE_HOME", Path.home() / ".cache" / "osdface")).expanduser()


def sd21_base_config(part: str) -> dict:
    """The shipped SD 2.1-base config of ``part`` in {"unet", "vae", "scheduler"}."""
    text = resources.files("osdface.configs").joinpath(f"sd21base/{part}_config.json").read_text()
    return json.loads(text)


def _model_config(part: str) -> dict:
    return {k: v for k, v in sd21_base_config(part).items() if not k.startswith("_")}


@torch.no_grad()
def fill_random_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights, in place: a module built on the meta device is materialised on the CPU first.

    Matrices/kernels get N(0, 1/fan_in) (activations keep a realistic scale), norm weights 1, other
    vectors and buffers 0. Building on "meta" then filling never holds a second copy of the weights,
    so peak memory is the weights themselves, as when real weights are loaded.
    """
    if any(p.is_meta for p in module.parameters()):
        module.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if p.ndim > 1:
            p.normal_(0, p[0].numel() ** -0.5, generator=g)
        elif "norm" in name and name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()
    for b in module.buffers():
        b.zero_()
    return module


def build_sd21_base(seed: int = 0) -> tuple[AutoencoderKL, UNet2DConditionModel]:
    """Full-size SD 2.1-base VAE and UNet with random weights (offline; benchmarks, MAC counts)."""
    with torch.device("meta"):
        vae, unet = AutoencoderKL(**_model_config("vae")), UNet2DConditionModel(**_model_config("unet"))
    return fill_random_(vae, seed), fill_random_(unet, seed + 1)


def alphas_cumprod_from_config(scheduler_config: dict) -> torch.Tensor:
    """ᾱ_t for t = 0..T−1 (float32), computed by diffusers' DDIMScheduler as the official code does."""
    config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    return DDIMScheduler.from_config(config).alphas_cumprod.clone()


def _missing_sd_message(where: str, reason: str) -> str:
    home = weights_home() / SD_FOLDER_NAME
    return (
        f"Stable Diffusion 2.1-base not found at {where!r} ({reason}). Download the diffusers folder of "
        f"{SD_HUB_ID} (its unet/, vae/ and scheduler/ subfolders; HF or the ModelScope mirror "
        f"'AI-ModelScope/stable-diffusion-2-1-base') and place it at {home} or pass --sd-model PATH."
    )


def load_sd21_base(path_or_id: str | os.PathLike, dtype: torch.dtype = torch.float32,
                   load_unet: bool = True):
    """Load (vae, unet or None, scheduler config) from a local diffusers folder or a hub id.

    A hub id is only tried when it does not look like a path; any failure (offline, missing files)
    becomes one WeightsNotFoundError that says what to download and where to put it.
    """
    source = str(path_or_id)
    local = Path(source).expanduser()
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local:
        if not local.is_dir():
            raise WeightsNotFoundError(_missing_sd_message(source, "no such folder"))
        for part in ("vae", "scheduler") + (("unet",) if load_unet else ()):
            if not (local / part).is_dir():
                raise WeightsNotFoundError(_missing_sd_message(source, f"no {part}/ subfolder"))
        source = str(local)
    from .space_to_depth import vae_class

    try:
        vae_cls = vae_class(Path(source) / "vae") if looks_local else AutoencoderKL
        vae = vae_cls.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        unet = (UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype)
                if load_unet else None)
        scheduler_config = DDIMScheduler.load_config(source, subfolder="scheduler")
    except (OSError, ValueError, EnvironmentError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsNotFoundError(_missing_sd_message(source, first_line[:200])) from None
    return vae, unet, dict(scheduler_config)
