"""The metric registry: a plain dict of ``MetricSpec`` (no import-time scanning), and pyiqa availability.

Every metric of the OSDFace evaluation (SPEC §7.2, paper Tables 1–2) has one spec: what it compares
(``mode``: "FR" full-reference or "NR" no-reference; ``level``: per "image" or per "dataset"), the input
it expects, whether higher is better, and who computes it (``backend``):

- ``"builtin"``: our own code in ``osdface.metrics`` (``function`` names it; ``None`` = planned, not
  implemented yet). Deg., LMD and FID are builtin and need local weight files (``weights``); ID (dlib)
  needs the optional ``identity`` extra (dlib and its models, ``osdface.models.dlib_identity``); the
  dataset-level FID specs are computed by ``osdface.metrics.evaluate`` from accumulated features;
- ``"pyiqa"``: ``pyiqa.create_metric(pyiqa_name, **pyiqa_options)``, called with ``pyiqa_call_options``
  (FID's reference statistics). pyiqa imports torchvision, so it is an optional extra.

For a builtin spec, ``pyiqa_name``/``pyiqa_options`` name the pyiqa metric it reproduces (NIQE, FID).
Nothing here imports torch, pyiqa or torchvision.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

PYIQA_VERSION = "0.1.12"  # the version OSDFace's requirements pin (SPEC §7.2)
PYIQA_INPUT = "float tensor (N, 3, H, W) in [0, 1]"  # what every pyiqa metric takes
AVAILABLE = "available"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: identity, direction, input contract and backend."""

    name: str  # registry key, also the CSV/JSON column name
    label: str  # column header in the paper's tables
    mode: str  # "FR" (needs the ground truth) or "NR"
    level: str  # "image" (one score per image, averaged) or "dataset" (one score per set, e.g. FID)
    higher_is_better: bool
    input_range: str
    color_space: str
    backend: str  # "builtin" or "pyiqa"
    function: str | None = None  # builtin: "module:function"; None for a planned metric
    function_kwargs: dict[str, Any] = field(default_factory=dict)
    pyiqa_name: str | None = None
    pyiqa_options: dict[str, Any] = field(default_factory=dict)  # create_metric(**options)
    pyiqa_call_options: dict[str, Any] = field(default_factory=dict)  # metric(..., **call_options)
    weights: str = "none"  # what pretrained weights the metric needs
    notes: str = ""


_BUILTIN_INPUT = "uint8 HWC RGB [0, 255], or (N, 3, H, W) float tensor in [-1, 1]"

