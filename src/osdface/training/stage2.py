"""Stage 2: train the one-step generator (UNet LoRA + prompt adapter) with a latent GAN.

The generator is the inference recipe itself (``OSDFacePipeline.generate``): frozen VRE → adapter →
prompt p_L; frozen VAE encoder → z_L; one UNet pass (rank-16 LoRA) at the fixed T_L = 399 on the clean
z_L; ẑ_H = x0 from the predicted noise (float64); frozen VAE decoder → Î_H. Per optimizer step
(paper §3.3, §4.1; SPEC §5):

1. **G step** (discriminator frozen):
   L_G = MSE(Î, I) + λ_per·EA-DISTS(Î, I) + λ_ID·(1 − cos(F(Î), F(I))) + λ_dis·softplus(−D(F(ẑ_H, t), t, p_L))
   → AdamW on LoRA + adapter.
2. **D step** (on the detached ẑ_H and the HQ latent z_H, both diffused to t ~ U{0..T−1}):
   L_D = softplus(D(F(ẑ_H, t))) + softplus(−D(F(z_H, t))) → AdamW on the discriminator's LoRA + head.

The two steps never touch each other's weights: the discriminator's parameters have
``requires_grad=False`` during the G step (its graph reaches them through the unwrapped module, so no
DDP hook fires), and the D step sees only detached generator outputs.

Usage::

    osdface train --config stage2_default data.roots=[data/ffhq512,data/ffhqr512] model.vre=runs/assoc/export
    osdface train --config stage2_default model.init_from=weights/osdface-release ...   # fine-tune the release
    accelerate launch --num_processes 2 -m osdface train --config stage2_default ...   # 2 GPUs (the paper's setup)
    osdface train --resume latest --output runs/stage2                                # after a crash
    osdface train --export runs/stage2 --output weights/my-osdface                     # a checkpoint → weights

A run folder holds ``checkpoints/checkpoint-<step>/`` (LoRA, adapter and discriminator trainables,
optimizer/scheduler/RNG state, config), ``logs/`` (TensorBoard), ``metrics.jsonl`` (every logged
value), ``samples/val-step-*.png`` (LQ | restored | HQ), ``config.yaml`` and, at the end, ``export/``
(``export_generator``): ``osdface/`` (our format, ``OSDFacePipeline.from_pretrained``) and
``release/`` (the official layout, ``OSDFacePipeline.from_official``).

Modules: ``stage2_models`` (building the models), ``stage2_setup`` (placing them, optimizers,
accelerate), ``stage2_step`` (losses and one optimizer step), ``stage2_data`` (datasets, validation),
``stage2_export`` (the trained generator → weights); this one runs the training loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..models.discriminator import LatentDiscriminator
from ..pipeline import OSDFacePipeline
from .checkpoint import CheckpointManager
from .common import RunLogger, batches_from, check_batch_fits
from .config import config_to_dict, save_config
from .stage2_config import Stage2Config, find_checkpoint, load_run_config, load_stage2_config
from .stage2_data import build_datasets, validate
from .stage2_export import export_checkpoint, export_generator, trained_lora_pairs
from .stage2_models import (
    TrainableGenerator,
    assemble_models,
    build_models,
    build_own_base,
    load_vre,
    trainable_generator_parameters,
)
from .stage2_setup import _lr_factor, setup  # noqa: F401 - _lr_factor: tests read it here
from .stage2_step import (
    ReconstructionLosses,
    Stage2State,
    discriminator_step,
    generator_step,
    optimizer_step,
    step_generator,  # noqa: F401 - tests and benchmarks read it here
)

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
METRICS_FILE = "metrics.jsonl"


def _append_metrics(run_dir: Path, step: int, values: dict) -> None:
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")


@dataclass
class Stage2Result:
    """What ``train`` leaves: the run folder, the last step, the export paths and the trained models
    (the generator as a pipeline with an un-merged LoRA; ``pipe.lora`` holds the trained pairs)."""

    run_dir: Path
    step: int
    exports: dict = field(default_factory=dict)
    pipe: Optional[OSDFacePipeline] = None
    discriminator: Optional[LatentDiscriminator] = None


def _checkpoint_parts(s: Stage2State) -> tuple[dict, dict, dict]:
    acc = s.accelerator
    modules = {"generator": acc.unwrap_model(s.generator)}
    optimizers, schedulers = {"g": s.opt_g}, {"g": s.sched_g}
    if s.discriminator is not None:
        modules["discriminator"] = acc.unwrap_model(s.discriminator)
        optimizers["d"], schedulers["d"] = s.opt_d, s.sched_d
    if getattr(acc, "scaler", None) is not None:  # fp16 loss scale
        schedulers["grad_scaler"] = acc.scaler
    return modules, optimizers, schedulers


def train(cfg: Stage2Config, resume: Optional[str | Path] = None) -> Stage2Result:
    """Train stage 2; returns a ``Stage2Result``. ``resume``: "latest" (the newest checkpoint of
    ``cfg.train.output_dir``; a fresh start when there is none) or a checkpoint / run folder."""
    from tqdm.auto import tqdm

    t = cfg.train
    run_dir = Path(t.output_dir)
    checkpoint = None
    if resume is not None:
        checkpoint = (CheckpointManager(run_dir / "checkpoints").latest() if str(resume) == "latest"
                      else find_checkpoint(resume))
    # 1. Data, models, losses, optimizers.
    train_set, val_set = build_datasets(cfg)
    check_batch_fits(train_set, t.batch_size)  # (per process; batches_from checks the multi-process total)
    s = setup(cfg)
    acc = s.accelerator
    main = acc.is_main_process
    per_epoch = max(1, math.ceil(len(train_set) / acc.num_processes) // t.batch_size // t.gradient_accumulation_steps)

    # 2. Resume: weights, optimizers, schedulers, RNG and step (the data position follows from the step).
    manager = CheckpointManager(run_dir / "checkpoints", keep_last=t.keep_last)
    modules, optimizers, schedulers = _checkpoint_parts(s)
    step = 0
    if checkpoint is not None:
        step = CheckpointManager.load(checkpoint, modules, optimizers, schedulers, rank=acc.process_index)["step"]
        if main:
            logger.info("resumed from %s at step %d", checkpoint, step)
    elif resume is not None and main:
        logger.info("no checkpoint under %s: starting a new run", run_dir)
    config_dict = config_to_dict(cfg)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    run_log = RunLogger(run_dir, enabled=main)
    stream = batches_from(train_set, t.batch_size, cfg.data.seed, start_step=step * t.gradient_accumulation_steps,
                          num_workers=cfg.data.num_workers, rank=acc.process_index, world_size=acc.num_processes)
    images_per_step = t.batch_size * t.gradient_accumulation_steps * acc.num_processes

    # 3. Loop: G step, D step; log, validate, checkpoint.
    bar = tqdm(total=t.max_steps, initial=step, disable=not main, desc="stage 2", dynamic_ncols=True)
    last_saved = step if checkpoint is not None else -1
    while step < t.max_steps:
        start = time.perf_counter()
        logs = optimizer_step(s, step, stream)
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{float(v):.4g}" for k, v in logs.items() if not k.endswith("grad_norm")}, refresh=False)
        if step % t.log_every == 0 or step == t.max_steps:
            keys = sorted(logs)
            values = acc.reduce(torch.stack([logs[k] for k in keys]).to(acc.device), "mean")
            scalars = {f"train/{k}": v for k, v in zip(keys, values.cpu().tolist())}
            scalars.update({"lr/g": s.sched_g.get_last_lr()[0], "epoch": step // per_epoch,
                            **({"lr/d": s.sched_d.get_last_lr()[0]} if s.sched_d is not None else {}),
                            "perf/images_per_s": images_per_step / (time.perf_counter() - start)})
            if main:
                run_log.scalars(scalars, step)
                _append_metrics(run_dir, step, scalars)
        if val_set is not None and (step % t.validate_every == 0 or step == t.max_steps):
            if main:
                metrics, rows = validate(s.pipe, val_set, cfg, acc)
                run_log.scalars(metrics, step)
                run_log.grid("val", rows, step)
                _append_metrics(run_dir, step, metrics)
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            acc.wait_for_everyone()
        if step % t.checkpoint_every == 0 or step == t.max_steps:
            manager.save(step, modules, optimizers, schedulers, {"epoch": step // per_epoch}, config_dict,
                         rank=acc.process_index, world_size=acc.num_processes, barrier=acc.wait_for_everyone)
            last_saved = step
    bar.close()
    run_log.close()

    # 4. Export the trained generator (our format + the official layout).
    pipe = s.pipe
    pipe.lora = trained_lora_pairs(pipe.unet) if cfg.model.train_unet == "lora" else None
    exports: dict = {}
    acc.wait_for_everyone()
    if main and t.export and last_saved == step:
        exports = export_generator(pipe, run_dir / EXPORT_DIR, cfg, step=step, lora=t.export_lora)
    acc.wait_for_everyone()
    acc.end_training()
    disc = acc.unwrap_model(s.discriminator) if s.discriminator is not None else None
    return Stage2Result(run_dir, step, exports, pipe, disc)


__all__ = [
    "LatentDiscriminator",
    "ReconstructionLosses",
    "Stage2Config",
    "Stage2Result",
    "TrainableGenerator",
    "assemble_models",
    "build_models",
    "build_own_base",
    "discriminator_step",
    "export_checkpoint",
    "export_generator",
    "generator_step",
    "load_run_config",
    "load_stage2_config",
    "load_vre",
    "optimizer_step",
    "setup",
    "train",
    "trainable_generator_parameters",
    "trained_lora_pairs",
]
