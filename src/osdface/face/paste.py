"""Paste restored faces back into a photo: inverse warp, feathered masks, colour matching.

Each face is an HWC uint8 RGB square crop (``face_size``) with the affine that maps canvas pixel
coordinates to crop coordinates (see ``alignment.py``; use ``resize_affine`` when the canvas is an
upscaled copy of the photo the face was cut from). Work is limited to each face's footprint on the
canvas, so the cost per face does not grow with the photo size.

Guarantees: the soft mask is exactly 0 on the crop's outer ring, so canvas pixels outside every
face's mask are returned unchanged; faces are composited one after another (smaller faces first,
larger - usually nearer - faces on top), so overlapping faces never add up; a crop reaching past
the canvas edge is simply clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from .alignment import affine_scale, compose_affine, crop_bounds, inside_mask
from .color import match_color

MASK_SHAPES = ("square", "ellipse")


@lru_cache(maxsize=16)
def _base_mask(face_size: int, shape: str) -> np.ndarray:
    """Eroded square/ellipse with a Gaussian edge, scaled to the crop; exactly 0 on the outer ring."""
    size = int(face_size)
    hard = np.zeros((size, size), dtype=np.float32)
    if shape == "square":
        inset = round(0.065 * size)
        hard[inset : size - inset, inset : size - inset] = 1.0
    else:  # ellipse around the FFHQ face region (eyebrows to chin)
        centre = (round(0.5 * size), round(0.56 * size))
        axes = (round(0.34 * size), round(0.38 * size))
        cv2.ellipse(hard, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    sigma = max(0.5, 0.018 * size)
    soft = cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    ring = max(1, round(0.004 * size))
    edge = max(soft[:ring].max(), soft[-ring:].max(), soft[:, :ring].max(), soft[:, -ring:].max())
    soft = np.clip((soft - edge) / max(1.0 - edge, 1e-6), 0.0, 1.0)
    soft[:ring], soft[-ring:], soft[:, :ring], soft[:, -ring:] = 0.0, 0.0, 0.0, 0.0
    soft.setflags(write=False)
    return soft


def face_mask(face_size: int, shape: str = "square", parsing: np.ndarray | None = None) -> np.ndarray:
    """Soft paste mask (face_size, face_size) float32 in [0, 1].

    ``parsing``: optional external face mask for the crop (HW, bool, uint8 0..255 or float 0..1,
    any size: resized); it is softened and multiplied with the feathered ``shape`` mask.
    """
    if shape not in MASK_SHAPES:
        raise ValueError(f"mask shape must be one of {MASK_SHAPES}; got {shape!r}")
    base = _base_mask(int(face_size), shape)
    if parsing is None:
        return base
    parsing = np.asarray(parsing)
    if parsing.ndim == 3 and parsing.shape[2] == 1:
        parsing = parsing[..., 0]
    if parsing.ndim != 2:
        raise ValueError(f"parsing mask must be HW (one channel); got shape {parsing.shape}")
    if parsing.dtype == np.uint8:
        soft = parsing.astype(np.float32) / 255.0
    else:
        soft = np.clip(parsing.astype(np.float32), 0.0, 1.0)
    if soft.shape != base.shape:
        soft = cv2.resize(soft, base.shape[::-1], interpolation=cv2.INTER_LINEAR)
    sigma = max(0.5, 0.01 * face_size)
    soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return base * soft


def _warp_back(stack: np.ndarray, affine: np.ndarray, canvas_shape) -> tuple[tuple[int, ...], np.ndarray] | None:
    """Warp a crop-frame stack (HW × channels float32) onto the canvas region under it: ((x0, y0, x1, y1),
    the warped HW × channels), or None when the crop lies entirely outside the canvas."""
    size = stack.shape[0]
    x0, y0, x1, y1 = crop_bounds(affine, size, canvas_shape, margin=3.0)
    if x1 <= x0 or y1 <= y0:
        return None
    to_crop = compose_affine(affine, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))  # roi → crop
    scale = affine_scale(affine)  # crop pixels per canvas pixel
    if scale > 1.5:  # the face shrinks on the way back: area-average first, then warp (no aliasing)
        small = max(4, round(size / scale))
        stack = cv2.resize(stack, (small, small), interpolation=cv2.INTER_AREA)
        r = small / size
        to_crop = compose_affine(np.array([[r, 0.0, 0.5 * r - 0.5], [0.0, r, 0.5 * r - 0.5]]), to_crop)
        interpolation = cv2.INTER_LINEAR
    else:
        interpolation = cv2.INTER_CUBIC
    warped = cv2.warpAffine(stack, to_crop, (x1 - x0, y1 - y0), flags=interpolation | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (x0, y0, x1, y1), warped


def mask_on_canvas(mask: np.ndarray, affine: np.ndarray, canvas_shape) -> tuple[tuple[int, ...], np.ndarray] | None:
    """A crop's paste mask (S × S) where ``paste_face`` puts it on the canvas: ((x0, y0, x1, y1), the mask over
    that region, HW float32 in [0, 1]), or None when the crop lies entirely outside the canvas."""
    found = _warp_back(mask.astype(np.float32)[..., None], np.asarray(affine, dtype=np.float64), canvas_shape)
    if found is None:
        return None
    box, warped = found
    return box, np.clip(warped.reshape(warped.shape[:2]), 0.0, 1.0)


def paste_face(canvas: np.ndarray, face: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> None:
    """Blend one restored crop into ``canvas`` (HWC uint8 RGB, modified in place) through ``mask``."""
    found = _warp_back(np.dstack([face.astype(np.float32), mask.astype(np.float32)]), affine, canvas.shape)
    if found is None:
        return  # the crop lies entirely outside the canvas
    (x0, y0, x1, y1), warped = found
    alpha = np.clip(warped[..., 3:4], 0.0, 1.0)
    roi = canvas[y0:y1, x0:x1]
    blended = roi.astype(np.float32)
    blended += alpha * (warped[..., :3] - blended)
    canvas[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def paste_change(canvas: np.ndarray, base: np.ndarray, change: np.ndarray, affine: np.ndarray,
                 mask: np.ndarray) -> None:
    """Paste ``base + change`` through ``mask`` into ``canvas`` (in place): ``change`` (HWC float32, a crop of
    any size with its ``affine`` canvas → crop) is a difference to the unpasted canvas ``base``, so where the
    change is 0 the output is ``base`` pixel for pixel, with no resampling of the face itself."""
    found = _warp_back(np.dstack([change.astype(np.float32), mask.astype(np.float32)]), affine, canvas.shape)
    if found is None:
        return
    (x0, y0, x1, y1), warped = found
    alpha = np.clip(warped[..., 3:4], 0.0, 1.0)
    target = base[y0:y1, x0:x1].astype(np.float32) + warped[..., :3]
    blended = canvas[y0:y1, x0:x1].astype(np.float32)
    blended += alpha * (target - blended)
    canvas[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def paste_faces(
    canvas: np.ndarray,
    faces: Sequence[np.ndarray],
    affines: Sequence[np.ndarray],
    references: Sequence[np.ndarray] | None = None,
    color_match: bool = True,
    color_method: str = "adain",
    masks: Sequence[np.ndarray | None] | None = None,
    mask_shape: str = "square",
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Paste every restored face into a copy of ``canvas``.

    ``faces``: restored crops (HWC uint8 RGB squares); ``affines``: canvas → crop (2, 3) each;
    ``references``: the original crops, used for colour matching when ``color_match`` is on;
    ``masks``: optional per-face parsing masks (see ``face_mask``).
    Returns (new canvas, the faces as pasted, i.e. after colour matching).
    """
    if len(faces) != len(affines):
        raise ValueError(f"got {len(faces)} faces but {len(affines)} affines")
    if references is not None and len(references) != len(faces):
        raise ValueError(f"got {len(faces)} faces but {len(references)} reference crops")
    if masks is not None and len(masks) != len(faces):
        raise ValueError(f"got {len(faces)} faces but {len(masks)} masks")
    out = canvas.copy()
    pasted: list[np.ndarray] = []
    soft_masks: list[np.ndarray] = []
    for k, (face, affine) in enumerate(zip(faces, affines)):
        if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1] or face.dtype != np.uint8:
            raise ValueError(f"face {k} must be a square HWC uint8 RGB crop; got {face.shape} {face.dtype}")
        mask = face_mask(face.shape[0], mask_shape, None if masks is None else masks[k])
        if color_match and references is not None:
            weights = mask * inside_mask(affine, face.shape[0], canvas.shape)
            face = match_color(face, references[k], weights=weights, method=color_method)
        pasted.append(face)
        soft_masks.append(mask)
    # smaller faces first: a larger (usually nearer) face ends up on top where two overlap
    order = sorted(range(len(faces)), key=lambda k: -affine_scale(affines[k]))
    for k in order:
        paste_face(out, pasted[k], np.asarray(affines[k], dtype=np.float64), soft_masks[k])
    return out, pasted
