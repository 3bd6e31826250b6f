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

Backends: builtin metrics (``registry`` ``backend="builtin"``: PSNR, SSIM, NIQE, Deg., LMD, FID) and, when
``import pyiqa`` works, pyiqa metrics created with ``registry.pyiqa_create_kwargs`` (SPEC §7.2). A metric
that cannot run is never an error: it is listed in ``MethodResult.unavailable`` with the reason (no ground
truth, pyiqa not importable, weight file missing — naming the file and where to put it —, no FID
reference, too few images, …).

Models (ArcFace, FAN, Inception) are loaded once per call from ``weights_dir`` (default
``$OSDFACE_HOME/metrics``) or passed in ``models`` (tests pass tiny random networks). Ground-truth
embeddings, landmarks and Inception features are cached per file, so several methods against one ground
truth compute them once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImageReadError, OSDFaceError
from ..image_utils import list_images, read_image
from . import table as tables
from .identity import IDENTICAL_BELOW, embed_images, embedding_angle, summarize_deg
from .pairing import pair_by_stem
from .registry import METRICS, get_spec, metric_status, pyiqa_create_kwargs, pyiqa_status, resolve_function

PathLike = str | Path

# What runs by default ("auto"): the paper's columns plus PSNR/SSIM for synthetic sets.
DEFAULT_WITH_GT = ("psnr", "ssim", "lpips", "dists", "musiq", "niqe", "deg", "lmd", "fid_ffhq", "fid_hq")
DEFAULT_WITHOUT_GT = ("clipiqa", "maniqa", "musiq", "niqe", "fid_ffhq")
NEEDS_GT = "needs the ground truth (--gt DIR)"
NOT_REQUESTED = "not requested (--metrics)"


def default_metrics(has_gt: bool) -> list[str]:
    return list(DEFAULT_WITH_GT if has_gt else DEFAULT_WITHOUT_GT)


# ----------------------------------------------------------------------------- results


@dataclass
class MethodResult:
    """One method's evaluation. ``records``: one dict per image (name, pred, gt, metric values)."""

    name: str
    pred_dir: str
    gt_dir: str | None
    metrics: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    means: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric → {"mean", "n", ...}
    unavailable: dict[str, str] = field(default_factory=dict)  # metric → reason
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def value(self, metric: str) -> float | str | None:
        """The dataset value, or the reason it is missing (a string)."""
        if metric in self.unavailable:
            return self.unavailable[metric]
        if metric not in self.metrics:
            return NOT_REQUESTED
        entry = self.means.get(metric, {})
        if entry.get("mean") is not None:
            return entry["mean"]
        return entry.get("reason") or f"no value: NaN or failed for all {len(self.records)} image(s)"


