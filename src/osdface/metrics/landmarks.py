"""LMD: the mean distance between the 98 facial landmarks of a restored face and of its ground truth.

As VQFR's ``metric_paper/calculate_landmark_distance.py`` with ``FAN.get_landmarks`` (SPEC §7.4):

1. the image (uint8, any size H×W) is resized to 256×256 with ``cv2.resize`` (INTER_LINEAR, on uint8), in
   RGB order, and divided by 255 → (3, 256, 256) in [0, 1] (VQFR resizes the BGR image and then flips it
   to RGB: the same numbers);
2. the AWing FAN (``osdface.models.fan``, weights ``alignment_WFLW_4HG.pth``) → the last stack's 98
   landmark heatmaps (64×64; the 99th, boundary, channel is dropped);
3. ``calculate_points``: arg-max with a quarter-pixel step towards the larger neighbour, + 0.5, with the
   AWing code's border quirks (``quirks=True``);
4. coordinates are scaled by (W/64, H/64) to the input image's pixels (at 512×512: ×8);
5. LMD of a pair = mean over the 98 points of the Euclidean distance; the dataset value is the plain mean
   over pairs.

Inputs: uint8 HWC RGB arrays (read the files with ``osdface.image_utils.read_image``). Landmarks are
in pixels of each image, so a pair should have the same size for the distance to mean what the paper's
does (512×512 for CelebA-Test).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..models.fan import calculate_points

FAN_INPUT = 256


def fan_input(image: np.ndarray, size: int = FAN_INPUT) -> torch.Tensor:
    """uint8 HWC RGB → (3, size, size) float32 in [0, 1] (cv2 INTER_LINEAR resize on uint8, then / 255)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 HWC RGB, got {image.dtype} {image.shape}")
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0


def heatmaps_to_landmarks(heatmaps: np.ndarray, image_sizes: Sequence[tuple[int, int]],
                          quirks: bool = True) -> np.ndarray:
    """(B, N, h, w) heatmaps and each image's (H, W) → (B, N, 2) float64 (x, y) in image pixels."""
    points = calculate_points(heatmaps, quirks=quirks)  # heatmap pixels
    h, w = heatmaps.shape[-2:]
    scale = np.array([[[width / w, height / h]] for height, width in image_sizes], dtype=np.float64)
    return points * scale


@torch.no_grad()
def detect_landmarks(model, images: Sequence[np.ndarray], batch_size: int = 8, quirks: bool = True) -> np.ndarray:
    """(N, L, 2) landmarks (x, y) in each image's pixels, for uint8 HWC RGB images of any size."""
    param = next(model.parameters())
    size = getattr(model, "input_size", FAN_INPUT)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        x = torch.stack([fan_input(im, size) for im in chunk]).to(param.device, param.dtype)
        heatmaps = model.landmark_heatmaps(x).float().cpu().numpy()
        out.append(heatmaps_to_landmarks(heatmaps, [im.shape[:2] for im in chunk], quirks))
    return np.concatenate(out) if out else np.zeros((0, 0, 2))


def landmark_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance over the points: (N, L, 2) × (N, L, 2) → (N,) float64 (or (L, 2) → scalar)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.shape[-1] != 2:
        raise ValueError(f"need two (..., L, 2) arrays of the same shape, got {a.shape} and {b.shape}")
    return np.sqrt(((a - b) ** 2).sum(axis=-1)).mean(axis=-1)


def compute_lmd(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], model=None, batch_size: int = 8,
                weights=None, device: str | torch.device = "cpu") -> np.ndarray:
    """LMD per pair, (N,) float64 in pixels of the input images (lower is better).

    Input range / colour space: uint8 HWC RGB images, any size (resized to 256×256 for the network; the
    distance is measured at the images' own resolution). ``model``: a loaded FAN; default
    ``load_fan(weights)``.
    """
    if len(pred) != len(gt):
        raise ValueError(f"pred has {len(pred)} images but gt has {len(gt)}")
    if model is None:
        from ..models.fan import load_fan

        model = load_fan(weights, device=device)
    if not len(pred):
        return np.zeros(0)
    return landmark_distance(detect_landmarks(model, list(pred), batch_size),
                             detect_landmarks(model, list(gt), batch_size))
