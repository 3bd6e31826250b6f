"""Result files: per-image CSV, means JSON, and Markdown tables in the layouts of the OSDFace paper.

- ``write_per_image_csv``: one row per image, one column per metric (full float precision).
- ``write_means_json``: the mean of each metric over a dataset, with counts and run metadata.
- ``render_table1`` / ``render_table2`` / ``render_table3`` (+ ``write_markdown``): one row per method,
  columns in the paper's order (Table 1: CelebA-Test, optionally with our "ID (dlib)" after Deg.; Table 2: Wider/LFW/WebPhoto; Table 3: speed and
  size). A missing value is shown as "–" with a footnote giving the reason.

Values in ``results`` may be a number, ``None``/NaN (missing: reason from ``reasons`` or "not computed"),
or a string, which is taken as the reason itself (e.g. ``registry.metric_status(name)``).
Every file is written atomically: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_text_atomic
from .registry import METRICS

MISSING = "–"  # en dash, as the paper
NOT_COMPUTED = "not computed"
PathLike = str | Path


@dataclass(frozen=True)
class Column:
    """One table column: where the value lives (``group`` → ``key``), its header and number format."""

    key: str
    label: str
    higher_is_better: bool | None = None  # None: no arrow
    digits: int = 4
    group: str | None = None  # Table 2: the dataset key
    group_label: str = ""
    thousands: bool = False

    @property
    def header(self) -> str:
        arrow = "" if self.higher_is_better is None else ("↑" if self.higher_is_better else "↓")
        return f"{self.group_label} {self.label}{arrow}".strip()


def metric_column(
    key: str, digits: int = 4, label: str | None = None, group: str | None = None, group_label: str = ""
) -> Column:
    """A column for a registry metric (label and direction from its spec)."""
    spec = METRICS[key]
    return Column(
        key=key,
        label=label or spec.label,
        higher_is_better=spec.higher_is_better,
        digits=digits,
        group=group,
        group_label=group_label,
    )


# Table 1: CelebA-Test. LPIPS is pyiqa 'lpips' (alex); use metric_column("lpips_vgg", label="LPIPS") for VGG.
TABLE1_COLUMNS = [
    metric_column("lpips"),
    metric_column("dists"),
    metric_column("musiq"),
    metric_column("niqe"),
    metric_column("deg"),
    metric_column("lmd"),
    metric_column("fid_ffhq"),
    metric_column("fid_hq"),
]
# Not in the paper: dlib's identity distance, shown right after Deg. when it was requested (`osdface evaluate`).
TABLE1_WITH_ID_COLUMNS = [*TABLE1_COLUMNS[:5], metric_column("id_dlib"), *TABLE1_COLUMNS[5:]]
# Table 2: real-world sets; "FID" is FID against FFHQ. Datasets in the paper's order.
TABLE2_DATASETS = [("wider", "Wider-Test"), ("lfw", "LFW-Test"), ("webphoto", "WebPhoto-Test")]
TABLE2_METRICS = [
    ("clipiqa", 4, "CLIPIQA"),
    ("maniqa", 4, "MANIQA"),
    ("musiq", 3, "MUSIQ"),
    ("niqe", 4, "NIQE"),
    ("fid_ffhq", 3, "FID"),
]
TABLE2_COLUMNS = [
    metric_column(key, digits, label, group=ds, group_label=ds_label)
    for ds, ds_label in TABLE2_DATASETS
    for key, digits, label in TABLE2_METRICS
]
# Table 3: complexity at 512x512 input.
TABLE3_COLUMNS = [
    Column("steps", "Step", None, digits=0, thousands=True),
    Column("time_s", "Time (s)", None, digits=2),
    Column("params_m", "Param (M)", None, digits=1, thousands=True),
    Column("macs_g", "MACs (G)", None, digits=0, thousands=True),
]


# ----------------------------------------------------------------------------- atomic files


# ----------------------------------------------------------------------------- per-image CSV, means JSON


def _as_float(value: Any) -> float | None:
    """The value as a float if it is a number (int, float, numpy scalar, 0-d tensor), else None."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _csv_cell(value: Any) -> str:
    number = _as_float(value)
    if number is not None:
        return repr(number)  # shortest round-trip form; inf/nan as "inf"/"nan"
    return "" if value is None else str(value)


def write_per_image_csv(
    path: PathLike,
    records: Sequence[Mapping[str, Any]],
    metric_keys: Sequence[str],
    id_keys: Sequence[str] = ("name", "pred", "gt"),
) -> Path:
    """CSV with ``id_keys`` then ``metric_keys`` as columns, one row per record (image).

    Numbers are written with full precision (``repr``), missing values as empty cells, ``inf``/``nan``
    literally. Records are written in the order given (pairing gives a deterministic one).
    """
    columns = [k for k in id_keys if any(k in r for r in records)] + list(metric_keys)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(k)) for k in columns])
    return write_text_atomic(path, buf.getvalue())


