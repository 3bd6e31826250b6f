"""Evaluate folders of restored faces: pair by name, compute the metrics in batches, write the paper's tables.

``evaluate_folders({"ours": "out/", "other": "other_out/"}, gt_dir="celeba_hq/", metrics=[...])`` returns an
``Evaluation`` (per-image values, means, and for every metric either a value or the reason it is missing);
``Evaluation.write(output_dir)`` writes ``per_image.csv``, ``means_<method>.json`` and ``table.md`` (paper
Table 1 when there is a ground truth, Table 2 otherwise, then any other requested metrics).

How it runs, per method (one pass over the images, one progress bar):

1. Pairing: with ``gt_dir``, ``pairing.pair_by_stem`` (001.png ↔ 001.jpg; sorted by stem, so the file
   order on disk never matters); unpaired, ambiguous and unreadable files are reported in
   ``MethodResult.problems`` and left out. Without ``gt_dir``, every image of the folder (sorted).
2. Batches of ``batch_size`` images are decoded once (``image_utils.read_image``: uint8 RGB) and every
   per-image metric is computed on them; FID features are accumulated. A metric that fails on a batch is
   retried image by image, so one bad image costs only its own value (reported).
3. Dataset values: mean over images (NaN/missing left out and counted), Deg. as VQFR (pairs < 1° left out
   and counted, ``deg_exclude_below``), FID from the accumulated features.

Backends: builtin metrics (``registry`` ``backend="builtin"``: PSNR, SSIM, NIQE, Deg., ID (dlib), LMD, FID)
and, when ``import pyiqa`` works, pyiqa metrics created with ``registry.pyiqa_create_kwargs`` (SPEC §7.2). A
metric that cannot run is never an error: it is listed in ``MethodResult.unavailable`` with the reason (no
ground truth, pyiqa not importable, weight file missing — naming the file and where to put it —, the
identity extra not installed, no FID reference, too few images, …).

Models (ArcFace, FAN, Inception, dlib's identity) are loaded once per call from ``weights_dir`` (default
``$OSDFACE_HOME/metrics``) or passed in ``models`` (tests pass tiny random networks). Ground-truth
embeddings, landmarks, Inception features and dlib descriptors are cached per file, so several methods
against one ground truth compute them once.

Modules: ``results`` (``MethodResult``, ``Evaluation``, the written files), ``resources`` (models, FID
reference and caches shared by one call), ``runners`` (one class per kind of metric); this one pairs,
decodes and drives them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageReadError
from ..image_utils import list_images, read_image
from .identity import IDENTICAL_BELOW
from .pairing import pair_by_stem
from .registry import METRICS
from .resources import _Batch, _Resources, _Unavailable
from .results import NEEDS_GT, Evaluation, MethodResult  # noqa: F401 - NEEDS_GT: read here by callers
from .runners import _make_runner, _Runner

PathLike = str | Path

# What runs by default ("auto"): the paper's columns plus PSNR/SSIM and ID (dlib) for synthetic sets.
DEFAULT_WITH_GT = ("psnr", "ssim", "lpips", "dists", "musiq", "niqe", "deg", "id_dlib", "lmd", "fid_ffhq",
                   "fid_hq")
DEFAULT_WITHOUT_GT = ("clipiqa", "maniqa", "musiq", "niqe", "fid_ffhq")


def default_metrics(has_gt: bool) -> list[str]:
    return list(DEFAULT_WITH_GT if has_gt else DEFAULT_WITHOUT_GT)


def _items(pred_dir: PathLike, gt_dir: PathLike | None) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """Sorted (pred, gt or None) items and the problems found while pairing (files are decoded later)."""
    if gt_dir is None:
        paths, problems = list_images([pred_dir])
        paths = sorted(paths, key=lambda p: (p.stem, str(p)))
        return [(p, None) for p in paths], problems
    pairing = pair_by_stem(pred_dir, gt_dir, check_readable=False)
    return list(pairing.pairs), pairing.problems()


def _read_batch(items: list[tuple[Path, Path | None]], problems: list[str]) -> _Batch:
    names, pred_paths, gt_paths, pred, gt = [], [], [], [], []
    for p, g in items:
        try:
            p_img = read_image(p)
            g_img = read_image(g) if g is not None else None
        except ImageReadError as err:
            problems.append(f"{err}; {'its pair is' if g is not None else 'it is'} skipped")
            continue
        names.append(p.stem)
        pred_paths.append(p)
        pred.append(p_img)
        if g is not None:
            gt_paths.append(g)
            gt.append(g_img)
    has_gt = bool(items) and items[0][1] is not None
    return _Batch(names, pred_paths, gt_paths if has_gt else None, pred, gt if has_gt else None)


def _evaluate_method(name: str, pred_dir: PathLike, gt_dir: PathLike | None, metrics: list[str],
                     res: _Resources, deg_exclude_below: float | None) -> MethodResult:
    result = MethodResult(name, str(pred_dir), str(gt_dir) if gt_dir is not None else None, list(metrics))
    items, result.problems = _items(pred_dir, gt_dir)
    runners: list[_Runner] = []
    for metric in metrics:
        runner = _make_runner(metric, res, deg_exclude_below)
        try:
            runner.setup(gt_dir is not None)
        except _Unavailable as err:
            result.unavailable[metric] = str(err)
            continue
        runners.append(runner)

    batches = range(0, len(items), res.batch_size)
    if res.progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"evaluate {name}", unit="batch", total=len(batches))
    for start in batches:
        batch = _read_batch(items[start:start + res.batch_size], result.problems)
        if not batch.names:
            continue
        records = [{"name": n, "pred": str(p)} for n, p in zip(batch.names, batch.pred_paths)]
        for record, g in zip(records, batch.gt_paths or []):
            record["gt"] = str(g)
        res.batch_cache.clear()
        for runner in list(runners):
            try:
                values = runner.update(batch)
            except Exception as err:  # noqa: BLE001 - a failing metric is reported, the others go on
                result.unavailable[runner.name] = f"failed: {type(err).__name__}: {err}"
                runners.remove(runner)
                continue
            if values is not None:
                for record, value in zip(records, values):
                    record[runner.name] = value
        result.records.extend(records)

    for runner in runners:
        try:
            result.means[runner.name] = runner.finish(result.records, result)
        except _Unavailable as err:
            result.unavailable[runner.name] = str(err)
        result.problems += getattr(runner, "problems", [])
    if "fid_ffhq" in metrics:
        result.problems += res.reference_problems
    return result


def _method_dirs(pred_dirs: Mapping[str, PathLike] | Sequence[PathLike] | PathLike) -> dict[str, PathLike]:
    if isinstance(pred_dirs, (str, Path)):
        pred_dirs = [pred_dirs]
    if isinstance(pred_dirs, Mapping):
        return dict(pred_dirs)
    out: dict[str, PathLike] = {}
    for d in pred_dirs:
        name = Path(d).name or str(d)
        while name in out:
            name += "'"
        out[name] = d
    return out


def evaluate_folders(
    pred_dirs: Mapping[str, PathLike] | Sequence[PathLike] | PathLike,
    gt_dir: PathLike | None = None,
    metrics: Sequence[str] | None = None,
    fid_ref: PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    weights_dir: PathLike | None = None,
    dataset: str | None = None,
    deg_exclude_below: float | None = IDENTICAL_BELOW,
    fid_mode: str = "auto",
    models: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate one or more folders of restored images (see the module docstring).

    ``pred_dirs``: {method name: folder} (or folders, named by their folder name). ``metrics``: registry
    names (default: ``default_metrics``). ``fid_ref``: FFHQ statistics (.npz / basicsr .pth) or a folder of
    reference images. ``weights_dir``: where the metric weights are (default ``$OSDFACE_HOME/metrics``).
    ``dataset``: Table 2's dataset name (wider, lfw, webphoto, or any label). ``deg_exclude_below``: VQFR's
    identical-pair threshold in degrees (None keeps every pair). ``fid_mode``: "auto", "clean" or
    "pytorch-fid" (``osdface.metrics.fid``). ``models``: preloaded {"arcface", "fan", "inception"}.
    Unknown metric names raise ValueError; everything else is reported in the result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if fid_mode not in ("auto", "clean", "pytorch-fid"):
        raise ValueError(f"fid_mode must be 'auto', 'clean' or 'pytorch-fid', got {fid_mode!r}")
    metrics = list(metrics) if metrics else default_metrics(gt_dir is not None)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    metrics = list(dict.fromkeys(metrics))
    if isinstance(device, str):
        from ..loading import resolve_device

        device = resolve_device(device)
    res = _Resources(torch.device(device), batch_size, weights_dir, models, fid_ref, fid_mode, progress)
    methods = {name: _evaluate_method(name, d, gt_dir, metrics, res, deg_exclude_below)
               for name, d in _method_dirs(pred_dirs).items()}
    settings = {"device": str(res.device), "batch_size": batch_size, "weights_dir": str(res.metrics_folder()),
                "fid_ref": str(fid_ref) if fid_ref is not None else None,
                "fid_mode": res.fid_mode if any(m.startswith("fid") for m in metrics) else None,
                "deg_exclude_below": deg_exclude_below if "deg" in metrics else None}
    return Evaluation(methods, metrics, gt_dir is not None, dataset, settings)


__all__ = ["DEFAULT_WITHOUT_GT", "DEFAULT_WITH_GT", "Evaluation", "MethodResult", "default_metrics",
           "evaluate_folders"]
