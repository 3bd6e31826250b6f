"""FID: the Fréchet distance between Gaussians fitted to Inception-v3 pool features of two image sets.

FID = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁Σ₂)^½), features from ``osdface.models.inception``
(pytorch-fid's port of the TF 2015-12-05 graph, weights ``pt_inception-2015-12-05-6726825d.pth``).
μ is the feature mean, Σ the unbiased covariance (``np.cov(rowvar=False)``), both float64.

Preprocessing (``mode``), which must match the one the reference statistics were made with:

- ``"clean"`` (clean-fid, what pyiqa's ``fid`` uses, SPEC §7.2): uint8 RGB → float32 [0, 255] → each
  channel resized to 299×299 with PIL bicubic on float ("F" mode images, no quantisation), then
  (x − 128) / 128 as the TF graph. Matches clean-fid's reference files such as
  ``ffhq_clean_trainval70k_512.npz`` (keys ``mu``, ``sigma``) — up to the small difference between
  clean-fid's TorchScript TF graph and pytorch-fid's PyTorch port of the same weights.
- ``"pytorch-fid"`` (pytorch-fid; basicsr/VQFR ``calculate_fid_folder.py``): uint8 RGB / 255 → bilinear
  ``F.interpolate`` to 299×299 (``align_corners=False``, no antialiasing) → 2x − 1. Matches pytorch-fid's
  ``.npz`` statistics (``mu``, ``sigma``) and basicsr's ``inception_FFHQ_512-f7b384ab.pth`` (a torch pickle
  with numpy ``mean``, ``cov``; VQFR normalises to [-1, 1] before the same bilinear resize: equivalent).

Fréchet distance numerics (``frechet_distance``), as pytorch-fid / clean-fid: float64,
``scipy.linalg.sqrtm(Σ₁Σ₂)``; if the result is not finite, ε·I (ε = 1e-6) is added to both covariances;
a complex result whose diagonal has an imaginary part above 1e-3 is an error, else its real part is used.
``method="eigh"`` (used automatically without SciPy): tr((Σ₁Σ₂)^½) = Σ √λᵢ of the symmetric matrix
Σ₁^½ Σ₂ Σ₁^½ (eigenvalues clipped at 0); equal to the sqrtm route to ~1e-8 relative on well-conditioned
covariances. When one side comes with its features (``FIDStats.features``, n ≤ D images, so that its
covariance Σ₁ = A₁ᵀA₁/(n−1) is singular and sqrtm is ill-conditioned and slow), ``fid_from_stats`` uses the
exact low-rank identity tr((Σ₁Σ₂)^½) = Σ √λᵢ of the n×n symmetric matrix A₁Σ₂A₁ᵀ/(n−1) (Aᵢ: centred
features; the nonzero eigenvalues of XY and YX agree), eigenvalues clipped at 0.

FID is ≥ 0 mathematically; a negative result within 1e-6·(tr Σ₁ + tr Σ₂) of 0 (rounding, e.g. a set
against itself) is returned as 0, a larger negative one is returned as is (a numerical problem to see).

With fewer images than feature dimensions (2048) Σ is singular; FID is still defined, but is biased
upwards for small sets (compare methods only on sets of equal size).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ImageReadError, WeightsFormatError, WeightsNotFoundError
from ..files import atomic_write
from ..image_utils import list_images, read_image

FID_SIZE = 299
MODES = ("clean", "pytorch-fid")
# Reference statistics looked for in the metric weights folder when none is given, with their mode.
REFERENCE_FILES = (("ffhq_clean_trainval70k_512.npz", "clean"), ("inception_FFHQ_512-f7b384ab.pth", "pytorch-fid"))


# ----------------------------------------------------------------------------- preprocessing, features


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"FID mode must be one of {MODES}, got {mode!r}")


def fid_input(images: Sequence[np.ndarray], mode: str = "clean", size: int = FID_SIZE) -> torch.Tensor:
    """uint8 HWC RGB images (any sizes) → (N, 3, size, size) float32 network input in [-1, 1] (see ``mode``)."""
    _check_mode(mode)
    out = []
    for im in images:
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected uint8 HWC RGB, got {im.dtype} {im.shape}")
        if mode == "clean":
            channels = [np.asarray(Image.fromarray(im[..., c].astype(np.float32))  # mode "F"
                                   .resize((size, size), resample=Image.BICUBIC)) for c in range(3)]
            x = torch.from_numpy(np.stack(channels))  # (3, size, size) float32 on [0, 255]
            out.append((x - 128.0) / 128.0)
        else:
            x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))).float()[None] / 255.0
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out.append(2.0 * x[0] - 1.0)
    return torch.stack(out)


@torch.no_grad()
def extract_features(model, images: Sequence[np.ndarray], mode: str = "clean", batch_size: int = 16,
                     size: int = FID_SIZE) -> np.ndarray:
    """(N, 2048) float64 Inception pool features of uint8 HWC RGB images."""
    param = next(model.parameters())
    out = []
    for start in range(0, len(images), batch_size):
        x = fid_input(images[start:start + batch_size], mode, size).to(param.device, param.dtype)
        out.append(model.features(x).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class FIDStats:
    """Gaussian statistics of a feature set: mean (D,), covariance (D, D), both float64."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None  # number of images, when known
    source: str = ""
    mode: str | None = None  # the preprocessing they were made with, when known
    features: np.ndarray | None = None  # (n, D) when made from features in this process (not saved)


