"""Typed config of stage-2 training (the one-step generator: UNet LoRA + prompt adapter, with a GAN).

Defaults describe the paper's run (SD 2.1-base, 512 px, rank-16 LoRA, T_L = 399, AdamW 1e-4 for G and
D, batch 2, 150K iterations); the packaged YAML files hold the differences
(``osdface/configs/stage2_default.yaml``, ``stage2_tiny.yaml``)::

    cfg = load_stage2_config("stage2_default", ["data.roots=[data/ffhq512, data/ffhqr512]"])

**Loss weights** (Eq. 12: L = λ_dis·L_G + λ_ID·L_ID + λ_per·L_EA-DISTS + MSE). The paper does not give
λ_dis, λ_ID, λ_per (SPEC §5.6, §9.1), so these defaults are choices:

- ``mse = 1``: the unit of Eq. 12 (MSE on [-1, 1] images, the VAE's range).
- ``ea_dists = 1`` (λ_per): DFOSD, which OSDFace follows for EA-DISTS, sums MSE and EA-DISTS unweighted
  (L_spatial = MSE + EA-DISTS); so does the one public re-implementation (js43o/OSDFace).
- ``identity = 0.1`` (λ_ID): js43o/OSDFace's value. 1 − cos lies in [0, 2]; 0.1 keeps identity a
  correction next to the pixel/perceptual terms rather than the driving term.
- ``gan = 0.01`` (λ_dis): js43o/OSDFace's value (0.01, later 0.02), inside DMD2's range for SD-based
  latent discriminators (3e-3 – 1e-2). Small because the generator starts from a useful restoration
  (or from SD's denoiser) and a strong early GAN term on a fresh discriminator adds artefacts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from ..models.lora import DEFAULT_UNET_TARGETS
from .checkpoint import CheckpointManager, find_checkpoint
from .config import ConfigError, load_config

PACKAGED_PREFIX = "stage2_"


@dataclass
class ModelConfig:
    """The generator (SPEC §1, §5.1, §5.5)."""

    sd_model: Optional[str] = None  # SD 2.1-base diffusers folder (unet/, vae/, scheduler/); None: $OSDFACE_HOME/stable-diffusion-2-1-base
    # Where to start. None: from scratch (LoRA with B = 0, i.e. the base UNet; random adapter; VRE from
    # ``vre``). A folder: fine-tune from the official release (associate_2.ckpt,
    # embedding_change_weights.pth, pytorch_lora_weights.safetensors) or from our format saved with
    # lora="separate" (its LoRA, adapter and VRE). Its LoRA modules/rank replace lora_targets/lora_rank.
    init_from: Optional[str] = None
    # VRE weights (frozen): a release folder or associate_2.ckpt, a stage-1 export folder, a
    # visual_embedder/ folder or one of our model folders. None: the VRE of ``init_from``.
    vre: Optional[str] = None
    vre_config: Optional[dict[str, Any]] = None  # VRE architecture for .ckpt files (None: the release's)
    adapter_config: Optional[dict[str, Any]] = None  # PromptAdapter(in_dim, hidden_dim, out_dim); None: 512→256→1024
    # A model of our own size instead of SD 2.1-base (osdface-mini): UNet2DConditionModel kwargs and an
    # autoencoder config ({"_class_name": "SpaceToDepthAutoencoder", "factor": 4} or AutoencoderKL kwargs),
    # built with fresh weights (seeded by train.seed); the scheduler stays SD 2.1-base's. Both or neither.
    unet_config: Optional[dict[str, Any]] = None
    vae_config: Optional[dict[str, Any]] = None
    # What of the UNet is trained: "lora" (the paper: a LoRA on the frozen SD UNet) or "full" (every
    # weight; for a UNet built from unet_config, which has no pretrained weights to keep).
    train_unet: Literal["lora", "full"] = "lora"
    lora_rank: int = 16  # alpha = rank (scale 1), the release's convention
    lora_targets: tuple[str, ...] = DEFAULT_UNET_TARGETS  # PEFT target_modules (name or name suffix)
    timestep: int = 399  # T_L: the fixed timestep of the one step
    sample_size: int = 512  # training face size (data is brought to it)
    posterior: Literal["mode", "sample"] = "mode"  # VAE encode of LQ (z_L) and HQ (z_H); inference default: mode


@dataclass
class DiscriminatorConfig:
    """The latent discriminator (SPEC §5.4): copied SD encoder half + LoRA + a random head."""

    head: Literal["mlp", "conv", "patch"] = "mlp"  # see osdface.models.discriminator.HEADS
    mlp_hidden: int = 512
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = DEFAULT_UNET_TARGETS
    num_timesteps: int = 1000  # t ~ U{0 … num_timesteps − 1} for F(z, t)
    share_noise: bool = True  # the same t and ε for the real and the fake latent of a sample
    condition_on_prompt: bool = True  # cross-attention context = the visual prompt (detached)


@dataclass
class LossConfig:
    """Loss weights (see the module docstring for why these defaults) and the loss networks' weights."""

    mse: float = 1.0
    ea_dists: float = 1.0  # λ_per
    identity: float = 0.1  # λ_ID
    gan: float = 0.01  # λ_dis; 0 turns the GAN (and the discriminator) off
    # L1 between the Sobel gradient magnitudes of restored and HQ faces (no network, no weights; the
    # edge half of EA-DISTS in pixel space). Not in the paper; osdface-mini 2 uses it.
    edge: float = 0.0
    edge_gray: Literal["mean", "luma"] = "mean"  # Sobel grayscale: channel mean (EA-DISTS demo) or luma
    dists_weights: Optional[str] = None  # DISTS α/β file (pyiqa DISTS_weights-f5e65c96.pth / DISTS_pytorch weights.pt)
    vgg16_weights: Optional[str] = None  # torchvision vgg16-397923af.pth (not needed if dists_weights holds VGG)
    arcface: Optional[str] = None  # resnet18_110.pth or arcface_resnet18.pth
    arcface_use_se: bool = False
    arcface_gray: Literal["luma", "mean"] = "luma"  # ArcFace input gray: GFPGAN/DAEFR luma or channel mean
    arcface_arch: Optional[dict[str, Any]] = None  # ResNetArcFace kwargs (tests: tiny networks)
    allow_random_weights: bool = False  # missing loss-network weights → random ones (tests, benchmarks only)


