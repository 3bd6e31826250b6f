"""``osdface benchmark``: paper Table 3's columns (steps, seconds per face, parameters, MACs) on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def parse_batch_sizes(value: str, device_type: str) -> list[int]:
    """``auto`` (1, 2, 4, 8 on a GPU; 1, 2 on CPU) or a comma-separated list of positive integers."""
    from ..errors import OSDFaceError

    if value.strip().lower() == "auto":
        return [1, 2, 4, 8] if device_type in ("cuda", "mps") else [1, 2]
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise OSDFaceError(f"--batch-sizes must be 'auto' or positive integers like 1,2,4; got {value!r}")
    return sizes


def benchmark(
    weights: Annotated[Path | None, typer.Option(help="Model to time: our format or the official release folder. Default: $OSDFACE_HOME/osdface, then $OSDFACE_HOME/osdface-release; random weights when neither is installed.")] = None,
    sd_model: Annotated[str | None, typer.Option(help="SD 2.1-base folder (for the official release or a LoRA-only folder).")] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Build the full-size architecture with random weights (offline; the same time, parameters and MACs).")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32 | float16 | bfloat16.")] = "float32",
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to time, e.g. 1,2,4 (batch 1 is always timed). auto: 1,2,4,8 on a GPU, 1,2 on CPU.")] = "auto",
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per batch size (the median is reported).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs before timing batch 1 (one before each other batch size).")] = 1,
    layout: Annotated[str, typer.Option(help="Memory layout: auto (what `osdface restore` uses: channels-last on CPU, NCHW elsewhere) | nchw | channels_last.")] = "auto",
    no_macs: Annotated[bool, typer.Option("--no-macs", help="Skip counting MACs (one extra batch-1 run under the FLOP counter).")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the table as Markdown to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Time the one-step restoration of 512×512 faces and print paper Table 3's columns.

    Reports steps (1), seconds per face at batch 1 and at the best of the timed batch sizes, parameters,
    MACs per face and peak memory (CUDA: max allocated; CPU: peak resident set of the process) for the
    current device and dtype. Random weights (--random-weights, or when no weights are installed) give the
    same numbers as the real model; the output says which was used.
    """
    from ..errors import OSDFaceError, WeightsNotFoundError
    from ..loading import DTYPES, load_pipeline, resolve_device, use_fast_layout
    from ..metrics import speed
    from ..metrics.table import write_markdown

    if dtype not in DTYPES:
        raise OSDFaceError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if random_weights and weights is not None:
        raise OSDFaceError("--random-weights and --weights exclude each other")
    target = resolve_device(device)
    sizes = parse_batch_sizes(batch_sizes, target.type)
    log = (lambda message: None) if quiet else (lambda message: typer.echo(message, err=True))

    pipe, note = None, "random weights (full-size architecture)"
    if not random_weights:
        try:
            # the paper's model only: timing the bundled mini model in its place would mislead
            pipe = load_pipeline(str(weights) if weights else None, sd_model, device, dtype, model="paper")
            note = f"weights {weights or 'from $OSDFACE_HOME'}"
        except WeightsNotFoundError as err:
            if weights is not None or sd_model is not None:
                raise
            log(f"no installed weights ({str(err).split('.')[0]}); timing the architecture with random weights")
            note += ", no weights installed"
    if pipe is None:
        log("building the full-size architecture with random weights")
        pipe = speed.build_random_pipeline().to(target, DTYPES[dtype])
    use_fast_layout(pipe, layout)
    note += f", layout {layout}"

    result = speed.benchmark_pipeline(pipe, sizes, repeats=repeats, warmup=warmup, macs=not no_macs,
                                      weights=note, log=log)
    text = result.render_markdown()
    typer.echo(text)
    if output is not None:
        write_markdown(output, text)
        log(f"wrote {output}")