def stats_from_features(features: np.ndarray, source: str = "", mode: str | None = None) -> FIDStats:
    """Mean and unbiased covariance of (N, D) features (N ≥ 2)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"FID statistics need at least 2 feature rows, got shape {features.shape}")
    return FIDStats(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0], source, mode,
                    features)


def _numpy_safe_globals() -> list:
    """The numpy globals a pickled ndarray needs, under the names numpy 1.x and 2.x write."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    names = [(_reconstruct, "numpy.core.multiarray._reconstruct"),
             (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype]
    names += [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32)]
    return names


def _load_torch_stats(path: Path) -> dict:
    """A torch pickle of a dict of arrays/tensors (basicsr's stats file), weights-only with numpy allowed."""
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFormatError(f"{path}: not a FID statistics file with plain arrays ({first})") from None


def load_fid_stats(path: str | Path) -> FIDStats:
    """Reference statistics from ``.npz`` (``mu``/``sigma``: clean-fid, pytorch-fid; or ``mean``/``cov``) or a
    torch pickle (``mean``/``cov``: basicsr's ``inception_FFHQ_512-f7b384ab.pth``). ``mode`` is set to the
    preprocessing the file's origin implies ("clean" for .npz, "pytorch-fid" for basicsr's pickle)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"FID reference statistics not found: {path}. Use clean-fid's ffhq_clean_trainval70k_512.npz or "
            f"basicsr's inception_FFHQ_512-f7b384ab.pth, or a folder of reference images."
        )
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            mu_key, sigma_key = ("mu", "sigma") if {"mu", "sigma"} <= keys else ("mean", "cov")
            if not {mu_key, sigma_key} <= keys:
                raise WeightsFormatError(f"{path}: no mu/sigma (or mean/cov) arrays; found {sorted(keys)}")
            mu, sigma, mode = data[mu_key], data[sigma_key], "clean"
    else:
        data = _load_torch_stats(path)
        if not isinstance(data, dict) or not {"mean", "cov"} <= set(data):
            raise WeightsFormatError(f"{path}: expected a dict with 'mean' and 'cov' (basicsr FID statistics)")
        mu, sigma, mode = data["mean"], data["cov"], "pytorch-fid"
    mu = np.asarray(mu.numpy() if isinstance(mu, torch.Tensor) else mu, np.float64).reshape(-1)
    sigma = np.asarray(sigma.numpy() if isinstance(sigma, torch.Tensor) else sigma, np.float64)
    if sigma.shape != (mu.size, mu.size):
        raise WeightsFormatError(f"{path}: mean {mu.shape} and covariance {sigma.shape} do not match")
    return FIDStats(mu, sigma, None, str(path), mode)


def save_fid_stats(path: str | Path, stats: FIDStats) -> Path:
    """Write ``mu``/``sigma`` as ``.npz`` (clean-fid's layout), atomically."""
    return atomic_write(path, lambda f: np.savez(f, mu=stats.mu, sigma=stats.sigma))


def folder_stats(folder: str | Path, model, mode: str = "clean", batch_size: int = 16,
                 progress: bool = False) -> tuple[FIDStats, list[str]]:
    """Statistics of every readable image in ``folder`` (sorted); returns (stats, problems)."""
    paths, problems = list_images([folder])
    features = []
    iterator = range(0, len(paths), batch_size)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"FID reference {Path(folder).name}", unit="batch")
    for start in iterator:
        images = []
        for path in paths[start:start + batch_size]:
            try:
                images.append(read_image(path))
            except ImageReadError as err:
                problems.append(f"{err} (left out of the FID reference)")
        if images:
            features.append(extract_features(model, images, mode, batch_size))
    if not features or sum(len(f) for f in features) < 2:
        raise ValueError(f"{folder}: FID reference needs at least 2 readable images")
    return stats_from_features(np.concatenate(features), str(folder), mode), problems


