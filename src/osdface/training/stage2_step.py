"""Stage 2's optimizer step: the reconstruction losses, the G step (Eq. 12), the D step (Eq. 16).

``optimizer_step`` runs ``gradient_accumulation_steps`` micro-batches, each a ``generator_step`` then a
``discriminator_step``, on a ``Stage2State`` (what ``stage2_setup.setup`` builds). The random draws of a
micro-step come from ``step_generator``: a function of the step only, so a resumed run draws exactly what
an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsNotFoundError
from ..losses.edge_dists import EdgeAwareDISTS, sobel_magnitude
from ..losses.gan import d_loss_softplus, g_loss_softplus
from ..losses.identity import IdentityLoss
from ..models.discriminator import diffuse
from ..pipeline import OSDFacePipeline
from .stage2_config import Stage2Config


class ReconstructionLosses(nn.Module):
    """MSE, edge L1, EA-DISTS and identity between restored and HQ faces, both (B, 3, H, W) RGB in [-1, 1].

    MSE is taken on [-1, 1]; EA-DISTS on [0, 1] (pyiqa's range, mapped inside); identity on [-1, 1].
    Networks of terms with weight 0 are not built. ``forward`` returns the unweighted terms. A ``mask``
    (B, 1, H, W) in [0, 1] (``data.valid_mask``) weights the pixels of MSE and of the edge term (there
    eroded by one pixel, as a Sobel filter reaches one pixel out); the network terms see whole faces.
    """

    def __init__(self, cfg: Stage2Config):
        super().__init__()
        from ..losses.dists import make_dists
        from ..models.arcface import ArcFacePreprocess, ResNetArcFace, load_arcface

        w = cfg.losses
        self.edge = w.edge > 0
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

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        if mask is None:
            terms = {"mse": F.mse_loss(pred, target)}
        else:
            terms = {"mse": masked_mean((pred - target) ** 2, mask)}
        if self.edge:
            diff = (sobel_magnitude(pred) - sobel_magnitude(target)).abs()  # (B, 1, H, W)
            terms["edge"] = diff.mean() if mask is None else masked_mean(diff, -F.max_pool2d(-mask, 3, 1, 1))
        if self.ea_dists is not None:
            image_term, edge_term = self.ea_dists.terms((pred + 1) / 2, (target + 1) / 2)  # [0, 1]
            terms.update(dists=image_term, edge_dists=edge_term, ea_dists=image_term + edge_term)
        if self.identity is not None:
            terms["identity"] = self.identity(pred, target)
        return terms


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C, H, W) over the pixels weighted by ``mask`` (B, 1, H, W) in [0, 1]."""
    return (values * mask).sum() / (mask.sum() * values.shape[1]).clamp_min(1e-6)


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


def generator_step(s: Stage2State, lq: torch.Tensor, hq: torch.Tensor, rng: torch.Generator,
                   mask: Optional[torch.Tensor] = None) -> tuple[dict, dict]:
    """Forward, Eq. 12 loss, backward and (on a sync step) AdamW on LoRA + adapter.

    The discriminator's trainables stay ``requires_grad=False`` through forward *and* backward (a
    gradient-checkpointed discriminator recomputes its blocks during the backward)."""
    with frozen(s.d_params):
        terms, fakes = _generator_loss(s, lq, hq, rng, mask)
        s.accelerator.backward(terms["g_total"])
    if s.accelerator.sync_gradients and s.cfg.optim.max_grad_norm:
        terms["g_grad_norm"] = s.accelerator.clip_grad_norm_(s.g_params, s.cfg.optim.max_grad_norm)
    s.opt_g.step()
    s.opt_g.zero_grad(set_to_none=True)
    return terms, fakes


def _generator_loss(s: Stage2State, lq: torch.Tensor, hq: torch.Tensor, rng: torch.Generator,
                    mask: Optional[torch.Tensor] = None) -> tuple[dict, dict]:
    cfg, acc = s.cfg, s.accelerator
    w = cfg.losses
    # 1. One-step restoration through the inference recipe (gradients reach LoRA and adapter).
    out = s.generator(lq, generator=rng if cfg.model.posterior == "sample" else None, posterior=cfg.model.posterior)
    pred = out["image"].float()  # (B, 3, H, W) in [-1, 1]
    fake = out["pred_latents"].float()  # ẑ_H (B, 4, H/8, W/8)
    prompt = out["prompt_embeds"].detach()  # (B, 77, 1024)
    # 2. Reconstruction terms, in float32 whatever the mixed precision.
    with torch.autocast(acc.device.type, enabled=False):
        terms = s.losses(pred, hq.float(), None if mask is None else mask.float())
    total = w.mse * terms["mse"]
    if "edge" in terms:
        total = total + w.edge * terms["edge"]
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
        mask = batch["mask"].to(acc.device) if "mask" in batch else None  # (B, 1, S, S) in [0, 1]
        rng = step_generator(cfg.train.seed, step * accum + micro, acc.process_index)
        models = [s.generator] + ([s.discriminator] if s.discriminator is not None else [])
        with acc.accumulate(*models):
            terms, fakes = generator_step(s, lq, hq, rng, mask)
            if s.discriminator is not None:
                terms.update(discriminator_step(s, hq, fakes["fake"], fakes["prompt"], rng))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach().float()) / (1 if k.endswith("grad_norm") else accum)
    s.sched_g.step()
    if s.sched_d is not None:
        s.sched_d.step()
    return {k: torch.tensor(v) for k, v in sums.items()}