@dataclass
class Evaluation:
    """Every method's results plus the settings they were computed with."""

    methods: dict[str, MethodResult]
    metrics: list[str]
    has_gt: bool
    dataset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def table_kind(self, table: str | int = "auto") -> int:
        if str(table) == "auto":
            return 1 if self.has_gt else 2
        if str(table) not in ("1", "2"):
            raise ValueError(f"table must be 1, 2 or 'auto', got {table!r}")
        return int(table)

    def render_markdown(self, table: str | int = "auto") -> str:
        """Paper Table 1 or 2 (one row per method), then a table of the other requested metrics, then notes."""
        kind = self.table_kind(table)
        values = {m: {k: r.value(k) for k in METRICS} for m, r in self.methods.items()}
        if kind == 1:
            parts = [tables.render_table1(values, title="Table 1 layout (synthetic set with ground truth)")]
            shown = {c.key for c in tables.TABLE1_COLUMNS}
        else:
            key, label = _dataset_group(self.dataset)
            columns = [tables.metric_column(k, d, lab, group=key, group_label=label)
                       for k, d, lab in tables.TABLE2_METRICS]
            grouped = {m: {key: v} for m, v in values.items()}
            parts = [tables.render_markdown(columns, grouped, title="Table 2 layout (real-world set)")]
            shown = {k for k, _, _ in tables.TABLE2_METRICS}
        extra = [k for k in self.metrics if k not in shown]
        if extra:
            columns = [tables.metric_column(k) for k in extra]
            parts.append(tables.render_markdown(columns, values, title="Other metrics"))
        parts.append(self._notes_markdown())
        return "\n".join(parts)

    def _notes_markdown(self) -> str:
        lines = ["**Notes**", ""]
        for name, r in self.methods.items():
            where = f"`{r.pred_dir}`" + (f" vs `{r.gt_dir}`" if r.gt_dir else "")
            lines.append(f"- {name}: {len(r.records)} image(s) from {where}; {len(r.problems)} problem(s)"
                         + (" (see means JSON)" if r.problems else ""))
            lines += [f"  - {metric}: {note}" for metric, note in r.notes.items()]
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None)
        lines.append(f"- settings: {settings}")
        return "\n".join(lines) + "\n"

    def write(self, output_dir: PathLike, table: str | int = "auto") -> dict[str, Path]:
        """``per_image.csv``, ``means_<method>.json`` per method and ``table.md``, each written atomically."""
        out = Path(output_dir)
        keys = list(self.metrics)
        image_keys = [k for k in keys if get_spec(k).level == "image"]  # FID has no per-image value
        records = [{"method": m, **rec} for m, r in self.methods.items() for rec in r.records]
        paths = {"csv": tables.write_per_image_csv(out / "per_image.csv", records, image_keys,
                                                   id_keys=("method", "name", "pred", "gt"))}
        for name, r in self.methods.items():
            means = {k: r.means.get(k, {"mean": None, "n": 0, "n_missing": len(r.records)}) for k in keys}
            paths[f"json:{name}"] = tables.write_means_json(
                out / f"means_{_slug(name)}.json", means, method=name, pred_dir=r.pred_dir, gt_dir=r.gt_dir,
                n_images=len(r.records), unavailable=r.unavailable, notes=r.notes, problems=r.problems,
                settings=self.settings)
        paths["markdown"] = tables.write_markdown(out / "table.md", self.render_markdown(table))
        return paths


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"


def _dataset_group(dataset: str | None) -> tuple[str, str]:
    """Table 2's (group key, header label) for a dataset name: the paper's three, or the name itself."""
    for key, label in tables.TABLE2_DATASETS:
        if dataset and dataset.lower().replace("-test", "") in (key, label.lower()):
            return key, label
    return "set", dataset or "Test set"


# ----------------------------------------------------------------------------- shared resources


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
        """The loaded "arcface" / "fan" / "inception" model; raises _Unavailable with the load error."""
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


# ----------------------------------------------------------------------------- metric runners


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


def _per_item(fn, count: int, problems: list[str], label: str, names: list[str]) -> list[float | None]:
    """Call ``fn(indices)`` for the whole batch; on failure, image by image (failures → None + a problem)."""
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
            problems.append(f"{label}: {names[i]}: {type(err).__name__}: {err}")
    return out


class _BuiltinImage(_Runner):
    """PSNR, SSIM, NIQE, … through ``registry.resolve_function``."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        self.fn = resolve_function(self.name)
        self.problems: list[str] = []

    def update(self, batch: _Batch) -> list[float | None]:
        if self.spec.mode == "FR":
            return _per_item(lambda idx: self.fn([batch.pred[i] for i in idx], [batch.gt[i] for i in idx]),
                             len(batch.names), self.problems, self.name, batch.names)
        return _per_item(lambda idx: self.fn([batch.pred[i] for i in idx]), len(batch.names), self.problems,
                         self.name, batch.names)


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

        return _per_item(angles, len(batch.names), self.problems, self.name, batch.names)

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
        return _per_item(lambda idx: self._distances(batch, idx), len(batch.names), self.problems, self.name,
                         batch.names)


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


class _PyiqaImage(_Runner):
    """A per-image pyiqa metric, created once with ``registry.pyiqa_create_kwargs``."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        status = pyiqa_status()
        if status != "available":
            raise _Unavailable(f"pyiqa {status}")
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
        return _per_item(lambda idx: self._score(idx, batch), len(batch.names), self.problems, self.name,
                         batch.names)


class _PyiqaFid(_Runner):
    """pyiqa's (clean-fid) FID over whole folders, after the pass."""

    def setup(self, has_gt: bool) -> None:
        super().setup(has_gt)
        status = pyiqa_status()
        if status != "available":
            raise _Unavailable(f"pyiqa {status}")

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
    if name in ("fid_ffhq", "fid_hq"):
        return _Fid(name, res)
    if spec.function is None:
        return _Runner(name, res)  # planned: setup below reports it
    return _BuiltinImage(name, res)


# ----------------------------------------------------------------------------- the evaluation loop


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
