"""Tiny components built in code (CPU, offline) and the official file formats written by the tests."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `osdface restore` defaults to --dtype auto (bf16 on AMX CPUs, fp32 on AVX2 ones): the CLI tests compare
# against float32 pipelines, so they pin float32 unless a test says otherwise (test_dtype_auto_is_the_default).
os.environ["OSDFACE_DTYPE"] = "float32"
# The "never worse" guards keep faces that random tiny models would spoil (rightly): tests of the restore
# mechanics run with them off; tests/test_no_harm.py turns them on (and checks they are on by default).
os.environ["OSDFACE_DETAIL_GUARD"] = "off"
os.environ["OSDFACE_IDENTITY_GUARD"] = "off"
torch.set_num_threads(min(2, torch.get_num_threads()))

# A VRE with the release's block design at toy size: 3 levels (32→16→8), attention at 8×8,
# 16-d latents, a 16-code codebook and 8 prompt tokens.
TINY_VRE = dict(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=32,
                z_channels=16, num_codes=16, embed_dim=16, num_tokens=8)
TINY_ADAPTER = dict(in_dim=16, hidden_dim=8, out_dim=32)
TINY_SIZE = 32  # faces are processed at 32×32
TINY_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=(2, 4), use_linear_projection=True)
TINY_VAE = dict(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                sample_size=32, scaling_factor=0.18215)
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut", "proj_in", "proj_out",
                "ff.net.2", "ff.net.0.proj", "conv")


class LightningHParams:
    """Stands for a foreign class inside a Lightning checkpoint (an OmegaConf-like config)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere (diffusers zero-inits some output convs, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g) * (3 if p.ndim > 1 else 1))
    return module


def make_tiny_sd(root: Path) -> Path:
    """A diffusers-format SD folder (vae/, unet/, scheduler/) with tiny random models."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from osdface.models.stable_diffusion import sd21_base_config

    randomize(AutoencoderKL(**TINY_VAE), 1).save_pretrained(root / "vae")
    randomize(UNet2DConditionModel(**TINY_UNET), 2, std=0.03).save_pretrained(root / "unet")
    (root / "scheduler").mkdir(parents=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sd21_base_config("scheduler")))
    return root


def lora_targets(unet: torch.nn.Module) -> list[str]:
    names = []
    for name, m in unet.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and any(
            name == t or name.endswith("." + t) for t in LORA_TARGETS
        ):
            names.append(name)
    return names


def make_lora_state(unet: torch.nn.Module, rank: int = 4, fmt: str = "peft", seed: int = 3,
                    only_2d: bool = False) -> dict[str, torch.Tensor]:
    """Random LoRA tensors for the tiny UNet in the release's key formats ('peft' or 'legacy')."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(unet.named_modules())
    state = {}
    for name in lora_targets(unet):
        w = modules[name].weight
        if only_2d and w.ndim == 4:
            continue
        if w.ndim == 4:
            down, up = torch.randn(rank, w.shape[1], *w.shape[2:], generator=g), torch.randn(w.shape[0], rank, 1, 1, generator=g)
        else:
            down, up = torch.randn(rank, w.shape[1], generator=g), torch.randn(w.shape[0], rank, generator=g)
        down, up = down * 0.1, up * 0.1
        if fmt == "peft":
            state[f"unet.{name}.lora_A.weight"], state[f"unet.{name}.lora_B.weight"] = down, up
        else:
            state[f"unet.{name}.lora.down.weight"], state[f"unet.{name}.lora.up.weight"] = down, up
    return state


def write_release(root: Path, sd_dir: Path, lora_format: str = "peft", seed: int = 4) -> Path:
    """The official release's three files, written as the official tools would (random weights)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from osdface.models.adapter import PromptAdapter
    from osdface.models.vre import VisualRepresentationEmbedder

    root.mkdir(parents=True, exist_ok=True)
    vre = randomize(VisualRepresentationEmbedder(**TINY_VRE), seed)
    with torch.no_grad():  # codebook on the scale of the features so many codes get used
        vre.quantize.embedding.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(seed))
    state = {f"vqvae_LQ.{k}": v for k, v in vre.state_dict().items()}
    # What a DAEFR association-stage LightningModule also holds: decoder, HQ branch, losses, temperature.
    state["vqvae_LQ.decoder.conv_in.weight"] = torch.randn(8, 16, 3, 3)
    state["vqvae_LQ.post_quant_conv.weight"] = torch.randn(16, 16, 1, 1)
    state["vqvae.encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3)
    state["loss_LQ.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
    state["logit_scale"] = torch.tensor(2.659)
    checkpoint = {
        "epoch": 9, "global_step": 1234, "pytorch-lightning_version": "1.0.8", "state_dict": state,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}],
        "lr_schedulers": [], "hyper_parameters": {"args": argparse.Namespace(lr=1.44e-4),
                                                  "cfg": LightningHParams(n_embed=1024)},
    }
    torch.save(checkpoint, root / "associate_2.ckpt")
    adapter = randomize(PromptAdapter(**TINY_ADAPTER), seed + 1, std=0.3)
    torch.save(adapter.state_dict(), root / "embedding_change_weights.pth")
    unet = UNet2DConditionModel.from_pretrained(sd_dir / "unet")
    save_file(make_lora_state(unet, fmt=lora_format, seed=seed + 2), str(root / "pytorch_lora_weights.safetensors"))
    return root


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory, tiny_sd) -> Path:
    return write_release(tmp_path_factory.mktemp("release"), tiny_sd)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_release, tiny_sd):
    from osdface.pipeline import OSDFacePipeline

    return OSDFacePipeline.from_official(tiny_release, tiny_sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                         sample_size=TINY_SIZE)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_pipe) -> Path:
    """Our own format (merged), as `osdface convert` writes it."""
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("ours") / "osdface")


def face_images(n: int, size: int = TINY_SIZE, seed: int = 0) -> list:
    """n smooth random RGB uint8 images (HWC), different from each other."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (size // 4, size // 4, 3)).astype(np.float32)
        big = np.kron(small, np.ones((4, 4, 1))) + rng.normal(0, 10, (size, size, 3))
        out.append(np.clip(big, 0, 255).astype(np.uint8))
    return out