@dataclass
class DataConfig:
    roots: tuple[str, ...] = ()  # folders of aligned HQ faces (FFHQ, FFHQR), searched recursively
    degradation: Any = "dual"  # preset name, a mapping of DegradationConfig fields, or null (LQ = HQ)
    hflip: bool = True
    num_workers: int = 4
    seed: int = 0
    # Leave out of the losses the pixels that `osdface align` filled by reflection (outside the photo),
    # read from each root's manifest.json (faces without a record count as whole).
    valid_mask: bool = False
    # Held-out set: an LQ/HQ folder pair (val_lq + val_hq) or HQ folders degraded with val_seed.
    val_lq: Optional[str] = None
    val_hq: Optional[str] = None
    val_roots: tuple[str, ...] = ()
    val_seed: int = 12345
    val_count: int = 16  # images measured (PSNR/SSIM) at each validation
    val_grid: int = 4  # of which this many go into the LQ | restored | HQ grid


@dataclass
class OptimConfig:
    lr_g: float = 1.0e-4  # LoRA + adapter (paper: AdamW 1e-4)
    lr_d: float = 1.0e-4  # discriminator LoRA + head
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1.0e-2
    eps: float = 1.0e-8
    max_grad_norm: Optional[float] = 1.0
    warmup_steps: int = 0  # linear warm-up of both learning rates
    # after the warm-up: "constant" (the paper's) or "cosine" (decay to 0 at train.max_steps)
    lr_schedule: Literal["constant", "cosine"] = "constant"


@dataclass
class TrainConfig:
    output_dir: str = "runs/stage2"
    batch_size: int = 2  # per process (paper: 2)
    max_steps: int = 150_000  # optimizer steps; each is one G update and one D update
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False  # UNet, VAE decoder and discriminator blocks
    cpu: bool = False  # force CPU even when a GPU is there
    seed: int = 0
    checkpoint_every: int = 5000
    keep_last: int = 3
    log_every: int = 10
    validate_every: int = 2000
    export: bool = True  # write <output_dir>/export at the end
    export_lora: Literal["separate", "merged"] = "separate"  # our-format export: LoRA only, or merged UNet + VAE