_SPECS = [
    # ----------------------------------------------------------------- builtin, weight-free
    MetricSpec(
        name="psnr",
        label="PSNR",
        mode="FR",
        level="image",
        higher_is_better=True,
        input_range=_BUILTIN_INPUT,
        color_space="RGB",
        backend="builtin",
        function="osdface.metrics.full_reference:compute_psnr",
        function_kwargs={"test_y_channel": False},
        notes="basicsr calculate_psnr; inf for identical images.",
    ),
    MetricSpec(
        name="psnr_y",
        label="PSNR(Y)",
        mode="FR",
        level="image",
        higher_is_better=True,
        input_range=_BUILTIN_INPUT,
        color_space="Y of BT.601 YCbCr [16, 235]",
        backend="builtin",
        function="osdface.metrics.full_reference:compute_psnr",
        function_kwargs={"test_y_channel": True},
        notes="basicsr calculate_psnr(test_y_channel=True).",
    ),
    MetricSpec(
        name="ssim",
        label="SSIM",
        mode="FR",
        level="image",
        higher_is_better=True,
        input_range=_BUILTIN_INPUT,
        color_space="RGB (mean of per-channel SSIM)",
        backend="builtin",
        function="osdface.metrics.full_reference:compute_ssim",
        function_kwargs={"test_y_channel": False},
        notes="basicsr calculate_ssim: 11x11 Gaussian window, sigma 1.5, valid region.",
    ),
    MetricSpec(
        name="ssim_y",
        label="SSIM(Y)",
        mode="FR",
        level="image",
        higher_is_better=True,
        input_range=_BUILTIN_INPUT,
        color_space="Y of BT.601 YCbCr [16, 235]",
        backend="builtin",
        function="osdface.metrics.full_reference:compute_ssim",
        function_kwargs={"test_y_channel": True},
        notes="basicsr calculate_ssim(test_y_channel=True).",
    ),
    MetricSpec(
        name="niqe",
        label="NIQE",
        mode="NR",
        level="image",
        higher_is_better=False,
        input_range=_BUILTIN_INPUT,
        color_space="Y of YIQ (0.299 R + 0.587 G + 0.114 B), rounded",
        backend="builtin",
        function="osdface.metrics.niqe:compute_niqe",
        function_kwargs={"color_space": "yiq", "numerics": "pyiqa"},
        pyiqa_name="niqe",
        pyiqa_options={"test_y_channel": True},
        weights="pristine model niqe_pris_params.npz (shipped)",
        notes="Reproduces pyiqa 0.1.12 'niqe' (its default colour space is YIQ, whatever test_y_channel).",
    ),
    # ----------------------------------------------------------------- pyiqa-backed (SPEC §7.2)
    MetricSpec(
        name="lpips",
        label="LPIPS",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="lpips",
        pyiqa_options={"net": "alex", "version": "0.1"},
        weights="AlexNet (torchvision) + LPIPS v0.1 linear layers",
        notes="DAEFR's script uses lpips.LPIPS() (alex); VQFR's uses net='vgg' (see lpips_vgg). "
        "Which one OSDFace used is unknown.",
    ),
    MetricSpec(
        name="lpips_vgg",
        label="LPIPS(VGG)",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="lpips-vgg",
        pyiqa_options={"net": "vgg", "version": "0.1"},
        weights="VGG16 (torchvision) + LPIPS v0.1 linear layers",
        notes="VQFR's metric script: lpips.LPIPS(net='vgg') on [-1, 1] RGB (pyiqa rescales [0, 1] itself).",
    ),
    MetricSpec(
        name="dists",
        label="DISTS",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="dists",
        pyiqa_options={},
        weights="VGG16 with L2pooling + DISTS alpha/beta",
    ),
    MetricSpec(
        name="musiq",
        label="MUSIQ",
        mode="NR",
        level="image",
        higher_is_better=True,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="musiq",
        pyiqa_options={"pretrained": "koniq10k"},
        weights="MUSIQ trained on KonIQ-10k",
    ),
    MetricSpec(
        name="niqe_pyiqa",
        label="NIQE",
        mode="NR",
        level="image",
        higher_is_better=False,
        input_range=PYIQA_INPUT,
        color_space="Y of YIQ, rounded",
        backend="pyiqa",
        pyiqa_name="niqe",
        pyiqa_options={"test_y_channel": True},
        weights="niqe_modelparameters.mat (pyiqa download)",
        notes="Cross-check of the builtin 'niqe'.",
    ),
    MetricSpec(
        name="clipiqa",
        label="CLIPIQA",
        mode="NR",
        level="image",
        higher_is_better=True,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="clipiqa",
        pyiqa_options={},
        weights="CLIP ResNet-50 + CLIP-IQA prompts",
    ),
    MetricSpec(
        name="maniqa",
        label="MANIQA",
        mode="NR",
        level="image",
        higher_is_better=True,
        input_range=PYIQA_INPUT,
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="maniqa",
        pyiqa_options={"train_dataset": "koniq", "scale": 0.8},
        weights="MANIQA (ViT-B/8) trained on KonIQ-10k",
    ),
    MetricSpec(
        name="fid_ffhq",
        label="FID(FFHQ)",
        mode="NR",
        level="dataset",
        higher_is_better=False,
        input_range="a folder of uint8 RGB images, resized to 299x299 (clean: PIL bicubic; pytorch-fid: bilinear)",
        color_space="RGB",
        backend="builtin",
        function="osdface.metrics.fid:compute_fid",
        pyiqa_name="fid",
        pyiqa_options={},
        pyiqa_call_options={
            "dataset_name": "FFHQ",
            "dataset_res": 512,
            "mode": "clean",
            "dataset_split": "trainval70k",
        },
        weights="Inception-v3 pt_inception-2015-12-05-6726825d.pth + FFHQ statistics "
        "(ffhq_clean_trainval70k_512.npz or inception_FFHQ_512-f7b384ab.pth, or a folder: --fid-ref)",
        notes="Paper Table 2's 'FID' is this one (FFHQ as reference). Which FFHQ statistics OSDFace used "
        "is unknown (SPEC §7.2); the basicsr/VQFR route uses inception_FFHQ_512-f7b384ab.pth instead. "
        "pyiqa's clean-fid is 'fid_ffhq_pyiqa'.",
    ),
    MetricSpec(
        name="fid_hq",
        label="FID(HQ)",
        mode="FR",
        level="dataset",
        higher_is_better=False,
        input_range="two folders of uint8 RGB images (restored, ground truth), resized to 299x299",
        color_space="RGB",
        backend="builtin",
        function="osdface.metrics.fid:compute_fid",
        pyiqa_name="fid",
        pyiqa_options={},
        pyiqa_call_options={"mode": "clean"},
        weights="Inception-v3 pt_inception-2015-12-05-6726825d.pth",
        notes="Restored set against the 3000 CelebA-Test ground truths (the paired GT images). "
        "pyiqa's clean-fid is 'fid_hq_pyiqa'.",
    ),
    MetricSpec(
        name="fid_ffhq_pyiqa",
        label="FID(FFHQ)",
        mode="NR",
        level="dataset",
        higher_is_better=False,
        input_range="a folder of images",
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="fid",
        pyiqa_options={},
        pyiqa_call_options={
            "dataset_name": "FFHQ",
            "dataset_res": 512,
            "mode": "clean",
            "dataset_split": "trainval70k",
        },
        weights="Inception-v3 (clean-fid) + ffhq_clean_trainval70k_512.npz statistics",
        notes="Cross-check of the builtin 'fid_ffhq' through pyiqa/clean-fid (SPEC §7.2).",
    ),
    MetricSpec(
        name="fid_hq_pyiqa",
        label="FID(HQ)",
        mode="FR",
        level="dataset",
        higher_is_better=False,
        input_range="two folders of images (restored, ground truth)",
        color_space="RGB",
        backend="pyiqa",
        pyiqa_name="fid",
        pyiqa_options={},
        pyiqa_call_options={"mode": "clean"},
        weights="Inception-v3 (clean-fid)",
        notes="Cross-check of the builtin 'fid_hq' through pyiqa/clean-fid (fdir2 = GT folder).",
    ),
    # ----------------------------------------------------------------- builtin, local weights (SPEC §7.3–7.4)
    MetricSpec(
        name="deg",
        label="Deg.",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range="image file read as gray (cv2.imread(path, 0)), resized to 128x128 (cv2 INTER_LINEAR), "
        "(x - 127.5) / 127.5",
        color_space="gray (the OpenCV decoder's)",
        backend="builtin",
        function="osdface.metrics.identity:compute_deg",
        weights="ArcFace resnet_face18 (use_se=False): resnet18_110.pth or arcface_resnet18.pth",
        notes="Identity angle in degrees, arccos of the embedding cosine (SPEC §7.3); pairs with deg < 1 "
        "are excluded from the mean (VQFR), and counted.",
    ),
    MetricSpec(
        name="id_dlib",
        label="ID (dlib)",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range="uint8 HWC RGB FFHQ-aligned crops, any size (the restored one resized to the ground truth's)",
        color_space="RGB",
        backend="builtin",
        function="osdface.metrics.identity:compute_dlib_distance",
        weights="dlib's shape_predictor_5_face_landmarks.dat + dlib_face_recognition_resnet_model_v1.dat "
        "(pip install 'osdface[identity]')",
        notes="Not in the paper: Euclidean distance of dlib's 128-d face descriptors, restored vs ground "
        "truth, both on the 5 landmarks fitted on the ground truth (osdface.models.dlib_identity). "
        "Lower is better; the same person is usually < 0.6.",
    ),
    MetricSpec(
        name="lmd",
        label="LMD",
        mode="FR",
        level="image",
        higher_is_better=False,
        input_range="uint8 image resized to 256x256 (cv2 INTER_LINEAR), RGB / 255",
        color_space="RGB",
        backend="builtin",
        function="osdface.metrics.landmarks:compute_lmd",
        weights="AWing FAN 4HG, 98 WFLW landmarks (alignment_WFLW_4HG.pth)",
        notes="Mean Euclidean distance of the 98 landmarks in pixels of the input (512 px for CelebA-Test) "
        "(SPEC §7.4).",
    ),
]

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> MetricSpec:
    """The spec of ``name``; a KeyError lists the known names."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


# ----------------------------------------------------------------------------- availability


@functools.lru_cache(maxsize=1)
def pyiqa_status() -> str:
    """``"available"`` if ``import pyiqa`` works here, else ``"unavailable: <reason>"``.

    pyiqa and torchvision are looked up with ``importlib.util.find_spec`` first, so nothing is imported
    when either is missing. torchvision is imported before pyiqa (a CUDA torchvision next to a CPU torch
    fails with "operator torchvision::nms does not exist"); pyiqa only when torchvision works.
    """
    if importlib.util.find_spec("pyiqa") is None:
        return (
            "unavailable: pyiqa is not installed (pip install 'osdface[metrics]', which needs a torch "
            "install with a matching torchvision)"
        )
    if importlib.util.find_spec("torchvision") is None:
        return "unavailable: pyiqa is installed but torchvision, which it imports, is not"
    for module in ("torchvision", "pyiqa"):
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure is a reason to report, not to crash
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return f"unavailable: import {module} failed ({type(err).__name__}: {reason})"
    return AVAILABLE


def is_pyiqa_available() -> bool:
    """True when ``pyiqa_status()`` is ``"available"``."""
    return pyiqa_status() == AVAILABLE


def metric_status(name: str) -> str:
    """``"available"`` or ``"unavailable: <reason>"`` for one metric (a planned metric says so).

    pyiqa metrics still need their weights: pyiqa downloads them on first use, so offline they must
    already be in its cache. ID (dlib) needs the ``identity`` extra. The builtin Deg., LMD and FID need
    local weight files (``spec.weights``);
    ``osdface.metrics.evaluate`` reports a missing one as the reason the metric is unavailable.
    """
    spec = get_spec(name)
    if spec.backend == "pyiqa":
        return pyiqa_status()
    if spec.function is None:
        return f"unavailable: {spec.label} is not implemented yet (needs {spec.weights})"
    if name == "id_dlib":
        from ..models.dlib_identity import IDENTITY_MISSING, identity_available

        if not identity_available():
            return f"unavailable: {IDENTITY_MISSING}"
    return AVAILABLE


def pyiqa_create_kwargs(name: str) -> dict[str, Any]:
    """Keyword arguments for ``pyiqa.create_metric`` for a pyiqa-backed (or pyiqa-reproducing) metric."""
    spec = get_spec(name)
    if spec.pyiqa_name is None:
        raise ValueError(f"metric {name!r} has no pyiqa counterpart")
    return {"metric_name": spec.pyiqa_name, **spec.pyiqa_options}


def resolve_function(name: str):
    """The builtin callable of ``name`` (imported on demand), with its fixed keyword arguments bound."""
    spec = get_spec(name)
    if spec.backend != "builtin" or spec.function is None:
        raise ValueError(f"metric {name!r} has no builtin implementation ({metric_status(name)})")
    module_name, func_name = spec.function.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return functools.partial(func, **spec.function_kwargs) if spec.function_kwargs else func
