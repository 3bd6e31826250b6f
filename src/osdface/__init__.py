"""osdface: one-step diffusion face restoration (OSDFace, CVPR 2025), reproduced.

Public API (imported lazily so that ``import osdface`` and ``osdface --help`` stay fast)::

    from osdface import OSDFacePipeline
    pipe = OSDFacePipeline.from_official("weights/osdface-release", sd_model="weights/stable-diffusion-2-1-base")
    restored = pipe([face_a, face_b]).images   # PIL images in, PIL images out
"""

__version__ = "0.1.0"

_LAZY = {
    "OSDFacePipeline": "osdface.pipeline",
    "OSDFacePipelineOutput": "osdface.pipeline",
    "VisualRepresentationEmbedder": "osdface.models.vre",
    "PromptAdapter": "osdface.models.adapter",
    "OSDFaceError": "osdface.errors",
    "WeightsNotFoundError": "osdface.errors",
    "WeightsFormatError": "osdface.errors",
    "ImageReadError": "osdface.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'osdface' has no attribute {name!r}")
