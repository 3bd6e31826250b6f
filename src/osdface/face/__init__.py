"""Face handling for whole-photo restoration: detection, alignment, paste-back, the restorer.

Numpy images are HWC uint8 RGB. ``MTCNNDetector`` (torch) is imported only when first used.

    from osdface.face import FaceRestorer, create_detector
    restorer = FaceRestorer(restore_fn, detector=create_detector("mtcnn"), face_size=512, upscale=2)
    result = restorer(photo)
"""

from .alignment import (
    FFHQ_TEMPLATE_512,
    align_faces,
    estimate_affine,
    invert_affine,
    resize_affine,
    template_landmarks,
    warp_face,
)
from .color import match_color
from .detection import DETECTORS, Detection, FaceDetector, create_detector, register_detector
from .paste import face_mask, paste_face, paste_faces
from .restorer import BackgroundUpsampler, FaceRecord, FaceRestorer, RestoreResult

__all__ = [
    "DETECTORS",
    "FFHQ_TEMPLATE_512",
    "BackgroundUpsampler",
    "Detection",
    "FaceDetector",
    "FaceRecord",
    "FaceRestorer",
    "MTCNNDetector",
    "RestoreResult",
    "align_faces",
    "create_detector",
    "estimate_affine",
    "face_mask",
    "invert_affine",
    "match_color",
    "paste_face",
    "paste_faces",
    "register_detector",
    "resize_affine",
    "template_landmarks",
    "warp_face",
]


def _mtcnn_factory(**kwargs) -> FaceDetector:
    from .mtcnn import MTCNNDetector  # imported lazily: torch is only needed when it is used

    return MTCNNDetector(**kwargs)


# The built-in detector is registered here, not in detection.py, so that mtcnn.py (which uses the
# Detection record) and detection.py (the registry) do not import each other.
register_detector("mtcnn", _mtcnn_factory)


def __getattr__(name):
    if name == "MTCNNDetector":
        from .mtcnn import MTCNNDetector

        return MTCNNDetector
    raise AttributeError(f"module 'osdface.face' has no attribute {name!r}")
