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

from .face import FaceRestorer, RestoreResult, create_detector
from .face.restorer import is_grayscale
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


def make_face_restorer(pipe: OSDFacePipeline, *, detector: str = "mtcnn", detector_weights: Optional[str] = None,
                       upscale: float = 1.0, only_center_face: bool = False, min_face_size: float = 20.0,
                       max_faces: Optional[int] = None, color_match: bool = True, fidelity: float = 0.0,
                       batch_size: int = 4, posterior: str = "mode", seed: int = 114,
                       detect_max_side: Optional[int] = 2048) -> FaceRestorer:
    """A FaceRestorer whose faces are restored by ``pipe`` (aligned at the pipeline's face size).

    ``detect_max_side``: photos larger than this are shrunk for detection only (faster, same faces).
    """
    kwargs = {"weights": detector_weights} if detector_weights else {}
    if detector == "mtcnn":
        kwargs["max_side"] = detect_max_side
    return FaceRestorer(
        pipeline_restore_fn(pipe, batch_size, posterior, seed, fidelity),
        detector=create_detector(detector, **kwargs),
        face_size=pipe.sample_size, upscale=upscale, only_center_face=only_center_face,
        min_face_size=min_face_size, max_faces=max_faces, color_match=color_match,
    )


def restore_photo(pipe: OSDFacePipeline, image, **options) -> RestoreResult:
    """Restore every face of one photo (PIL image or HWC uint8 array); options as ``make_face_restorer``."""
    array = image if isinstance(image, np.ndarray) else pil_to_photo_array(image)
    return make_face_restorer(pipe, **options)(array)


def restore_aligned(pipe: OSDFacePipeline, images: list[np.ndarray], *, fidelity: float = 0.0, batch_size: int = 4,
                    posterior: str = "mode", seed: int = 114) -> list[np.ndarray]:
    """Aligned face crops (HWC uint8 RGB) → restored, as ``osdface restore --aligned``: a square crop comes
    out S×S (S: the model's face size), another keeps its aspect ratio with long side S; ``fidelity``
    blends with the input (``blend_fidelity``); a gray crop comes back gray (HW)."""
    generators = [torch.Generator(pipe.device).manual_seed(seed) for _ in images]
    out = pipe(images, batch_size=batch_size, posterior=posterior, generator=generators, output_type="np").images
    restored = []
    for before, after in zip(images, out):
        after = blend_fidelity(np.asarray(after), before, fidelity)
        restored.append(cv2.cvtColor(after, cv2.COLOR_RGB2GRAY) if is_grayscale(before) else after)
    return restored


def no_face_note(upscale: float = 1.0) -> str:
    """What a photo without a face is told (it is copied through, not failed)."""
    return "no face found; copied through" + (f" (upscaled ×{upscale:g})" if upscale != 1 else "")


def face_records(result: RestoreResult, upscale: float = 1.0) -> list[dict]:
    """JSON-ready per-face records: box and landmarks in input pixels, score, affine (input → crop)."""
    return [{"index": i, "box_xyxy": np.round(f.box, 2).tolist(), "landmarks5": np.round(f.landmarks5, 2).tolist(),
             "score": round(float(f.score), 4), "affine_input_to_crop": np.round(f.affine, 6).tolist(),
             "face_size": int(f.cropped.shape[0])} for i, f in enumerate(result.faces)]


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

