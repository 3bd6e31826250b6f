"""Blind face degradation: synthesise a low-quality (LQ) face from a high-quality (HQ) one.

One *stage* is the classic face model used by GFPGAN, DAEFR, CodeFormer and DifFace::

    y = resize_back( JPEG_q( x ⊛ k_sigma ↓_r + n_delta ) )

applied in this order to an HWC RGB image in float32 [0, 1]:

1. blur: convolution (``cv2.filter2D``, reflect-101 borders) with an isotropic or anisotropic
   Gaussian kernel (``kernels.gaussian_kernel``), kernel side drawn from ``kernel_sizes``;
2. downsample by a random factor r: resize to ``(int(w // r), int(h // r))`` with
   ``cv2.INTER_LINEAR`` (no anti-aliasing, as basicsr; r < 1 enlarges);
3. Gaussian noise, sigma on the 0-255 scale, independent per RGB channel, or the same field on
   all three channels ("gray noise") with probability ``gray_noise_prob``; then clip to [0, 1];
4. JPEG at an integer cv2 quality drawn uniformly from ``jpeg_range`` (both ends included);
5. resize back to the input size with ``cv2.INTER_LINEAR``.

A ``None`` range switches its step off. After the stage(s), optional GFPGAN-style colour
augmentations act on the LQ only (``color.py``): RGB shift, grayscale (optionally applied to the
target as well, see ``target_for``), brightness/contrast/saturation/hue jitter. The LQ is then
rounded and clipped to uint8.

**Dual-stage modes** (OSDFace trains on a "dual-stage degradation model with parameters following
WaveFace", whose exact definition is unknown: SPEC §6.2-6.3; the readings below are ours):

- ``mode="mix"``: per sample, the *severe* stage ranges are used with probability ``severe_prob``,
  otherwise the *mild* ones (``stage``). One pass. The training set holds both kinds of samples.
- ``mode="chain"``: the mild stage is always applied; with probability ``severe_prob`` the severe
  stage is then applied to its (full-size) output, a second-order degradation.

Reproducibility: everything random is drawn from the ``np.random.Generator`` passed in, in a
fixed order, so the same generator state gives the same LQ bytes and params. Datasets seed one
generator per sample with ``rng_for(seed, epoch, index)``, independent of DataLoader workers.
Presets and their sources are listed with ``PRESETS`` at the end of this file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .color import jitter_bcsh, sample_bcsh, shift_color, to_gray
from .kernels import KERNEL_TYPES, gaussian_kernel, gaussian_kernel_1d

Range = tuple[float, float]
MODES = ("single", "mix", "chain")


# ----------------------------------------------------------------------------- config


def _as_range(value: Any, name: str, lo_min: float | None = None, integer: bool = False) -> tuple | None:
    """Validate a (low, high) pair (list or tuple) and return it as a tuple; ``None`` passes through."""
    if value is None:
        return None
    if len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    cast = int if integer else float
    lo, hi = cast(value[0]), cast(value[1])
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is above high {hi}")
    if lo_min is not None and lo < lo_min:
        raise ValueError(f"{name}: low {lo} is below the allowed minimum {lo_min}")
    return (lo, hi)


def _check_prob(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class StageConfig:
    """Ranges of one blur → downsample → noise → JPEG → resize-back pass. ``None`` disables a step.

    Attributes:
        kernel_sizes: odd kernel sides in pixels, one drawn uniformly per sample.
        kernel_types: subset of ("iso", "aniso").
        kernel_probs: probability of each kernel type (same length; normalised when drawing).
        blur_sigma: (low, high) sigma in pixels, > 0; drawn independently per axis for "aniso".
        rotation_range: (low, high) kernel rotation in radians ("aniso" only).
        downsample_range: (low, high) downsampling factor r > 0 (image side / r).
        noise_range: (low, high) Gaussian noise sigma on the 0-255 scale, >= 0.
        gray_noise_prob: probability that the noise field is shared by the three channels.
        jpeg_range: (low, high) integer cv2 JPEG quality in [0, 100], both ends included.
    """

    kernel_sizes: tuple[int, ...] = (41,)
    kernel_types: tuple[str, ...] = ("iso", "aniso")
    kernel_probs: tuple[float, ...] = (0.5, 0.5)
    blur_sigma: Range | None = (0.1, 10.0)
    rotation_range: Range = (-math.pi, math.pi)
    downsample_range: Range | None = (0.8, 8.0)
    noise_range: Range | None = (0.0, 20.0)
    gray_noise_prob: float = 0.0
    jpeg_range: tuple[int, int] | None = (60, 100)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.kernel_sizes)
        if not sizes or any(s < 1 or s % 2 == 0 for s in sizes):
            raise ValueError(f"kernel_sizes must be positive odd integers, got {self.kernel_sizes!r}")
        types = tuple(str(t) for t in self.kernel_types)
        unknown = [t for t in types if t not in KERNEL_TYPES]
        if not types or unknown:
            raise ValueError(f"kernel_types must be a non-empty subset of {KERNEL_TYPES}, got {types!r}")
        probs = tuple(float(p) for p in self.kernel_probs)
        if len(probs) != len(types) or any(p < 0 for p in probs) or sum(probs) <= 0:
            raise ValueError(
                f"kernel_probs must be {len(types)} non-negative weights with a positive sum, got {probs!r}"
            )
        jpeg = _as_range(self.jpeg_range, "jpeg_range", lo_min=0, integer=True)
        if jpeg is not None and jpeg[1] > 100:
            raise ValueError(f"jpeg_range high must be <= 100, got {jpeg[1]}")
        sigma = _as_range(self.blur_sigma, "blur_sigma", lo_min=0.0)
        if sigma is not None and sigma[0] <= 0:
            raise ValueError(f"blur_sigma low must be > 0, got {sigma[0]}")
        down = _as_range(self.downsample_range, "downsample_range", lo_min=0.0)
        if down is not None and down[0] <= 0:
            raise ValueError(f"downsample_range low must be > 0, got {down[0]}")
        values = {
            "kernel_sizes": sizes,
            "kernel_types": types,
            "kernel_probs": probs,
            "blur_sigma": sigma,
            "rotation_range": _as_range(self.rotation_range, "rotation_range"),
            "downsample_range": down,
            "noise_range": _as_range(self.noise_range, "noise_range", lo_min=0.0),
            "gray_noise_prob": _check_prob(self.gray_noise_prob, "gray_noise_prob"),
            "jpeg_range": jpeg,
        }
        for key, value in values.items():  # normalise lists from YAML/JSON into tuples
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class DegradationConfig:
    """The whole LQ synthesis: one or two ``StageConfig`` plus colour augmentations.

    Attributes:
        name: preset name (recorded in the params of every sample).
        mode: "single" (``stage`` only), "mix" or "chain" (``stage`` = mild, ``severe``); see module doc.
        stage: the only stage ("single") or the mild stage ("mix"/"chain").
        severe: the severe stage; required for "mix" and "chain".
        severe_prob: "mix": probability of the severe ranges; "chain": probability of the 2nd pass.
        color_jitter_prob: probability of an RGB shift; offsets U(-shift, shift) per channel.
        color_jitter_shift: maximum RGB shift, 0-255 scale.
        color_jitter_pt_prob: probability of the brightness/contrast/saturation/hue jitter.
        brightness, contrast, saturation, hue: factor ranges of that jitter (hue in turns).
        gray_prob: probability that the LQ is converted to grayscale.
        gray_target: when the LQ is made gray, make the HQ target gray too (``target_for``).
    """

    name: str = "custom"
    mode: str = "single"
    stage: StageConfig = field(default_factory=StageConfig)
    severe: StageConfig | None = None
    severe_prob: float = 0.5
    color_jitter_prob: float = 0.0
    color_jitter_shift: float = 20.0
    color_jitter_pt_prob: float = 0.0
    brightness: Range = (0.5, 1.5)
    contrast: Range = (0.5, 1.5)
    saturation: Range = (0.0, 1.5)
    hue: Range = (-0.1, 0.1)
    gray_prob: float = 0.0
    gray_target: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        stage = self.stage if isinstance(self.stage, StageConfig) else StageConfig(**dict(self.stage))
        severe = self.severe
        if severe is not None and not isinstance(severe, StageConfig):
            severe = StageConfig(**dict(severe))
        if self.mode != "single" and severe is None:
            raise ValueError(f"mode {self.mode!r} needs a 'severe' stage")
        hue = _as_range(self.hue, "hue")
        if hue[0] < -0.5 or hue[1] > 0.5:
            raise ValueError(f"hue range must lie within [-0.5, 0.5] turns, got {hue}")
        if float(self.color_jitter_shift) < 0:
            raise ValueError(f"color_jitter_shift must be >= 0, got {self.color_jitter_shift}")
        values = {
            "stage": stage,
            "severe": severe,
            "severe_prob": _check_prob(self.severe_prob, "severe_prob"),
            "color_jitter_prob": _check_prob(self.color_jitter_prob, "color_jitter_prob"),
            "color_jitter_shift": float(self.color_jitter_shift),
            "color_jitter_pt_prob": _check_prob(self.color_jitter_pt_prob, "color_jitter_pt_prob"),
            "brightness": _as_range(self.brightness, "brightness", lo_min=0.0),
            "contrast": _as_range(self.contrast, "contrast", lo_min=0.0),
            "saturation": _as_range(self.saturation, "saturation", lo_min=0.0),
            "hue": hue,
            "gray_prob": _check_prob(self.gray_prob, "gray_prob"),
            "gray_target": bool(self.gray_target),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict:
        """Plain dict (lists instead of tuples) for YAML/JSON; ``from_dict`` reads it back."""
        return _listify(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradationConfig:
        """Build from a dict, e.g. a YAML section. ``{"preset": "gfpgan", ...}`` starts from a preset
        and overrides the given keys (a nested ``stage``/``severe`` dict overrides key by key).
        Unknown keys raise ValueError listing the valid ones."""
        data = dict(data)
        base: dict = get_preset(data.pop("preset")).to_dict() if "preset" in data else {}
        valid = {f.name for f in dataclasses.fields(cls)}
        stage_keys = {f.name for f in dataclasses.fields(StageConfig)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown degradation option(s) {unknown}; valid: {sorted(valid | {'preset'})}")
        for key in ("stage", "severe"):
            if isinstance(data.get(key), Mapping):
                bad = sorted(set(data[key]) - stage_keys)
                if bad:
                    raise ValueError(f"unknown option(s) {bad} in '{key}'; valid: {sorted(stage_keys)}")
                data[key] = {**(base.get(key) or {}), **data[key]}
        return cls(**{**base, **data})


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


def as_degradation_config(cfg: str | Mapping[str, Any] | DegradationConfig) -> DegradationConfig:
    """A preset name, a dict (``from_dict``) or a config → a ``DegradationConfig``."""
    if isinstance(cfg, DegradationConfig):
        return cfg
    if isinstance(cfg, str):
        return get_preset(cfg)
    if isinstance(cfg, Mapping):
        return DegradationConfig.from_dict(cfg)
    raise TypeError(f"expected a preset name, a dict or a DegradationConfig, got {type(cfg).__name__}")


# ----------------------------------------------------------------------------- randomness


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined only by (seed, *keys), e.g. ``rng_for(seed, epoch, index)``.

    Uses numpy's SeedSequence entropy mixing, so neighbouring keys give unrelated streams.
    All values must be non-negative integers.
    """
    entropy = [int(seed), *(int(k) for k in keys)]
    if any(v < 0 for v in entropy):
        raise ValueError(f"seed and keys must be non-negative integers, got {entropy}")
    return np.random.default_rng(entropy)


