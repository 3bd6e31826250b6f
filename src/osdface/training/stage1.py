"""Stage 1: train the Visual Representation Embedder (HQ/LQ VQGANs, then their association).

The three phases of the paper (§3.2, §4.1), in DAEFR's code form (SPEC §4.2), one ``phase`` each:

1. ``hq``: the HQ VQGAN reconstructs HQ faces (HQ codebook);
2. ``lq``: the LQ VQGAN reconstructs its own degraded input (DAEFR's LQ dataset returns gt = lq);
3. ``assoc``: both, initialised from phases 1–2, plus λ_assoc · the association loss between their
   pre-quantisation features (λ = 0 before ``loss.assoc_start``); four Adam optimizers (AE and D per
   branch). The LQ encoder + codebook of this phase is the VRE that stage 2 and inference use.

Per branch and optimizer step: L = L1 + λ_per·LPIPS + d_w·(−mean D(rec)) + L_VQ, where d_w is the
adaptive weight (gradient-norm ratio at ``decoder.conv_out.weight``) × λ_dis, 0 before
``loss.disc_start``; the PatchGAN is trained with the hinge (or vanilla) loss on the same
reconstruction, detached. One forward serves both updates (DAEFR's Lightning 1.x code re-runs the
forward for each optimizer; the discriminator there sees the already-updated autoencoder's output).

Usage::

    osdface train-vre --config stage1_hq data.roots=[data/ffhq512] --output runs/hq
    osdface train-vre --config stage1_lq data.roots=[data/ffhq512] --output runs/lq
    osdface train-vre --config stage1_assoc data.roots=[data/ffhq512] train.init_hq=runs/hq train.init_lq=runs/lq --output runs/assoc
    accelerate launch --num_processes 8 -m osdface train-vre --config stage1_assoc ...   # many GPUs
    osdface train-vre --resume latest --output runs/assoc                                  # after a crash

A run folder holds ``checkpoints/checkpoint-<step>/``, ``logs/`` (TensorBoard), ``samples/`` (grids
LQ | reconstruction | HQ), ``config.yaml`` and, at the end, ``export/`` (see ``export_vre``).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..state_dicts import read_weights_file
from ..files import atomic_folder
from ..losses import gan
from ..losses.association import AssociationLoss
from ..losses.perceptual import LPIPS
from ..models.patchgan import PatchDiscriminator
from ..models.vqgan import VQAutoencoder
from .checkpoint import CheckpointManager, find_checkpoint, load_trainable_state_dict
from .common import RunLogger, batches_from, check_batch_fits, make_accelerator
from .config import ConfigError, config_to_dict, save_config
from .stage1_config import Stage1Config, load_stage1_config

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
OFFICIAL_HQ_PREFIX = "vqvae."  # the HQ branch in DAEFR's association checkpoint (the LQ one is "vqvae_LQ.")


# ----------------------------------------------------------------------------------------------
# Building blocks


def build_autoencoder(cfg: Stage1Config) -> VQAutoencoder:
    m = cfg.model
    return VQAutoencoder(ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                         attn_resolutions=tuple(m.attn_resolutions), resolution=m.resolution, z_channels=m.z_channels,
                         num_codes=m.num_codes, embed_dim=m.embed_dim, beta=m.beta, beta_placement=m.beta_placement,
                         double_normalize=m.double_normalize)


def build_perceptual(cfg: Stage1Config) -> LPIPS | None:
    if cfg.loss.perceptual_weight <= 0:
        return None
    if cfg.loss.vgg_weights is None:
        logger.warning("loss.vgg_weights is not set: the perceptual loss uses a RANDOM VGG16 (fine for tests, "
                       "useless for training; pass torchvision's vgg16-397923af.pth)")
    return LPIPS.from_pretrained(cfg.loss.vgg_weights, cfg.loss.lpips_weights)


def build_dataset(cfg: Stage1Config, held_out: bool = False):
    """The training set (``data.roots``), or with ``held_out`` the validation faces (``data.val_roots``,
    degraded with ``data.val_seed``, no flips)."""
    from ..data import HQFolderDataset

    if not cfg.data.roots:
        raise ConfigError("data.roots is empty: give the folder(s) of HQ faces, e.g. data.roots=[data/ffhq512]")
    degradation = None if cfg.phase == "hq" else cfg.data.degradation  # the HQ phase needs no LQ
    roots, seed, hflip = ((cfg.data.val_roots, cfg.data.val_seed, False) if held_out
                          else (cfg.data.roots, cfg.data.seed, cfg.data.hflip))
    return HQFolderDataset(list(roots), size=cfg.model.resolution, degradation=degradation, hflip=hflip, seed=seed)


def learning_rate(cfg: Stage1Config, num_processes: int) -> float:
    """Explicit ``optim.lr``, else taming's rule: accumulation · processes · batch · base_lr."""
    if cfg.optim.lr is not None:
        return cfg.optim.lr
    return cfg.train.gradient_accumulation_steps * num_processes * cfg.train.batch_size * cfg.optim.base_lr


