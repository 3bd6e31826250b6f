"""The official OSDFace release's file layout: reading it strictly and writing it back.

A release folder holds three files (SPEC §2.1):

- ``associate_2.ckpt``: a PyTorch-Lightning checkpoint; the VRE is ``state_dict["vqvae_LQ.*"]``
  minus the decoder (173 tensors after stripping the prefix);
- ``embedding_change_weights.pth``: the prompt adapter's plain state_dict (4 tensors);
- ``pytorch_lora_weights.safetensors``: the UNet LoRA (see ``models.lora``).

The official code loads the VRE with ``strict=False``; here every key is checked and missing or
unexpected keys are listed in the error. Pickles are read with ``safe_pickle.safe_torch_load``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import WeightsFormatError, WeightsNotFoundError
from .files import atomic_write
from .models.lora import LORA_WEIGHT_NAME
from .safe_pickle import safe_torch_load
from .state_dicts import check_state_dict_keys

VRE_FILE = "associate_2.ckpt"
ADAPTER_FILE = "embedding_change_weights.pth"
LORA_FILE = LORA_WEIGHT_NAME
RELEASE_FILES = (VRE_FILE, ADAPTER_FILE, LORA_FILE)
RELEASE_URL = "https://github.com/jkwang28/OSDFace (README: 'pretrained' download links)"
VRE_PREFIX = "vqvae_LQ."
# Parts of the LQ VQGAN that inference does not use (the official loader drops them silently).
_VRE_TRAINING_ONLY = ("decoder.", "post_quant_conv.")


def is_release_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / VRE_FILE).is_file()


def check_release_folder(path: str | os.PathLike) -> Path:
    """Return the folder if all three release files are there, else one clear error."""
    folder = Path(path).expanduser()
    missing = [name for name in RELEASE_FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsNotFoundError(
            f"OSDFace weights not found in {folder}: missing {', '.join(missing)}. Download the release "
            f"files from {RELEASE_URL} into that folder, or pass --weights DIR."
        )
    return folder


def read_vre_state_dict(path: str | os.PathLike, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``associate_2.ckpt`` → the VRE state dict, checked key by key against ``expected``."""
    checkpoint = safe_torch_load(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WeightsFormatError(f"{path}: no state_dict found (got {type(checkpoint).__name__})")
    vre = {}
    for key, value in state.items():
        if not key.startswith(VRE_PREFIX):
            continue  # HQ branch, losses, discriminators, logit_scale
        key = key[len(VRE_PREFIX):]
        if not key.startswith(_VRE_TRAINING_ONLY):
            vre[key] = value
    if not vre:
        raise WeightsFormatError(f"{path}: no '{VRE_PREFIX}*' keys: not an OSDFace/DAEFR association checkpoint")
    check_state_dict_keys(vre, expected, str(path))
    return vre


def read_adapter_state_dict(path: str | os.PathLike, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``embedding_change_weights.pth`` → the adapter's 4 tensors, checked against ``expected``."""
    state = safe_torch_load(path)
    if not isinstance(state, dict):
        raise WeightsFormatError(f"{path}: expected a state_dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    check_state_dict_keys(state, expected, str(path))
    return state


def write_vre_checkpoint(vre_state: dict[str, torch.Tensor], path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write the VRE in the ``associate_2.ckpt`` layout (``{"state_dict": {"vqvae_LQ.<key>": ...}}``).

    ``extra`` adds further prefixed tensors (e.g. the decoder) so a full stage-1 module can be stored.
    """
    state = {VRE_PREFIX + k: v.detach().cpu().contiguous() for k, v in vre_state.items()}
    state.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"state_dict": state}, f))


def write_adapter_weights(adapter_state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write the adapter as the release's plain state_dict ``embedding_change_weights.pth``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in adapter_state.items()}
    atomic_write(path, lambda f: torch.save(state, f))