@dataclass
class Stage2Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def packaged_configs() -> list[str]:
    return sorted(p.name[:-5] for p in Path(str(resources.files("osdface.configs"))).glob(f"{PACKAGED_PREFIX}*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """An existing file as given, else a packaged config (``stage2_tiny``, or just ``tiny``)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.parent == Path(".") and p.suffix in ("", ".yaml"):
        stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
        for name in (stem, PACKAGED_PREFIX + stem):
            candidate = Path(str(resources.files("osdface.configs") / f"{name}.yaml"))
            if candidate.is_file():
                return candidate
        raise ConfigError(f"no config file {str(path)!r} and no packaged config of that name "
                          f"(packaged: {', '.join(packaged_configs())})")
    raise ConfigError(f"{p}: no such config file")


def check_stage2_config(cfg: Stage2Config) -> Stage2Config:
    """Consistency checks that types alone cannot express; returns ``cfg``."""
    m, t, d = cfg.model, cfg.train, cfg.discriminator
    for name in ("batch_size", "max_steps", "gradient_accumulation_steps", "checkpoint_every", "log_every",
                 "validate_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if m.lora_rank < 1 or d.lora_rank < 0:
        raise ConfigError("model.lora_rank must be >= 1 and discriminator.lora_rank >= 0")
    if not 0 <= m.timestep < 1000:
        raise ConfigError(f"model.timestep must be in [0, 1000), got {m.timestep}")
    if not 1 <= d.num_timesteps <= 1000:
        raise ConfigError(f"discriminator.num_timesteps must be in [1, 1000], got {d.num_timesteps}")
    if (m.unet_config is None) != (m.vae_config is None):
        raise ConfigError("model.unet_config and model.vae_config go together (a model of our own size)")
    if m.train_unet == "full" and m.init_from:
        raise ConfigError("model.train_unet=full trains a UNet built from model.unet_config; model.init_from "
                          "(a LoRA to fine-tune) does not apply")
    if m.unet_config is None and m.sample_size % 8:
        raise ConfigError(f"model.sample_size must be a multiple of 8 (the VAE's factor), got {m.sample_size}")
    for name in ("mse", "ea_dists", "identity", "gan", "edge"):
        if getattr(cfg.losses, name) < 0:
            raise ConfigError(f"losses.{name} must be >= 0")
    if bool(cfg.data.val_lq) != bool(cfg.data.val_hq):
        raise ConfigError("data.val_lq and data.val_hq go together (an LQ/HQ folder pair)")
    return cfg


def load_stage2_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                       base: Optional[dict] = None) -> Stage2Config:
    """Defaults ← ``base`` (a checkpoint's stored config) ← YAML ``path`` ← ``key=value`` overrides."""
    cfg = load_config(Stage2Config, resolve_config_path(path) if path is not None else None, overrides, base=base)
    return check_stage2_config(cfg)


def load_run_config(config: Optional[str | Path] = None, overrides: Sequence[str] = (),
                    output_dir: Optional[str | Path] = None,
                    resume: Optional[str | Path] = None) -> tuple[Stage2Config, Optional[Path]]:
    """The config of a (possibly resumed) run and the checkpoint to resume from (None: a fresh run).

    Fresh: ``config`` file ← ``overrides`` ← ``output_dir``. Resumed: the checkpoint's stored config ←
    ``config`` (if given) ← ``overrides`` ← ``output_dir`` (e.g. raise ``train.max_steps``).
    ``resume="latest"`` with no checkpoint in the run folder starts fresh.
    """
    extra = [f"train.output_dir={Path(output_dir)}"] if output_dir is not None else []
    fresh = load_stage2_config(config, [*overrides, *extra]) if config is not None else None
    checkpoint = None
    if resume is not None:
        if str(resume) == "latest":
            run_dir = Path(output_dir) if output_dir is not None else Path(fresh.train.output_dir) if fresh else None
            if run_dir is None:
                raise ConfigError("--resume latest needs the run folder: give --output DIR (or --config FILE)")
            checkpoint = CheckpointManager(run_dir / "checkpoints").latest()
        else:
            checkpoint = find_checkpoint(resume)
    if checkpoint is None:
        if fresh is None:
            raise ConfigError("give --config FILE (or a packaged name: " + ", ".join(packaged_configs()) + ")"
                              + (f"; no checkpoint to resume under {output_dir}" if resume is not None else ""))
        return fresh, None
    base = CheckpointManager.read_state(checkpoint)["config"]
    cfg = load_stage2_config(config, [*overrides, *extra], base=base)
    if output_dir is None and str(resume) != "latest":  # resuming a given checkpoint: keep writing to its run
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output_dir=str(checkpoint.parent.parent)))
    return cfg, checkpoint
