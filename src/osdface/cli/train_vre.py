"""``osdface train-vre``: stage-1 training of the VRE (HQ codebook, LQ codebook, association).

Usage:
    osdface train-vre --config stage1_hq data.roots=[data/ffhq512] --output runs/stage1_hq
    osdface train-vre --config stage1_lq data.roots=[data/ffhq512] --output runs/stage1_lq
    osdface train-vre --config stage1_assoc data.roots=[data/ffhq512] train.init_hq=runs/stage1_hq \\
        train.init_lq=runs/stage1_lq --output runs/stage1_assoc
    accelerate launch --multi_gpu --num_processes 8 -m osdface train-vre --config stage1_assoc ...
    osdface train-vre --resume latest --output runs/stage1_assoc        # continue after a crash
    osdface train-vre --export runs/stage1_assoc --output weights/vre   # export a run's latest checkpoint

``--config`` takes a YAML file or a packaged name (stage1_hq, stage1_lq, stage1_assoc, stage1_mini, stage1_tiny).
Write floats with a dot (``optim.lr=1.0e-4``, not ``1e-4``: YAML reads the latter as text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_vre(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Config overrides KEY=VALUE, e.g. train.batch_size=2 'data.roots=[a, b]' optim.lr=1e-4.",
        show_default=False)] = None,
    config: Annotated[str | None, typer.Option(
        "--config", "-c", help="YAML config file, or a packaged one: stage1_hq | stage1_lq | stage1_assoc | stage1_mini | stage1_tiny. "
        "Optional with --resume (the checkpoint stores its config; a file given here is applied on top).")] = None,
    phase: Annotated[str | None, typer.Option(
        help="hq (HQ codebook) | lq (LQ codebook) | assoc (association); overrides the config's phase.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Run folder (train.output_dir): checkpoints/, logs/, samples/, export/. "
        "With --export: the folder the exported weights go to (default RUN/export).")] = None,
    resume: Annotated[str | None, typer.Option(
        help="'latest' (the newest checkpoint of the run folder; a new run if there is none) or a checkpoint-N / "
        "run folder. Weights, optimizers, schedulers, RNG and data position are restored exactly.")] = None,
    export: Annotated[Path | None, typer.Option(
        help="Do not train: export a checkpoint-N folder (or a run folder's latest checkpoint) as vqgan_*/, "
        "visual_embedder/ (our format) and associate_2.ckpt (official layout), then exit.")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved config (YAML) and exit without training.")] = False,
) -> None:
    """Train stage 1 of OSDFace (the Visual Representation Embedder) on CPU, one GPU or many (accelerate launch).

    The three phases run one after the other, each its own run: `hq`, then `lq`, then `assoc`
    initialised from both (train.init_hq / train.init_lq). At the end of a run, RUN/export holds the
    trained LQ encoder + codebook in our format (visual_embedder/) and in the official layout
    (associate_2.ckpt), which `OSDFacePipeline.from_official` and the official code load.
    """
    import logging

    from ..errors import OSDFaceError

    if not logging.getLogger().handlers:  # "resumed from …" and other run notes
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = list(overrides or [])
    if export is not None:
        if config is not None or resume is not None or phase is not None or overrides or print_config:
            raise OSDFaceError("--export takes only --output: it writes a checkpoint's weights and does not train")
        from ..training.stage1 import export_vre

        written = export_vre(export, output)
        for name, path in written.items():
            typer.echo(f"{name}: {path}", err=True)
        return
    from ..training.stage1 import load_run_config
    from ..training.stage1 import train_vre as run_training

    cfg = load_run_config(config, overrides, phase, output, resume)
    if print_config:
        import yaml

        from ..training.config import config_to_dict

        typer.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
        return
    run_dir = run_training(cfg, resume=resume)
    typer.echo(f"stage 1 ({cfg.phase}) done: {run_dir}", err=True)