# ----------------------------------------------------------------------------- distance


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Σ₁^½
    inner = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.abs(covmean.imag).max():.3g} in sqrtm(Σ₁Σ₂)")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "auto") -> float:
    """Fréchet distance of N(μ₁, Σ₁) and N(μ₂, Σ₂) (float64; see module docstring for the numerics).

    ``method``: "sqrtm" (SciPy, as pytorch-fid/clean-fid), "eigh" (numpy only), "auto" (sqrtm if SciPy is
    installed).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes differ: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    if method == "auto":
        try:
            import scipy.linalg  # noqa: F401

            method = "sqrtm"
        except ImportError:
            method = "eigh"
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    else:
        raise ValueError(f"method must be 'auto', 'sqrtm' or 'eigh', got {method!r}")
    diff = mu1 - mu2
    scale = np.trace(sigma1) + np.trace(sigma2)
    return _clip_rounding(float(diff @ diff + scale - 2.0 * tr_covmean), scale)


def _clip_rounding(value: float, scale: float) -> float:
    """0 for a negative FID that is rounding noise (|value| ≤ 1e-6·scale); anything else unchanged."""
    return 0.0 if -1e-6 * scale <= value < 0 else value


def frechet_distance_low_rank(features: np.ndarray, mu2, sigma2) -> float:
    """FID of a feature set (n, D) against N(μ₂, Σ₂) through the low-rank identity (exact; module docstring)."""
    f = np.asarray(features, np.float64)
    mu2, sigma2 = np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64)
    if f.ndim != 2 or len(f) < 2 or sigma2.shape != (f.shape[1], f.shape[1]) or mu2.shape != (f.shape[1],):
        raise ValueError(f"need (n >= 2, D) features and a D-dim Gaussian, got {f.shape}, {mu2.shape}, {sigma2.shape}")
    a = f - f.mean(axis=0)
    c = len(f) - 1
    small = a @ sigma2 @ a.T / c  # (n, n)
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0, None)).sum())
    diff = f.mean(axis=0) - mu2
    tr1 = (a * a).sum() / c
    return _clip_rounding(float(diff @ diff + tr1 + np.trace(sigma2) - 2.0 * tr_covmean), tr1 + np.trace(sigma2))


def fid_from_stats(a: FIDStats, b: FIDStats, method: str = "auto") -> float:
    """FID of two statistics. ``method="auto"``: the low-rank route when a side carries its features and has no
    more images than dimensions (the smaller such side), else ``frechet_distance`` (sqrtm)."""
    if method == "auto":
        sides = [(s, o) for s, o in ((a, b), (b, a)) if s.features is not None and len(s.features) <= s.mu.size]
        if sides:
            s, o = min(sides, key=lambda pair: len(pair[0].features))
            return frechet_distance_low_rank(s.features, o.mu, o.sigma)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, method=method)


def compute_fid(pred: Iterable[np.ndarray], reference: FIDStats | Sequence[np.ndarray], model=None,
                mode: str = "clean", batch_size: int = 16, weights=None,
                device: str | torch.device = "cpu") -> float:
    """FID of a set of uint8 HWC RGB images against reference statistics or another image set.

    Input range / colour space: uint8 RGB, any size (resized to 299×299 per ``mode``). ``model``: a loaded
    ``FIDInceptionV3``; default ``load_fid_inception(weights)``. Lower is better.
    """
    if model is None:
        from ..models.inception import load_fid_inception

        model = load_fid_inception(weights, device=device)
    stats = stats_from_features(extract_features(model, list(pred), mode, batch_size), mode=mode)
    if not isinstance(reference, FIDStats):
        reference = stats_from_features(extract_features(model, list(reference), mode, batch_size), mode=mode)
    return fid_from_stats(stats, reference)
