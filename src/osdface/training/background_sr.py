"""Train the background ×2 network (``models.background_sr``) on high-resolution portraits.

    python -m osdface.training.background_sr train --output runs/bg [key=value ...]   # resumes if present
    python -m osdface.training.background_sr export runs/bg src/osdface/weights/background_sr

Data: ``data_root`` (``../shared/data/hires``): the CC BY portraits (``portraits/london_neutral``,
``london_smiling``, ``canada``, ``3dsk``), less the held-out London people 090–102 (both expressions),
which ``held_out_files`` returns with the FFHQ faces ``ffhq512/00250``–``00299`` (never trained on; the
weights carry no non-commercial terms since no FFHQ image is in training).

Degradation (LR from a random ``crop``-px HR crop, flipped/rotated): ×2 by INTER_AREA (the mean of each
2×2 block, as a sensor or a downscaled photo has it), or with probability ``bicubic_prob`` by antialiased
bicubic (PIL), then with probability ``jpeg_prob`` a JPEG of quality 75–95 (photos are JPEGs; a network
that never saw one sharpens its blocks). Loss: L1 in RGB [0, 1]. Adam, cosine decay.
Every step draws its crops from ``seed`` and the step number, so a resumed run sees the same batches.
A run folder holds ``config.yaml``, ``state.safetensors`` + ``state.json`` (weights, Adam moments, step;
written every ``save_every`` steps) and ``log.jsonl``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ..models.background_sr import BackgroundSR
from .config import config_to_dict, load_config, save_config
from .mini2_data import split_hires

PORTRAIT_SETS = ("london_neutral", "london_smiling", "canada", "3dsk")  # in this order (the seeded draws)


@dataclass
class BackgroundSRConfig:
    data_root: str = "../shared/data/hires"
    channels: int = 32
    num_layers: int = 4
    crop: int = 96  # HR crop side (even); the network sees crop / 2
    batch_size: int = 16
    max_steps: int = 8000
    lr: float = 1e-3
    min_lr: float = 1e-5
    bicubic_prob: float = 0.0
    jpeg_prob: float = 0.1
    seed: int = 0
    save_every: int = 500
    log_every: int = 100
    threads: int = 1


def training_files(root: str | Path) -> list[Path]:
    """The CC BY portraits on the training side of the hires split (``mini2_data.split_hires``: the held-out
    London people left out), set by set in ``PORTRAIT_SETS`` order."""
    root = Path(root)
    train = set(split_hires(root)["train"])
    return [path for name in PORTRAIT_SETS for path in sorted((root / "portraits" / name).glob("*.jpg"))
            if path.relative_to(root).as_posix() in train]


def held_out_files(root: str | Path) -> dict[str, list[Path]]:
    """Validation images never trained on (the validation side of the hires split): {"london": the held-out
    people's portraits (1024 px), "ffhq": the held-out FFHQ faces (512 px)}."""
    root = Path(root)
    val = split_hires(root)["val"]
    return {"london": [root / r for r in val if r.startswith("portraits/london_")],
            "ffhq": [root / r for r in val if r.startswith("ffhq512/")]}


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def downscale(hr: np.ndarray, factor: int, kernel: str = "area") -> np.ndarray:
    """HWC uint8 → ``factor``× smaller (the size must divide): "area" (cv2 INTER_AREA) or "bicubic"
    (PIL's antialiased bicubic)."""
    size = (hr.shape[1] // factor, hr.shape[0] // factor)
    if kernel == "area":
        return cv2.resize(hr, size, interpolation=cv2.INTER_AREA)
    if kernel == "bicubic":
        return np.asarray(Image.fromarray(hr).resize(size, Image.BICUBIC))
    raise ValueError(f"kernel must be 'area' or 'bicubic'; got {kernel!r}")


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def make_batch(images: list[np.ndarray], cfg: BackgroundSRConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR (B, 3, c/2, c/2), HR (B, 3, c, c)) in [0, 1], drawn from ``cfg.seed`` and ``step`` only."""
    rng = np.random.default_rng([cfg.seed, step])
    lr, hr = [], []
    c = cfg.crop
    for _ in range(cfg.batch_size):
        # 1. A crop at even coordinates (so area ×2 matches the whole image's), skipping most flat ones
        for _attempt in range(10):
            image = images[rng.integers(len(images))]
            y = 2 * rng.integers((image.shape[0] - c) // 2 + 1)
            x = 2 * rng.integers((image.shape[1] - c) // 2 + 1)
            crop = image[y:y + c, x:x + c]
            if crop.std() > 4 or rng.random() < 0.2:
                break
        crop = np.ascontiguousarray(np.rot90(crop, rng.integers(4))[:, ::-1] if rng.random() < 0.5
                                    else np.rot90(crop, rng.integers(4)))
        # 2. The degradation: ×2 (area, or antialiased bicubic), sometimes a JPEG
        small = downscale(crop, 2, "bicubic" if rng.random() < cfg.bicubic_prob else "area")
        if rng.random() < cfg.jpeg_prob:
            small = jpeg(small, rng.integers(75, 96))
        lr.append(small)
        hr.append(crop)
    lr_t = torch.from_numpy(np.stack(lr)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, c/2, c/2)
    hr_t = torch.from_numpy(np.stack(hr)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, c, c)
    return lr_t, hr_t


def _save_state(run: Path, net: BackgroundSR, opt: torch.optim.Adam, step: int) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, (name, p) in enumerate(net.named_parameters()):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"adam.{name}.{key}"] = state[key].contiguous()
        if "step" in state:
            tensors[f"adam.{name}.step"] = torch.as_tensor(state["step"]).reshape(1).float()
    tmp = run / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run / "state.safetensors")
    (run / "state.json").write_text(json.dumps({"step": step}) + "\n")


def _load_state(run: Path, net: BackgroundSR, opt: torch.optim.Adam) -> int:
    tensors = load_file(str(run / "state.safetensors"))
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    for name, p in net.named_parameters():
        if f"adam.{name}.exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"adam.{name}.step"].reshape(()),
                            "exp_avg": tensors[f"adam.{name}.exp_avg"],
                            "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"]}
    return int(json.loads((run / "state.json").read_text())["step"])


def learning_rate(cfg: BackgroundSRConfig, step: int) -> float:
    t = min(step / max(cfg.max_steps, 1), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def train(cfg: BackgroundSRConfig, run: Path) -> BackgroundSR:
    """Train (or resume) into ``run``; returns the network."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    # 1. The data, in memory
    files = training_files(cfg.data_root)
    if not files:
        raise FileNotFoundError(f"{cfg.data_root}/portraits: no training portraits found")
    images = [read_rgb(p) for p in files]
    # 2. The network and Adam, resumed when the run has a state
    net = BackgroundSR(channels=cfg.channels, num_layers=cfg.num_layers, scale=2)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step = _load_state(run, net, opt) if (run / "state.safetensors").is_file() else 0
    print(f"{len(files)} training images, {sum(p.numel() for p in net.parameters()):,} parameters, from step {step}",
          flush=True)
    # 3. The loop: L1 in RGB, cosine learning rate
    log = (run / "log.jsonl").open("a")
    t0, running = time.perf_counter(), 0.0
    while step < cfg.max_steps:
        lr_images, hr_images = make_batch(images, cfg, step)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss = (net(lr_images) - hr_images).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running += loss.item()
        if step % cfg.log_every == 0:
            line = {"step": step, "l1": running / cfg.log_every, "lr": learning_rate(cfg, step),
                    "s_per_step": (time.perf_counter() - t0) / cfg.log_every}
            log.write(json.dumps(line) + "\n")
            log.flush()
            print(json.dumps(line), flush=True)
            t0, running = time.perf_counter(), 0.0
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            _save_state(run, net, opt, step)
    log.close()
    return net.eval()


def export(run: Path, dest: Path) -> None:
    """The run's network as ``save_pretrained`` (config.json + safetensors), with the run's config and TERMS."""
    cfg = load_config(BackgroundSRConfig, run / "config.yaml")
    net = BackgroundSR(channels=cfg.channels, num_layers=cfg.num_layers, scale=2)
    tensors = load_file(str(run / "state.safetensors"))
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    net.save_pretrained(str(dest), safe_serialization=True)
    (dest / "training.json").write_text(json.dumps({
        "config": config_to_dict(cfg), "step": json.loads((run / "state.json").read_text())["step"],
        "training_files": [str(p.relative_to(Path(cfg.data_root))) for p in training_files(cfg.data_root)],
    }, indent=1) + "\n")
    (dest / "TERMS.md").write_text(TERMS)


TERMS = """# Background ×2 network: terms and sources

Trained by the osdface project (`osdface.training.background_sr`) on portraits released under
**CC BY 4.0** / CC BY, which require attribution:

- DeBruine, L., & Jones, B. (2017). Face Research Lab London Set. figshare. doi:10.6084/m9.figshare.5047666.v5
- DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions. figshare.
  doi:10.6084/m9.figshare.4220517.v1
- DeBruine, L., & Jones, B. (2020). 3DSK face set with webmorph templates. OSF. doi:10.17605/OSF.IO/A3947

No FFHQ or UTKFace image was used in training (`training.json` lists every file).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train")
    p_train.add_argument("--output", type=Path, required=True)
    p_train.add_argument("overrides", nargs="*", help="key=value (fields of BackgroundSRConfig)")
    p_export = sub.add_parser("export")
    p_export.add_argument("run", type=Path)
    p_export.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "train":
        base = config_to_dict(load_config(BackgroundSRConfig, args.output / "config.yaml")) \
            if (args.output / "config.yaml").is_file() else None
        train(load_config(BackgroundSRConfig, overrides=args.overrides, base=base), args.output)
    else:
        export(args.run, args.dest)


if __name__ == "__main__":
    main()
