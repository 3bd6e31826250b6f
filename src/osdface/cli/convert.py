"""``osdface convert``: official release (+ SD 2.1-base) → our safetensors format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def convert(
    release: Annotated[Path, typer.Argument(help="Folder with associate_2.ckpt, embedding_change_weights.pth, pytorch_lora_weights.safetensors.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder to write (must not exist).")],
    sd_model: Annotated[Optional[str], typer.Option(help="SD 2.1-base folder or hub id. Default: $OSDFACE_HOME/stable-diffusion-2-1-base.")] = None,
    lora: Annotated[str, typer.Option(help="'merged': store the merged UNet and the VAE (loads without SD 2.1-base, ~3.9 GB); 'separate': store only the LoRA, VRE and adapter (~185 MB for a rank-16 LoRA on the default targets, needs SD 2.1-base to load).")] = "merged",
) -> None:
    """Convert the official OSDFace release into our format: safetensors + JSON only.

    Later loads (`osdface restore --weights OUTPUT`, `OSDFacePipeline.from_pretrained`) read no
    pickle and, with --lora merged, do no LoRA merge.
    """
    from ..errors import OSDFaceError
    from ..loading import default_sd_model
    from ..pipeline import OSDFacePipeline

    if lora not in ("merged", "separate"):
        raise OSDFaceError(f"--lora must be 'merged' or 'separate', got {lora!r}")
    if output.exists():
        raise OSDFaceError(f"{output} already exists; choose a new folder (nothing was overwritten)")
    pipe = OSDFacePipeline.from_official(release, sd_model or str(default_sd_model()))
    pipe.save_pretrained(output, lora=lora)
    typer.echo(f"wrote {output} (lora: {lora})", err=True)
