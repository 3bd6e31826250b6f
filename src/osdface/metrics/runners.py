"""Metric runners: one metric for one method, fed batch by batch by ``evaluate_folders``.

A runner's ``setup`` raises ``_Unavailable`` (with the reason) when the metric cannot run, ``update``
returns the batch's per-image values (a failing batch is retried image by image: ``_Runner.per_item``)
and ``finish`` returns the dataset value. ``_make_runner`` picks the runner for a registry name: builtin
per-image metrics, Deg., ID (dlib), LMD, FID, pyiqa per-image metrics, pyiqa FID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import table as tables
from .identity import embed_images, embedding_angle, summarize_deg
from .registry import get_spec, metric_status, pyiqa_status, resolve_function
from .resources import _Batch, _Resources, _Unavailable
from .results import NEEDS_GT, MethodResult


class _Runner:
    """One metric for one method: ``setup`` (may raise _Unavailable), ``update`` per batch, ``finish``."""

    def __init__(self, name: str, res: _Resources):
        self.name, self.spec, self.res = name, get_spec(name), res

    def setup(self, has_gt: bool) -> None:
        if self.spec.backend == "builtin" and self.spec.function is None:
            raise _Unavailable(metric_status(self.name).removeprefix("unavailable: "))
        if self.spec.mode == "FR" and not has_gt:
            raise _Unavailable(NEEDS_GT)

    def update(self, batch: _Batch) -> list[float | None] | None:
        return None

    def finish(self, records: list[dict], method: MethodResult) -> dict[str, Any]:
        return tables.mean_scores(records, [self.name])[self.name]

    def per_item(self, batch: _Batch, fn) -> list[float | None]:
        """``fn(indices)`` for the whole batch; on failure, image by image (failures → None + a line in
        ``self.problems``)."""
        count = len(batch.names)
        try:
            values = [float(v) for v in fn(list(range(count)))]
        except Exception:  # noqa: BLE001 - retried image by image below, where the reason is recorded
            values = None
        if values is not None:
            return values
        out: list[float | None] = []
        for i in range(count):
            try:
                out.append(float(fn([i])[0]))
            except Exception as err:  # noqa: BLE001 - one image's failure is reported, not fatal
                out.append(None)
                self.problems.append(f"{self.name}: {batch.names[i]}: {type(err).__name__}: {err}")
        return out


class _BuiltinImage(_Runner):
    """PSNR, SSIM, NIQE, … through ``registry.resolve_function``."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        self.fn = resolve_function(self.name)
        self.problems: list[str] = []

    def update(self, batch: _Batch) -> list[float | None]:
        if self.spec.mode == "FR":
            return self.per_item(batch, lambda idx: self.fn([batch.pred[i] for i in idx],
                                                            [batch.gt[i] for i in idx]))
        return self.per_item(batch, lambda idx: self.fn([batch.pred[i] for i in idx]))


class _Deg(_Runner):
    """Deg. with VQFR's file-based gray preprocessing; ground-truth embeddings cached per file."""

    def __init__(self, name: str, res: _Resources, exclude_below: float | None):
        super().__init__(name, res)
        self.exclude_below = exclude_below

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        self.model = self.res.model("arcface")
        self.problems: list[str] = []

    def _embed(self, paths: list[Path], cache: bool) -> np.ndarray:
        if not cache:
            return embed_images(self.model, paths, self.res.batch_size)
        todo = [p for p in paths if ("deg", str(p)) not in self.res.gt_cache]
        if todo:
            for p, e in zip(todo, embed_images(self.model, todo, self.res.batch_size)):
                self.res.gt_cache["deg", str(p)] = e
        return np.stack([self.res.gt_cache["deg", str(p)] for p in paths])

    def update(self, batch: _Batch) -> list[float | None]:
        def angles(idx: list[int]) -> np.ndarray:
            pred = self._embed([batch.pred_paths[i] for i in idx], False)
            return embedding_angle(pred, self._embed([batch.gt_paths[i] for i in idx], True))

        return self.per_item(batch, angles)

    def finish(self, records: list[dict], method: MethodResult) -> dict[str, Any]:
        s = summarize_deg([r.get(self.name) for r in records], self.exclude_below)
        method.notes[self.name] = s.note()
        out = {"mean": s.mean, "n": s.n, "n_missing": s.n_missing, "excluded": s.excluded,
               "exclude_below": s.exclude_below}
        if s.mean is None and s.excluded:
            out["reason"] = f"every pair is 'identical' (deg < {s.exclude_below:g}): {s.note()}"
        return out


class _Lmd(_Runner):
    """LMD with the FAN; ground-truth landmarks cached per file."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        self.model = self.res.model("fan")
        self.problems: list[str] = []

    def _distances(self, batch: _Batch, idx: list[int]) -> np.ndarray:
        from .landmarks import detect_landmarks, landmark_distance

        todo = [i for i in idx if ("lmd", str(batch.gt_paths[i])) not in self.res.gt_cache]
        if todo:
            found = detect_landmarks(self.model, [batch.gt[i] for i in todo], self.res.batch_size)
            for i, lm in zip(todo, found):
                self.res.gt_cache["lmd", str(batch.gt_paths[i])] = lm
        gt = np.stack([self.res.gt_cache["lmd", str(batch.gt_paths[i])] for i in idx])
        pred = detect_landmarks(self.model, [batch.pred[i] for i in idx], self.res.batch_size)
        return landmark_distance(pred, gt)

    def update(self, batch: _Batch) -> list[float | None]:
        return self.per_item(batch, lambda idx: self._distances(batch, idx))


class _DlibId(_Runner):
    """ID (dlib): descriptor distance, landmarks fitted on the ground truth; its descriptors cached per file."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        self.model = self.res.model("dlib_identity")
        self.problems: list[str] = []

    def _distances(self, batch: _Batch, idx: list[int]) -> np.ndarray:
        todo = [i for i in idx if ("id_dlib", str(batch.gt_paths[i])) not in self.res.gt_cache]
        if todo:
            for i, d in zip(todo, self.model.descriptors([batch.gt[i] for i in todo])):
                self.res.gt_cache["id_dlib", str(batch.gt_paths[i])] = d
        gt = np.stack([self.res.gt_cache["id_dlib", str(batch.gt_paths[i])] for i in idx])
        pred = self.model.descriptors([batch.pred[i] for i in idx], reference=[batch.gt[i] for i in idx])
        return np.linalg.norm(pred - gt, axis=1)

    def update(self, batch: _Batch) -> list[float | None]:
        return self.per_item(batch, lambda idx: self._distances(batch, idx))