class _RealFake(nn.Module):
    """The discriminator on real and fake images in one call: one DDP forward per update, separate
    BatchNorm statistics for the two batches (as taming's two calls)."""

    def __init__(self, net: PatchDiscriminator):
        super().__init__()
        self.net = net

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(real), self.net(fake)


class _Branch:
    """One autoencoder with its discriminator, optimizers and schedulers (``ae``/``disc`` as prepared)."""

    def __init__(self, name: str, ae, disc, opt_ae, opt_disc, sched_ae, sched_disc):
        self.name, self.ae, self.disc = name, ae, disc
        self.opt_ae, self.opt_disc, self.sched_ae, self.sched_disc = opt_ae, opt_disc, sched_ae, sched_disc


# ----------------------------------------------------------------------------------------------
# Loading weights (association init, export)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    state = read_weights_file(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightsFormatError(f"{path}: no state_dict inside")
    return state


def load_autoencoder_weights(ae: VQAutoencoder, path: str | Path, branch: str) -> None:
    """Initialise ``ae`` from an exported ``vqgan_<branch>`` folder, a run / checkpoint folder (its
    ``ae_<branch>`` weights), a ``.safetensors`` state dict, or a DAEFR-layout ``.ckpt`` (keys
    ``vqvae_LQ.*`` for the LQ branch when present, else ``vqvae.*``)."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():  # VQAutoencoder.save_pretrained folder
        ae.load_state_dict(VQAutoencoder.from_pretrained(path).state_dict())
        return
    if path.is_dir():
        ckpt = find_checkpoint(path)
        files = sorted(p.name for p in ckpt.glob("ae_*.safetensors"))
        name = f"ae_{branch}.safetensors"
        if name not in files:
            raise WeightsFormatError(f"{ckpt}: no {name} (it holds {', '.join(files) or 'no autoencoder'}); "
                                     f"give the run of the {branch} phase")
        from safetensors.torch import load_file

        load_trainable_state_dict(ae, load_file(str(ckpt / name)), str(ckpt))
        return
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no such file or folder (autoencoder weights for the {branch} branch)")
    state = _load_state(path)
    prefixes = ("vqvae_LQ.", OFFICIAL_HQ_PREFIX) if branch == "lq" else (OFFICIAL_HQ_PREFIX,)
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in state)), "")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = ae.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise WeightsFormatError(f"{path}: does not fit the configured autoencoder: missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}")
    ae.load_state_dict(state)


# ----------------------------------------------------------------------------------------------
# One optimizer step


def _micro_step(step: int, batch: dict, branches: list[_Branch], lpips: LPIPS | None, assoc, cfg: Stage1Config,
                accelerator) -> dict[str, torch.Tensor]:
    """Forward, autoencoder update, discriminator update on one micro-batch; returns detached logs."""
    loss_cfg = cfg.loss
    disc_on = step >= loss_cfg.disc_start
    d_loss_fn = gan.d_loss_hinge if loss_cfg.disc_loss == "hinge" else gan.d_loss_vanilla
    logs: dict[str, torch.Tensor] = {}

    # 1. Targets: the HQ branch reconstructs HQ, the LQ branch its own LQ input (DAEFR: gt = lq).
    targets = {b.name: batch[b.name].to(accelerator.device) for b in branches}  # (B, 3, R, R) in [-1, 1]

    # 2. Autoencoders, then the generator loss of each branch.
    with accelerator.autocast():
        outs = {b.name: b.ae(targets[b.name]) for b in branches}
        total = 0.0
        for b in branches:
            x, out = targets[b.name], outs[b.name]
            rec = out.reconstruction  # (B, 3, R, R)
            l1 = (x - rec).abs().mean()
            p_loss = lpips(x, rec).mean() if lpips is not None else torch.zeros_like(l1)
            nll = loss_cfg.pixel_weight * l1 + loss_cfg.perceptual_weight * p_loss
            g_loss, d_weight = torch.zeros_like(l1), torch.zeros_like(l1)
            if disc_on:  # frozen D, called unwrapped: no DDP forward, no gradient into D
                critic = accelerator.unwrap_model(b.disc).net.requires_grad_(False)
                g_loss = gan.g_loss_nonsaturating_mean(critic(rec))
                d_weight = gan.adaptive_gan_weight(nll, g_loss, accelerator.unwrap_model(b.ae).last_layer,
                                                   loss_cfg.disc_weight, loss_cfg.adaptive_weight_max)
            total = total + nll + d_weight * g_loss + loss_cfg.codebook_weight * out.vq_loss
            logs.update({f"{b.name}/l1": l1, f"{b.name}/lpips": p_loss, f"{b.name}/vq": out.vq_loss,
                         f"{b.name}/g_loss": g_loss, f"{b.name}/d_weight": d_weight,
                         f"{b.name}/codes_used": torch.tensor(float(out.indices.unique().numel()))})

        # 3. Association between the pre-quantisation features (K = B·r² rows).
        if assoc is not None:
            lam = loss_cfg.assoc_weight if step >= loss_cfg.assoc_start else 0.0
            l_assoc = assoc(outs["hq"].features, outs["lq"].features)
            total = total + lam * l_assoc
            logs.update({"assoc/loss": l_assoc, "assoc/lambda": torch.tensor(lam)})

    # 4. Autoencoder update (accelerate skips step/zero_grad on accumulation micro-steps).
    accelerator.backward(total)
    for b in branches:
        accelerator.unwrap_model(b.disc).net.requires_grad_(True)
    if accelerator.sync_gradients and cfg.optim.max_grad_norm is not None:
        for b in branches:
            accelerator.clip_grad_norm_(b.ae.parameters(), cfg.optim.max_grad_norm)
    for b in branches:
        b.opt_ae.step()
        b.opt_ae.zero_grad(set_to_none=True)
    logs["loss/total"] = total.detach()

    # 5. Discriminator update on the same reconstructions, detached (skipped before disc_start).
    if disc_on:
        with accelerator.autocast():
            d_total = 0.0
            for b in branches:
                real, fake = b.disc(targets[b.name].detach(), outs[b.name].reconstruction.detach())
                d_loss = d_loss_fn(real, fake)
                d_total = d_total + d_loss
                logs.update({f"{b.name}/d_loss": d_loss.detach(), f"{b.name}/logits_real": real.detach().mean(),
                             f"{b.name}/logits_fake": fake.detach().mean()})
        accelerator.backward(d_total)
        if accelerator.sync_gradients and cfg.optim.max_grad_norm is not None:
            for b in branches:
                accelerator.clip_grad_norm_(b.disc.parameters(), cfg.optim.max_grad_norm)
        for b in branches:
            b.opt_disc.step()
            b.opt_disc.zero_grad(set_to_none=True)
    return {k: v.detach().float().cpu() for k, v in logs.items()}


def _optimizer_step(step: int, stream, models: list, branches: list[_Branch], lpips, assoc, cfg: Stage1Config,
                    accelerator) -> dict[str, torch.Tensor]:
    """``gradient_accumulation_steps`` micro-batches, then the schedulers; returns mean logs."""
    logs: list[dict] = []
    for _ in range(cfg.train.gradient_accumulation_steps):
        _, _, batch = next(stream)
        with accelerator.accumulate(*models):
            logs.append(_micro_step(step, batch, branches, lpips, assoc, cfg, accelerator))
    if not accelerator.sync_gradients:  # pragma: no cover - accelerate's counter out of step with ours
        raise RuntimeError("gradient accumulation is out of step with the optimizer step counter")
    with warnings.catch_warnings():  # D's scheduler also counts the steps before disc_start (no D update)
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for b in branches:
            b.sched_ae.step()
            b.sched_disc.step()
    return {k: torch.stack([entry[k] for entry in logs]).mean() for k in logs[-1]}


# ----------------------------------------------------------------------------------------------
# Training


def _sample_rows(branches: list[_Branch], samples: dict, accelerator) -> list[torch.Tensor]:
    """Grid columns: [HQ | rec] (phase hq), [LQ | rec | HQ] (lq), [LQ | LQ rec | HQ rec | HQ] (assoc)."""
    recs = {}
    with torch.no_grad():
        for b in branches:
            ae = accelerator.unwrap_model(b.ae)
            was_training = ae.training
            ae.eval()
            recs[b.name] = ae(samples[b.name].to(accelerator.device)).reconstruction.float().clamp(-1, 1).cpu()
            ae.train(was_training)
    if list(recs) == ["hq"]:
        return [samples["hq"], recs["hq"]]
    rows = [samples["lq"], recs["lq"]]
    return rows + ([recs["hq"]] if "hq" in recs else []) + [samples["hq"]]


def _log_samples(run_log, branches: list[_Branch], samples: dict, accelerator, step: int, held_out: bool) -> None:
    """The sample grid; for held-out faces also each branch's reconstruction L1 (``val/<branch>_l1``)."""
    rows = _sample_rows(branches, samples, accelerator)
    run_log.grid("samples", rows, step)
    if held_out:
        recs = {"hq": rows[1]} if len(rows) == 2 else {"lq": rows[1], **({"hq": rows[2]} if len(rows) == 4 else {})}
        run_log.scalars({f"val/{name}_l1": float((rec - samples[name]).abs().mean()) for name, rec in recs.items()}, step)


