"""Stage 2's models: the frozen VRE, the generator as an ``OSDFacePipeline`` with a trainable LoRA (or a
whole UNet of our own size) and the latent discriminator, built from the files a ``Stage2Config`` names.

``build_models(cfg)`` reads SD 2.1-base (or builds ``model.unet_config``/``vae_config``), the VRE and
the weights to start from; ``assemble_models`` does the same from components in memory (benchmarks).
``TrainableGenerator`` wraps the generator's trainable parts for accelerate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import official
from ..errors import OSDFaceError, WeightsFormatError, WeightsNotFoundError
from ..models.adapter import PromptAdapter
from ..models.discriminator import LatentDiscriminator
from ..models.lora import LORA_WEIGHT_NAME, LoraPair, add_lora_adapter, load_lora_file
from ..models.stable_diffusion import load_sd21_base
from ..models.vre import VisualRepresentationEmbedder
from ..pipeline import INDEX_FILE, OSDFacePipeline
from .stage2_config import Stage2Config

logger = logging.getLogger(__name__)




def load_vre(source: str | Path, vre_config: Optional[dict] = None) -> VisualRepresentationEmbedder:
    """The frozen VRE from a release folder / ``associate_2.ckpt`` (architecture ``vre_config``, default
    the release's), a stage-1 export or model folder (``visual_embedder/``), or a VRE folder itself."""
    path = Path(source).expanduser()
    for folder in (path, path / "visual_embedder"):
        if (folder / "config.json").is_file():
            return VisualRepresentationEmbedder.from_pretrained(folder)
    ckpt = path / official.VRE_FILE if path.is_dir() else path
    if ckpt.is_file():
        vre = VisualRepresentationEmbedder(**(vre_config or {}))
        vre.load_state_dict(official.read_vre_state_dict(ckpt, vre.state_dict()))
        return vre
    raise WeightsNotFoundError(
        f"no VRE found at {path}: expected an {official.VRE_FILE} (the release or a stage-1 export), a "
        "visual_embedder/ folder or a VRE folder with config.json (set model.vre)")


def _initial_weights(cfg: Stage2Config):
    """(VRE, adapter, LoRA pairs or None) for ``model.init_from`` / ``model.vre``."""
    m = cfg.model
    init = Path(m.init_from).expanduser() if m.init_from else None
    pairs, adapter = None, None
    if init is not None:
        if official.is_release_folder(init):
            official.check_release_folder(init)
            adapter = PromptAdapter(**(m.adapter_config or {}))
            adapter.load_state_dict(official.read_adapter_state_dict(init / official.ADAPTER_FILE, adapter.state_dict()))
            pairs = load_lora_file(init / official.LORA_FILE)
        elif (init / INDEX_FILE).is_file():
            if not (init / "lora" / LORA_WEIGHT_NAME).is_file():
                raise WeightsFormatError(f"{init} stores a merged UNet: fine-tuning needs the LoRA on its own "
                                         "(save the model with lora='separate', or start from the release)")
            adapter = PromptAdapter.from_pretrained(init / "prompt_adapter")
            pairs = load_lora_file(init / "lora")
        else:
            raise WeightsNotFoundError(f"model.init_from={init}: neither the official release folder "
                                       f"({', '.join(official.RELEASE_FILES)}) nor one of our model folders")
    if pairs is not None:
        logger.info("fine-tuning from %s: its LoRA (%d modules, rank %d) replaces model.lora_targets/lora_rank",
                    init, len(pairs), next(iter(pairs.values())).rank)
    vre_source = m.vre or (str(init) if init is not None else None)
    if vre_source is None:
        raise OSDFaceError("set model.vre (the stage-1 VRE: an associate_2.ckpt, a stage-1 export folder) "
                           "or model.init_from (the official release) to train from")
    vre = load_vre(vre_source, m.vre_config)
    if adapter is None:
        adapter = PromptAdapter(**(m.adapter_config or {}))
    return vre, adapter, pairs


def trainable_generator_parameters(pipe: OSDFacePipeline, train_unet: str = "lora") -> list[nn.Parameter]:
    """The weights stage 2 changes: the UNet's LoRA (``train_unet="lora"``) or the whole UNet
    (``"full"``), and the adapter."""
    unet = [p for n, p in pipe.unet.named_parameters() if train_unet == "full" or "lora_" in n]
    return unet + list(pipe.adapter.parameters())


class TrainableGenerator(nn.Module):
    """The trainable parts (``unet`` with LoRA, ``adapter``) as one module whose forward is the pipeline's
    one-step recipe, so that accelerate/DDP can wrap it. The frozen VAE and VRE stay in ``pipe`` only."""

    def __init__(self, pipe: OSDFacePipeline):
        super().__init__()
        self.unet, self.adapter = pipe.unet, pipe.adapter
        self.pipe = pipe  # not an nn.Module: not registered, not moved by .to()

    def forward(self, lq: torch.Tensor, generator=None, posterior: str = "mode") -> dict[str, torch.Tensor]:
        return self.pipe.generate(lq, generator=generator, posterior=posterior)


def build_own_base(cfg: Stage2Config):
    """(vae, unet, scheduler config) of a model of our own size (``model.unet_config``/``vae_config``):
    fresh weights seeded by ``train.seed``, SD 2.1-base's noise schedule."""
    from diffusers import UNet2DConditionModel

    from ..models.space_to_depth import build_vae
    from ..models.stable_diffusion import sd21_base_config

    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        try:
            unet = UNet2DConditionModel(**m.unet_config)
            vae = build_vae(m.vae_config)
        except (TypeError, ValueError) as err:
            raise OSDFaceError(f"model.unet_config / model.vae_config: {err}") from None
    return vae, unet, sd21_base_config("scheduler")


def build_models(cfg: Stage2Config) -> tuple[OSDFacePipeline, Optional[LatentDiscriminator]]:
    """The generator as an ``OSDFacePipeline`` with an un-merged, trainable PEFT LoRA, and the
    discriminator (None when ``losses.gan`` is 0), on the CPU in float32, from the files the config
    names (SD 2.1-base, the VRE, the release or our format for fine-tuning)."""
    from ..loading import default_sd_model

    if cfg.model.unet_config is not None:
        vae, unet, scheduler_config = build_own_base(cfg)
        sd_model = None
    else:
        sd_model = cfg.model.sd_model or str(default_sd_model())
        if Path(sd_model).expanduser().exists():  # a local folder: recorded absolute (exports load from anywhere)
            sd_model = str(Path(sd_model).expanduser().resolve())
        vae, unet, scheduler_config = load_sd21_base(sd_model)
    vre, adapter, pairs = _initial_weights(cfg)
    return assemble_models(cfg, vae, unet, scheduler_config, vre, adapter, pairs,
                           base_model=None if sd_model is None else str(sd_model))


def assemble_models(cfg: Stage2Config, vae, unet, scheduler_config: dict, vre: VisualRepresentationEmbedder,
                    adapter: PromptAdapter, pairs: Optional[dict[str, LoraPair]] = None,
                    base_model: Optional[str] = None) -> tuple[OSDFacePipeline, Optional[LatentDiscriminator]]:
    """``build_models`` from components in memory (``unet`` without any LoRA yet; ``pairs``: a LoRA to
    start from, else a fresh one). Benchmarks use it with random full-size components."""
    m, d = cfg.model, cfg.discriminator
    if adapter.config.in_dim != vre.config.embed_dim or adapter.config.out_dim != unet.config.cross_attention_dim:
        raise OSDFaceError(f"the adapter maps {adapter.config.in_dim}→{adapter.config.out_dim} but the VRE gives "
                           f"{vre.config.embed_dim}-d tokens and the UNet takes {unet.config.cross_attention_dim}-d "
                           "context (set model.adapter_config)")
    # 1. The discriminator copies the *base* UNet, before the generator's LoRA goes in.
    disc = None
    if cfg.losses.gan > 0:
        disc = LatentDiscriminator.from_unet(unet, head=d.head, lora_rank=d.lora_rank,
                                             lora_targets=d.lora_targets, mlp_hidden=d.mlp_hidden)
    # 2. The generator's LoRA: the release's / ours (its modules and rank; alpha = rank), or fresh (B = 0);
    #    none when the whole UNet is trained.
    if m.train_unet == "full":
        pass
    elif pairs is not None:
        add_lora_adapter(unet, pairs)
    else:
        from peft import LoraConfig

        unet.add_adapter(LoraConfig(r=m.lora_rank, lora_alpha=m.lora_rank, init_lora_weights="gaussian",
                                    target_modules=list(m.lora_targets)))
    pipe = OSDFacePipeline(vre, adapter, vae, unet, scheduler_config, timestep=m.timestep, sample_size=m.sample_size,
                           lora=None, lora_merged=m.train_unet == "full", base_model=base_model)
    for p in trainable_generator_parameters(pipe, m.train_unet):  # the pipeline froze everything
        p.requires_grad_(True)
    return pipe, disc