class _Fid(_Runner):
    """FID(FFHQ) against reference statistics, FID(HQ) against the paired ground truths (builtin)."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        from .fid import extract_features

        self.extract = extract_features
        self.model = self.res.model("inception")
        self.reference = self.res.fid_reference() if self.name == "fid_ffhq" else None
        self.features: list[np.ndarray] = []
        self.gt_features: list[np.ndarray] = []

    def _features(self, images: list[np.ndarray], paths: list[Path] | None = None) -> np.ndarray:
        mode = self.res.fid_mode
        if paths is None:
            return self.extract(self.model, images, mode, self.res.batch_size)
        todo = [i for i, p in enumerate(paths) if ("fid", mode, str(p)) not in self.res.gt_cache]
        if todo:
            found = self.extract(self.model, [images[i] for i in todo], mode, self.res.batch_size)
            for i, f in zip(todo, found):
                self.res.gt_cache["fid", mode, str(paths[i])] = f
        return np.stack([self.res.gt_cache["fid", mode, str(p)] for p in paths])

    def update(self, batch: _Batch) -> None:
        shared = self.res.batch_cache  # both FID runners use the same prediction features
        if "fid_pred" not in shared:
            shared["fid_pred"] = self._features(batch.pred)
        self.features.append(shared["fid_pred"])
        if self.name == "fid_hq":
            self.gt_features.append(self._features(batch.gt, batch.gt_paths))

    def finish(self, records: list[dict], method: MethodResult) -> dict[str, Any]:
        from .fid import fid_from_stats, stats_from_features

        n = sum(len(f) for f in self.features)
        if n < 2:
            raise _Unavailable(f"FID needs at least 2 images, got {n}")
        mode = self.res.fid_mode
        pred = stats_from_features(np.concatenate(self.features), mode=mode)
        if self.name == "fid_hq":
            reference = stats_from_features(np.concatenate(self.gt_features), mode=mode)
            method.notes[self.name] = f"{n} restored vs {n} paired ground truths, preprocessing {mode!r}"
        else:
            reference = self.reference
            method.notes[self.name] = f"{n} restored vs {reference.source}, preprocessing {mode!r}"
            if reference.mode is not None and reference.mode != mode:
                method.notes[self.name] += f" (the reference was made with {reference.mode!r}: not comparable)"
        return {"mean": fid_from_stats(pred, reference), "n": n, "n_missing": len(records) - n}


def _require_pyiqa() -> None:
    status = pyiqa_status()
    if status != "available":
        raise _Unavailable(f"pyiqa {status}")


class _PyiqaImage(_Runner):
    """A per-image pyiqa metric, created once with ``registry.pyiqa_create_kwargs``."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        _require_pyiqa()
        self.metric = self.res.pyiqa_metric(self.name)
        self.problems: list[str] = []

    def _tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # [0, 1] RGB
        return x.to(self.res.device)

    @torch.no_grad()
    def _score(self, idx: list[int], batch: _Batch) -> list[float]:
        pred = self._tensor([batch.pred[i] for i in idx])
        out = self.metric(pred, self._tensor([batch.gt[i] for i in idx])) if self.spec.mode == "FR" \
            else self.metric(pred)
        return torch.as_tensor(out).detach().float().cpu().reshape(-1).tolist()

    def update(self, batch: _Batch) -> list[float | None]:
        return self.per_item(batch, lambda idx: self._score(idx, batch))


class _PyiqaFid(_Runner):
    """pyiqa's (clean-fid) FID over whole folders, after the pass."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        _require_pyiqa()

    def finish(self, records: list[dict], method: MethodResult) -> dict[str, Any]:
        try:
            metric = self.res.pyiqa_metric(self.name)
            folders = (method.pred_dir, method.gt_dir) if self.spec.mode == "FR" else (method.pred_dir,)
            value = float(metric(*folders, **self.spec.pyiqa_call_options))
        except _Unavailable:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. statistics not downloadable offline
            raise _Unavailable(f"pyiqa fid failed ({type(err).__name__}: {err})") from None
        return {"mean": value, "n": len(records), "n_missing": 0}


def _make_runner(name: str, res: _Resources, deg_exclude_below: float | None) -> _Runner:
    spec = get_spec(name)
    if spec.backend == "pyiqa":
        return _PyiqaFid(name, res) if spec.level == "dataset" else _PyiqaImage(name, res)
    if name == "deg":
        return _Deg(name, res, deg_exclude_below)
    if name == "lmd":
        return _Lmd(name, res)
    if name == "id_dlib":
        return _DlibId(name, res)
    if name in ("fid_ffhq", "fid_hq"):
        return _Fid(name, res)
    if spec.function is None:
        return _Runner(name, res)  # planned: setup below reports it
    return _BuiltinImage(name, res)