def _checkpoint_parts(branches: list[_Branch], assoc, accelerator) -> tuple[dict, dict, dict]:
    modules, optimizers, schedulers = {}, {}, {}
    for b in branches:
        modules[f"ae_{b.name}"] = accelerator.unwrap_model(b.ae)
        modules[f"disc_{b.name}"] = accelerator.unwrap_model(b.disc).net
        optimizers[f"ae_{b.name}"], optimizers[f"disc_{b.name}"] = b.opt_ae, b.opt_disc
        schedulers[f"ae_{b.name}"], schedulers[f"disc_{b.name}"] = b.sched_ae, b.sched_disc
    if assoc is not None and any(p.requires_grad for p in accelerator.unwrap_model(assoc).parameters()):
        modules["assoc"] = accelerator.unwrap_model(assoc)
    if accelerator.scaler is not None:  # fp16 loss scale
        schedulers["grad_scaler"] = accelerator.scaler
    return modules, optimizers, schedulers


def resolve_resume(resume: str | Path | None, run_dir: Path) -> Path | None:
    """``"latest"`` → the newest checkpoint of ``run_dir`` (None if there is none), a path → that checkpoint."""
    if resume is None:
        return None
    if str(resume) == "latest":
        return CheckpointManager(run_dir / "checkpoints").latest()
    return find_checkpoint(resume)


