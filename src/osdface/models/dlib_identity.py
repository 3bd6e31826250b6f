"""dlib's 128-d face descriptor on FFHQ-aligned crops: an offline identity measure (the ``identity`` extra).

dlib's ResNet face recogniser (``dlib_face_recognition_resnet_model_v1.dat``, from the
``face-recognition-models`` package) maps a face to a 128-d descriptor; two photos of one person are
usually closer than 0.6 (Euclidean), two people further apart. The crops here are already aligned to the
FFHQ template, so no detector runs: the 5-point shape predictor is fitted inside a fixed rectangle,
where dlib's HOG detector puts the face in an FFHQ-aligned crop (``FFHQ_BOX``, measured on 40 ffhq512
faces). To compare two versions of one face (restored vs input, restored vs ground truth) on exactly
the same geometry, the landmarks of the reference crop are used for both.

    from osdface.models.dlib_identity import DlibIdentity, identity_available
    if identity_available():
        ident = DlibIdentity()
        d = ident.distance(input_crop, restored_crop)        # float, 0 for identical crops
        ds = ident.distances(gt_crops, restored_crops)       # (N,) float64

Install: ``pip install 'osdface[identity]'`` (dlib-bin and face-recognition-models; no torch, no download).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import WeightsNotFoundError

SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
RESNET_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
FFHQ_BOX = (0.195, 0.313, 0.788, 0.906)  # (left, top, right, bottom) × crop side: the HOG box in an FFHQ crop
IDENTITY_MISSING = ("the identity measure needs the 'identity' extra (dlib and its face models), which is not "
                    "installed: pip install 'osdface[identity]'")


def _model_dir() -> Path | None:
    """face_recognition_models' models/ folder, found without importing the package (its __init__ needs
    pkg_resources, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.lru_cache(maxsize=1)
def identity_available() -> bool:
    """True when dlib imports and both model files are found."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    folder = _model_dir()
    return folder is not None and all((folder / name).is_file() for name in (SHAPE_MODEL, RESNET_MODEL))


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB (a gray HW or HW1 image is repeated on three channels), C-contiguous for dlib."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected HWC RGB or HW gray, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _resize_to(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size_hw``: INTER_AREA when shrinking, INTER_CUBIC when enlarging."""
    if image.shape[:2] == tuple(size_hw):
        return image
    shrink = image.shape[0] * image.shape[1] > size_hw[0] * size_hw[1]
    return cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


class DlibIdentity:
    """dlib's 5-point shape predictor and ResNet descriptor, loaded once (not meant for concurrent use)."""

    def __init__(self):
        if not identity_available():
            raise WeightsNotFoundError(IDENTITY_MISSING)
        import dlib

        self._dlib = dlib
        folder = _model_dir()
        self.predictor = dlib.shape_predictor(str(folder / SHAPE_MODEL))
        self.encoder = dlib.face_recognition_model_v1(str(folder / RESNET_MODEL))

    def _shape(self, image: np.ndarray):
        """The 5 landmarks, fitted inside ``FFHQ_BOX`` of this crop."""
        h, w = image.shape[:2]
        left, top, right, bottom = FFHQ_BOX
        box = self._dlib.rectangle(round(left * w), round(top * h), round(right * w), round(bottom * h))
        return self.predictor(image, box)

    def descriptors(self, crops: Sequence[np.ndarray], reference: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(N, 128) float64 descriptors of FFHQ-aligned crops (uint8 HWC RGB or HW gray, any size).

        With ``reference`` (crops of the same faces, same length), the landmarks come from each reference
        crop, and each crop is resized to its reference's size first.
        """
        if reference is not None and len(reference) != len(crops):
            raise ValueError(f"{len(crops)} crops but {len(reference)} reference crops")
        out = np.zeros((len(crops), 128), dtype=np.float64)
        for i, crop in enumerate(crops):
            # 1. uint8 RGB (H, W, 3); with a reference: at the reference's (H, W), landmarks fitted on it
            image = _rgb(crop)
            if reference is None:
                shape = self._shape(image)
            else:
                ref = _rgb(reference[i])
                image, shape = _resize_to(image, ref.shape[:2]), self._shape(ref)
            # 2. dlib aligns a 150×150 chip on the 5 points (padding 0.25) → 128-d descriptor
            out[i] = np.asarray(self.encoder.compute_face_descriptor(image, shape, num_jitters=0))
        return out

    def distances(self, references: Sequence[np.ndarray], crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) Euclidean descriptor distances of each crop from its reference crop, both with the landmarks
        of the reference crop (lower = more alike; 0 for identical crops)."""
        if len(references) != len(crops):
            raise ValueError(f"{len(references)} reference crops but {len(crops)} crops")
        ref = self.descriptors(references)
        return np.linalg.norm(self.descriptors(crops, reference=references) - ref, axis=1)

    def distance(self, reference_crop: np.ndarray, crop: np.ndarray) -> float:
        """The descriptor distance of one crop from its reference crop (see ``distances``)."""
        return float(self.distances([reference_crop], [crop])[0])
