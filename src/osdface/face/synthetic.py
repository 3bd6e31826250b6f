"""Synthetic group photos with known landmarks, for tests and demos of the face pipeline.

Copies of one real face (e.g. ``skimage.data.astronaut()`` with its five landmarks) are rotated,
scaled and blended onto a smooth textured background; the exact landmarks of every copy are
returned, so detectors and alignment can be checked without downloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .alignment import compose_affine, estimate_affine, transform_points

# Five landmarks of the face in skimage.data.astronaut() (512x512), measured once with MTCNN.
ASTRONAUT_LANDMARKS5 = np.array(
    [[204.3, 100.8], [247.0, 103.9], [224.5, 129.3], [201.2, 139.6], [244.9, 142.9]], dtype=np.float64
)


@dataclass(frozen=True)
class FacePlacement:
    """Where a face copy goes: centre of its FFHQ-aligned square (x, y), side in pixels, angle (deg, CCW)."""

    x: float
    y: float
    size: float
    angle: float = 0.0


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A face-free HWC uint8 RGB background: colour gradient plus blurred noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [90 + 60 * xx / max(width, 1), 110 + 40 * yy / max(height, 1), 140 - 30 * xx / max(width, 1)], 2
    )
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), 3)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def compose_group_photo(
    face_image: np.ndarray,
    face_landmarks5: np.ndarray,
    placements: Sequence[FacePlacement],
    height: int,
    width: int,
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Blend a copy of the face for each placement onto a background (later copies on top).

    ``face_image`` HWC uint8 RGB with its (5, 2) landmarks. Returns (photo HWC uint8 RGB,
    the (5, 2) landmarks of each copy in photo pixels).
    """
    sprite_size = 256
    to_sprite = estimate_affine(face_landmarks5, face_size=sprite_size, method="lstsq")
    sprite = cv2.warpAffine(
        face_image, to_sprite, (sprite_size, sprite_size), borderMode=cv2.BORDER_REFLECT_101
    )
    alpha = np.zeros((sprite_size, sprite_size), dtype=np.float32)
    centre = (sprite_size // 2, int(sprite_size * 0.52))
    cv2.ellipse(alpha, centre, (int(sprite_size * 0.38), int(sprite_size * 0.46)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), sprite_size * 0.03)

    photo = textured_background(height, width, seed).astype(np.float32)
    landmarks = []
    c = (sprite_size - 1) / 2.0
    for p in placements:
        scale = p.size / sprite_size
        rot = cv2.getRotationMatrix2D((c, c), p.angle, scale)  # about the sprite centre
        rot[:, 2] += np.array([p.x - c, p.y - c])  # sprite centre → (x, y)
        warped = cv2.warpAffine(sprite, rot, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
        a = cv2.warpAffine(alpha, rot, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        photo = photo * (1 - a) + warped * a
        landmarks.append(transform_points(compose_affine(rot, to_sprite), face_landmarks5))
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8), landmarks
