"""Checking and unwrapping the state dicts of third-party checkpoints, with errors that list keys.

Public checkpoints wrap their weights differently (``{"state_dict": ...}``, basicsr's ``params`` /
``params_ema``, DataParallel's ``module.`` prefix, buffers missing from files older than PyTorch
0.4.1); every loader in the package goes through these two functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .errors import WeightsFormatError


def check_state_dict_keys(loaded: dict, expected: dict, source: str) -> None:
    """Raise one WeightsFormatError listing missing keys, unexpected keys and wrong shapes, if any."""
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    wrong = [f"{k} {tuple(loaded[k].shape)}≠{tuple(expected[k].shape)}"
             for k in sorted(set(loaded) & set(expected)) if loaded[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])}{', …' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}"
                         f"{', …' if len(unexpected) > 4 else ''})")
        if wrong:
            parts.append(f"{len(wrong)} wrong shapes ({', '.join(wrong[:3])})")
        raise WeightsFormatError(f"{source}: " + "; ".join(parts))


def unwrap_state_dict(checkpoint, expected: dict[str, torch.Tensor], source: str, kind: str,
                      wrappers: Sequence[str] = ("params_ema", "params", "state_dict"),
                      skip_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A loaded checkpoint → the tensors of ``expected``'s model.

    Takes the first of ``wrappers`` present, strips ``module.``, drops keys under ``skip_prefixes``
    and fills ``num_batches_tracked`` buffers the file lacks. Keys are not checked here (see
    ``check_state_dict_keys``), so callers can add a hint to the error.
    """
    state = checkpoint
    for wrapper in wrappers:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFormatError(f"{source}: not a {kind} state dict (got {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(skip_prefixes)}
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    return state


def metric_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """Where metric/loss network weights live: ``weights_dir``, else ``$OSDFACE_HOME/metrics``."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    from .models.stable_diffusion import weights_home

    return weights_home() / "metrics"


def read_weights_file(path: str | Path):
    """A ``.safetensors`` file, or a torch pickle read safely (``weights_only``, inert fallback)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from .safe_pickle import safe_torch_load

    return safe_torch_load(path)
