"""What the metric runners of one ``evaluate_folders`` call share: models, FID reference, caches.

``_Resources`` loads the ArcFace / FAN / Inception / dlib identity models (``weights_dir``, or preloaded ``models``) and
the pyiqa metrics once, finds or computes the FFHQ reference statistics for FID, and caches ground-truth
embeddings, landmarks, Inception features and dlib descriptors per file. ``_Batch`` is one batch of decoded images;
``_Unavailable`` is raised when a metric cannot run, its message being the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import OSDFaceError
from .registry import pyiqa_create_kwargs

PathLike = str | Path


class _Unavailable(Exception):
    """A metric cannot run; the message is the reason."""


@dataclass
class _Batch:
    names: list[str]
    pred_paths: list[Path]
    gt_paths: list[Path] | None
    pred: list[np.ndarray]  # uint8 HWC RGB
    gt: list[np.ndarray] | None


class _Resources:
    """Models, reference statistics and ground-truth caches shared by every method of one call."""

    def __init__(self, device: torch.device, batch_size: int, weights_dir: PathLike | None,
                 models: Mapping[str, Any] | None, fid_ref: PathLike | None, fid_mode: str, progress: bool):
        self.device, self.batch_size, self.progress = device, batch_size, progress
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir else None
        self.fid_ref, self.fid_mode_option = fid_ref, fid_mode
        self._models: dict[str, Any] = dict(models or {})
        self._failed: dict[str, str] = {}
        self.gt_cache: dict[tuple, Any] = {}  # (kind, [mode,] gt path) → embedding / landmarks / features
        self.batch_cache: dict[str, Any] = {}  # what several runners share for the current batch
        self._fid_reference = None
        self.reference_problems: list[str] = []

    def model(self, kind: str):
        """The loaded "arcface" / "fan" / "inception" / "dlib_identity" model; raises _Unavailable with the
        load error (for dlib: the identity extra is not installed)."""
        if kind in self._models:
            return self._models[kind]
        if kind in self._failed:
            raise _Unavailable(self._failed[kind])
        try:
            if kind == "arcface":
                from ..models.arcface import default_arcface_path, load_arcface

                model = load_arcface(default_arcface_path(self.weights_dir), self.device)
            elif kind == "fan":
                from ..models.fan import default_fan_path, load_fan

                model = load_fan(default_fan_path(self.weights_dir), self.device)
            elif kind == "inception":
                from ..models.inception import default_inception_path, load_fid_inception

                model = load_fid_inception(default_inception_path(self.weights_dir), self.device)
            elif kind == "dlib_identity":
                from ..models.dlib_identity import DlibIdentity

                model = DlibIdentity()
            else:
                raise ValueError(f"unknown model kind {kind!r}")
        except OSDFaceError as err:
            self._failed[kind] = str(err)
            raise _Unavailable(str(err)) from None
        self._models[kind] = model
        return model

    def pyiqa_metric(self, name: str):
        """``pyiqa.create_metric`` for a registry name, created once; raises _Unavailable on failure."""
        key = f"pyiqa:{name}"
        if key in self._failed:
            raise _Unavailable(self._failed[key])
        if key not in self._models:
            try:
                import pyiqa

                self._models[key] = pyiqa.create_metric(**pyiqa_create_kwargs(name), device=self.device)
            except Exception as err:  # noqa: BLE001 - e.g. weights that cannot be downloaded offline
                self._failed[key] = f"pyiqa.create_metric failed ({type(err).__name__}: {err})"
                raise _Unavailable(self._failed[key]) from None
        return self._models[key]

    def metrics_folder(self) -> Path:
        from ..state_dicts import metric_weights_dir

        return metric_weights_dir(self.weights_dir)

    @property
    def fid_mode(self) -> str:
        """The FID preprocessing: the option, or (auto) the reference file's, else "clean"."""
        if self.fid_mode_option != "auto":
            return self.fid_mode_option
        ref = self._reference_file()
        if ref is not None and ref[1] is not None:
            return ref[1]
        return "clean"

    def _reference_file(self) -> tuple[Path, str | None] | None:
        """(path, mode implied) of the FFHQ statistics: --fid-ref, else a known file in the weights folder."""
        from .fid import REFERENCE_FILES

        if self.fid_ref is not None:
            path = Path(self.fid_ref).expanduser()
            if path.is_dir():
                return path, None
            return path, ("clean" if path.suffix == ".npz" else "pytorch-fid")
        for name, mode in REFERENCE_FILES:
            if (self.metrics_folder() / name).is_file():
                return self.metrics_folder() / name, mode
        return None

    def fid_reference(self):
        """The FFHQ reference statistics (loaded or computed once); raises _Unavailable."""
        if self._fid_reference is not None:
            return self._fid_reference
        if "fid_ref" in self._failed:
            raise _Unavailable(self._failed["fid_ref"])
        from .fid import REFERENCE_FILES, folder_stats, load_fid_stats

        ref = self._reference_file()
        try:
            if ref is None:
                names = " or ".join(n for n, _ in REFERENCE_FILES)
                raise _Unavailable(f"no FFHQ reference: pass --fid-ref FILE|DIR (statistics file or a folder of "
                                   f"reference images), or put {names} in {self.metrics_folder()}")
            path, _ = ref
            if path.is_dir():
                stats, problems = folder_stats(path, self.model("inception"), self.fid_mode, self.batch_size,
                                               self.progress)
                self.reference_problems = problems
            else:
                stats = load_fid_stats(path)
        except (OSDFaceError, ValueError) as err:
            self._failed["fid_ref"] = str(err)
            raise _Unavailable(str(err)) from None
        except _Unavailable as err:
            self._failed["fid_ref"] = str(err)
            raise
        self._fid_reference = stats
        return stats
