"""Background upsamplers for ``--upscale`` > 1: everything outside the restored faces.

    upsampler = background_upsampler("learned")        # or "lanczos"
    bigger = upsampler(photo, 2.0)                     # HWC uint8 RGB → ×2

- ``lanczos``: cv2 Lanczos-4 (``restorer.lanczos_upsampler``).
- ``learned``: the small ×2 network that ships in the package (``models.background_sr``, 41 k parameters,
  trained by us on CC BY portraits); other factors run it repeatedly and fit the exact size. Its weights
  load on first use (strict: every key, no pickle) and are kept for the process.
"""

from __future__ import annotations

import threading
from functools import lru_cache, partial

import numpy as np

from .restorer import BackgroundUpsampler, lanczos_upsampler

BACKGROUNDS = ("lanczos", "learned")
DEFAULT_BACKGROUND = "learned"  # photos
VIDEO_BACKGROUND = "lanczos"  # a video's frames: the network costs seconds a frame on a CPU, Lanczos milliseconds
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _shipped_net(device: str = "cpu"):
    from ..models.background_sr import BackgroundSR, background_sr_dir

    path = background_sr_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the background network's weights are missing from this install")
    return BackgroundSR.from_pretrained(str(path), use_safetensors=True).eval().to(device)


def learned_upsampler(image: np.ndarray, upscale: float, device: str = "cpu") -> np.ndarray:
    """The shipped ×2 network (``models.background_sr.upscale_image``) on ``device``, HWC uint8 RGB in and out."""
    from ..models.background_sr import upscale_image

    with _lock:  # one load, however many threads ask
        net = _shipped_net(str(device))
    return upscale_image(net, image, upscale)


def check_background(name: str) -> str:
    """``--background NAME``, checked before any work: a known name whose weights are installed (one
    OSDFaceError otherwise)."""
    from ..errors import OSDFaceError
    from ..models.background_sr import background_sr_dir

    if name not in BACKGROUNDS:
        raise OSDFaceError(f"--background {name!r}: unknown; available: {', '.join(BACKGROUNDS)}")
    if name == "learned" and not (background_sr_dir() / "config.json").is_file():
        raise OSDFaceError(f"--background learned: its weights are missing from this install ({background_sr_dir()}); "
                           "reinstall osdface or use --background lanczos")
    return name


def background_for(background: str | None, video: bool) -> str:
    """``--background`` as given, else the default: ``DEFAULT_BACKGROUND`` for photos, ``VIDEO_BACKGROUND``
    for a video's frames."""
    return background or (VIDEO_BACKGROUND if video else DEFAULT_BACKGROUND)


def background_upsampler(name: str, device="cpu") -> BackgroundUpsampler:
    """The upsampler called ``name`` (one of ``BACKGROUNDS``); the network runs on ``device`` (float32)."""
    if name == "lanczos":
        return lanczos_upsampler
    if name == "learned":
        return partial(learned_upsampler, device=str(device))
    raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}; got {name!r}")
