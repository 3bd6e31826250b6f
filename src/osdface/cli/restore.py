"""``osdface restore``: restore aligned face crops (files or folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..batch_files import FORMATS


def restore(
    inputs: Annotated[List[Path], typer.Argument(help="Image files and/or folders of images (png, jpg, webp, bmp, tif).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the restored images (created if needed).")],
    sd_model: Annotated[Optional[str], typer.Option(help="SD 2.1-base: a local diffusers folder or a hub id. Default: $OSDFACE_HOME/stable-diffusion-2-1-base. Not needed for a merged osdface folder.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Our format (made by `osdface convert`) or the official release folder. Default: $OSDFACE_HOME/osdface, then $OSDFACE_HOME/osdface-release.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Faces per forward pass.")] = 4,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps. auto picks CUDA (LOCAL_RANK's GPU under torchrun/accelerate), then MPS, then CPU.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32 | float16 | bfloat16 (half precision: GPUs; on CPU bfloat16 is slow without AMX).")] = "float32",
    posterior: Annotated[str, typer.Option(help="VAE posterior: 'mode' (deterministic, default) or 'sample' (as the official code, seeded by --seed).")] = "mode",
    seed: Annotated[int, typer.Option(help="Seed of --posterior sample; each image gets its own generator, so results do not depend on batching or sharding.")] = 114,
    fmt: Annotated[str, typer.Option("--format", help=f"Output format: {' | '.join(FORMATS)} | same (the input's).")] = "png",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist (default: skip them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Restore ALIGNED face crops (FFHQ-style, face centred) in one diffusion step.

    Square inputs are resized to 512×512 and come out 512×512, as in the official code. Non-square
    inputs are edge-padded to a square, restored, and the padding is cropped off again: the output
    keeps the aspect ratio with its long side 512.

    Outputs keep the input's file name (with the --format suffix). Existing outputs are skipped
    unless --overwrite; input files are never written to. A file that cannot be read gets one error
    line and the rest goes on; the exit status is 1 when any input failed.

    Under `torchrun` or `accelerate launch` every process takes its share of the sorted inputs
    (by RANK and WORLD_SIZE): each file is restored exactly once.
    """
    import torch

    from ..batch_files import restore_files
    from ..errors import OSDFaceError
    from ..loading import load_pipeline

    if posterior not in ("mode", "sample"):
        raise OSDFaceError(f"--posterior must be 'mode' or 'sample', got {posterior!r}")
    if fmt not in (*FORMATS, "same"):
        raise OSDFaceError(f"--format must be one of {', '.join(FORMATS)}, same; got {fmt!r}")
    pipe = load_pipeline(str(weights) if weights else None, sd_model, device, dtype)

    def restore_batch(images, paths):
        generators = [torch.Generator(pipe.device).manual_seed(seed) for _ in images]
        out = pipe(images, batch_size=batch_size, posterior=posterior, generator=generators,
                   output_type="np").images
        return list(out)

    report = restore_files(inputs, output, restore_batch, batch_size=batch_size, overwrite=overwrite,
                           fmt=fmt, progress=not quiet)
    typer.echo(report.summary(), err=True)
    if report.failed:
        raise typer.Exit(1)
