"""``osdface degrade``: make a synthetic LQ test set (CelebA-Test style) from HQ faces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def degrade(
    hq_dir: Annotated[Path, typer.Argument(help="Folder of HQ face images (any size; centre-cropped to a square).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the LQ images and manifest.json.")],
    preset: Annotated[str, typer.Option(help="Degradation preset: gfpgan | daefr | codeformer | difface | dual | dual_chain | mini (128 px faces) | mini256 | mini256_mixed | mini256_broad (256 px faces).")] = "daefr",
    seed: Annotated[int, typer.Option(min=0, help="Base seed; each image's degradation depends only on (preset, seed, file name, pixels).")] = 0,
    size: Annotated[int, typer.Option(min=8, max=4096, help="Output side in pixels.")] = 512,
    gt_dir: Annotated[Optional[Path], typer.Option(help="Also write the resized HQ targets here (pair them with the LQ by name).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Regenerate outputs that already exist.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Degrade every image of HQ_DIR into OUTPUT/<stem>.png with a manifest of the parameters used.

    Re-runs keep existing outputs; a folder made with another preset, seed or size is refused
    unless --overwrite. A bad input gets one error line and the rest goes on (exit status 1).
    OUTPUT and --gt-dir are two folders, neither of them HQ_DIR or inside it, and a file there that
    degrade did not write is never replaced (even with --overwrite).
    """
    from ..data import degrade_folder
    from ..data.degradations import preset_names
    from .checks import check_choice, check_distinct_folders, check_input_folder, check_output_folder

    # 1. Flags and folders, before anything is read or written.
    check_choice(preset, preset_names(), "--preset")
    check_input_folder(hq_dir, "HQ_DIR")
    if gt_dir is not None:
        check_distinct_folders(output, "--output", gt_dir, "--gt-dir", "the LQ image and its GT have one name")
    check_output_folder(output, [hq_dir], holds="the LQ images", create=False)  # (made by degrade_folder)
    if gt_dir is not None:
        check_output_folder(gt_dir, [hq_dir], "--gt-dir", holds="the GT images", create=False)

    summary = degrade_folder(hq_dir, output, preset, seed, size=size, overwrite=overwrite, gt_dir=gt_dir,
                             progress=not quiet)  # (each failed input is printed there, as it happens)
    typer.echo(str(summary), err=True)
    if summary.failed:
        raise typer.Exit(1)
