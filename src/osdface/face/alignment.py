"""Face alignment: the FFHQ 5-point template, similarity fits, and warping faces in and out.

An ``affine`` here is a (2, 3) float64 matrix mapping image pixel coordinates to face-crop pixel
coordinates (``crop_xy = A[:, :2] @ image_xy + A[:, 2]``), pixel centres at integers, as cv2 uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Left eye, right eye, nose tip, left and right mouth corners (viewer's left/right) in a 512x512 FFHQ crop.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
}


def template_landmarks(
    face_size: int = 512, template: np.ndarray | None = None, template_size: int = 512
) -> np.ndarray:
    """The (5, 2) template (default FFHQ, given at ``template_size``) scaled to a ``face_size`` crop."""
    points = FFHQ_TEMPLATE_512 if template is None else np.asarray(template, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"template must have shape (5, 2); got {points.shape}")
    return points * (face_size / template_size)


def similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Closed form (Umeyama without reflection); ``src``/``dst`` are (N, 2), N >= 2. Returns (2, 3).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    var = (s**2).sum()
    if var < 1e-12:
        raise ValueError("cannot fit a similarity transform: all landmarks are at the same point")
    # with points as complex numbers z, the best map is z -> c * z + t, c = sum(conj(s) d) / sum(|s|^2)
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst_mean - rot @ src_mean)[:, None]])


def estimate_affine(
    landmarks5: np.ndarray,
    template_size: int = 512,
    face_size: int = 512,
    template: np.ndarray | None = None,
    method: str = "lmeds",
) -> np.ndarray:
    """Similarity transform (2, 3) taking image landmarks (5, 2) onto the template in a ``face_size`` crop.

    ``method="lmeds"``: robust fit (cv2.estimateAffinePartial2D, LMEDS), falling back to least
    squares if it fails; ``"lstsq"``: least squares on all five points.
    """
    src = np.asarray(landmarks5, dtype=np.float64)
    if src.shape != (5, 2) or not np.isfinite(src).all():
        raise ValueError(f"landmarks5 must be a finite (5, 2) array; got shape {src.shape}")
    if method not in ("lmeds", "lstsq"):
        raise ValueError(f"method must be 'lmeds' or 'lstsq'; got {method!r}")
    dst = template_landmarks(face_size, template, template_size)
    if method == "lmeds":
        affine, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if affine is not None and np.isfinite(affine).all() and affine_scale(affine) > 1e-6:
            return affine.astype(np.float64)
    return similarity_lstsq(src, dst)


def affine_scale(affine: np.ndarray) -> float:
    """Linear scale of an affine (sqrt of |det|): crop pixels per image pixel for our affines."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:, :2]))))


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine (crop → image for our affines)."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``x -> outer(inner(x))``."""
    outer3 = np.vstack([outer, [0.0, 0.0, 1.0]])
    inner3 = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (outer3 @ inner3)[:2]


def resize_affine(affine: np.ndarray, from_hw: Sequence[int], to_hw: Sequence[int]) -> np.ndarray:
    """Re-express an image→crop affine for the same image resized from ``from_hw`` to ``to_hw`` (H, W).

    Uses cv2.resize's pixel-centre convention: ``x_from = (x_to + 0.5) * W_from / W_to - 0.5``.
    """
    sx, sy = from_hw[1] / to_hw[1], from_hw[0] / to_hw[0]
    to_from = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return compose_affine(affine, to_from)


def transform_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


def crop_bounds(
    affine: np.ndarray, face_size: int, image_hw: Sequence[int], margin: float = 2.0
) -> tuple[int, ...]:
    """Integer (x0, y0, x1, y1) of the image region under a ``face_size`` crop, padded, clipped."""
    corners = np.array(
        [[-0.5, -0.5], [face_size - 0.5, -0.5], [-0.5, face_size - 0.5], [face_size - 0.5] * 2]
    )
    pts = transform_points(invert_affine(affine), corners)
    x0, y0 = np.floor(pts.min(0) - margin).astype(int)
    x1, y1 = np.ceil(pts.max(0) + margin).astype(int) + 1
    h, w = image_hw[:2]
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def warp_face(
    image: np.ndarray,
    affine: np.ndarray,
    face_size: int = 512,
    border: str = "reflect",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Cut the aligned ``face_size`` square crop out of ``image`` (HWC uint8 RGB) with ``affine``.

    Faces larger than twice the crop are first shrunk with area averaging (no aliasing).
    ``border`` fills what lies outside the image: "reflect" (default), "replicate" or "constant" (0).
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}; got {border!r}")
    affine = np.asarray(affine, dtype=np.float64)
    scale = affine_scale(affine)
    if scale < 0.5:
        x0, y0, x1, y1 = crop_bounds(affine, face_size, image.shape, margin=2.0 / scale)
        if x1 > x0 and y1 > y0:
            roi = image[y0:y1, x0:x1]
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
            shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])  # image → roi
            affine = resize_affine(compose_affine(affine, invert_affine(shift)), roi.shape, small.shape)
            image = small
            # a roi edge that is not an image edge is >= 2 crop pixels outside the crop: never sampled
    return cv2.warpAffine(
        image, affine, (face_size, face_size), flags=interpolation, borderMode=_BORDERS[border], borderValue=0
    )


def inside_mask(affine: np.ndarray, face_size: int, canvas_hw: Sequence[int]) -> np.ndarray:
    """(face_size, face_size) float32: 1 where a pixel of the crop ``warp_face`` cuts with ``affine`` (canvas →
    crop) comes from inside the canvas (``canvas_hw``), 0 where it lies outside (filled by reflection)."""
    inv = invert_affine(affine)
    h, w = canvas_hw[:2]
    corners = transform_points(inv, [[0, 0], [face_size - 1, 0], [0, face_size - 1], [face_size - 1] * 2])
    if (corners >= -0.5).all() and (corners[:, 0] <= w - 0.5).all() and (corners[:, 1] <= h - 0.5).all():
        return np.ones((face_size, face_size), dtype=np.float32)  # the common case: crop fully inside
    grid = np.arange(face_size, dtype=np.float64)
    x = inv[0, 0] * grid[None, :] + inv[0, 1] * grid[:, None] + inv[0, 2]
    y = inv[1, 0] * grid[None, :] + inv[1, 1] * grid[:, None] + inv[1, 2]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    return inside.astype(np.float32)


def outside_fraction(affine: np.ndarray, image_hw: Sequence[int], face_size: int = 512) -> float:
    """The share of a ``face_size`` crop that lies outside the photo (filled by reflection), in [0, 1]."""
    return float(1.0 - inside_mask(affine, face_size, image_hw).mean())


def align_faces(
    image: np.ndarray,
    landmarks: Sequence[np.ndarray],
    face_size: int = 512,
    method: str = "lmeds",
    border: str = "reflect",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Affines and aligned crops for every (5, 2) landmark set in ``landmarks``."""
    affines = [estimate_affine(p, face_size=face_size, method=method) for p in landmarks]
    crops = [warp_face(image, a, face_size, border=border) for a in affines]
    return affines, crops
