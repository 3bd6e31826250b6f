"""Finding the weights and building a ready pipeline: what ``osdface restore/convert`` use.

Default places (``$OSDFACE_HOME``, else ``~/.cache/osdface``)::

    $OSDFACE_HOME/osdface/                      our format (made by ``osdface convert``), or
    $OSDFACE_HOME/osdface-release/              the official release's three files
    $OSDFACE_HOME/stable-diffusion-2-1-base/    SD 2.1-base (diffusers layout: unet/, vae/, scheduler/)

and, when none of these is there, the bundled osdface-mini model (``osdface.bundled``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from . import official
from .errors import OSDFaceError, WeightsNotFoundError
from .models.stable_diffusion import SD_FOLDER_NAME, weights_home
from .pipeline import INDEX_FILE, OSDFacePipeline

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_weights_dirs() -> tuple[Path, Path]:
    home = weights_home()
    return home / "osdface", home / "osdface-release"


def default_sd_model() -> Path:
    return weights_home() / SD_FOLDER_NAME


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the process's CUDA device (LOCAL_RANK under torchrun/accelerate), else MPS, else CPU.
    Also ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (any case); anything else, or a device this machine
    lacks, is an OSDFaceError naming what is available."""
    try:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise OSDFaceError(f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r} must be an integer") from None
    name = str(name).strip().lower()
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    available = ", ".join(["cpu"] + (["cuda"] if cuda else []) + (["mps"] if mps else []))
    if name == "auto":
        if cuda:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if mps else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise OSDFaceError(f"--device {name!r}: not a device name; use auto, cpu, cuda, cuda:N or mps "
                           f"(available here: {available})") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise OSDFaceError(f"--device {name!r}: unsupported; use auto, cpu, cuda, cuda:N or mps (available here: {available})")
    if (device.type == "cuda" and not cuda) or (device.type == "mps" and not mps):
        raise OSDFaceError(f"--device {name}: no {device.type.upper()} device on this machine (available here: {available})")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is None:
            return torch.device("cuda", local_rank % count)
        if device.index >= count:
            raise OSDFaceError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return device


def use_fast_layout(pipe: OSDFacePipeline, layout: str = "auto") -> OSDFacePipeline:
    """Memory layout for speed: ``auto`` = channels-last on CPU (measured 1.09× faster per 512² face on
    a 2-core AVX2 CPU, same outputs to 1e-4), plain NCHW elsewhere (not measured here)."""
    if layout not in ("auto", "nchw", "channels_last"):
        raise OSDFaceError(f"layout must be auto, nchw or channels_last; got {layout!r}")
    return pipe.channels_last(layout == "channels_last" or (layout == "auto" and pipe.device.type == "cpu"))


MODELS = ("auto", "paper", "mini", "mini256", "mini128")


def find_weights(weights: Optional[str] = None, model: str = "auto") -> tuple[str, Path]:
    """Which model to load: (kind, folder) with kind "ours" (model_index.json), "release" (the
    official three files) or "bundled" (osdface-mini 2 / osdface-mini, shipped in the package).

    Order: ``weights`` when given; else ``$OSDFACE_HOME/osdface``, then ``$OSDFACE_HOME/osdface-release``;
    else (``model="auto"``) the default bundled model (``bundled.DEFAULT_ORDER``: mini256, then mini128).
    ``model="mini"`` takes that one directly, ``"mini256"`` / ``"mini128"`` the one named;
    ``model="paper"`` never falls back to them.
    """
    from .bundled import NAMES, resolve_bundled

    if model not in MODELS:
        raise OSDFaceError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if model in NAMES:
        if weights:
            raise OSDFaceError(f"--model {model} is a bundled model: it takes no --weights")
        folder = resolve_bundled(model)
        if folder is None:
            raise WeightsNotFoundError(f"the bundled {model} model is missing from this install; reinstall osdface")
        return "bundled", folder
    ours, release = default_weights_dirs()
    candidates = [Path(weights).expanduser()] if weights else [ours, release]
    for folder in candidates:
        if (folder / INDEX_FILE).is_file():
            return "ours", folder
        if official.is_release_folder(folder):
            return "release", folder
    fallback = resolve_bundled("mini") if not weights and model == "auto" else None
    if fallback is not None:
        return "bundled", fallback
    where = " or ".join(str(c) for c in candidates)
    raise WeightsNotFoundError(
        f"OSDFace weights not found in {where}. Run `osdface download` (or download the three release files "
        f"({', '.join(official.RELEASE_FILES)}) from {official.RELEASE_URL} into {release}, and "
        f"SD 2.1-base into {default_sd_model()}; or pass --weights DIR and --sd-model PATH)."
    )


def check_dtype_name(dtype: str) -> None:
    """``auto`` or a name of ``DTYPES``; anything else is an OSDFaceError (checked before any model loads)."""
    if dtype != "auto" and dtype not in DTYPES:
        raise OSDFaceError(f"--dtype must be auto or one of {', '.join(DTYPES)}, got {dtype!r}")


def load_pipeline(weights: Optional[str] = None, sd_model: Optional[str] = None, device: str = "auto",
                  dtype: str = "float32", model: str = "auto", notify=None) -> OSDFacePipeline:
    """The pipeline ``find_weights`` picks, on ``device`` in ``dtype``. ``notify(line)`` is told when
    the bundled mini model is used (with its terms and how to get the paper's model). The default bundled
    model ("auto" or "mini") comes paired with the one for small faces (``bundled.SMALL_FACES``)."""
    from .bundled import notice

    check_dtype_name(dtype)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, notify)
    kind, folder = find_weights(weights, model)
    if kind == "release":
        pipe = OSDFacePipeline.from_official(folder, sd_model or str(default_sd_model()))
    else:
        pipe = OSDFacePipeline.from_pretrained(folder, sd_model=sd_model,
                                               small_faces=kind == "bundled" and model in ("auto", "mini"))
    if kind == "bundled" and notify is not None:
        notify(notice(folder, pipe.small_faces is not None))
    return use_fast_layout(pipe.to(target, torch_dtype))


def resolve_dtype(dtype: str, device: torch.device, notify=None) -> torch.dtype:
    """``--dtype``: a name of ``DTYPES`` or ``auto`` (``hardware.auto_dtype``; ``notify`` is told the choice)."""
    if dtype != "auto":
        return DTYPES[dtype]
    from .hardware import auto_dtype

    chosen, reason = auto_dtype(device)
    if notify is not None:
        notify(f"--dtype auto: {str(chosen).removeprefix('torch.')} on {device.type} ({reason})")
    return chosen
