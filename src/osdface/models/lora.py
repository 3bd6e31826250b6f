"""LoRA for the SD UNet: read the release's file, merge it, or run it un-merged through PEFT.

``pytorch_lora_weights.safetensors`` may use either key format the official code accepts:

- PEFT:   ``unet.<module>.lora_A.weight`` (r, in[, kh, kw]) and ``unet.<module>.lora_B.weight`` (out, r[, 1, 1])
- legacy: ``unet.<module>.lora.down.weight`` and ``unet.<module>.lora.up.weight`` (same shapes)

Both are normalised to ``{module: LoraPair(down, up)}``; ΔW = up @ down (conv: reshaped), scaled by
``alpha / rank`` (the release: 16 / 16 = 1). Unlike the official merge, which warns and skips, any key
that finds no target module — or a pair with a missing half — is an error; and legacy conv (4-D)
pairs are merged rather than silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsFormatError

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

# OSEDiff-style generator targets (SPEC §5.5): attention, feed-forward, projections and convs.
DEFAULT_UNET_TARGETS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
    "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj",
)

_KEY = re.compile(r"^(?:unet\.)?(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora\.down|lora\.up)(?:\.default(?:_\d+)?)?\.weight$")


@dataclass
class LoraPair:
    down: torch.Tensor  # (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # (out, r) or (out, r, 1, 1)

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self, scale: float) -> torch.Tensor:
        """ΔW in float32 with the shape of the target weight's (out, in[, kh, kw])."""
        down, up = self.down.float(), self.up.float()
        if down.ndim == 4:
            out = up.shape[0]
            return scale * (up.reshape(out, -1) @ down.reshape(self.rank, -1)).reshape(out, *down.shape[1:])
        return scale * (up @ down)


def parse_lora_state_dict(state_dict: dict[str, torch.Tensor], source: str = "LoRA file") -> dict[str, LoraPair]:
    """Group LoRA tensors by target module; raise on unknown keys, half pairs and bad shapes."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in state_dict.items():
        m = _KEY.match(key)
        if m is None:
            unknown.append(key)
            continue
        part = "down" if m["part"] in ("lora_A", "lora.down") else "up"
        halves.setdefault(m["module"], {})[part] = tensor
    if unknown:
        raise WeightsFormatError(
            f"{source}: {len(unknown)} keys are not LoRA A/B or down/up weights, e.g. {unknown[:3]}"
        )
    pairs, broken = {}, []
    for module, parts in sorted(halves.items()):
        if set(parts) != {"down", "up"}:
            broken.append(f"{module} (only {next(iter(parts))})")
            continue
        pair = LoraPair(parts["down"], parts["up"])
        if pair.up.shape[1] != pair.rank or pair.down.ndim != pair.up.ndim:
            broken.append(f"{module} (down {tuple(pair.down.shape)} vs up {tuple(pair.up.shape)})")
            continue
        pairs[module] = pair
    if broken:
        raise WeightsFormatError(f"{source}: incomplete or mismatched LoRA pairs: {', '.join(broken[:5])}")
    return pairs


def load_lora_file(path: str | Path) -> dict[str, LoraPair]:
    """Read a LoRA safetensors file (a folder means ``<folder>/pytorch_lora_weights.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / LORA_WEIGHT_NAME
    return parse_lora_state_dict(load_file(str(path)), source=str(path))


def _check_targets(model: nn.Module, pairs: dict[str, LoraPair]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    missing, bad = [], []
    for name, pair in pairs.items():
        target = modules.get(name)
        weight = getattr(target, "weight", None)
        if not isinstance(target, (nn.Linear, nn.Conv2d)) or weight is None:
            missing.append(name)
            continue
        expected = (pair.up.shape[0], *pair.down.shape[1:])
        if tuple(weight.shape) != tuple(expected):
            bad.append(f"{name}: weight {tuple(weight.shape)} vs LoRA {tuple(expected)}")
    if missing:
        raise WeightsFormatError(
            f"{len(missing)} LoRA keys find no Linear/Conv2d in the UNet, e.g. {missing[:3]}: "
            "is this LoRA for SD 2.1-base?"
        )
    if bad:
        raise WeightsFormatError(f"LoRA shapes do not fit the UNet: {'; '.join(bad[:3])}")
    return {name: modules[name] for name in pairs}


@torch.no_grad()
def merge_lora(model: nn.Module, pairs: dict[str, LoraPair], alpha: float | None = None) -> int:
    """W ← W + (alpha / rank)·ΔW for every pair, in place (float32 arithmetic). Returns the count.

    ``alpha=None`` means alpha = rank (scale 1), the release's setting.
    """
    targets = _check_targets(model, pairs)
    for name, pair in pairs.items():
        scale = 1.0 if alpha is None else alpha / pair.rank
        weight = targets[name].weight
        weight.copy_((weight.float() + pair.delta(scale).to(weight.device)).to(weight.dtype))
    return len(pairs)


def add_lora_adapter(model: nn.Module, pairs: dict[str, LoraPair], alpha: float | None = None,
                     adapter_name: str = "default") -> None:
    """Inject the pairs as an un-merged PEFT adapter (the official non-merge path's behaviour)."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    _check_targets(model, pairs)
    ranks = {pair.rank for pair in pairs.values()}
    if len(ranks) != 1:
        raise WeightsFormatError(f"LoRA pairs have different ranks {sorted(ranks)}; one rank is supported")
    rank = ranks.pop()
    config = LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha,
                        target_modules=sorted(pairs), init_lora_weights=False)
    if hasattr(model, "add_adapter"):  # diffusers models: keeps fuse_lora()/unload_lora() available
        model.add_adapter(config, adapter_name=adapter_name)
    else:
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    state = {}
    for name, pair in pairs.items():
        state[f"{name}.lora_A.weight"] = pair.down
        state[f"{name}.lora_B.weight"] = pair.up
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    if getattr(result, "unexpected_keys", None):
        raise WeightsFormatError(f"PEFT did not place LoRA keys: {result.unexpected_keys[:3]}")


def lora_state_dict(pairs: dict[str, LoraPair], prefix: str = "unet.") -> dict[str, torch.Tensor]:
    """Pairs → the PEFT key format of ``pytorch_lora_weights.safetensors`` (contiguous tensors)."""
    state = {}
    for name, pair in pairs.items():
        state[f"{prefix}{name}.lora_A.weight"] = pair.down.contiguous()
        state[f"{prefix}{name}.lora_B.weight"] = pair.up.contiguous()
    return state
