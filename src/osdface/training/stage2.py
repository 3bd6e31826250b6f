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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OSDFaceError, WeightsNotFoundError
from ..losses.edge_dists import EdgeAwareDISTS
from ..losses.gan import d_loss_softplus, g_loss_softplus
from ..losses.identity import IdentityLoss
from ..models.discriminator import LatentDiscriminator, diffuse
from ..pipeline import OSDFacePipeline
from .checkpoint import CheckpointManager, load_trainable_state_dict
from .common import RunLogger, batches_from, check_batch_fits, make_accelerator
from .config import config_to_dict, save_config
from .stage2_config import Stage2Config, find_checkpoint, load_run_config, load_stage2_config
from .stage2_export import export_generator, trained_lora_pairs
from .stage2_models import (
    assemble_models,
    build_models,
    build_own_base,
    load_vre,
    trainable_generator_parameters,
)

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
METRICS_FILE = "metrics.jsonl"
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainableGenerator(nn.Module):
    """The trainable parts (``unet`` with LoRA, ``adapter``) as one module whose forward is the pipeline's
    one-step recipe, so that accelerate/DDP can wrap it. The frozen VAE and VRE stay in ``pipe`` only."""

    def __init__(self, pipe: OSDFacePipeline):
        super().__init__()
        self.unet, self.adapter = pipe.unet, pipe.adapter
        self.pipe = pipe  # not an nn.Module: not registered, not moved by .to()

    def forward(self, lq: torch.Tensor, generator=None, posterior: str = "mode") -> dict[str, torch.Tensor]:
        return self.pipe.generate(lq, generator=generator, posterior=posterior)


class ReconstructionLosses(nn.Module):
    """MSE, EA-DISTS and identity between restored and HQ faces, both (B, 3, H, W) RGB in [-1, 1].

    MSE is taken on [-1, 1]; EA-DISTS on [0, 1] (pyiqa's range, mapped inside); identity on [-1, 1].
    Networks of terms with weight 0 are not built. ``forward`` returns the unweighted terms.
    """

    def __init__(self, cfg: Stage2Config):
        super().__init__()
        from ..losses.dists import make_dists
        from ..models.arcface import ArcFacePreprocess, ResNetArcFace, load_arcface

        w = cfg.losses
        self.ea_dists = None
        if w.ea_dists > 0:
            dists = make_dists(w.dists_weights, w.vgg16_weights, allow_random=w.allow_random_weights)
            self.ea_dists = EdgeAwareDISTS(dists, gray=w.edge_gray)
        self.identity = None
        if w.identity > 0:
            if w.arcface is not None:
                arcface = load_arcface(w.arcface, use_se=w.arcface_use_se, **(w.arcface_arch or {}))
            elif w.allow_random_weights:
                arcface = ResNetArcFace(use_se=w.arcface_use_se, **(w.arcface_arch or {}))
            else:
                raise WeightsNotFoundError("the identity loss needs ArcFace weights (resnet18_110.pth or "
                                           "arcface_resnet18.pth): set losses.arcface, or losses.identity=0")
            gray = (1 / 3, 1 / 3, 1 / 3) if w.arcface_gray == "mean" else ArcFacePreprocess().gray_weights
            self.identity = IdentityLoss(arcface, ArcFacePreprocess(gray_weights=gray))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"mse": F.mse_loss(pred, target)}
        if self.ea_dists is not None:
            image_term, edge_term = self.ea_dists.terms((pred + 1) / 2, (target + 1) / 2)  # [0, 1]
            terms.update(dists=image_term, edge_dists=edge_term, ea_dists=image_term + edge_term)
        if self.identity is not None:
            terms["identity"] = self.identity(pred, target)
        return terms


# ----------------------------------------------------------------------------------------------
# One optimizer step


@dataclass
class Stage2State:
    """Everything a training step needs (modules as prepared by accelerate)."""

    cfg: Stage2Config
    accelerator: object
    pipe: OSDFacePipeline
    generator: nn.Module
    discriminator: Optional[nn.Module]
    losses: ReconstructionLosses
    opt_g: torch.optim.Optimizer
    opt_d: Optional[torch.optim.Optimizer]
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: Optional[torch.optim.lr_scheduler.LRScheduler]
    g_params: list = field(default_factory=list)
    d_params: list = field(default_factory=list)


@contextlib.contextmanager
def frozen(params: Sequence[nn.Parameter]):
    """Temporarily set ``requires_grad=False`` on ``params`` (restored afterwards)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def step_generator(seed: int, micro_index: int, rank: int) -> torch.Generator:
    """The CPU generator of one micro-step's random draws (t, ε, VAE samples): a function of the step
    only, so a resumed run draws exactly what an uninterrupted one does."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_index) * 1_009 + rank)


