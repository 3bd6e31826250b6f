"""Never make a face worse: what the model may change in a face, decided per face and reported.

A model restores faces at its own size S (``sample_size``: 512 for the paper's model, 256 / 128 for the bundled ones). A
face pasted back larger than S would lose whatever the input held above the model's band, and a face
the model cannot help (already sharp, or a change of identity) would silently get worse. ``NoHarm``
decides, for each face, how much of the model's change to keep, and says so in a ``FaceVerdict``:

1. **Bands.** The model's change lives in the band a S×S crop can hold. When the face has more input
   pixels than S (its *native size* n, in the aligned frame, ``--upscale`` not counted: an upscaled
   input holds no finer detail), the face is worked on at W = min(n, ``max_work_size``) and the output
   is ``input_W + α·up_W(restored_S − crop_S) − (1 − g)·high_W``: the input at its own resolution plus
   the model's change (upsampled), so everything above the model's band comes from the input.
   ``high_W = input_W − up_W(crop_S)`` is the input's band above the model's. The change is pasted as a
   *difference*, so where nothing is changed the output is the input, pixel for pixel.
2. **Noise in that band** (``g``, a map): a local Wiener gain, ``g = s² / (s² + σ²)`` with ``s²`` the
   local variance of ``high_W`` above the noise variance ``σ²``; σ is estimated from the band itself
   (1.4826 × the median absolute value over the face: edges are few, noise is everywhere). Edges and
   eyelashes stand far above σ and pass; grain and JPEG ringing at the noise level are damped. Used only
   when σ ≥ ``noise_floor`` (a clean photo's high band is kept as it is) and the model's change is used.
3. **Input detail in the model's top octave** (α, the model's weight): the share of the S crop's detail
   energy (periods 2–32 px) that lies in its top octave (periods 2–4 px), the noise's part taken off
   (``top_octave_detail``). The model puts detail into that octave; where the input already has it, the
   model can only replace real detail with its own. Measured on real faces (hires, 8 sizes × 4
   conditions, mini at 128): faces degraded to a quarter of their size, or small faces, 0.002–0.005
   (the model gains +0.9 to +1.7 dB); a face with detail of about S or half of S, 0.006–0.018 (half the
   model's change is best); a sharp face of 256 px or more, or a noisy one, 0.017–0.12 (any of the
   model's change costs PSNR and identity). So α = 1 at or below ``detail_restore`` (0.004), 0 at or
   above ``detail_keep`` (0.010), linear between (the PSNR-best pair of those tried on that data, and
   the one that keeps mid-range faces, whose identity the model moves for little PSNR, nearest the input).
   For faces no larger than 1.1·S (the crop holds the face whole, upsampled when it is smaller) the
   same measure reads higher, with its own pair (``at_size_restore`` 0.016, ``at_size_keep`` 0.024):
   measured at the crop level on 30 held-out hires faces at 0.6–1·S for both bundled models
   (``benchmarks/calibrate_at_size.py``), faces the model helps (÷2–÷4, blur, the bench's recipe, video
   blocking: a talking head shrunk to ~130-px faces, JPEG q25 + H.264 CRF 38) read 0.001–0.017; a sharp
   face at S, or one with JPEG q25–50 or noise σ 8 at its own size, which the model replaces by its own
   detail (−0.5 to −4.5 dB), 0.020–0.09 (medians 0.032–0.052).
   **Half the model's size** (models of ``half_size_from`` = 256 px and more): every face is also
   measured on its crop shrunk to S/2, α capped by its own pair (``half_size_restore`` 0.012,
   ``half_size_keep`` 0.020). A face that is already sharp one octave below the model's size is one
   whose detail the model can only redraw: measured with mini256 on 30 held-out faces at 154–256 px
   (``benchmarks/bench_routing.py``), JPEG q25/q50 at the face's own size read 0.019–0.098 there and lost
   0.2–1.4 dB (25–30 faces of 30 worse), ÷2 + JPEG q40 at 230–256 px and video blocking at 256 px lost
   0.2–0.6 dB; faces it helps (the bench's recipe, ÷4, blur σ 1.2) read 0.0006–0.014 and keep their gains.
   It also keeps sharp faces at 0.6–0.9·S whole (the at-size pair left them at 35 dB). Larger faces too:
   in whole photos (``benchmarks/bench_no_harm.py``) degraded 1024-px faces, whose real detail is the
   model's size with noise and JPEG, read 0.017–0.043 at S/2 and were up to 0.17 dB worse with mini256;
   the 512-px ones it helps read 0.007–0.020 (median 0.0095). Off below 256:
   mini128 gains +0.5 to +1.2 dB on JPEG and video faces of 76–128 px that this check would keep.
4. **Identity guard** (``identity``, ``identity_guard``): the dlib descriptor distance between the input
   crop and the output crop (both at S, landmarks fitted on the input). Past ``identity_guard``, α is
   halved until the distance is under it (6 halvings, then 0: the face is kept as it was). "auto": the
   calibrated threshold for the model's size (``IDENTITY_GUARD_CALIBRATION``: 0.70 at 128 px, 0.59 at 512).

Faces at or below 1.1·S skip 1–2 (the model's crop is pasted, mixed by α); 3 and 4 apply to every face. ``FaceVerdict.action`` is
"restored" (α = 1), "blended" (0 < α < 1) or "kept" (α = 0), with the reason in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Optional, Protocol

import cv2
import numpy as np

from .paste import face_mask

MIN_FUSION_RATIO = 1.1  # fuse bands only when the input has at least 10 % more pixels than the model
# The identity guard's calibrated thresholds by crop size: the 99th percentile of same-person LQ ↔ GT dlib
# distances at the mini model's training degradations (benchmarks/calibrate_identity_guard.py): UTKFace val
# at 128 px (452 faces), FFHQ at 512 px (300). dlib sees less of a smaller crop, so the same degradation
# moves it further: the threshold depends on the model's size.
IDENTITY_GUARD_CALIBRATION = ((128, 0.70), (512, 0.59))


def auto_identity_guard(model_size: int) -> float:
    """The calibrated threshold for a model of ``model_size`` px (log-linear between the calibrated sizes)."""
    sizes, values = zip(*IDENTITY_GUARD_CALIBRATION)
    return float(np.interp(np.log2(model_size), np.log2(sizes), values))


class IdentityMeasure(Protocol):
    def distance(self, reference_crop: np.ndarray, crop: np.ndarray) -> float: ...


# ---------------------------------------------------------------------------------------- measures


def gray(image: np.ndarray) -> np.ndarray:
    """HWC RGB (any dtype) or HW → HW float32 luma (BT.601)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def noise_sigma(image: np.ndarray) -> float:
    """Immerkær's fast noise estimate (1996) of a face crop's luma, in levels (0..255): the mean
    |Laplacian-difference| (a kernel blind to planes and lines) times √(π/2)/6."""
    g = gray(image).astype(np.float64)
    if min(g.shape) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = cv2.filter2D(g, -1, kernel, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


def detail(image: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Fine detail: the mean |Laplacian| of the luma, weighted by ``mask`` (default: the face ellipse)."""
    g = gray(image)
    if mask is None:
        mask = face_mask(g.shape[0], "ellipse") if g.shape[0] == g.shape[1] else np.ones_like(g)
    lap = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1))
    return float((lap * mask).sum() / max(float(mask.sum()), 1e-6))


def octave_energies(g: np.ndarray, mask: np.ndarray, octaves: int = 4) -> list[float]:
    """Mean squared Laplacian-pyramid band of a square HW float image under ``mask``, finest first: band j
    holds periods of 2^(j+1)–2^(j+2) px (area down by 2, bicubic back up)."""
    energies, current = [], g
    for _ in range(octaves):
        s = current.shape[0]
        if s < 8:
            break
        half = cv2.resize(current, (s // 2, s // 2), interpolation=cv2.INTER_AREA)
        band = current - cv2.resize(half, (s, s), interpolation=cv2.INTER_CUBIC)
        m = mask if mask.shape[0] == s else cv2.resize(mask, (s, s), interpolation=cv2.INTER_AREA)
        energies.append(float((band**2 * m).sum() / max(float(m.sum()), 1e-6)))
        current = half
    return energies


def top_octave_detail(crop: np.ndarray) -> float:
    """The share of a square face crop's detail energy (four octaves, periods 2–32 px, face ellipse) that
    lies in its top octave (periods 2–4 px), the noise's part of it (3/4 of white noise's variance)
    taken off. Scale-free: it does not depend on the face's contrast or lighting."""
    g = gray(crop)
    energies = octave_energies(g, face_mask(g.shape[0], "ellipse"))
    top = max(energies[0] - 0.75 * noise_sigma(g) ** 2, 0.0)
    return top / max(sum(energies), 1e-6)


# ---------------------------------------------------------------------------------------- verdict


@dataclass
class FaceVerdict:
    """What was done to one face, and why (JSON-ready through ``to_json``)."""

    native_size: int  # the face's aligned-crop side in input pixels
    model_size: int  # the model's face size S
    fusion: str  # "bands" (model band + the input's finer band) or "none" (the model's crop, upsampled)
    model_weight: float  # α: share of the model's change kept (0: the face is kept as it was)
    input_detail: float  # the input's top-octave detail at S (see ``top_octave_detail``)
    noise: float  # noise σ of the input face (levels)
    identity: Optional[float]  # dlib distance input ↔ output at S (None: guard off, or the face kept unchanged)
    identity_before_guard: Optional[float]  # the same for the model's full change
    detail_before: float = 0.0  # mean |Laplacian| of the input face at the working size
    detail_after: float = 0.0  # the same for the output face
    action: str = "restored"  # "restored", "blended" or "kept"
    reason: str = ""
    guard_halvings: int = 0  # times the identity guard halved α (7: kept)
    input_detail_half: Optional[float] = None  # the same at S/2 (models of half_size_from px and more)

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def caption(self) -> str:
        """A short caption: '612-px face, 128-px model · kept: already sharper than the model'."""
        text = f"{self.native_size}-px face, {self.model_size}-px model · {self.action}"
        return text + (f": {self.reason}" if self.reason and self.action != "restored" else "")


class NoHarm:
    """The per-face rule (see the module docstring). ``enabled=False`` restores every face at the model's
    size with α = 1, as before this rule existed (``--detail-guard off``)."""

    def __init__(self, enabled: bool = True, detail_restore: float = 0.004, detail_keep: float = 0.010,
                 noise_floor: float = 1.5, max_work_size: int = 1024,
                 identity: Optional[IdentityMeasure] = None, identity_guard: Optional[float | str] = None,
                 at_size_restore: float = 0.016, at_size_keep: float = 0.024, half_size_restore: float = 0.012,
                 half_size_keep: float = 0.020, half_size_from: int = 256):
        for low, high, names in ((detail_restore, detail_keep, "detail_restore < detail_keep"),
                                 (at_size_restore, at_size_keep, "at_size_restore < at_size_keep"),
                                 (half_size_restore, half_size_keep, "half_size_restore < half_size_keep")):
            if not 0 <= low < high:
                raise ValueError(f"need 0 <= {names}; got {low}, {high}")
        if identity_guard is not None and identity_guard != "auto" and not identity_guard > 0:
            raise ValueError(f"identity_guard must be > 0, 'auto' or None; got {identity_guard}")
        self.enabled = enabled
        self.detail_restore, self.detail_keep = float(detail_restore), float(detail_keep)
        self.at_size_restore, self.at_size_keep = float(at_size_restore), float(at_size_keep)
        self.half_size_restore, self.half_size_keep = float(half_size_restore), float(half_size_keep)
        self.half_size_from = int(half_size_from)
        self.noise_floor = float(noise_floor)
        self.max_work_size = int(max_work_size)
        self.identity = identity if identity_guard is not None else None
        self.identity_guard = identity_guard if identity is not None else None

    def work_size(self, native_size: float, model_size: int) -> int:
        """W: the side at which a face is combined (the model's size unless the input holds more)."""
        if not self.enabled or native_size < MIN_FUSION_RATIO * model_size:
            return model_size
        return int(min(round(native_size), self.max_work_size))

    def guard_for(self, model_size: int) -> float:
        """The identity guard's threshold for a model of ``model_size`` px ('auto': the calibrated one)."""
        if self.identity_guard == "auto":
            return round(auto_identity_guard(model_size), 2)
        return float(self.identity_guard)

    def weight_from_detail(self, input_detail: float, at_size: bool = False, half_size: bool = False) -> float:
        """α from the input's top-octave detail: 1 (blurred) … 0 (already sharp). ``at_size``: the face is no
        larger than 1.1·S (its own pair of thresholds, module docstring step 3); ``half_size``: the detail
        was measured at S/2 (the half-size pair)."""
        if not self.enabled:
            return 1.0
        if half_size:
            low, high = self.half_size_restore, self.half_size_keep
        else:
            low, high = (self.at_size_restore, self.at_size_keep) if at_size else (self.detail_restore, self.detail_keep)
        return float(np.clip((high - input_detail) / (high - low), 0.0, 1.0))

    def half_size_detail(self, crop: np.ndarray) -> Optional[float]:
        """The top-octave detail of ``crop`` (at S) shrunk to S/2, for a model of ``half_size_from`` px or
        more; None where the check does not apply."""
        size = crop.shape[0]
        if not self.enabled or size < self.half_size_from:
            return None
        return top_octave_detail(cv2.resize(crop, (size // 2, size // 2), interpolation=cv2.INTER_AREA))

    def detail_weight(self, crop: np.ndarray, native_size: float, input_detail: Optional[float] = None,
                      half_detail: Optional[float] = None) -> float:
        """α before the identity guard for one face (``crop`` at S), from its top-octave detail, with the
        thresholds for its size: larger than 1.1·S, or not (the model's size holds it whole); capped by the
        detail at S/2 where that applies (``half_size_detail``)."""
        at_size = self.work_size(native_size, crop.shape[0]) <= crop.shape[0]
        alpha = self.weight_from_detail(top_octave_detail(crop) if input_detail is None else input_detail, at_size)
        if half_detail is None:
            half_detail = self.half_size_detail(crop)
        if half_detail is not None:
            alpha = min(alpha, self.weight_from_detail(half_detail, half_size=True))
        return alpha

    def assess(self, crop: np.ndarray, restored: np.ndarray, native_size: float,
               weight: Optional[float] = None, halvings: Optional[int] = None) -> FaceVerdict:
        """The verdict for one face: ``crop`` / ``restored`` at S (HWC uint8 RGB, ``restored`` colour-matched
        as it will be pasted). ``weight``: α decided elsewhere (video: per track), still capped by the
        identity guard; ``halvings``: the guard's decision taken elsewhere (video: per track, measured every
        few frames), applied without measuring (the verdict's identity fields are then None)."""
        size = crop.shape[0]
        work = self.work_size(native_size, size)
        input_detail = top_octave_detail(crop)
        half_detail = self.half_size_detail(crop)
        alpha = self.detail_weight(crop, native_size, input_detail, half_detail) if weight is None else float(weight)
        alpha = 1.0 if alpha > 0.99 else (0.0 if alpha < 0.01 else alpha)  # within 1 %: restored / kept
        reason = ""
        if alpha < 1:
            reason = "already sharper than the model" if work > size else "already sharp, noisy or blocky at the model's size"
            if half_detail is not None and (self.weight_from_detail(half_detail, half_size=True)
                                            < self.weight_from_detail(input_detail, at_size=work <= size)):
                reason = "already sharp, noisy or blocky at half the model's size"
        before = after = None
        if self.identity is not None and alpha > 0 and halvings is not None:
            alpha = alpha / 2 ** halvings if halvings < 7 else 0.0
            if halvings:
                reason = "identity guard (as measured on this face's track)"
        elif self.identity is not None and alpha > 0:
            before = after = self._distance(crop, restored, alpha)
            halvings = 0
            guard = self.guard_for(size)
            while after > guard and alpha > 0:
                halvings += 1
                alpha = alpha / 2 if halvings < 7 else 0.0
                after = self._distance(crop, restored, alpha) if alpha > 0 else 0.0
            if halvings:
                reason = f"identity guard (dlib distance {before:.3f} > {guard:g})"
        action = "kept" if alpha == 0 else ("restored" if alpha >= 1 else "blended")
        return FaceVerdict(round(native_size), size, "bands" if work > size else "none", alpha, input_detail,
                           noise_sigma(crop), after, before, action=action, reason=reason,
                           guard_halvings=halvings or 0, input_detail_half=half_detail)

    def _distance(self, crop: np.ndarray, restored: np.ndarray, alpha: float) -> float:
        return float(self.identity.distance(crop, mix(crop, restored, alpha)))

    def high_band_gain(self, high: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """(per-pixel Wiener gain HW1 in [0, 1], σ) for the input's band above the model's (HWC float32)."""
        g = gray(high)
        weights = mask > 0.5
        sigma = float(1.4826 * np.median(np.abs(g[weights]))) if weights.any() else 0.0
        if sigma < self.noise_floor:
            return np.ones(g.shape + (1,), np.float32), sigma
        k = max(3, round(g.shape[0] / 128)) | 1
        local = cv2.blur(g * g, (k, k))
        signal = np.maximum(local - sigma**2, 0.0)
        return (signal / (signal + sigma**2))[..., None].astype(np.float32), sigma


def mix(crop: np.ndarray, restored: np.ndarray, alpha: float) -> np.ndarray:
    """``crop + α·(restored − crop)`` in uint8 (α = 1: ``restored`` itself)."""
    if alpha >= 1:
        return restored
    if alpha <= 0:
        return crop
    out = crop.astype(np.float32) + np.float32(alpha) * (restored.astype(np.float32) - crop.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def band_change(crop: np.ndarray, restored: np.ndarray, input_work: np.ndarray, alpha: float,
                rule: NoHarm) -> np.ndarray:
    """The change to add to the input face at the working size W (HWC float32):
    ``α·up_W(restored − crop) − (1 − g)·high_W`` (module docstring, steps 1–2); zero for α = 0."""
    work = input_work.shape[0]
    size = (work, work)
    if alpha <= 0:
        return np.zeros(input_work.shape, np.float32)
    change = cv2.resize(restored.astype(np.float32) - crop.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    change *= np.float32(alpha)
    high = input_work.astype(np.float32) - cv2.resize(crop.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    gain, _ = rule.high_band_gain(high, face_mask(work, "ellipse"))
    change -= (1 - gain) * high
    return change


def summarize(faces: Sequence[dict]) -> str:
    """Verdict records (``FaceVerdict.to_json``) → '3 restored, 1 kept as it was: already sharper than the
    model (612-px face, 128-px model)'; the reasons grouped, with the range of face sizes."""
    parts = [f"{sum(f['action'] == 'restored' for f in faces)} restored"]
    for action, words in (("blended", "{} blended toward the input"), ("kept", "{} kept as it was")):
        chosen = [f for f in faces if f["action"] == action]
        if not chosen:
            continue
        reasons = []
        for reason in sorted({f.get("reason", "").split(" (")[0] for f in chosen}):
            group = [f for f in chosen if f.get("reason", "").split(" (")[0] == reason]
            lo, hi = min(f["native_size"] for f in group), max(f["native_size"] for f in group)
            sizes = f"{lo}-px face" if lo == hi and len(group) == 1 else (f"{lo}-px faces" if lo == hi else f"{lo}–{hi}-px faces")
            models = sorted({f["model_size"] for f in group})
            reasons.append(f"{reason or 'no reason'} ({sizes}, {'/'.join(map(str, models))}-px model)")
        parts.append(words.format(len(chosen)) + ": " + "; ".join(reasons))
    return ", ".join(parts)