# ----------------------------------------------------------------------------- one stage


def sample_stage_params(stage: StageConfig, rng: np.random.Generator, size_hw: tuple[int, int]) -> dict:
    """Draw every random parameter of one stage for an image of ``size_hw`` (JSON-serialisable).

    Keys: kernel_type, kernel_size, sigma_x, sigma_y, rotation (radians), scale, lq_size [h, w],
    noise_sigma (0-255), gray_noise, jpeg_quality; a disabled step has ``None`` values.
    """
    h, w = size_hw
    p: dict = dict.fromkeys(
        (
            "kernel_type",
            "kernel_size",
            "sigma_x",
            "sigma_y",
            "rotation",
            "scale",
            "lq_size",
            "noise_sigma",
            "gray_noise",
            "jpeg_quality",
        )
    )
    if stage.blur_sigma is not None:
        weights = np.asarray(stage.kernel_probs, dtype=np.float64)
        kind = stage.kernel_types[int(rng.choice(len(weights), p=weights / weights.sum()))]
        p["kernel_type"] = kind
        p["kernel_size"] = int(stage.kernel_sizes[int(rng.integers(len(stage.kernel_sizes)))])
        p["sigma_x"] = float(rng.uniform(*stage.blur_sigma))
        if kind == "aniso":
            p["sigma_y"] = float(rng.uniform(*stage.blur_sigma))
            p["rotation"] = float(rng.uniform(*stage.rotation_range))
        else:
            p["sigma_y"], p["rotation"] = p["sigma_x"], 0.0
    if stage.downsample_range is not None:
        scale = float(rng.uniform(*stage.downsample_range))
        p["scale"] = scale
        p["lq_size"] = [max(1, int(h // scale)), max(1, int(w // scale))]  # basicsr: int(w // scale)
    if stage.noise_range is not None:
        p["noise_sigma"] = float(rng.uniform(*stage.noise_range))
        p["gray_noise"] = bool(stage.gray_noise_prob > 0 and rng.random() < stage.gray_noise_prob)
    if stage.jpeg_range is not None:
        p["jpeg_quality"] = int(rng.integers(stage.jpeg_range[0], stage.jpeg_range[1] + 1))
    return p


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a float32 HWC image with a 2-D kernel (reflect-101 borders; the kernel is symmetric
    under 180° rotation, so correlation = convolution)."""
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def blur_separable(image: np.ndarray, kernel_1d: np.ndarray) -> np.ndarray:
    """``blur`` with the kernel ``np.outer(kernel_1d, kernel_1d)``, as two 1-D passes (same borders)."""
    return cv2.sepFilter2D(image, -1, kernel_1d, kernel_1d, borderType=cv2.BORDER_REFLECT_101)


def resize_linear(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (cv2.INTER_LINEAR, no anti-aliasing) of an HWC float32 image to (h, w)."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[..., None]


def add_gaussian_noise(
    image: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False
) -> np.ndarray:
    """Add N(0, (sigma/255)^2) to a float32 [0, 1] HWC image, per channel or shared ("gray"); clip."""
    h, w, c = image.shape
    noise = rng.standard_normal((h, w, 1 if gray else c), dtype=np.float32)
    return np.clip(image + noise * np.float32(sigma / 255.0), 0.0, 1.0)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode a float32 [0, 1] RGB image as JPEG at cv2 ``quality`` (rounded to 8 bits first) and decode."""
    pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])  # RGB → BGR
    if not ok:
        raise RuntimeError(f"cv2 JPEG encoding failed (quality {quality}, shape {pixels.shape})")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]  # BGR → RGB
    return decoded.astype(np.float32) * np.float32(1.0 / 255.0)