def _encode(pipe: OSDFacePipeline, images: torch.Tensor, posterior: str, rng: torch.Generator) -> torch.Tensor:
    """Scaled VAE latents of HQ faces (no gradient): (B, 4, H/8, W/8)."""
    dist = pipe.vae.encode(images.to(pipe.device, pipe.dtype)).latent_dist
    z = dist.mode() if posterior == "mode" else dist.sample(generator=rng)
    return z.float() * pipe.vae.config.scaling_factor


def _noise_like(latents: torch.Tensor, num_timesteps: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.randint(0, num_timesteps, (latents.shape[0],), generator=rng)  # (B,)
    eps = torch.randn(latents.shape, generator=rng)  # (B, 4, h, w)
    return t.to(latents.device), eps.to(latents.device)


def generator_step(s: Stage2State, lq: torch.Tensor, hq: torch.Tensor, rng: torch.Generator) -> tuple[dict, dict]:
    """Forward, Eq. 12 loss, backward and (on a sync step) AdamW on LoRA + adapter.

    The discriminator's trainables stay ``requires_grad=False`` through forward *and* backward (a
    gradient-checkpointed discriminator recomputes its blocks during the backward)."""
    with frozen(s.d_params):
        terms, fakes = _generator_loss(s, lq, hq, rng)
        s.accelerator.backward(terms["g_total"])
    if s.accelerator.sync_gradients and s.cfg.optim.max_grad_norm:
        terms["g_grad_norm"] = s.accelerator.clip_grad_norm_(s.g_params, s.cfg.optim.max_grad_norm)
    s.opt_g.step()
    s.opt_g.zero_grad(set_to_none=True)
    return terms, fakes


def _generator_loss(s: Stage2State, lq: torch.Tensor, hq: torch.Tensor, rng: torch.Generator) -> tuple[dict, dict]:
    cfg, acc = s.cfg, s.accelerator
    w = cfg.losses
    # 1. One-step restoration through the inference recipe (gradients reach LoRA and adapter).
    out = s.generator(lq, generator=rng if cfg.model.posterior == "sample" else None, posterior=cfg.model.posterior)
    pred = out["image"].float()  # (B, 3, H, W) in [-1, 1]
    fake = out["pred_latents"].float()  # ẑ_H (B, 4, H/8, W/8)
    prompt = out["prompt_embeds"].detach()  # (B, 77, 1024)
    # 2. Reconstruction terms, in float32 whatever the mixed precision.
    with torch.autocast(acc.device.type, enabled=False):
        terms = s.losses(pred, hq.float())
    total = w.mse * terms["mse"]
    if "ea_dists" in terms:
        total = total + w.ea_dists * terms["ea_dists"]
    if "identity" in terms:
        total = total + w.identity * terms["identity"]
    # 3. Adversarial term: the (frozen) discriminator on ẑ_H diffused to a random t; the unwrapped
    #    module, so that no DDP reducer waits for discriminator gradients.
    if s.discriminator is not None:
        disc = acc.unwrap_model(s.discriminator)
        t, eps = _noise_like(fake, cfg.discriminator.num_timesteps, rng)
        context = prompt if cfg.discriminator.condition_on_prompt else None
        logits = disc(diffuse(fake, t, eps, s.pipe.alphas_cumprod), t, context)  # (B, N)
        terms["g_gan"] = g_loss_softplus(logits)
        total = total + w.gan * terms["g_gan"]
    terms["g_total"] = total
    return terms, {"fake": fake.detach(), "prompt": prompt}


def discriminator_step(s: Stage2State, hq: torch.Tensor, fake: torch.Tensor, prompt: torch.Tensor,
                       rng: torch.Generator) -> dict:
    """Eq. 16 on the detached ẑ_H and z_H = VAE(HQ), both diffused; AdamW on the D trainables."""
    cfg, acc = s.cfg, s.accelerator
    d = cfg.discriminator
    with torch.no_grad():
        real = _encode(s.pipe, hq, cfg.model.posterior, rng)  # z_H (B, 4, h, w)
    t, eps = _noise_like(real, d.num_timesteps, rng)
    if d.share_noise:
        t2, eps2 = t, eps
    else:
        t2, eps2 = _noise_like(real, d.num_timesteps, rng)
    # real and fake in one batch: one forward (GroupNorm is per sample, so nothing mixes)
    noisy = torch.cat([diffuse(real, t, eps, s.pipe.alphas_cumprod), diffuse(fake.detach(), t2, eps2, s.pipe.alphas_cumprod)])
    context = torch.cat([prompt, prompt]).detach() if d.condition_on_prompt else None
    logits = s.discriminator(noisy, torch.cat([t, t2]), context)  # (2B, N)
    real_logits, fake_logits = logits.chunk(2)
    loss = d_loss_softplus(real_logits, fake_logits)
    acc.backward(loss)
    terms = {"d_loss": loss.detach(), "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
    if acc.sync_gradients and cfg.optim.max_grad_norm:
        terms["d_grad_norm"] = acc.clip_grad_norm_(s.d_params, cfg.optim.max_grad_norm)
    s.opt_d.step()
    s.opt_d.zero_grad(set_to_none=True)
    return terms


def optimizer_step(s: Stage2State, step: int, stream) -> dict[str, torch.Tensor]:
    """One optimizer step = ``gradient_accumulation_steps`` micro-batches, each a G step then a D step.
    Returns the terms averaged over the micro-batches (detached, on CPU)."""
    cfg, acc = s.cfg, s.accelerator
    accum = cfg.train.gradient_accumulation_steps
    sums: dict[str, float] = {}
    for micro in range(accum):
        _, _, batch = next(stream)
        lq, hq = batch["lq"].to(acc.device), batch["hq"].to(acc.device)  # (B, 3, S, S) in [-1, 1]
        rng = step_generator(cfg.train.seed, step * accum + micro, acc.process_index)
        models = [s.generator] + ([s.discriminator] if s.discriminator is not None else [])
        with acc.accumulate(*models):
            terms, fakes = generator_step(s, lq, hq, rng)
            if s.discriminator is not None:
                terms.update(discriminator_step(s, hq, fakes["fake"], fakes["prompt"], rng))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach().float()) / (1 if k.endswith("grad_norm") else accum)
    s.sched_g.step()
    if s.sched_d is not None:
        s.sched_d.step()
    return {k: torch.tensor(v) for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------
# Data and validation


def build_datasets(cfg: Stage2Config):
    """(training set, held-out set or None), faces at ``model.sample_size``."""
    from ..data import HQFolderDataset, PairedFolderDataset

    d, size = cfg.data, cfg.model.sample_size
    if not d.roots:
        raise OSDFaceError("set data.roots: folders of aligned HQ faces (e.g. data.roots=[data/ffhq512])")
    train_set = HQFolderDataset(list(d.roots), size=size, degradation=d.degradation, hflip=d.hflip, seed=d.seed)
    val_set = None
    if d.val_lq:
        val_set = PairedFolderDataset(d.val_lq, d.val_hq, size=size)
    elif d.val_roots:
        val_set = HQFolderDataset(list(d.val_roots), size=size, degradation=d.degradation, hflip=False, seed=d.val_seed)
    if val_set is not None:
        val_set.set_epoch(0)
    return train_set, val_set


@torch.no_grad()
def validate(pipe: OSDFacePipeline, val_set, cfg: Stage2Config, accelerator) -> tuple[dict, list[torch.Tensor]]:
    """Restore the first ``data.val_count`` held-out faces; PSNR / SSIM (RGB, 8-bit scale) and the
    LQ | restored | HQ rows of the first ``data.val_grid``."""
    from ..metrics.full_reference import compute_psnr, compute_ssim

    n = min(cfg.data.val_count, len(val_set))
    lqs, outs, hqs = [], [], []
    modules = (pipe.unet, pipe.adapter)
    modes = [mod.training for mod in modules]
    for mod in modules:
        mod.eval()
    try:
        for start in range(0, n, cfg.train.batch_size):
            items = [val_set[i] for i in range(start, min(n, start + cfg.train.batch_size))]
            lq = torch.stack([it["lq"] for it in items])
            with accelerator.autocast():
                restored = pipe.generate(lq.to(accelerator.device))["image"]
            lqs.append(lq), outs.append(restored.float().cpu()), hqs.append(torch.stack([it["hq"] for it in items]))
    finally:
        for mod, mode in zip(modules, modes):
            mod.train(mode)
    lq, restored, hq = torch.cat(lqs), torch.cat(outs), torch.cat(hqs)
    metrics = {"val/psnr": float(compute_psnr(restored, hq).mean()), "val/ssim": float(compute_ssim(restored, hq).mean()),
               "val/mse": float(F.mse_loss(restored, hq))}
    k = min(cfg.data.val_grid, n)
    return metrics, [lq[:k], restored[:k], hq[:k]]


def _append_metrics(run_dir: Path, step: int, values: dict) -> None:
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")


# ----------------------------------------------------------------------------------------------
# Training


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


# ----------------------------------------------------------------------------------------------
# Export


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path, lora: str = "separate",
                      overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Export a training checkpoint (a ``checkpoint-N`` folder, or a run folder: its newest) like the
    end of ``train`` does. Rebuilds the generator from the stored config, with ``overrides`` on top
    (e.g. ``model.sd_model=...`` when SD 2.1-base or the VRE has moved)."""
    from safetensors.torch import load_file

    ckpt = find_checkpoint(checkpoint)
    state = CheckpointManager.read_state(ckpt)
    cfg = load_stage2_config(base=state["config"], overrides=overrides)
    pipe, _ = build_models(dataclasses.replace(cfg, losses=dataclasses.replace(cfg.losses, gan=0.0)))  # no D
    load_trainable_state_dict(TrainableGenerator(pipe), load_file(str(ckpt / "generator.safetensors")), str(ckpt))
    pipe.lora = trained_lora_pairs(pipe.unet) if cfg.model.train_unet == "lora" else None
    return export_generator(pipe, output_dir, cfg, step=state["step"], lora=lora)


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
