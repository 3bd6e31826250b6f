"""Setting up stage 2: models placed in their dtypes and devices, optimizers, schedulers, accelerate.

``setup(cfg)`` returns the ``Stage2State`` that ``stage2_step.optimizer_step`` runs on; ``train`` calls
it, and tests and benchmarks use it to run single steps.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .common import make_accelerator
from .stage2_config import Stage2Config
from .stage2_models import TrainableGenerator, build_models, trainable_generator_parameters
from .stage2_step import ReconstructionLosses, Stage2State

DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _lr_factor(warmup: int, schedule: str = "constant", total: int = 1):
    """The LambdaLR factor at optimizer step i: linear warm-up over ``warmup`` steps, then constant or a
    cosine decay reaching 0 at step ``total``."""
    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        if schedule == "cosine":
            progress = min(1.0, (i - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
    return factor


def setup(cfg: Stage2Config, accelerator=None, models: Optional[tuple] = None) -> Stage2State:
    """Build models (or take ``models`` = ``assemble_models(...)``'s result), losses and optimizers,
    place them (weight dtype, device) and prepare them with accelerate. ``train`` calls it; tests and
    benchmarks use it to run single steps."""
    from accelerate.utils import set_seed

    t = cfg.train
    if accelerator is None:
        accelerator = make_accelerator(t.mixed_precision, t.gradient_accumulation_steps, cpu=t.cpu,
                                       project_dir=t.output_dir)
    set_seed(t.seed)  # identical initial weights (adapter, LoRA A, head) in every process
    pipe, disc = models if models is not None else build_models(cfg)
    losses = ReconstructionLosses(cfg)
    # Frozen weights in the mixed-precision dtype, trainable ones in float32; the VRE stays float32
    # (its nearest-code selection is what the release computes in float32).
    weight_dtype, device = DTYPES[t.mixed_precision], accelerator.device
    g_params = trainable_generator_parameters(pipe, cfg.model.train_unet)
    move = nn.Module.to  # (diffusers' ModelMixin.to warns about plain dtype casts)
    move(pipe.vae, device, weight_dtype)
    move(pipe.vre, device)
    move(pipe.unet, device, weight_dtype)
    for p in g_params:
        p.data = p.data.float()
    d_params = []
    if disc is not None:
        move(disc, device, weight_dtype)
        d_params = disc.trainable_parameters()
        for p in d_params:
            p.data = p.data.float()
    losses.to(device)
    if t.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
        if disc is not None:
            disc.enable_gradient_checkpointing()
    o = cfg.optim
    opt_g = torch.optim.AdamW(g_params, lr=o.lr_g, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
    lr_factor = _lr_factor(o.warmup_steps, o.lr_schedule, t.max_steps)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_factor)
    generator = TrainableGenerator(pipe).train()
    opt_d = sched_d = None
    if disc is not None:
        opt_d = torch.optim.AdamW(d_params, lr=o.lr_d, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lr_factor)
        generator, disc, opt_g, opt_d = accelerator.prepare(generator, disc.train(), opt_g, opt_d)
    else:
        generator, opt_g = accelerator.prepare(generator, opt_g)
    # (schedulers are stepped by hand once per optimizer step: accelerate's wrapper would step them
    # num_processes times)
    return Stage2State(cfg, accelerator, pipe, generator, disc, losses, opt_g, opt_d, sched_g, sched_d,
                       g_params=g_params, d_params=d_params)
