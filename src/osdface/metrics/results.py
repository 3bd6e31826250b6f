"""What ``evaluate_folders`` returns, and the files it is written to.

``MethodResult``: one method's per-image records, dataset values (``means``) and, for every metric that
has none, the reason (``unavailable``; ``value(metric)`` gives either). ``Evaluation``: every method's
results plus the settings; ``render_markdown`` lays them out as paper Table 1 or 2 (``table``), and
``write`` writes ``per_image.csv``, ``means_<method>.json`` and ``table.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import table as tables
from .registry import METRICS, get_spec

PathLike = str | Path

# Reasons a metric has no value (shown in the tables and the means JSON).
NEEDS_GT = "needs the ground truth (--gt DIR)"
NOT_REQUESTED = "not requested (--metrics)"


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
        """Paper Table 1 or 2 (one row per method; Table 1 with "ID (dlib)" after Deg. when requested), then
        a table of the other requested metrics, then notes."""
        kind = self.table_kind(table)
        values = {m: {k: r.value(k) for k in METRICS} for m, r in self.methods.items()}
        if kind == 1:
            identity = "id_dlib" in self.metrics
            parts = [tables.render_table1(values, title="Table 1 layout (synthetic set with ground truth)",
                                          identity=identity)]
            shown = {c.key for c in (tables.TABLE1_WITH_ID_COLUMNS if identity else tables.TABLE1_COLUMNS)}
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