def load_run_config(config: str | Path | None = None, overrides: Sequence[str] = (), phase: str | None = None,
                    output_dir: str | Path | None = None, resume: str | Path | None = None) -> Stage1Config:
    """The config of a (possibly resumed) run: the checkpoint's stored config ← ``config`` file ←
    ``overrides`` ← ``phase`` / ``output_dir``. Without a checkpoint to resume, ``config`` is required."""
    extra = [f"train.output_dir={Path(output_dir)}"] if output_dir is not None else []
    fresh = load_stage1_config(config, [*overrides, *extra], phase) if config is not None else None
    checkpoint = None
    if resume is not None:
        run_dir = Path(output_dir) if output_dir is not None else Path(fresh.train.output_dir) if fresh else None
        if str(resume) == "latest" and run_dir is None:
            raise ConfigError("--resume latest needs the run folder: give --output DIR (or --config FILE)")
        checkpoint = resolve_resume(resume, run_dir) if str(resume) == "latest" else find_checkpoint(resume)
    if checkpoint is None:
        if fresh is None:
            raise ConfigError("give --config FILE (or a packaged name: stage1_hq, stage1_lq, stage1_assoc, stage1_tiny)"
                              + (f"; no checkpoint to resume under {output_dir}" if resume is not None else ""))
        return fresh
    base = CheckpointManager.read_state(checkpoint)["config"]
    cfg = load_stage1_config(config, [*overrides, *extra], phase, base=base)
    if output_dir is None and str(resume) != "latest":  # resuming a given checkpoint: keep writing to its run
        cfg = replace(cfg, train=replace(cfg.train, output_dir=str(checkpoint.parent.parent)))
    return cfg


