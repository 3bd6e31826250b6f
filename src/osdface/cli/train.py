"""``osdface train``: stage-2 training of the one-step generator (UNet LoRA + prompt adapter, latent GAN).

Usage:
    osdface train --config stage2_default 'data.roots=[data/ffhq512, data/ffhqr512]' model.vre=runs/stage1_assoc/export \\
        losses.dists_weights=w/DISTS_weights-f5e65c96.pth losses.vgg16_weights=w/vgg16-397923af.pth \\
        losses.arcface=w/resnet18_110.pth --output runs/stage2
    osdface train --config stage2_default model.init_from=weights/osdface-release ...   # fine-tune the release
    accelerate launch --multi_gpu --num_processes 2 -m osdface train --config stage2_default train.mixed_precision=bf16 ...
    osdface train --resume latest --output runs/stage2 train.max_steps=200000           # continue (and extend)
    osdface train --export runs/stage2 --output weights/my-osdface                      # a checkpoint → weights
    osdface train --config stage2_default --print-config optim.lr_g=5.0e-5              # show the resolved config

``--config`` takes a YAML file or a packaged name (stage2_default, stage2_mini, stage2_tiny). Write floats with a
dot or a mantissa (``5.0e-5``, not ``5e-5``: YAML reads the latter as text).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, List, Optional

import typer


def train(
    overrides: Annotated[Optional[List[str]], typer.Argument(
        help="Config overrides KEY=VALUE, e.g. train.batch_size=2 'data.roots=[a, b]' losses.gan=0.02. "
        "With --export: applied to the checkpoint's stored config (e.g. model.sd_model=/new/path).",
        show_default=False)] = None,
    config: Annotated[Optional[str], typer.Option(
        "--config", "-c", help="YAML config file, or a packaged one: stage2_default | stage2_mini | stage2_tiny. Optional with "
        "--resume (the checkpoint stores its config; a file given here is applied on top).")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Run folder (train.output_dir): checkpoints/, logs/, samples/, metrics.jsonl, "
        "export/. With --export: the folder the exported weights go to (default RUN/export).")] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="'latest' (the newest checkpoint of the run folder; a new run if there is none) or a checkpoint-N / "
        "run folder. Weights, optimizer and scheduler states, RNG and data position are restored exactly.")] = None,
    export: Annotated[Optional[Path], typer.Option(
        help="Do not train: export a checkpoint-N folder (or a run folder's latest checkpoint) as osdface/ (our "
        "format) and release/ (the official layout), then exit.")] = None,
    export_lora: Annotated[str, typer.Option(
        help="With --export: 'separate' (LoRA + VRE + adapter, loads with SD 2.1-base) or 'merged' (the merged UNet "
        "and the VAE too; loads alone).")] = "separate",
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved config (YAML) and exit without training.")] = False,
) -> None:
    """Train stage 2 of OSDFace (the one-step generator) on CPU, one GPU or many (accelerate launch).

    The generator is the inference recipe (frozen VRE and VAE, LoRA UNet at T_L = 399, prompt adapter)
    trained with MSE + EA-DISTS + identity + a latent GAN whose discriminator (SD encoder half with LoRA
    and a head) is trained alternately. Start from scratch (model.vre = a stage-1 VRE) or fine-tune the
    official release (model.init_from). At the end RUN/export holds osdface/ (load with
    `OSDFacePipeline.from_pretrained` or `osdface restore --weights`) and release/ (the official layout).
    """
    from ..errors import OSDFaceError

    overrides = list(overrides or [])
    if export_lora not in ("separate", "merged"):
        raise OSDFaceError(f"--export-lora must be 'separate' or 'merged', got {export_lora!r}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if export is not None:
        if config is not None or resume is not None or print_config:
            raise OSDFaceError("--export takes only --output, --export-lora and overrides: it writes a checkpoint's "
                               "weights and does not train")
        from ..training.stage2 import EXPORT_DIR, export_checkpoint
        from ..training.stage2_config import find_checkpoint

        target = output if output is not None else find_checkpoint(export).parent.parent / EXPORT_DIR
        written = export_checkpoint(export, target, lora=export_lora, overrides=overrides)
        for name, path in written.items():
            typer.echo(f"{name}: {path}", err=True)
        return
    from ..training.stage2_config import load_run_config

    cfg, checkpoint = load_run_config(config, overrides, output, resume)
    if print_config:
        import yaml

        from ..training.config import config_to_dict

        typer.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip())
        return
    from ..training.stage2 import train as run_training

    result = run_training(cfg, resume=checkpoint)
    typer.echo(f"stage 2 done at step {result.step}: {result.run_dir}", err=True)
    for name, path in result.exports.items():
        typer.echo(f"{name}: {path}", err=True)
