"""Full-size OSDFace inference on this machine: parameters, MACs, seconds per face, peak memory.

Builds the release architecture offline with random weights (SD 2.1-base VAE + UNet from the
shipped configs, the VRE and the adapter; the LoRA counts as merged), then measures side by side in
one run:

- ``official``: the official code's layout and precision (plain NCHW tensors, fp32) — the baseline;
- ``fp32``: what ``osdface`` does on CPU with ``--dtype float32`` (channels-last);
- ``auto``: ``--dtype auto`` (bf16 where the CPU computes it natively, AMX-BF16/AVX512-BF16; fp32
  elsewhere), channels-last; the VRE, adapter and x0 stay fp32/fp64.

and the **floor**: the conv + linear MACs of one face divided by the best rate this CPU reaches right
now on a large matmul or a 3×3 convolution (measured on the spot, per dtype). The ratio time/floor says
how much is left to gain.

Usage:
    python benchmarks/bench_inference.py                 # everything (~15 min on 2 cores)
    python benchmarks/bench_inference.py --batch-sizes 1 --configs fp32 auto --skip-memory
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

TARGET_FLOOR_RATIO = 1.25  # issue 14: ≤ 1.25× the floor of the dtype used
TARGET_PEAK_GB = 6.0  # batch 1
PAPER_PARAMS_M = 978.4
PAPER_GMACS = 2132
CONFIGS = {"official": ("nchw", "float32"), "fp32": ("channels_last", "float32"), "auto": ("channels_last", "auto")}


def resolve(dtype_name: str) -> torch.dtype:
    from osdface.hardware import auto_dtype
    from osdface.loading import DTYPES

    return auto_dtype(torch.device("cpu"))[0] if dtype_name == "auto" else DTYPES[dtype_name]


def build_pipeline(config: str):
    from osdface.metrics.speed import build_random_pipeline

    layout, dtype_name = CONFIGS[config]
    pipe = build_random_pipeline().to(dtype=resolve(dtype_name))
    return pipe.channels_last() if layout == "channels_last" else pipe


def measured_rates(dtype: torch.dtype, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of a 4096² matmul and of a 3×3 conv (256 → 256 channels, 64×64, channels-last) in ``dtype``."""
    def rate(fn, flops: float) -> float:
        fn()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        return flops * n / (time.perf_counter() - start) / 1e9

    a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
    x = torch.randn(1, 256, 64, 64, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(dtype=dtype, memory_format=torch.channels_last)
    with torch.inference_mode():
        return {"matmul": rate(lambda: a @ b, 2 * 4096**3), "conv3x3": rate(lambda: conv(x), 2 * 256 * 256 * 9 * 64 * 64)}


def timed_components(pipe, lq: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The pipeline's recipe (``OSDFacePipeline.generate``), step by step, with wall time per component."""
    times = {}
    with torch.inference_mode():
        t = time.perf_counter()
        prompt = pipe.visual_prompt(lq)
        times["vre+adapter"] = time.perf_counter() - t
        t = time.perf_counter()
        latents = pipe.vae.encode(lq.to(pipe.vae_dtype)).latent_dist.mode() * pipe.vae.config.scaling_factor
        times["vae_encode"] = time.perf_counter() - t
        t = time.perf_counter()
        eps = pipe.unet(latents.to(pipe.dtype), pipe.timestep, encoder_hidden_states=prompt).sample
        x0 = pipe.predict_x0(latents, eps)
        times["unet"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pipe.vae.decode(x0.to(pipe.vae_dtype) / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
        times["vae_decode"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return out.float(), times


def child_peak(config: str) -> None:
    """Run in a fresh process: build, restore one face, print the peak resident memory."""
    from osdface.metrics.speed import process_peak_rss

    pipe = build_pipeline(config)
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    build_rss = process_peak_rss() / 2**30
    pipe.restore_tensor(lq)
    print(json.dumps({"peak_gb": process_peak_rss() / 2**30, "after_build_gb": build_rss}))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) / 2).pow(2).mean().item()  # on [0, 1]
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--skip-macs", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child-peak", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_peak:
        return child_peak(args.child_peak)

    from osdface.hardware import cpu_description

    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 512×512 faces, random weights; "
          f"auto = {str(resolve('auto')).removeprefix('torch.')} here")
    pipe = build_pipeline("official")
    from osdface.pipeline import param_counts

    counts = param_counts(pipe)
    total = sum(counts.values())
    print("\nparameters (M): " + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in counts.items())
          + f", total {total / 1e6:.1f}  (paper: {PAPER_PARAMS_M})")
    layer_macs = None
    if not args.skip_macs:
        from osdface.metrics.speed import count_macs

        lq = torch.rand(1, 3, 512, 512) * 2 - 1
        macs, layer_macs = count_macs(pipe, lq), count_macs(pipe, lq, layers_only=True)
        print(f"MACs per face: {macs / 1e9:.0f} G in all, {layer_macs / 1e9:.0f} G in conv + linear layers "
              f"(paper: {PAPER_GMACS} G)")
    del pipe

    floors = {}
    if layer_macs is not None:
        for name in sorted({CONFIGS[c][1] for c in args.configs}):
            dtype = resolve(name)
            rates = measured_rates(dtype)
            floors[name] = 2 * layer_macs / 1e9 / max(rates.values())
            print(f"{str(dtype).removeprefix('torch.'):8s} rates now: matmul {rates['matmul']:.0f} GFLOP/s, 3×3 conv "
                  f"{rates['conv3x3']:.0f} GFLOP/s → floor {floors[name]:.1f} s per face")

    results: dict[str, dict[int, dict[str, float]]] = {}
    outputs = {}
    lq_all = torch.rand(max(args.batch_sizes), 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for config in args.configs:
        pipe = build_pipeline(config)
        results[config] = {}
        for bs in args.batch_sizes:
            lq = lq_all[:bs]
            timed_components(pipe, lq[:1])  # warm-up (oneDNN primitive creation)
            out, times = timed_components(pipe, lq)
            results[config][bs] = {k: v / bs for k, v in times.items()}
            outputs[config, bs] = out
            per_face = results[config][bs]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in per_face.items() if k != "total")
            floor = floors.get(CONFIGS[config][1])
            ratio = ""
            if floor:
                r = per_face["total"] / floor
                ratio = f", {r:.2f}× its floor (target ≤ {TARGET_FLOOR_RATIO}: {'OK' if r <= TARGET_FLOOR_RATIO else 'MISSED'})"
            print(f"[{config:8s}] batch {bs}: {per_face['total']:.1f} s/face{ratio}  ({parts})")
        del pipe

    base = "official" if "official" in results else next(iter(results))
    for config in results:
        for bs in args.batch_sizes:
            if config == base:
                continue
            speedup = results[base][bs]["total"] / results[config][bs]["total"]
            diff = (outputs[base, bs] - outputs[config, bs]).abs().max().item()
            print(f"batch {bs}: {config} is {speedup:.2f}× {base}; outputs max |Δ| {diff:.2e}, "
                  f"PSNR {psnr(outputs[base, bs], outputs[config, bs]):.1f} dB (random weights)")

    if not args.skip_memory:
        for config in args.configs:
            proc = subprocess.run([sys.executable, __file__, "--child-peak", config], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[{config}] peak memory: failed ({proc.stderr.strip().splitlines()[-1:]})")
                continue
            mem = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"[{config:8s}] peak memory at batch 1: {mem['peak_gb']:.2f} GB (after build "
                  f"{mem['after_build_gb']:.2f} GB)  target ≤ {TARGET_PEAK_GB:.0f} GB: "
                  f"{'OK' if mem['peak_gb'] <= TARGET_PEAK_GB else 'MISSED'}")


if __name__ == "__main__":
    main()