def apply_stage(image: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Run one stage with drawn ``params`` on a float32 [0, 1] HWC RGB image; same size out.

    ``rng`` is only used for the noise field (after all parameters were drawn).
    """
    h, w = image.shape[:2]
    x = image
    if params["kernel_type"] is not None:
        size, sx, sy = params["kernel_size"], params["sigma_x"], params["sigma_y"]
        if sx == sy:  # isotropic: separable, same result up to float rounding
            x = blur_separable(x, gaussian_kernel_1d(size, sx))
        else:
            x = blur(x, gaussian_kernel(size, sx, sy, params["rotation"]))
    if params["lq_size"] is not None:
        x = resize_linear(x, tuple(params["lq_size"]))
    if params["noise_sigma"] is not None:
        x = add_gaussian_noise(x, params["noise_sigma"], rng, gray=params["gray_noise"])
    if params["jpeg_quality"] is not None:
        x = jpeg_roundtrip(x, params["jpeg_quality"])
    return resize_linear(x, (h, w))


# ----------------------------------------------------------------------------- full pipeline


def _check_hq(hq: np.ndarray) -> None:
    if not isinstance(hq, np.ndarray) or hq.dtype != np.uint8 or hq.ndim != 3 or hq.shape[2] != 3:
        shape = getattr(hq, "shape", None)
        dtype = getattr(hq, "dtype", type(hq).__name__)
        raise ValueError(f"degrade expects an HWC uint8 RGB image, got shape {shape} dtype {dtype}")


def _choose_stages(cfg: DegradationConfig, rng: np.random.Generator) -> tuple[list[StageConfig], str]:
    if cfg.mode == "single":
        return [cfg.stage], "single"
    severe = bool(rng.random() < cfg.severe_prob)
    if cfg.mode == "mix":
        return ([cfg.severe] if severe else [cfg.stage]), ("severe" if severe else "mild")
    return ([cfg.stage, cfg.severe] if severe else [cfg.stage]), ("severe" if severe else "mild")


def degrade(
    hq: np.ndarray, cfg: DegradationConfig | str, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Synthesise an LQ face from ``hq`` (HWC uint8 RGB); returns (lq, params).

    ``lq`` has the shape of ``hq`` (uint8 RGB). ``params`` is JSON-serialisable and records every
    drawn value: preset, mode, severity ("single" | "mild" | "severe"), input_size [h, w], stages
    (one ``sample_stage_params`` dict per applied stage), color_shift ([r, g, b] on 0-255 or None),
    bcsh (jitter factors and order, or None), gray, gray_target.
    """
    _check_hq(hq)
    cfg = as_degradation_config(cfg)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy Generator (e.g. rng_for(seed, index)), got {type(rng).__name__}"
        )
    size_hw = hq.shape[:2]
    stages, severity = _choose_stages(cfg, rng)
    x = hq.astype(np.float32) * np.float32(1.0 / 255.0)
    stage_params = []
    for stage in stages:
        p = sample_stage_params(stage, rng, size_hw)
        x = apply_stage(x, p, rng)
        stage_params.append(p)

    color_shift = bcsh = None
    if cfg.color_jitter_prob > 0 and rng.random() < cfg.color_jitter_prob:
        s = cfg.color_jitter_shift
        color_shift = [float(v) for v in rng.uniform(-s, s, 3)]
        x = shift_color(x, color_shift)
    gray = bool(cfg.gray_prob > 0 and rng.random() < cfg.gray_prob)
    if gray:
        x = to_gray(x)
    if cfg.color_jitter_pt_prob > 0 and rng.random() < cfg.color_jitter_pt_prob:
        bcsh = sample_bcsh(rng, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        x = jitter_bcsh(x, bcsh)

    lq = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    params = {
        "preset": cfg.name,
        "mode": cfg.mode,
        "severity": severity,
        "input_size": [int(size_hw[0]), int(size_hw[1])],
        "stages": stage_params,
        "color_shift": color_shift,
        "bcsh": bcsh,
        "gray": gray,
        "gray_target": bool(gray and cfg.gray_target),
    }
    return lq, params


def target_for(hq: np.ndarray, params: dict) -> np.ndarray:
    """The training target that matches an LQ made by ``degrade``: ``hq`` itself, or its grayscale
    version when the sample was made gray with ``gray_target`` set (DifFace / GFPGAN ``gt_gray``)."""
    return to_gray(hq) if params.get("gray_target") else hq


# ----------------------------------------------------------------------------- presets

# Classic GFPGAN/DAEFR stage. Sources: TencentARC/GFPGAN options/train_gfpgan_v1.yml; DAEFR configs
# (HQ_codebook / LQ_codebook / Association_stage .yaml) use the same ranges with kernel 39 or 41.
_CLASSIC = StageConfig(
    kernel_sizes=(41,),
    blur_sigma=(0.1, 10.0),
    downsample_range=(0.8, 8.0),
    noise_range=(0.0, 20.0),
    jpeg_range=(60, 100),
)
_DAEFR = dataclasses.replace(_CLASSIC, kernel_sizes=(39, 41))
# CodeFormer "large degradation in stageII": sczhou/CodeFormer options/CodeFormer_stage2.yml.
_CODEFORMER = StageConfig(
    kernel_sizes=(41,),
    blur_sigma=(1.0, 15.0),
    downsample_range=(4.0, 30.0),
    noise_range=(0.0, 20.0),
    jpeg_range=(30, 80),
)
# DifFace wide ranges: zsyOAOA/DifFace configs/training/swinir_ffhq512.yaml (also gray_prob 0.01, gt_gray).
_DIFFACE = StageConfig(
    kernel_sizes=(41,),
    blur_sigma=(0.1, 15.0),
    downsample_range=(0.8, 32.0),
    noise_range=(0.0, 20.0),
    jpeg_range=(30, 100),
)

# The classic stage brought to 128 px faces (osdface-mini): blur kernel and sigma a quarter of 512 px's,
# downsampling up to 4× (to a 32 px face), the same noise and slightly stronger JPEG (a 128 px face holds
# fewer 8×8 blocks, so the same quality removes more of it; the range starts lower to cover web photos).
_MINI = StageConfig(
    kernel_sizes=(11,),
    blur_sigma=(0.1, 2.5),
    downsample_range=(1.0, 4.0),
    noise_range=(0.0, 20.0),
    jpeg_range=(40, 95),
)

# The same at 256 px faces (osdface-mini 2): blur kernel and sigma half of 512 px's (a little under),
# downsampling up to 6× (to a ~43 px face) so that ÷4, where a 256-px crop of a small or soft face lies, sits
# inside the range rather than at its edge; noise and JPEG as mini.
_MINI256 = StageConfig(
    kernel_sizes=(21,),
    blur_sigma=(0.1, 4.0),
    downsample_range=(1.0, 6.0),
    noise_range=(0.0, 20.0),
    jpeg_range=(40, 95),
)

# osdface-mini 2's fine-tune: half the samples from a mild stage (light blur, ÷1–4, little noise, high
# JPEG quality: a soft or downscaled face of about the model's size), half from _MINI256. Trained on
# _MINI256 alone, the model makes such faces worse at 256 px (benchmarks/calibrate_at_size.py).
_MILD256 = StageConfig(
    kernel_sizes=(21,),
    blur_sigma=(0.1, 1.5),
    downsample_range=(1.0, 4.0),
    noise_range=(0.0, 5.0),
    jpeg_range=(70, 95),
)

# osdface-mini 2's last fine-tune: the mild stage widened to what the mixed fine-tune still made worse at
# 154–256 px (benchmarks/calibrate_at_size.py): JPEG down to q20 at the face's own size or after ÷2
# (−0.4 to −3.4 dB), and light noise; downsampling up to ÷3 only (÷3–6 is the severe stage's).
_BROAD256 = StageConfig(
    kernel_sizes=(21,),
    blur_sigma=(0.1, 1.5),
    downsample_range=(1.0, 3.0),
    noise_range=(0.0, 8.0),
    jpeg_range=(20, 95),
)

PRESETS: dict[str, DegradationConfig] = {
    # GFPGAN v1 as trained, colour augmentation included (shift 20, torch-style jitter, 1% gray LQ only).
    "gfpgan": DegradationConfig(
        name="gfpgan",
        stage=_CLASSIC,
        color_jitter_prob=0.3,
        color_jitter_shift=20.0,
        color_jitter_pt_prob=0.3,
        gray_prob=0.01,
        gray_target=False,
    ),
    # DAEFR (the template of OSDFace's stage 1): same ranges, kernel 39/41, no colour/gray augmentation.
    "daefr": DegradationConfig(name="daefr", stage=_DAEFR),
    "codeformer": DegradationConfig(name="codeformer", stage=_CODEFORMER),
    "difface": DegradationConfig(name="difface", stage=_DIFFACE, gray_prob=0.01, gray_target=True),
    # Speculative readings of OSDFace's "dual-stage" model (SPEC §6.3): mild = DAEFR ranges,
    # severe = DifFace wide ranges, half of the samples each ("mix"), or mild then severe ("chain").
    "dual": DegradationConfig(name="dual", mode="mix", stage=_DAEFR, severe=_DIFFACE, severe_prob=0.5),
    "mini": DegradationConfig(name="mini", stage=_MINI),
    "mini256": DegradationConfig(name="mini256", stage=_MINI256),
    "mini256_mixed": DegradationConfig(name="mini256_mixed", mode="mix", stage=_MILD256, severe=_MINI256,
                                       severe_prob=0.5),
    "mini256_broad": DegradationConfig(name="mini256_broad", mode="mix", stage=_BROAD256, severe=_MINI256,
                                       severe_prob=0.4),
    "dual_chain": DegradationConfig(
        name="dual_chain", mode="chain", stage=_DAEFR, severe=_DIFFACE, severe_prob=0.5
    ),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> DegradationConfig:
    """The named preset (configs are frozen, so the shared instance is safe to return)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown degradation preset {name!r}; available: {', '.join(PRESETS)}") from None
