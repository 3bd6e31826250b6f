"""An independent, deliberately plain re-statement of the official inference (SPEC §1.13).

Batch size 1, Python loops, no code shared with the package beyond the network modules themselves:
it is the yardstick that the batched, vectorised package code is tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def select_tokens_loop(z: torch.Tensor, codebook: torch.Tensor, n_min: int) -> torch.Tensor:
    """SPEC §1.4 for ONE image, walking positions one by one. z: (1, C, H, W) → (1, n_min, C)."""
    C = z.shape[1]
    zf = z.permute(0, 2, 3, 1).reshape(-1, C)  # (HW, C)
    d = (zf ** 2).sum(1, keepdim=True) + (codebook ** 2).sum(1) - 2 * zf @ codebook.t()
    best = [float(d[p].min()) for p in range(d.shape[0])]
    code = [int(torch.argmin(d[p])) for p in range(d.shape[0])]  # first index on ties
    order = sorted(range(len(best)), key=lambda p: (best[p], p))  # ascending, stable
    chosen: list[int] = []
    for p in order:
        if code[p] not in chosen:
            chosen.append(code[p])
        if len(chosen) == n_min:
            break
    one_hot = torch.zeros(n_min, codebook.shape[0])
    for row, c in enumerate(chosen):
        one_hot[row, c] = 1.0
    return (one_hot @ codebook)[None]


def merge_lora_official(unet_state: dict, lora: dict, scale: float = 1.0) -> dict:
    """The official ``merge_Unet`` rule (SPEC §1.11), both key formats; legacy 4-D pairs skipped."""
    merged = {k: v.clone().float() for k, v in unet_state.items()}
    for key in lora:
        if "lora_A" in key:
            a, b = lora[key].float(), lora[key.replace("lora_A", "lora_B")].float()
            base = key.replace(".lora_A.weight", ".weight").replace("unet.", "")
            w = merged[base]
            if w.ndim == 4 and a.ndim == 4 and b.ndim == 4:
                out, r = b.shape[0], b.shape[1]
                delta = (b.view(out, r) @ a.view(r, -1)).view(out, *a.shape[1:])
            else:
                delta = b @ a
            merged[base] = w + scale * delta
        elif "lora.up.weight" in key:
            up, down = lora[key].float(), lora[key.replace("lora.up.weight", "lora.down.weight")].float()
            base = key.replace(".lora.up.weight", ".weight").replace("unet.", "")
            if up.ndim == 2:
                merged[base] = merged[base] + scale * (up @ down)
    return merged


@torch.no_grad()
def restore_official(image01: torch.Tensor, vre, adapter, vae, unet, alphas_cumprod, size: int,
                     vre_size: int, n_tokens: int, timestep: int = 399) -> torch.Tensor:
    """One image (1, 3, H, W) in [0, 1] → restored (1, 3, size, size) in [0, 1]; posterior mode."""
    x = image01 * 2 - 1
    if x.shape[-1] == x.shape[-2]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    v = F.interpolate(x, size=(vre_size, vre_size), mode="bilinear", align_corners=False)
    v = (v - 0.5) / 0.5  # the wrapper's second normalisation
    z = vre.quant_conv(vre.encoder(v))
    tokens = select_tokens_loop(z, vre.quantize.embedding.weight, n_tokens)
    h = F.silu(adapter.conv1(tokens.permute(0, 2, 1)))
    prompt = F.silu(adapter.conv2(h)).permute(0, 2, 1)
    zl = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    eps = unet(zl, timestep, encoder_hidden_states=prompt).sample
    a = alphas_cumprod[timestep].double()
    z0 = ((zl.double() - math.sqrt(1 - float(a)) * eps.double()) / math.sqrt(float(a))).float()
    y = vae.decode(z0 / vae.config.scaling_factor).sample
    return (y.clamp(-1, 1) * 0.5 + 0.5).clamp(0, 1)
