"""Training checkpoints: atomic, prunable, resumable exactly, and safe to load.

A checkpoint is a folder ``<run>/checkpoints/checkpoint-<step>/`` holding

- ``<name>.safetensors``: the *trainable* state of each module (parameters that require grad, plus the
  buffers of submodules that own such parameters, e.g. BatchNorm statistics) — frozen weights
  (VAE, base UNet, VRE at stage 2) are never copied;
- ``optimizers.pt`` / ``schedulers.pt``: their state dicts (tensors and numbers only: read with
  ``torch.load(weights_only=True)``);
- ``rng-<rank>.pt``: Python, NumPy and torch (CPU/CUDA) random states of every process;
- ``state.json``: step, epoch, position in the epoch, and the full config.

It is written into a hidden temporary folder and renamed, so a crash leaves either the previous
checkpoints or the complete new one; ``keep_last`` prunes the oldest.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import OSDFaceError

_NAME = re.compile(r"^checkpoint-(\d+)$")


def trainable_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with ``requires_grad`` and the buffers of every submodule that owns one."""
    state = {}
    for prefix, sub in module.named_modules():
        own = list(sub.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in own):
            continue
        dot = f"{prefix}." if prefix else ""
        state.update({dot + n: p for n, p in own if p.requires_grad})
        state.update({dot + n: b for n, b in sub.named_buffers(recurse=False) if b is not None})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_trainable_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = trainable_state_dict(module)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise OSDFaceError(f"{source}: checkpoint does not fit the model: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]} (was it made with another config?)")
    module.load_state_dict(state, strict=False)


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python_version": py[0], "python": torch.tensor(py[1], dtype=torch.int64),
             "python_gauss": py[2] if py[2] is not None else float("nan"),
             "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": np_state[2],
             "numpy_has_gauss": np_state[3], "numpy_gauss": np_state[4], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    gauss = state["python_gauss"]
    random.setstate((state["python_version"], tuple(int(x) for x in state["python"]),
                     None if gauss != gauss else gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class CheckpointManager:
    """Saves ``checkpoint-<step>`` folders under ``root`` and keeps the newest ``keep_last``."""

    def __init__(self, root: str | Path, keep_last: int = 3):
        self.root = Path(root)
        self.keep_last = keep_last

    def checkpoints(self) -> list[Path]:
        found = [p for p in self.root.glob("checkpoint-*") if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest(self) -> Optional[Path]:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, step: int, modules: dict[str, torch.nn.Module], optimizers: dict, schedulers: dict,
             state: dict, config: dict, rank: int = 0, world_size: int = 1, barrier=lambda: None) -> Path:
        """Write checkpoint-<step> (all processes call this: each writes its RNG state, rank 0 the rest)."""
        final = self.root / f"checkpoint-{step}"
        tmp = self.root / f".checkpoint-{step}.tmp"
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        torch.save(rng_state(), tmp / f"rng-{rank}.pt")
        if rank == 0:
            for name, module in modules.items():
                save_file(trainable_state_dict(module), str(tmp / f"{name}.safetensors"))
            torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp / "optimizers.pt")
            torch.save({k: s.state_dict() for k, s in schedulers.items()}, tmp / "schedulers.pt")
            (tmp / "state.json").write_text(json.dumps({**state, "step": step, "world_size": world_size,
                                                        "config": config}, indent=2))
        barrier()
        if rank == 0:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in self.checkpoints()[:-self.keep_last] if self.keep_last > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return final

    @staticmethod
    def read_state(path: str | Path) -> dict:
        path = Path(path)
        if not (path / "state.json").is_file():
            raise OSDFaceError(f"{path}: not a training checkpoint (no state.json)")
        return json.loads((path / "state.json").read_text())

    @staticmethod
    def load(path: str | Path, modules: dict[str, torch.nn.Module], optimizers: dict, schedulers: dict,
             rank: int = 0) -> dict:
        """Restore weights, optimizer/scheduler states and this process's RNG; returns state.json."""
        path = Path(path)
        state = CheckpointManager.read_state(path)
        for name, module in modules.items():
            load_trainable_state_dict(module, load_file(str(path / f"{name}.safetensors")), str(path))
        opt_states = torch.load(path / "optimizers.pt", map_location="cpu", weights_only=True)
        for name, opt in optimizers.items():
            opt.load_state_dict(opt_states[name])
        sched_states = torch.load(path / "schedulers.pt", map_location="cpu", weights_only=True)
        for name, sched in schedulers.items():
            sched.load_state_dict(sched_states[name])
        rng_file = path / f"rng-{rank}.pt"
        if rng_file.is_file():  # a different world size resumes with rank 0's streams re-seeded by step
            set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
        return state


def find_checkpoint(path: str | Path) -> Path:
    """A ``checkpoint-N`` folder as given, or the newest one of a run folder (``RUN/checkpoints/``)."""
    path = Path(path).expanduser()
    if (path / "state.json").is_file():
        return path
    latest = CheckpointManager(path / "checkpoints").latest()
    if latest is None:
        raise OSDFaceError(f"{path}: neither a training checkpoint (checkpoint-N/ with state.json) nor a run "
                           "folder with checkpoints/")
    return latest
