"""Typed config of stage-1 training (the VRE: HQ/LQ VQGANs and their association).

Defaults are the paper-size model with DAEFR's loss recipe (SPEC §4.2); the packaged YAML files
hold the per-phase differences (``osdface/configs/stage1_{hq,lq,assoc,tiny}.yaml``)::

    cfg = load_stage1_config("stage1_hq", ["data.roots=[data/ffhq512]", "train.batch_size=2"])

A config name without a path (``stage1_hq``) is looked up among the packaged files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError, load_config

Phase = Literal["hq", "lq", "assoc"]
PHASES: tuple[str, ...] = ("hq", "lq", "assoc")


@dataclass
class ModelConfig:
    """Both VQ autoencoders (and the exported VRE). Defaults: the released VRE (SPEC §1.3)."""

    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 512
    z_channels: int = 512
    num_codes: int = 1024
    embed_dim: int = 512
    beta: float = 0.25
    # "codebook": DAEFR's code, |sg(z_q) − h|² + β|z_q − sg(h)|²; "commitment": paper Eq. 7.
    beta_placement: Literal["codebook", "commitment"] = "codebook"
    # Train the encoder on the [-3, 1] input the official inference gives it (see VisualRepresentationEmbedder).
    double_normalize: bool = True
    num_tokens: int = 77  # prompt tokens of the exported VRE


@dataclass
class DiscriminatorConfig:
    ndf: int = 64
    n_layers: int = 3


@dataclass
class LossConfig:
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0  # LPIPS (VGG16), as DAEFR's code (the paper writes VGG19 MSE)
    codebook_weight: float = 1.0
    disc_weight: float = 0.8  # λ_dis, times the adaptive weight
    disc_loss: Literal["hinge", "vanilla"] = "hinge"  # DAEFR's code uses hinge; the paper writes the log form
    disc_start: int = 30001  # optimizer steps without the GAN terms (DAEFR: 30001 codebook phases, 11 association)
    adaptive_weight_max: float = 1.0e4
    vgg_weights: str | None = None  # torchvision vgg16-397923af.pth (random VGG when None: tests only)
    lpips_weights: str | None = None  # lpips weights/v0.1/vgg.pth (unit lin weights when None)
    assoc_weight: float = 1.0  # λ_assoc once active
    assoc_start: int = 0  # λ_assoc = 0 before this optimizer step
    assoc_temperature: float = 0.07
    assoc_learnable_temperature: bool = False  # DAEFR keeps it fixed (logit_scale is in no optimizer)


@dataclass
class DataConfig:
    roots: tuple[str, ...] = ()  # folders of aligned HQ faces (FFHQ 512), searched recursively; resized to model.resolution
    degradation: Any = "dual"  # preset name or a mapping of DegradationConfig fields; unused in phase hq
    hflip: bool = True
    num_workers: int = 4
    seed: int = 0
    # Held-out faces (never trained on): the sample grids show them, and their reconstruction L1 is logged
    # (val/<branch>_l1). Empty: the grids show training faces.
    val_roots: tuple[str, ...] = ()
    val_seed: int = 12345  # their degradation seed (fixed: the same LQ at every sample step)


@dataclass
class OptimConfig:
    lr: float | None = None  # explicit learning rate; None: the taming rule below
    base_lr: float = 4.5e-6  # lr = accumulation · processes · batch_size · base_lr (32 · 4.5e-6 = 1.44e-4)
    betas: tuple[float, float] = (0.5, 0.9)
    lr_milestones: tuple[int, ...] = ()  # MultiStepLR in optimizer steps (DAEFR's are never reached)
    lr_gamma: float = 0.1
    max_grad_norm: float | None = None  # DAEFR does not clip


@dataclass
class TrainConfig:
    output_dir: str = "runs/stage1"
    batch_size: int = 4  # per process (paper: 32 on 8 GPUs)
    max_steps: int = 100_000  # optimizer steps; max_epochs, when set, takes precedence
    max_epochs: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False  # force CPU even when a GPU is there
    seed: int = 0
    checkpoint_every: int = 2000
    keep_last: int = 3
    log_every: int = 50
    sample_every: int = 1000
    num_samples: int = 4  # faces in each sample grid
    # Phase "assoc": the HQ / LQ autoencoders to start from (a run folder, a checkpoint-N folder,
    # an exported vqgan_hq / vqgan_lq folder, or a DAEFR-layout .ckpt).
    init_hq: str | None = None
    init_lq: str | None = None
    export: bool = True  # write <output_dir>/export at the end


@dataclass
class Stage1Config:
    phase: Phase = "hq"
    model: ModelConfig = field(default_factory=ModelConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def branches(self) -> tuple[str, ...]:
        """The autoencoders this phase trains: ("hq",), ("lq",) or ("hq", "lq")."""
        return ("hq", "lq") if self.phase == "assoc" else (self.phase,)


def packaged_config(name: str) -> Path:
    """Path of a packaged YAML (``stage1_hq``, ``stage1_lq``, ``stage1_assoc``, ``stage1_tiny``)."""
    stem = name.removesuffix(".yaml")
    path = Path(str(resources.files("osdface.configs") / f"{stem}.yaml"))
    if not path.is_file():
        available = sorted(p.name[:-5] for p in Path(str(resources.files("osdface.configs"))).glob("stage1_*.yaml"))
        raise ConfigError(f"no config file {name!r} and no packaged config of that name (packaged: {', '.join(available)})")
    return path


def resolve_config_path(path: str | Path) -> Path:
    """An existing file as given, else a packaged config name."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.parent == Path(".") and p.suffix in ("", ".yaml"):
        return packaged_config(p.name)
    raise ConfigError(f"{p}: no such config file")


def check_stage1_config(cfg: Stage1Config) -> Stage1Config:
    """Consistency checks that types alone cannot express; returns ``cfg``."""
    m, t = cfg.model, cfg.train
    levels = len(m.ch_mult)
    if m.resolution % 2 ** (levels - 1):
        raise ConfigError(f"model.resolution {m.resolution} is not divisible by 2^{levels - 1} (len(model.ch_mult) − 1 downsamplings)")
    widths = [m.ch * k for k in m.ch_mult]
    if any(w % 32 for w in [m.ch, *widths]):
        raise ConfigError(f"model.ch · model.ch_mult must all be multiples of 32 (GroupNorm of 32 groups), got {widths}")
    for name in ("batch_size", "max_steps", "gradient_accumulation_steps", "checkpoint_every", "log_every",
                 "sample_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.max_epochs is not None and t.max_epochs < 1:
        raise ConfigError(f"train.max_epochs must be >= 1 or null, got {t.max_epochs}")
    if cfg.phase != "hq" and cfg.data.degradation is None:
        raise ConfigError(f"phase {cfg.phase} needs data.degradation (a preset name such as 'dual')")
    return cfg


def load_stage1_config(path: str | Path | None = None, overrides: Sequence[str] = (), phase: str | None = None,
                       base: dict | None = None) -> Stage1Config:
    """Defaults ← ``base`` (a checkpoint's stored config) ← YAML ``path`` ← ``overrides`` ← ``phase``."""
    cfg = load_config(Stage1Config, resolve_config_path(path) if path is not None else None, overrides, base=base)
    if phase is not None:
        if phase not in PHASES:
            raise ConfigError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        cfg = dataclasses.replace(cfg, phase=phase)
    return check_stage1_config(cfg)
