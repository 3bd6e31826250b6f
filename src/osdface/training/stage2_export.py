"""Exporting a trained stage-2 generator: our format and the official release layout.

``export_generator(pipe, out, cfg)`` writes ``out/osdface/`` (``OSDFacePipeline.from_pretrained``),
``out/release/`` (the three official files, ``OSDFacePipeline.from_official``) and
``out/export.json`` (step, architectures, config), replacing ``out`` atomically.
``export_checkpoint(checkpoint, out)`` does the same from a training checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

from torch import nn

from .. import official
from ..errors import OSDFaceError
from ..files import atomic_folder
from ..models.lora import LoraPair, lora_state_dict, parse_lora_state_dict
from ..models.lora import merge_lora as merge_lora_weights
from ..models.stable_diffusion import load_sd21_base
from ..pipeline import OSDFacePipeline
from .checkpoint import CheckpointManager, load_trainable_state_dict
from .config import config_to_dict
from .stage2_config import Stage2Config, find_checkpoint, load_stage2_config
from .stage2_models import TrainableGenerator, build_models


def trained_lora_pairs(unet: nn.Module) -> dict[str, LoraPair]:
    """The UNet's PEFT LoRA as ``{module: LoraPair}`` (float32, CPU): what the release file holds."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name="default")
    return parse_lora_state_dict({k: v.detach().float().cpu().clone() for k, v in state.items()}, "trained UNet")


def export_generator(pipe: OSDFacePipeline, output_dir: str | Path, cfg: Stage2Config, step: Optional[int] = None,
                     lora: str = "separate", layouts: Sequence[str] = ("osdface", "release")) -> dict[str, Path]:
    """Write the trained generator; returns the paths written. ``output_dir`` is replaced atomically.

    - ``osdface/``: our format (``OSDFacePipeline.from_pretrained``). ``lora="separate"``: LoRA, VRE and
      adapter only (~185 MB at rank 16; loading needs SD 2.1-base, recorded as ``base_model``); ``"merged"``: the
      merged UNet and the VAE too (loads alone, ~3.9 GB).
    - ``release/``: the official layout (``OSDFacePipeline.from_official``): ``associate_2.ckpt`` (the
      VRE, ``vqvae_LQ.*``), ``embedding_change_weights.pth`` (the adapter's plain state_dict) and
      ``pytorch_lora_weights.safetensors`` (PEFT keys ``unet.<module>.lora_A/B.weight``, alpha = rank).
    - ``export.json``: step, the architectures (``from_official`` needs ``vre_config`` /
      ``adapter_config`` when they are not the release's) and the config.
    """
    from safetensors.torch import save_file

    from ..official import write_adapter_weights, write_vre_checkpoint

    if lora not in ("separate", "merged"):
        raise ValueError(f"lora must be 'separate' or 'merged', got {lora!r}")
    full_unet = cfg.model.train_unet == "full"
    if full_unet:  # the whole UNet was trained: only our merged format can hold it
        lora, layouts = "merged", [name for name in layouts if name != "release"]
        pairs = None
    else:
        pairs = pipe.lora if pipe.lora is not None else trained_lora_pairs(pipe.unet)
    out = Path(output_dir)
    written: dict[str, Path] = {}
    adapter_state = {k: v.detach().float().cpu() for k, v in pipe.adapter.state_dict().items()}
    with atomic_folder(out) as tmp:
        if "osdface" in layouts:
            if lora == "separate":
                previous = pipe.lora
                pipe.lora = pairs
                try:
                    pipe.save_pretrained(tmp / "osdface", lora="separate")
                finally:
                    pipe.lora = previous
            elif full_unet:
                _save_trained_unet(pipe, tmp / "osdface")
            else:
                if pipe.base_model is None:
                    raise OSDFaceError("a merged export needs the SD 2.1-base folder the LoRA was trained on "
                                       "(pipe.base_model is not set)")
                vae, unet, _ = load_sd21_base(pipe.base_model)
                merge_lora_weights(unet, pairs)
                adapter = copy.deepcopy(pipe.adapter).float().cpu()
                merged = OSDFacePipeline(copy.deepcopy(pipe.vre).cpu(), adapter, vae, unet, pipe.scheduler_config,
                                         timestep=pipe.timestep, sample_size=pipe.sample_size, lora=pairs,
                                         lora_merged=True, base_model=pipe.base_model)
                merged.save_pretrained(tmp / "osdface", lora="merged")
            written["osdface"] = out / "osdface"
        if "release" in layouts:
            release = tmp / "release"
            write_vre_checkpoint(pipe.vre.state_dict(), release / official.VRE_FILE)
            write_adapter_weights(adapter_state, release / official.ADAPTER_FILE)
            save_file(lora_state_dict(pairs), str(release / official.LORA_FILE))
            written["release"] = out / "release"
        info = {"step": step, "base_model": pipe.base_model, "timestep": pipe.timestep,
                "sample_size": pipe.sample_size, "lora_rank": next(iter(pairs.values())).rank if pairs else None,
                "lora_modules": len(pairs) if pairs else 0, "train_unet": cfg.model.train_unet, "vre_config": dict(pipe.vre.config),
                "adapter_config": dict(pipe.adapter.config), "config": config_to_dict(cfg)}
        (tmp / "export.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return written


def _save_trained_unet(pipe: OSDFacePipeline, folder: Path) -> None:
    """Our merged format of a pipeline whose whole UNet was trained (float32 CPU copies; the training
    pipeline is left as it is)."""
    copy_of = lambda module: copy.deepcopy(module).float().cpu()
    trained = OSDFacePipeline(copy_of(pipe.vre), copy_of(pipe.adapter), copy_of(pipe.vae), copy_of(pipe.unet),
                              pipe.scheduler_config, timestep=pipe.timestep, sample_size=pipe.sample_size,
                              lora=None, lora_merged=True, base_model=None)
    trained.channels_last(False)
    trained.save_pretrained(folder, lora="merged")


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path, lora: str = "separate",
                      overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Export a training checkpoint (a ``checkpoint-N`` folder, or a run folder: its newest) like the
    end of ``train`` does. Rebuilds the generator from the stored config, with ``overrides`` on top
    (e.g. ``model.sd_model=...`` when SD 2.1-base or the VRE has moved)."""
    from safetensors.torch import load_file

    ckpt = find_checkpoint(checkpoint)
    state = CheckpointManager.read_state(ckpt)
    cfg = load_stage2_config(base=state["config"], overrides=overrides)
    pipe, _ = build_models(dataclasses.replace(cfg, losses=dataclasses.replace(cfg.losses, gan=0.0)))  # no D
    load_trainable_state_dict(TrainableGenerator(pipe), load_file(str(ckpt / "generator.safetensors")), str(ckpt))
    pipe.lora = trained_lora_pairs(pipe.unet) if cfg.model.train_unet == "lora" else None
    return export_generator(pipe, output_dir, cfg, step=state["step"], lora=lora)