def train_vre(cfg: Stage1Config, resume: str | Path | None = None) -> Path:
    """Train one stage-1 phase; returns the run folder. ``resume``: "latest" (the newest checkpoint of
    ``cfg.train.output_dir``, or a fresh start when there is none) or a checkpoint / run folder."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    t = cfg.train
    run_dir = Path(t.output_dir)
    checkpoint = resolve_resume(resume, run_dir)
    accelerator = make_accelerator(t.mixed_precision, t.gradient_accumulation_steps, cpu=t.cpu, project_dir=run_dir)
    main = accelerator.is_main_process
    set_seed(t.seed)  # same initial weights in every process (the frozen random VGG of tests included)

    # 1. Data (sample faces first: the stream sets the dataset's epoch when it starts).
    dataset = build_dataset(cfg)
    dataset.set_epoch(0)
    check_batch_fits(dataset, t.batch_size, accelerator.num_processes)
    shown = build_dataset(cfg, held_out=True) if cfg.data.val_roots else dataset  # held-out faces when given
    shown.set_epoch(0)
    n_samples = min(t.num_samples, len(shown))
    samples = {k: torch.stack([shown[i][k] for i in range(n_samples)]) for k in ("lq", "hq")}
    per_epoch = max(1, math.ceil(len(dataset) / accelerator.num_processes) // t.batch_size // t.gradient_accumulation_steps)
    max_steps = t.max_epochs * per_epoch if t.max_epochs is not None else t.max_steps

    # 2. Models, losses, optimizers (four in the association phase: AE and D per branch).
    lr = learning_rate(cfg, accelerator.num_processes)
    lpips = build_perceptual(cfg)
    if lpips is not None:
        lpips.to(accelerator.device)
    assoc = None
    if cfg.phase == "assoc":
        assoc = AssociationLoss(cfg.loss.assoc_temperature, cfg.loss.assoc_learnable_temperature)
    branches, models = [], []
    for name in cfg.branches():
        ae, disc = build_autoencoder(cfg), _RealFake(PatchDiscriminator(3, cfg.disc.ndf, cfg.disc.n_layers))
        init = t.init_hq if name == "hq" else t.init_lq
        if cfg.phase == "assoc" and checkpoint is None:
            if init is None:
                logger.warning("train.init_%s is not set: the %s autoencoder of the association phase starts "
                               "from random weights (the paper starts from the %s codebook phase)", name, name, name)
            else:
                load_autoencoder_weights(ae, init, name)
        ae_params = [p for p in ae.parameters() if p.requires_grad]
        if name == "lq" and assoc is not None and cfg.loss.assoc_learnable_temperature:
            ae_params.append(assoc.logit_scale)
        opt_ae = torch.optim.Adam(ae_params, lr=lr, betas=tuple(cfg.optim.betas))
        opt_disc = torch.optim.Adam(disc.parameters(), lr=lr, betas=tuple(cfg.optim.betas))
        scheds = [torch.optim.lr_scheduler.MultiStepLR(o, list(cfg.optim.lr_milestones), cfg.optim.lr_gamma)
                  for o in (opt_ae, opt_disc)]
        ae, disc, opt_ae, opt_disc = accelerator.prepare(ae, disc, opt_ae, opt_disc)
        branches.append(_Branch(name, ae, disc, opt_ae, opt_disc, *scheds))
        models += [ae, disc]
    if assoc is not None:
        if cfg.loss.assoc_learnable_temperature:
            assoc = accelerator.prepare(assoc)
            models.append(assoc)
        else:
            assoc.to(accelerator.device)

    # 3. Resume: weights, optimizers, schedulers, RNG, step (the data position follows from the step).
    manager = CheckpointManager(run_dir / "checkpoints", keep_last=t.keep_last)
    modules, optimizers, schedulers = _checkpoint_parts(branches, assoc, accelerator)
    step = 0
    if checkpoint is not None:
        state = CheckpointManager.load(checkpoint, modules, optimizers, schedulers, rank=accelerator.process_index)
        step = state["step"]
        if main:
            logger.info("resumed from %s at step %d", checkpoint, step)
    elif resume is not None and main:
        logger.info("no checkpoint under %s: starting a new run", run_dir)
    config_dict = config_to_dict(cfg)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    run_log = RunLogger(run_dir, enabled=main)
    stream = batches_from(dataset, t.batch_size, cfg.data.seed, start_step=step * t.gradient_accumulation_steps,
                          num_workers=cfg.data.num_workers, rank=accelerator.process_index,
                          world_size=accelerator.num_processes)
    images_per_step = t.batch_size * t.gradient_accumulation_steps * accelerator.num_processes

    # 4. Loop (a fresh run shows its starting point as step 0).
    if main and checkpoint is None:
        _log_samples(run_log, branches, samples, accelerator, 0, held_out=bool(cfg.data.val_roots))
    bar = tqdm(total=max_steps, initial=step, disable=not main, desc=f"stage 1 ({cfg.phase})", dynamic_ncols=True)
    last_saved = step if checkpoint is not None else -1
    while step < max_steps:
        start = time.perf_counter()
        logs = _optimizer_step(step, stream, models, branches, lpips, assoc, cfg, accelerator)
        step += 1
        logs["perf/images_per_s"] = torch.tensor(images_per_step / (time.perf_counter() - start))
        if step % t.log_every == 0 or step == max_steps:
            keys = sorted(logs)
            values = accelerator.reduce(torch.stack([logs[k] for k in keys]).to(accelerator.device), "mean")
            logs = dict(zip(keys, values.cpu().tolist()))
            run_log.scalars({**logs, "lr": branches[0].sched_ae.get_last_lr()[0]}, step)
        bar.update(1)
        bar.set_postfix({k.replace("/", "_"): f"{float(v):.3g}" for k, v in logs.items()
                         if k.endswith(("l1", "lpips", "vq", "d_loss")) or k == "assoc/loss"}, refresh=False)
        if main and (step % t.sample_every == 0 or step == max_steps):
            _log_samples(run_log, branches, samples, accelerator, step, held_out=bool(cfg.data.val_roots))
        if step % t.checkpoint_every == 0 or step == max_steps:
            manager.save(step, modules, optimizers, schedulers, {"epoch": step // per_epoch}, config_dict,
                         rank=accelerator.process_index, world_size=accelerator.num_processes,
                         barrier=accelerator.wait_for_everyone)
            last_saved = step
    bar.close()
    run_log.close()

    # 5. Export the trained weights (LQ encoder + codebook → VRE, both formats).
    accelerator.wait_for_everyone()
    if main and t.export and last_saved == step:
        export_vre(manager.latest(), run_dir / EXPORT_DIR)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


# ----------------------------------------------------------------------------------------------
# Export


def export_vre(checkpoint: str | Path, output_dir: str | Path | None = None) -> dict[str, Path]:
    """Write a training checkpoint's weights for use elsewhere; returns the paths written.

    ``checkpoint``: a ``checkpoint-N`` folder or a run folder (its latest). ``output_dir`` defaults to
    ``<run>/export``; it is replaced atomically. Contents:

    - ``vqgan_hq/``, ``vqgan_lq/``: the autoencoders of the phase (``VQAutoencoder.from_pretrained``;
      what ``train.init_hq`` / ``train.init_lq`` of the association phase take);
    - phases lq and assoc: ``visual_embedder/`` (``VisualRepresentationEmbedder.from_pretrained``,
      our format) and ``associate_2.ckpt`` (the official layout: ``vqvae_LQ.*`` = the LQ encoder,
      quant_conv, codebook, post_quant_conv and decoder; in the association phase also the HQ branch
      ``vqvae.*``, both discriminators ``loss.discriminator.*`` / ``loss_LQ.discriminator.*`` and
      ``logit_scale``, as DAEFR's checkpoint). ``OSDFacePipeline.from_official`` reads it with
      ``vre_config=`` the model's ``vre_config()`` (its ``double_normalize`` included).
    """
    from safetensors.torch import load_file

    from ..official import VRE_FILE, VRE_PREFIX, write_vre_checkpoint

    ckpt = find_checkpoint(checkpoint)
    cfg = load_stage1_config(base=CheckpointManager.read_state(ckpt)["config"])
    out = Path(output_dir) if output_dir is not None else ckpt.parent.parent / EXPORT_DIR
    written: dict[str, Path] = {}
    with atomic_folder(out) as tmp:
        aes, discs = {}, {}
        for name in cfg.branches():
            aes[name] = build_autoencoder(cfg)
            load_trainable_state_dict(aes[name], load_file(str(ckpt / f"ae_{name}.safetensors")), str(ckpt))
            discs[name] = PatchDiscriminator(3, cfg.disc.ndf, cfg.disc.n_layers)
            load_trainable_state_dict(discs[name], load_file(str(ckpt / f"disc_{name}.safetensors")), str(ckpt))
            aes[name].save_pretrained(tmp / f"vqgan_{name}")
            written[f"vqgan_{name}"] = out / f"vqgan_{name}"
        if "lq" in aes:
            lq = aes["lq"]
            lq.to_vre(cfg.model.num_tokens).save_pretrained(tmp / "visual_embedder")
            extra = {VRE_PREFIX + k: v for k, v in lq.training_only_state_dict().items()}
            extra.update({"loss_LQ.discriminator." + k: v for k, v in discs["lq"].state_dict().items()})
            if "hq" in aes:
                extra.update({OFFICIAL_HQ_PREFIX + k: v for k, v in aes["hq"].state_dict().items()})
                extra.update({"loss.discriminator." + k: v for k, v in discs["hq"].state_dict().items()})
                scale = AssociationLoss(cfg.loss.assoc_temperature, cfg.loss.assoc_learnable_temperature)
                if (ckpt / "assoc.safetensors").is_file():
                    load_trainable_state_dict(scale, load_file(str(ckpt / "assoc.safetensors")), str(ckpt))
                extra["logit_scale"] = scale.logit_scale.detach().clone()
            write_vre_checkpoint(lq.vre_state_dict(), tmp / VRE_FILE, extra=extra)
            written["visual_embedder"], written[VRE_FILE] = out / "visual_embedder", out / VRE_FILE
        save_config(cfg, tmp / "config.yaml")
    return written


__all__ = ["build_autoencoder", "build_dataset", "build_perceptual", "export_vre", "find_checkpoint", "learning_rate",
           "load_autoencoder_weights", "load_run_config", "resolve_resume", "train_vre"]
