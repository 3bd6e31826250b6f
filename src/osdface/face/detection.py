"""Face detection interface: the ``Detection`` record, the ``FaceDetector`` protocol and a registry.

A detector takes one HWC uint8 RGB image and returns ``Detection`` records in that image's pixel
coordinates (x to the right, y down, pixel centres at integer coordinates). Five landmarks are
always given in this order, as seen by the viewer: left eye, right eye, nose tip, left mouth
corner, right mouth corner ("left" = smaller x in an upright face).

Plugging in another detector (e.g. RetinaFace with weights from a local file)::

    from osdface.face import Detection, register_detector, create_detector

    class MyRetinaFace:
        def __init__(self, weights: str, device: str = "cpu"): ...
        def detect(self, image):  # HWC uint8 RGB
            return [Detection(box=..., score=..., landmarks5=...)]

    register_detector("retinaface", MyRetinaFace)
    detector = create_detector("retinaface", weights="/models/retinaface.pth")

Factories take keyword arguments only; by convention ``weights`` names a local file or folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class Detection:
    """One face: ``box`` (4,) float xyxy, ``score`` in [0, 1], ``landmarks5`` (5, 2) float xy."""

    box: np.ndarray
    score: float
    landmarks5: np.ndarray

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float64).reshape(-1)
        landmarks = np.asarray(self.landmarks5, dtype=np.float64)
        if box.shape != (4,):
            raise ValueError(f"Detection.box must hold 4 numbers (x1, y1, x2, y2); got shape {box.shape}")
        if landmarks.shape != (5, 2):
            raise ValueError(f"Detection.landmarks5 must have shape (5, 2); got {landmarks.shape}")
        if not (np.isfinite(box).all() and np.isfinite(landmarks).all()):
            raise ValueError("Detection box and landmarks must be finite numbers")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks5", landmarks)
        object.__setattr__(self, "score", float(self.score))

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2.0, float(self.box[1] + self.box[3]) / 2.0


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(image: HWC uint8 RGB) -> list[Detection]``."""

    def detect(self, image: np.ndarray) -> list[Detection]: ...


def check_rgb_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Raise ValueError unless ``image`` is an HWC uint8 array with 3 channels; return it unchanged."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array (HWC uint8 RGB); got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be HWC with 3 channels (RGB); got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0..255); got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty; got shape {image.shape}")
    return image


# ----------------------------------------------------------------------------- registry

DetectorFactory = Callable[..., FaceDetector]
DETECTORS: dict[str, DetectorFactory] = {}


def register_detector(name: str, factory: DetectorFactory, *, overwrite: bool = False) -> None:
    """Make ``create_detector(name, **kwargs)`` call ``factory(**kwargs)``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"detector name must be a non-empty string; got {name!r}")
    if name in DETECTORS and not overwrite:
        raise ValueError(f"detector {name!r} is already registered (pass overwrite=True to replace it)")
    DETECTORS[name] = factory


def create_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
    """Build a registered detector by name; keyword arguments go to its factory."""
    if name not in DETECTORS:
        known = ", ".join(sorted(DETECTORS)) or "none"
        raise ValueError(f"unknown face detector {name!r}; registered: {known}")
    detector = DETECTORS[name](**kwargs)
    if not isinstance(detector, FaceDetector):
        raise TypeError(
            f"factory for detector {name!r} returned {type(detector).__name__}, which has no detect()"
        )
    return detector
