"""Whole photos with the OSDFace pipeline: every face detected, aligned, restored, pasted back.

One call::

    from osdface.photos import restore_photo
    result = restore_photo(pipe, Image.open("family.jpg"), upscale=2)
    result.image                  # HWC uint8, the input's layout (gray stays gray, RGBA keeps alpha)
    result.faces[0].box, .landmarks5, .score, .affine, .cropped, .restored

``make_face_restorer`` builds the (stateless) ``FaceRestorer`` that ``osdface restore`` uses: the
faces of several photos go through the model together, ``batch_size`` at a time.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from .errors import OSDFaceError
from .face import FaceDetector, FaceRestorer, RestoreResult, create_detector
from .face.background import DEFAULT_BACKGROUND, background_upsampler
from .face.no_harm import FaceVerdict, NoHarm, band_change, detail, mix
from .face.restorer import BackgroundUpsampler, SmallFaces, is_grayscale
from .image_utils import pil_to_photo_array
from .pipeline import OSDFacePipeline


def blend_fidelity(restored: np.ndarray, original: np.ndarray, fidelity: float) -> np.ndarray:
    """``(1 − f)·restored + f·original`` in uint8; ``original`` is resized to ``restored`` if needed."""
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1]; got {fidelity}")
    if fidelity == 0:
        return restored
    if original.shape[:2] != restored.shape[:2]:
        original = cv2.resize(original, restored.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    mixed = (1 - fidelity) * restored.astype(np.float64) + fidelity * original[..., :3].astype(np.float64)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def pipeline_restore_fn(pipe: OSDFacePipeline, batch_size: int = 4, posterior: str = "mode", seed: int = 114,
                        fidelity: float = 0.0):
    """Aligned crops (HWC uint8 RGB) → restored crops, through ``pipe`` in batches of ``batch_size``.

    ``fidelity`` in [0, 1] blends the restored face with its aligned input crop:
    ``(1 − f)·restored + f·input``. OSDFace has no fidelity input of its own (unlike CodeFormer's w):
    this is a plain pixel blend, 0 = the model's output (default), 1 = the input crop.
    """
    blend_fidelity(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), fidelity)  # validate early

    def restore(crops: list[np.ndarray]) -> list[np.ndarray]:
        generators = [torch.Generator(pipe.device).manual_seed(seed) for _ in crops]
        out = pipe(crops, batch_size=batch_size, posterior=posterior, generator=generators, output_type="np").images
        out = [np.asarray(o) for o in out]
        if out and out[0].shape != crops[0].shape:  # the model runs at its own size
            out = [cv2.resize(o, crops[0].shape[1::-1], interpolation=cv2.INTER_AREA) for o in out]
        return [blend_fidelity(o, c, fidelity) for o, c in zip(out, crops)]

    return restore


def parse_guard_flags(detail_guard: str = "on", identity_guard: str = "auto") -> tuple[bool, Optional[float | str]]:
    """``--detail-guard on|off`` and ``--identity-guard DIST|auto|off`` → (detail on, threshold, "auto" (the
    calibrated one for the model's size, ``no_harm.auto_identity_guard``) or None for off); a bad value is
    one OSDFaceError line."""
    if detail_guard not in ("on", "off"):
        raise OSDFaceError(f"--detail-guard must be 'on' or 'off'; got {detail_guard!r}")
    value = str(identity_guard).strip().lower()
    if value == "off":
        return detail_guard == "on", None
    if value == "auto":
        return detail_guard == "on", "auto"
    try:
        threshold = float(value)
    except ValueError:
        threshold = float("nan")
    if not 0 < threshold < 10:  # also refuses nan and inf
        raise OSDFaceError(f"--identity-guard must be a dlib distance in (0, 10), 'auto' or 'off'; got {identity_guard!r}")
    return detail_guard == "on", threshold


def make_no_harm(detail_guard: str = "on", identity_guard: str = "auto") -> tuple[NoHarm, list[str]]:
    """The per-face "never worse" rule from the two flags, and notes for the user (e.g. the guard is off
    because the identity extra is missing). An explicit threshold without the extra is an error."""
    from .models.dlib_identity import IDENTITY_MISSING, DlibIdentity, identity_available

    detail_on, threshold = parse_guard_flags(detail_guard, identity_guard)
    notes, identity = [], None
    if threshold is not None:
        if identity_available():
            identity = DlibIdentity()
        elif str(identity_guard).strip().lower() == "auto":
            notes.append(f"identity guard off: {IDENTITY_MISSING}")
            threshold = None
        else:
            raise OSDFaceError(f"--identity-guard {identity_guard}: {IDENTITY_MISSING}")
    return NoHarm(enabled=detail_on, identity=identity, identity_guard=threshold), notes


def make_detector(detector: str = "mtcnn", detector_weights: Optional[str] = None,
                  detect_max_side: Optional[int] = 2048) -> FaceDetector:
    """The face detector ``osdface restore`` uses: ``detector`` by name, with local ``detector_weights``
    (a missing path is one OSDFaceError); MTCNN shrinks photos larger than ``detect_max_side`` for
    detection only (faster, same faces)."""
    from pathlib import Path

    if detector_weights and not Path(detector_weights).exists():
        raise OSDFaceError(f"--detector-weights {detector_weights}: no such file or folder")
    kwargs = {"weights": detector_weights} if detector_weights else {}
    if detector == "mtcnn":
        kwargs["max_side"] = detect_max_side
    return create_detector(detector, **kwargs)


def make_face_restorer(pipe: OSDFacePipeline, *, detector: str | FaceDetector = "mtcnn",
                       detector_weights: Optional[str] = None,
                       upscale: float = 1.0, only_center_face: bool = False, min_face_size: float = 20.0,
                       max_faces: Optional[int] = None, color_match: bool = True, fidelity: float = 0.0,
                       batch_size: int = 4, posterior: str = "mode", seed: int = 114,
                       detect_max_side: Optional[int] = 2048, no_harm: Optional[NoHarm] = None,
                       background: str | BackgroundUpsampler = DEFAULT_BACKGROUND,
                       small_faces: bool = True) -> FaceRestorer:
    """A FaceRestorer whose faces are restored by ``pipe`` (aligned at the pipeline's face size).

    ``detector``: a name (built by ``make_detector`` with ``detector_weights`` and ``detect_max_side``)
    or a detector already built; ``no_harm``: the per-face "never worse" rule (``make_no_harm``); None
    pastes every restored face as is; ``background``: how the rest of the photo is upscaled, a name of
    ``face.background.BACKGROUNDS`` (default "learned": the shipped ×2 network, on ``pipe.device``;
    "lanczos": ``FaceRestorer``'s own default) or an upsampler function; ``small_faces``: route faces to
    ``pipe.small_faces`` (``OSDFacePipeline.with_small_faces``) when it is set (video turns it off: one model
    a clip).
    """
    small = None
    if small_faces and pipe.small_faces is not None:
        small_pipe, up_to = pipe.small_faces
        small = SmallFaces(pipeline_restore_fn(small_pipe, batch_size, posterior, seed, fidelity),
                           small_pipe.sample_size, up_to)
    if isinstance(detector, str):
        detector = make_detector(detector, detector_weights, detect_max_side)
    if isinstance(background, str):
        background = background_upsampler(background, pipe.device)
    return FaceRestorer(
        pipeline_restore_fn(pipe, batch_size, posterior, seed, fidelity),
        detector=detector,
        face_size=pipe.sample_size, upscale=upscale, only_center_face=only_center_face,
        min_face_size=min_face_size, max_faces=max_faces, color_match=color_match, no_harm=no_harm,
        background_upsampler=background, small=small,
    )


def restore_photo(pipe: OSDFacePipeline, image, **options) -> RestoreResult:
    """Restore every face of one photo (PIL image or HWC uint8 array); options as ``make_face_restorer``."""
    array = image if isinstance(image, np.ndarray) else pil_to_photo_array(image)
    return make_face_restorer(pipe, **options)(array)


def restore_aligned(pipe: OSDFacePipeline, images: list[np.ndarray], *, fidelity: float = 0.0, batch_size: int = 4,
                    posterior: str = "mode", seed: int = 114, no_harm: Optional[NoHarm] = None) -> list[np.ndarray]:
    """Aligned face crops (HWC uint8 RGB) → restored images only (see ``restore_aligned_faces``)."""
    return [image for image, _ in restore_aligned_faces(pipe, images, fidelity=fidelity, batch_size=batch_size,
                                                        posterior=posterior, seed=seed, no_harm=no_harm)]


def restore_aligned_faces(pipe: OSDFacePipeline, images: list[np.ndarray], *, fidelity: float = 0.0,
                          batch_size: int = 4, posterior: str = "mode", seed: int = 114,
                          no_harm: Optional[NoHarm] = None) -> list[tuple[np.ndarray, Optional[FaceVerdict]]]:
    """Aligned face crops (HWC uint8 RGB) → (restored, verdict) each, as ``osdface restore --aligned``.

    Without ``no_harm`` (the official behaviour): a square crop comes out S×S (S: the model's face size),
    another keeps its aspect ratio with long side S. With ``no_harm``, a square crop larger than 1.1·S keeps
    its size: the model restores it shrunk to S (area) and its change is added to the input in the model's
    band (``no_harm.band_change``), the finer detail coming from the input; a smaller one comes out S×S.
    ``fidelity`` blends with the input (``blend_fidelity``); a gray crop comes back gray (HW). With
    ``pipe.small_faces`` set, crops whose side is at most its ``up_to`` go to that pipeline instead.
    """
    models = [(pipe, list(range(len(images))))]
    if pipe.small_faces is not None:
        small_pipe, up_to = pipe.small_faces
        small = [max(im.shape[:2]) <= up_to for im in images]
        models = [(pipe, [k for k, s in enumerate(small) if not s]),
                  (small_pipe, [k for k, s in enumerate(small) if s])]
    results: list = [None] * len(images)
    for model, chosen in models:
        out = _restore_aligned_with(model, [images[k] for k in chosen], fidelity, batch_size, posterior, seed, no_harm)
        for k, item in zip(chosen, out):
            results[k] = item
    return results


def _restore_aligned_with(pipe: OSDFacePipeline, images: list[np.ndarray], fidelity: float, batch_size: int,
                          posterior: str, seed: int, no_harm: Optional[NoHarm]):
    """``restore_aligned_faces`` by one pipeline (its own face size S)."""
    if not images:
        return []
    size = pipe.sample_size
    square = [no_harm is not None and im.shape[0] == im.shape[1] for im in images]
    # 1. What the model sees: square crops at S (area-shrunk, so the band split has no aliasing), others as given
    model_in = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA if im.shape[0] > size else cv2.INTER_CUBIC)
                if sq and im.shape[0] != size else im for im, sq in zip(images, square)]
    generators = [torch.Generator(pipe.device).manual_seed(seed) for _ in images]
    out = pipe(model_in, batch_size=batch_size, posterior=posterior, generator=generators, output_type="np").images
    results = []
    for before, crop, after, sq in zip(images, model_in, out, square):
        after = blend_fidelity(np.asarray(after), crop if sq else before, fidelity)
        verdict = None
        if sq:  # 2. the no-harm rule: α from the input's detail, the identity guard, the bands
            verdict = no_harm.assess(crop, after, before.shape[0])
            if verdict.fusion == "bands":
                change = band_change(crop, after, before, verdict.model_weight, no_harm)
                result = np.clip(np.rint(before.astype(np.float32) + change), 0, 255).astype(np.uint8)
                verdict.detail_before, verdict.detail_after = detail(before), detail(result)
                after = result
            else:
                after = mix(crop, after, verdict.model_weight)
                verdict.detail_before, verdict.detail_after = detail(crop), detail(after)
        results.append((cv2.cvtColor(after, cv2.COLOR_RGB2GRAY) if is_grayscale(before) else after, verdict))
    return results


def no_face_note(upscale: float = 1.0) -> str:
    """What a photo without a face is told (it is copied through, not failed)."""
    return "no face found; copied through" + (f" (upscaled ×{upscale:g})" if upscale != 1 else "")


def face_records(result: RestoreResult, upscale: float = 1.0) -> list[dict]:
    """JSON-ready per-face records: box and landmarks in input pixels, score, affine (input → crop)."""
    return [{"index": i, "box_xyxy": np.round(f.box, 2).tolist(), "landmarks5": np.round(f.landmarks5, 2).tolist(),
             "score": round(float(f.score), 4), "affine_input_to_crop": np.round(f.affine, 6).tolist(),
             "face_size": int(f.cropped.shape[0]),
             **({"verdict": f.verdict.to_json()} if f.verdict is not None else {})} for i, f in enumerate(result.faces)]


def compare_image(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Side by side (input | output) at the output's size, RGB (alpha dropped, gray as RGB)."""
    def rgb(x):
        x = x if x.ndim == 3 else x[..., None]
        return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]

    before, after = rgb(before), rgb(after)
    if before.shape[:2] != after.shape[:2]:
        before = cv2.resize(before, after.shape[1::-1], interpolation=cv2.INTER_LANCZOS4)
    gap = np.full((after.shape[0], max(4, after.shape[1] // 100), 3), 255, np.uint8)
    return np.concatenate([before, gap, after], axis=1)

