"""``osdface evaluate``: the paper's metrics for folders of restored faces, as CSV, JSON and Markdown tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def parse_pred(values: list[str]) -> dict[str, Path]:
    """``DIR`` or ``NAME=DIR`` items → {method name: folder}; a folder's name is its default method name."""
    from ..errors import OSDFaceError

    out: dict[str, Path] = {}
    for item in values:
        if "=" in item and not Path(item).exists():
            name, folder = item.split("=", 1)
        else:
            name, folder = Path(item).name or item, item
        name = name.strip()
        if not name:
            raise OSDFaceError(f"--pred {item!r}: empty method name (use NAME=DIR)")
        if name in out:
            raise OSDFaceError(f"--pred: method name {name!r} given twice (use NAME=DIR to tell them apart)")
        out[name] = Path(folder).expanduser()
    return out


def parse_metrics(value: str, has_gt: bool) -> list[str]:
    """``auto`` (the paper's set for the situation), ``all``, or a comma-separated list of registry names."""
    from ..errors import OSDFaceError
    from ..metrics.evaluate import default_metrics
    from ..metrics.registry import METRICS

    value = value.strip().lower()
    if value == "auto":
        return default_metrics(has_gt)
    if value == "all":
        return list(METRICS)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise OSDFaceError(f"--metrics: unknown {', '.join(unknown) or '(empty)'}; known: auto, all, "
                           f"{', '.join(METRICS)}")
    return names


def check_inputs_and_output(methods: dict[str, Path], gt: Path | None, fid_ref: Path | None, output: Path) -> None:
    """Every --pred and the --gt folder hold images, --fid-ref exists, and OUTPUT can be written outside them."""
    from ..errors import OSDFaceError
    from .checks import check_input_folder, check_output_folder

    for folder in methods.values():
        check_input_folder(folder, "--pred")
    if gt is not None:
        check_input_folder(gt, "--gt")
    if fid_ref is not None and not fid_ref.exists():
        raise OSDFaceError(f"--fid-ref {fid_ref}: no such file or folder")
    inputs = [*methods.values(), *(p for p in (gt, fid_ref) if p is not None)]
    check_output_folder(output, inputs, holds="the tables", create=False)  # (made when the tables are written)


def evaluate(
    pred: Annotated[list[str], typer.Option("--pred", "-p", help="Folder of restored images, or NAME=DIR. Repeat for one table row per method (default name: the folder's name).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for per_image.csv, means_METHOD.json and table.md (created if needed).")],
    gt: Annotated[Path | None, typer.Option("--gt", help="Folder of ground-truth images, paired with the restored ones by file name (001.png ↔ 001.jpg). Needed by PSNR, SSIM, LPIPS, DISTS, Deg., ID (dlib), LMD, FID(HQ).")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated metric names (psnr, ssim, niqe, lpips, lpips_vgg, dists, musiq, clipiqa, maniqa, deg, id_dlib, lmd, fid_ffhq, fid_hq, *_pyiqa, ...), 'all', or 'auto': Table 1's metrics + PSNR/SSIM and ID (dlib) with --gt, Table 2's without.")] = "auto",
    fid_ref: Annotated[Path | None, typer.Option("--fid-ref", help="FID(FFHQ) reference: a statistics file (clean-fid ffhq_clean_trainval70k_512.npz, or basicsr inception_FFHQ_512-f7b384ab.pth) or a folder of reference images. Default: one of those files in the weights folder.")] = None,
    fid_mode: Annotated[str, typer.Option(help="FID preprocessing: clean (clean-fid/pyiqa: PIL bicubic to 299) | pytorch-fid (bilinear, as basicsr/VQFR) | auto (the reference file's: .npz → clean, basicsr .pth → pytorch-fid).")] = "auto",
    weights_dir: Annotated[Path | None, typer.Option(help="Folder with the metric weights (resnet18_110.pth or arcface_resnet18.pth, alignment_WFLW_4HG.pth, pt_inception-2015-12-05-6726825d.pth). Default: $OSDFACE_HOME/metrics.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    table: Annotated[str, typer.Option(help="Markdown layout: 1 (paper Table 1, synthetic with GT), 2 (Table 2, real-world), auto (1 with --gt, else 2).")] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset name for Table 2's header: wider | lfw | webphoto | any label.")] = None,
    deg_keep_identical: Annotated[bool, typer.Option("--deg-keep-identical", help="Average Deg. over every pair; by default pairs under 1° are left out (and counted), as VQFR's script.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compute the paper's metrics for one or more folders of restored faces.

    Writes OUTPUT/per_image.csv (one row per image and method), OUTPUT/means_METHOD.json (means, counts,
    unavailable metrics with their reasons, pairing problems) and OUTPUT/table.md (the paper's table
    layout, one row per method), and prints the table. A metric that cannot run here (no ground truth,
    pyiqa not installed, weight file missing, no FID reference, ...) is reported with the reason, not an
    error. Unpaired or unreadable files are reported and left out. The exit status is 0 when the evaluation
    ran, 1 when no image could be evaluated at all. A missing or empty --pred or --gt folder, or an OUTPUT
    that is a file or lies in an input folder, is refused before any metric runs (exit status 2, nothing written).
    """
    from ..errors import OSDFaceError
    from ..metrics.evaluate import evaluate_folders

    if table not in ("1", "2", "auto"):
        raise OSDFaceError(f"--table must be 1, 2 or auto, got {table!r}")
    if fid_mode not in ("auto", "clean", "pytorch-fid"):
        raise OSDFaceError(f"--fid-mode must be auto, clean or pytorch-fid, got {fid_mode!r}")
    methods = parse_pred(pred)
    names = parse_metrics(metrics, gt is not None)
    check_inputs_and_output(methods, gt, fid_ref, output)
    result = evaluate_folders(methods, gt_dir=gt, metrics=names, fid_ref=fid_ref, device=device,
                              batch_size=batch_size, progress=not quiet, weights_dir=weights_dir,
                              dataset=dataset, deg_exclude_below=None if deg_keep_identical else 1.0,
                              fid_mode=fid_mode)
    paths = result.write(output, table)
    typer.echo(result.render_markdown(table))
    reasons: dict[tuple[str, str], list[str]] = {}  # (metric, reason) → methods, to print each reason once
    for name, r in result.methods.items():
        typer.echo(f"{name}: {len(r.records)} image(s) evaluated, {len(r.unavailable)} metric(s) unavailable, "
                   f"{len(r.problems)} problem(s)", err=True)
        for line in r.problems[:10]:
            typer.echo(f"  problem: {line}", err=True)
        if len(r.problems) > 10:
            typer.echo(f"  ... {len(r.problems) - 10} more in {paths[f'json:{name}']}", err=True)
        for metric, reason in r.unavailable.items():
            reasons.setdefault((metric, reason), []).append(name)
    for (metric, reason), names in reasons.items():
        who = "" if len(names) == len(result.methods) else f" ({', '.join(names)})"
        typer.echo(f"unavailable: {metric}{who}: {reason}", err=True)
    typer.echo(f"wrote {paths['csv']}, {paths['markdown']} and {len(result.methods)} means JSON file(s)", err=True)
    if not any(r.records for r in result.methods.values()):
        raise typer.Exit(1)
