"""The stage-2 latent discriminator ("following DFOSD", SPEC §5.4).

DFOSD's noise-aware discriminator, as far as its overview figure shows it: the SD UNet's encoder half
(``conv_in``, time embedding, ``down_blocks``, ``mid_block``) with trainable LoRA, then a randomly
initialised head giving a logit. OSDFace's figure adds that the visual prompt conditions it, so the
copied cross-attention layers see p_L (B, 77, 1024). Inputs are VAE latents (scaled by 0.18215)
diffused to a random t: ``diffuse(z, t, ε, ᾱ) = √ᾱ_t·z + √(1−ᾱ_t)·ε``, t ~ U{0, …, T−1}.

What is **not** known, hence choices here: the head (``HEADS``: ``"mlp"`` — global average pool →
Linear → LeakyReLU(0.2) → Linear, one logit per sample, the figure's "MLP"; ``"conv"`` — DMD2's
classifier on the 1280×8×8 bottleneck, 4×4/s2 and 4×4/s4 convs with GroupNorm + SiLU then 1×1, one
logit per 8×8 block of the bottleneck, i.e. one per sample at 512 px; ``"patch"`` — GroupNorm → SiLU
→ 1×1 conv, one logit per bottleneck position), the LoRA rank and target modules of the backbone.

The backbone is a *copy* of the base UNet's modules (frozen; make it before the generator's LoRA is
injected), so the generator and discriminator never share a parameter. Only the LoRA and the head train
(``trainable_parameters``). Output: logits (B, N), N = 1 (mlp, conv at 512 px) or the number of patches.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .lora import DEFAULT_UNET_TARGETS

BACKBONE_PARTS = ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block")


def diffuse(latents: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor,
            alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward diffusion q(z_t | z) = √ᾱ_t·z + √(1−ᾱ_t)·ε, per sample (DDPM ``add_noise``).

    latents, noise: (B, C, h, w); timesteps: (B,) integers in [0, T); alphas_cumprod: (T,).
    """
    a = alphas_cumprod.to(latents.device, torch.float32)[timesteps.to(latents.device)]  # (B,)
    a = a.view(-1, *([1] * (latents.ndim - 1)))
    return a.sqrt() * latents.float() + (1 - a).sqrt() * noise.to(latents.device, torch.float32)


class MLPHead(nn.Module):
    """Global average pool → Linear(C, hidden) → LeakyReLU(0.2) → Linear(hidden, 1): (B, 1)."""

    def __init__(self, channels: int, hidden: int = 512):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(h.mean(dim=(2, 3))), 0.2))  # (B, 1)


class ConvHead(nn.Module):
    """DMD2's SD classifier: conv 4×4/s2 → GN → SiLU → conv 4×4/s4 → GN → SiLU → conv 1×1 → (B, N).

    Needs a bottleneck of at least 8×8 (512 px faces give exactly one logit per sample).
    """

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 4, stride=4, padding=0), nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, 1, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if min(h.shape[-2:]) < 8:
            raise ValueError(f"the conv head needs a bottleneck of at least 8×8, got {tuple(h.shape[-2:])}")
        return self.net(h).flatten(1)  # (B, N)


class PatchHead(nn.Module):
    """GN → SiLU → 1×1 conv: one logit per bottleneck position, (B, h·w)."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm, self.conv = nn.GroupNorm(groups, channels), nn.Conv2d(channels, 1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(h))).flatten(1)  # (B, h·w)


HEADS = {"mlp": MLPHead, "conv": ConvHead, "patch": PatchHead}


class LatentDiscriminator(nn.Module):
    """UNet encoder half (frozen copy + LoRA) + head: (noisy latents, t, prompt) → logits (B, N).

    Build it with ``from_unet``. ``forward(latents, timesteps, encoder_hidden_states)``:
    latents (B, 4, h, w) scaled VAE latents (already diffused), timesteps (B,) integers, prompt
    (B, 77, D) or None for UNets without cross-attention.
    """

    def __init__(self, backbone: nn.ModuleDict, head: nn.Module, lora_rank: int = 0,
                 lora_targets: Sequence[str] = ()):
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.lora_rank = lora_rank
        if lora_rank > 0:
            from peft import LoraConfig, inject_adapter_in_model

            config = LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian",
                                target_modules=list(lora_targets))
            inject_adapter_in_model(config, self.backbone, adapter_name="default")  # only LoRA trainable
        self.head = head

    @classmethod
    def from_unet(cls, unet: nn.Module, head: str = "mlp", lora_rank: int = 16,
                  lora_targets: Sequence[str] = DEFAULT_UNET_TARGETS, mlp_hidden: int = 512) -> "LatentDiscriminator":
        """Copy ``unet``'s conv_in, time embedding, down blocks and mid block (before any LoRA is added
        to it) and add a fresh LoRA (B = 0, so the features start as the pretrained ones) and head."""
        if head not in HEADS:
            raise ValueError(f"discriminator head must be one of {', '.join(HEADS)}, got {head!r}")
        config = getattr(unet, "config", None)
        if config is not None:
            extra = [k for k in ("class_embed_type", "addition_embed_type", "time_embedding_act_fn",
                                 "num_class_embeds", "encoder_hid_dim") if config.get(k) is not None]
            if extra:
                raise ValueError(f"the discriminator copies a plain SD UNet; this one also uses {extra}")
        if any("lora" in name for name, _ in unet.named_parameters()):
            raise ValueError("copy the discriminator from the base UNet before the generator's LoRA is added")
        backbone = nn.ModuleDict({part: copy.deepcopy(getattr(unet, part)) for part in BACKBONE_PARTS})
        channels = backbone["mid_block"].resnets[-1].out_channels
        head_module = MLPHead(channels, mlp_hidden) if head == "mlp" else HEADS[head](channels)
        return cls(backbone, head_module, lora_rank, lora_targets)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The LoRA and head parameters (whatever their ``requires_grad`` is at the moment)."""
        return [p for n, p in self.named_parameters() if "lora_" in n or n.startswith("head.")]

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the UNet blocks' activations in backward (diffusers' mechanism, non-reentrant)."""
        def checkpoint(module, *args):
            return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)

        for module in self.backbone.modules():
            if hasattr(module, "gradient_checkpointing"):
                module._gradient_checkpointing_func = checkpoint
                module.gradient_checkpointing = True

    def features(self, latents: torch.Tensor, timesteps: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        """The bottleneck (mid-block output): (B, C, h/2^(L−1), w/2^(L−1)), e.g. 1280×8×8 at 512 px."""
        b = self.backbone
        dtype = b["conv_in"].weight.dtype
        sample = latents.to(dtype)
        timesteps = timesteps.to(sample.device).reshape(-1).expand(sample.shape[0])
        emb = b["time_embedding"](b["time_proj"](timesteps).to(dtype))  # (B, 4·C0)
        if encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states.to(dtype)
        h = b["conv_in"](sample)
        for block in b["down_blocks"]:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(hidden_states=h, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                h, _ = block(hidden_states=h, temb=emb)
        if getattr(b["mid_block"], "has_cross_attention", False):
            return b["mid_block"](h, emb, encoder_hidden_states=encoder_hidden_states)
        return b["mid_block"](h, emb)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(latents, timesteps, encoder_hidden_states)
        head_dtype = next(self.head.parameters()).dtype
        return self.head(h.to(head_dtype)).float()  # (B, N)
