"""Stage-2 training: seconds per iteration for the full-size generator + discriminator, with a breakdown.

One iteration = one G step (one-step restoration, MSE + EA-DISTS + identity + the GAN term through
the frozen discriminator, backward, AdamW) and one D step (VAE-encode the HQ faces, discriminator on
real and fake latents diffused to random t, backward, AdamW), i.e. exactly ``stage2.optimizer_step``
without the data loader. Models are full size with random weights (SD 2.1-base UNet and VAE from
``sd21_base_config``, the release VRE and adapter, VGG16-DISTS, ResNet-18 ArcFace, the discriminator
copied from the UNet with rank-16 LoRA and the MLP head); inputs are random faces. The first
iteration is a warm-up and is reported separately.

Breakdown (wall clock, CUDA-synchronised on GPUs):
- ``g_forward``: the pipeline's ``generate`` (VRE, VAE encode, UNet, x0, VAE decode);
- ``losses``: MSE, EA-DISTS, identity (forward);
- ``d_for_g``: the discriminator's forward on ẑ_H for the GAN term of L_G;
- ``g_backward_step``: the rest of the G step (backward through all of the above, clipping, AdamW);
- ``d_step``: the whole D step.
Peak memory: the process's peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

Measured (2026-11-22, the 2-core AVX2 CI-class machine, other jobs running, fp32, 512 px, batch 2,
checkpointing on): 141 s per iteration after a 161 s warm-up (G forward 36, losses 7, D forward for
L_G 3.5, G backward + AdamW 66, D step 28), peak RSS 16.9 GiB; without checkpointing the G forward
alone passes 20 GiB (the VAE decoder's 512² activations).

Usage:
    PYTHONPATH=src python3 benchmarks/bench_train_stage2.py                              # 512 px, batch 2, checkpointing on
    PYTHONPATH=src python3 benchmarks/bench_train_stage2.py --size 256 --no-checkpointing
    PYTHONPATH=src python3 benchmarks/bench_train_stage2.py --device cuda --mixed-precision bf16 --steps 5
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, key: str, totals: dict, device: torch.device):
    def wrapper(*args, **kwargs):
        _sync(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(device)
        totals[key] += time.perf_counter() - start
        return out
    return wrapper


def build(args):
    from osdface.models.adapter import PromptAdapter
    from osdface.models.stable_diffusion import build_sd21_base, sd21_base_config
    from osdface.models.vre import VisualRepresentationEmbedder
    from osdface.training import stage2
    from osdface.training.stage2_config import load_stage2_config

    cfg = load_stage2_config("stage2_default", [
        "losses.allow_random_weights=true", f"model.sample_size={args.size}", f"train.batch_size={args.batch_size}",
        f"train.gradient_checkpointing={str(args.checkpointing).lower()}", f"train.mixed_precision={args.mixed_precision}",
        f"train.cpu={str(args.device == 'cpu').lower()}", f"discriminator.head={args.head}", "train.output_dir=/tmp/bench_stage2",
    ])
    start = time.perf_counter()
    vae, unet = build_sd21_base(seed=0)
    torch.manual_seed(0)
    models = stage2.assemble_models(cfg, vae, unet, sd21_base_config("scheduler"), VisualRepresentationEmbedder(),
                                    PromptAdapter())
    s = stage2.setup(cfg, models=models)
    return cfg, s, time.perf_counter() - start


def count(params) -> int:
    return sum(p.numel() for p in params)


def main(args) -> dict:
    from osdface.training import stage2

    torch.set_num_threads(args.threads) if args.threads else None
    cfg, s, build_s = build(args)
    acc, device = s.accelerator, s.accelerator.device
    disc = acc.unwrap_model(s.discriminator)
    totals: dict = defaultdict(float)
    # instrument the modules the real step functions call
    s.generator.forward = _timed(s.generator.forward, "g_forward", totals, device)
    s.losses.forward = _timed(s.losses.forward, "losses", totals, device)
    d_forward = disc.forward
    phase = {"name": "g"}

    def disc_forward(*a, **k):
        return _timed(d_forward, "d_for_g", totals, device)(*a, **k) if phase["name"] == "g" else d_forward(*a, **k)

    disc.forward = disc_forward
    g = torch.Generator().manual_seed(0)
    S, B = args.size, args.batch_size
    lq = (torch.rand(B, 3, S, S, generator=g) * 2 - 1).to(device)
    hq = (torch.rand(B, 3, S, S, generator=g) * 2 - 1).to(device)
    rows = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(args.steps):
        totals.clear()
        rng = stage2.step_generator(0, step, 0)
        _sync(device)
        start = time.perf_counter()
        with acc.accumulate(s.generator, s.discriminator):
            phase["name"] = "g"
            _, fakes = _timed(stage2.generator_step, "g_step", totals, device)(s, lq, hq, rng)
            phase["name"] = "d"
            _timed(stage2.discriminator_step, "d_step", totals, device)(s, hq, fakes["fake"], fakes["prompt"], rng)
        _sync(device)
        total = time.perf_counter() - start
        row = {"step": step, "total_s": total, "g_forward_s": totals["g_forward"], "losses_s": totals["losses"],
               "d_for_g_s": totals["d_for_g"],
               "g_backward_step_s": totals["g_step"] - totals["g_forward"] - totals["losses"] - totals["d_for_g"],
               "d_step_s": totals["d_step"]}
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    timed = rows[1:] or rows
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "size": S, "batch_size": B, "mixed_precision": args.mixed_precision, "gradient_checkpointing": args.checkpointing,
        "discriminator_head": args.head, "build_s": round(build_s, 1),
        "params_total_M": round(count([p for m in s.pipe.modules() for p in m.parameters()]) / 1e6, 1),
        "params_g_trainable_M": round(count(s.g_params) / 1e6, 2),
        "params_d_total_M": round(count(disc.parameters()) / 1e6, 1),
        "params_d_trainable_M": round(count(s.d_params) / 1e6, 2),
        "warmup_s": round(rows[0]["total_s"], 1),
        **{f"{k[:-2]}_mean_s": round(sum(r[k] for r in timed) / len(timed), 2) for k in rows[0] if k.endswith("_s")},
        "peak_memory_GiB": round(peak, 2), "peak_memory_kind": "cuda allocated" if device.type == "cuda" else "process RSS",
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "steps": rows}, f, indent=2)
    return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="face size (512 = paper; latents are size/8)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=2, help="iterations; the first is a warm-up")
    p.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="gradient checkpointing of UNet, VAE and discriminator (default on: CPU memory)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--head", default="mlp", choices=["mlp", "conv", "patch"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the summary and per-step rows here")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
