"""Deg.: the angle between the ArcFace embeddings of a restored face and its ground truth, in degrees.

As VQFR's ``metric_paper/calculate_cos_dist.py`` (SPEC §7.3), the script behind the Deg. column of the
OSDFace paper:

1. each image file is read as 8-bit gray by OpenCV (``cv2.imread(path, 0)``: the decoder's own gray
   conversion, e.g. libpng's for PNG, the Y plane for JPEG; not the same as converting decoded RGB);
2. ``cv2.resize`` to 128×128 (INTER_LINEAR) on uint8, then ``(x − 127.5) / 127.5`` → 1×128×128 in [-1, 1];
3. ArcFace ``resnet_face18`` (``osdface.models.arcface``, weights ``resnet18_110.pth``) → 512-d embeddings;
4. deg = arccos(x₁·x₂ / (|x₁||x₂|)) · 180/π, in [0, 180];
5. the dataset value is the mean over pairs, leaving out pairs with deg < 1 ("almost identical",
   ``exclude_below``; VQFR prints how many). ``exclude_below=None`` keeps every pair.

Numerics: the angle is computed in float64 as 2·atan2(|â − b̂|, |â + b̂|) of the unit vectors, which equals
arccos(cos) but is exact near 0° (identical images give exactly 0, where arccos of a rounded cos gives
~1e-6° or NaN when cos rounds above 1; VQFR's float32 arccos would then average a NaN).

Inputs: image files (exact VQFR preprocessing), or in-memory uint8 HWC RGB arrays, which are turned to gray
with ``cv2.cvtColor(RGB2GRAY)`` (0.299 R + 0.587 G + 0.114 B, rounded; differs from the file decoders' gray
by up to 1 level for PNG). Pairs are compared one to one (batched; BatchNorm in eval mode makes the
embedding of an image independent of its batch).

Not in the paper, and needing no ArcFace weights: ``compute_dlib_distance`` ("ID (dlib)"), the Euclidean
distance of dlib's 128-d face descriptors of the restored face and its ground truth, both on the landmarks
fitted on the ground truth (``osdface.models.dlib_identity``; the ``identity`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import ImageReadError

DEG_SIZE = 128
IDENTICAL_BELOW = 1.0  # degrees; VQFR counts such pairs as identical and leaves them out of the mean


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W) gray exactly as ``cv2.imread(path, 0)`` (via imdecode: any path works)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err})") from None
    gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if gray is None:
        raise ImageReadError(f"{path}: OpenCV cannot decode this image")
    return gray


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB → uint8 (H, W) gray with OpenCV's BT.601 weights (for in-memory images)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HWC RGB, got {image.dtype} {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def deg_input(gray: np.ndarray, size: int = DEG_SIZE) -> torch.Tensor:
    """uint8 (H, W) gray → (1, size, size) float32 in [-1, 1]: cv2 INTER_LINEAR resize, (x − 127.5) / 127.5."""
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected uint8 (H, W) gray, got {gray.dtype} {gray.shape}")
    if gray.shape != (size, size):
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_LINEAR)
    x = (gray.astype(np.float32) - 127.5) / 127.5
    return torch.from_numpy(x)[None]


def _as_gray(item) -> np.ndarray:
    """A file path (VQFR's gray) or a uint8 image (RGB HWC, or gray HW) → uint8 gray."""
    if isinstance(item, (str, Path)):
        return read_gray(item)
    item = np.asarray(item)
    return item if item.ndim == 2 else rgb_to_gray(item)


@torch.no_grad()
def embed_images(model, images: Sequence, batch_size: int = 16) -> np.ndarray:
    """ArcFace embeddings (N, D) float32 of file paths or uint8 images, with the Deg. preprocessing."""
    param = next(model.parameters())
    size = getattr(model, "input_size", DEG_SIZE)
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([deg_input(_as_gray(im), size) for im in images[start:start + batch_size]])
        out.append(model(batch.to(param.device, param.dtype)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embedding_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between rows of (N, D) ``a`` and ``b``: arccos(cos) computed stably in float64.

    Symmetric, in [0, 180], exactly 0 for identical rows. A zero vector gives NaN.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ua = a / np.linalg.norm(a, axis=1, keepdims=True)
        ub = b / np.linalg.norm(b, axis=1, keepdims=True)
        angle = 2.0 * np.arctan2(np.linalg.norm(ua - ub, axis=1), np.linalg.norm(ua + ub, axis=1))
    return np.degrees(angle)


def compute_deg(pred: Sequence, gt: Sequence, model=None, batch_size: int = 16, weights=None,
                device: str | torch.device = "cpu") -> np.ndarray:
    """Deg. per pair, (N,) float64 in degrees (lower is better).

    Input range / colour space: image files read as gray by OpenCV (exact VQFR), or uint8 HWC RGB arrays
    (gray by BT.601 weights); any size (resized to 128×128). ``model``: a loaded ArcFace; default
    ``load_arcface(weights)``. The dataset value is ``summarize_deg`` of these values.
    """
    if len(pred) != len(gt):
        raise ValueError(f"pred has {len(pred)} images but gt has {len(gt)}")
    if model is None:
        from ..models.arcface import load_arcface

        model = load_arcface(weights, device=device)
    if not len(pred):
        return np.zeros(0)
    return embedding_angle(embed_images(model, list(pred), batch_size), embed_images(model, list(gt), batch_size))


def compute_dlib_distance(pred: Sequence, gt: Sequence, model=None) -> np.ndarray:
    """ID (dlib) per pair, (N,) float64 (lower is better; 0 for identical images).

    Inputs: FFHQ-aligned uint8 HWC RGB crops, any size (each restored crop is resized to its ground
    truth's). ``model``: a loaded ``DlibIdentity``; by default one is loaded here.
    """
    if len(pred) != len(gt):
        raise ValueError(f"pred has {len(pred)} images but gt has {len(gt)}")
    if model is None:
        from ..models.dlib_identity import DlibIdentity

        model = DlibIdentity()
    return model.distances(list(gt), list(pred))


@dataclass(frozen=True)
class DegSummary:
    """The dataset Deg.: mean over the kept pairs; ``excluded`` pairs had deg < ``exclude_below``."""

    mean: float | None
    n: int  # pairs averaged
    excluded: int  # pairs left out as "identical"
    exclude_below: float | None
    n_missing: int = 0  # pairs without a value (NaN)

    def note(self) -> str:
        if self.exclude_below is None:
            return "all pairs averaged (no identical-pair exclusion)"
        return (f"{self.excluded} pair(s) with deg < {self.exclude_below:g} left out as identical "
                f"(VQFR's rule)")


def summarize_deg(values, exclude_below: float | None = IDENTICAL_BELOW) -> DegSummary:
    """Mean Deg. over pairs, VQFR-style: pairs below ``exclude_below`` degrees are left out and counted."""
    values = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    finite = values[~np.isnan(values)]
    keep = finite if exclude_below is None else finite[finite >= exclude_below]
    return DegSummary(
        mean=float(math.fsum(keep) / len(keep)) if len(keep) else None,
        n=len(keep),
        excluded=len(finite) - len(keep),
        exclude_below=exclude_below,
        n_missing=len(values) - len(finite),
    )