def mean_scores(
    records: Sequence[Mapping[str, Any]], metric_keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per metric: ``{"mean": float | None, "n": images averaged, "n_missing": images without a number}``.

    NaN and missing values are left out of the mean and counted in ``n_missing``; ``inf`` is kept (a PSNR
    mean over identical images is ``inf``).
    """
    out = {}
    for key in metric_keys:
        numbers = [_as_float(r.get(key)) for r in records]
        values = [v for v in numbers if v is not None and not math.isnan(v)]
        out[key] = {
            "mean": math.fsum(values) / len(values) if values else None,
            "n": len(values),
            "n_missing": len(records) - len(values),
        }
    return out


def _jsonable(obj: Any) -> Any:
    """Plain JSON types. JSON has no inf/nan: they become the strings "inf", "-inf", "nan"."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, numbers.Integral) and not isinstance(obj, bool):
        return int(obj)
    number = _as_float(obj)
    if number is not None:
        return number if math.isfinite(number) else repr(number)
    return obj


def write_means_json(path: PathLike, means: Mapping[str, Any], **meta: Any) -> Path:
    """JSON ``{**meta, "metrics": {name: mean}, "details": ...}``.

    ``means`` is either ``mean_scores(...)`` output (then ``details`` keeps n / n_missing) or a plain
    ``{name: value}`` mapping. Non-finite numbers are written as strings ("inf", "nan").
    """
    metrics, details = {}, {}
    for key, value in means.items():
        if isinstance(value, Mapping):
            metrics[key] = value.get("mean")
            details[key] = {k: v for k, v in value.items() if k != "mean"}
        else:
            metrics[key] = value
    payload = {**meta, "metrics": metrics}
    if details:
        payload["details"] = details
    return write_text_atomic(path, json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- Markdown tables


def _format_number(value: float, col: Column) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{col.digits}f}" if col.thousands else f"{value:.{col.digits}f}"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _lookup(row: Mapping[str, Any], col: Column) -> Any:
    if col.group is None:
        return row.get(col.key)
    group = row.get(col.group)
    return group.get(col.key) if isinstance(group, Mapping) else None


def _lookup_reason(reasons: Mapping[str, Any], col: Column) -> str | None:
    if col.group is not None:
        group = reasons.get(col.group)
        if isinstance(group, Mapping) and col.key in group:
            return str(group[col.key])
    value = reasons.get(col.key)
    return value if isinstance(value, str) else None


def render_markdown(
    columns: Sequence[Column],
    results: Mapping[str, Mapping[str, Any]],
    reasons: Mapping[str, Mapping[str, Any]] | None = None,
    title: str = "",
    first_header: str = "Method",
) -> str:
    """A Markdown table: one row per method (in ``results`` order), ``columns`` in the given order.

    ``reasons[method][group][key]``, else ``reasons[method][key]`` (for every group), explains a missing
    value; identical reasons share one footnote, numbered in reading order.
    """
    reasons = reasons or {}
    footnotes: dict[str, int] = {}

    def cell(method: str, col: Column) -> str:
        value = _lookup(results[method], col)
        number = _as_float(value)
        if number is not None and not math.isnan(number):
            return _format_number(number, col)
        reason = value if isinstance(value, str) else _lookup_reason(reasons.get(method, {}), col)
        reason = " ".join((reason or NOT_COMPUTED).split())  # one line
        note = footnotes.setdefault(reason, len(footnotes) + 1)
        return f"{MISSING}[^{note}]"

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join([first_header] + [c.header for c in columns]) + " |")
    lines.append("|" + "|".join([" --- "] + [" ---: "] * len(columns)) + "|")
    for method in results:
        lines.append("| " + " | ".join([_escape(method)] + [cell(method, c) for c in columns]) + " |")
    if footnotes:
        lines.append("")
        lines += [f"[^{n}]: {_escape(reason)}" for reason, n in footnotes.items()]
    return "\n".join(lines) + "\n"


def render_table1(
    results: Mapping[str, Mapping[str, Any]], reasons=None, title: str = "Table 1. CelebA-Test (synthetic)",
    identity: bool = False,
) -> str:
    """Paper Table 1: LPIPS↓ DISTS↓ MUSIQ↑ NIQE↓ Deg.↓ LMD↓ FID(FFHQ)↓ FID(HQ)↓.

    ``results[method][metric]`` with the registry keys lpips, dists, musiq, niqe, deg, lmd, fid_ffhq, fid_hq.
    ``identity``: add our "ID (dlib)↓" column (key id_dlib) after Deg.
    """
    return render_markdown(TABLE1_WITH_ID_COLUMNS if identity else TABLE1_COLUMNS, results, reasons, title)


def render_table2(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    reasons=None,
    title: str = "Table 2. Real-world test sets",
) -> str:
    """Paper Table 2: per dataset (wider, lfw, webphoto) CLIPIQA↑ MANIQA↑ MUSIQ↑ NIQE↓ FID↓;
    ``results[method][dataset][metric]`` with metric keys clipiqa, maniqa, musiq, niqe, fid_ffhq."""
    return render_markdown(TABLE2_COLUMNS, results, reasons, title)


def render_table3(
    results: Mapping[str, Mapping[str, Any]], reasons=None, title: str = "Table 3. Complexity (512x512 input)"
) -> str:
    """Paper Table 3, one row per method: Step, Time (s), Param (M), MACs (G);
    ``results[method]`` with keys steps, time_s, params_m, macs_g."""
    return render_markdown(TABLE3_COLUMNS, results, reasons, title)


def write_markdown(path: PathLike, text: str) -> Path:
    """Write a rendered table (atomically)."""
    return write_text_atomic(path, text)
