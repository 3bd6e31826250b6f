"""Full-size OSDFace inference on this machine: parameters, MACs, seconds per face, peak memory.

Builds the release architecture offline with random weights (SD 2.1-base VAE + UNet from the
shipped configs, the VRE and the adapter; the LoRA counts as merged), then measures side by side:

- ``nchw``: the official code's layout (plain NCHW tensors, fp32);
- ``channels_last``: what ``osdface`` uses on CPU (``pipe.channels_last()``), same outputs.

Usage:
    python benchmarks/bench_inference.py                 # everything (~15 min on 2 cores)
    python benchmarks/bench_inference.py --batch-sizes 1 --layouts channels_last
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

TARGET_SECONDS = 41.0  # per face, fp32, this 2-core CPU
TARGET_PEAK_GB = 6.0  # batch 1
PAPER_PARAMS_M = 978.4
PAPER_GMACS = 2132


def build_pipeline(layout: str):
    from osdface.metrics.speed import build_random_pipeline

    pipe = build_random_pipeline()
    return pipe.channels_last() if layout == "channels_last" else pipe


def timed_components(pipe, lq: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The pipeline's recipe, step by step, with wall time per component."""
    times = {}
    with torch.inference_mode():
        t = time.perf_counter()
        prompt = pipe.visual_prompt(lq)
        times["vre+adapter"] = time.perf_counter() - t
        t = time.perf_counter()
        latents = pipe.vae.encode(lq).latent_dist.mode() * pipe.vae.config.scaling_factor
        times["vae_encode"] = time.perf_counter() - t
        t = time.perf_counter()
        eps = pipe.unet(latents, pipe.timestep, encoder_hidden_states=prompt).sample
        x0 = pipe.predict_x0(latents, eps)
        times["unet"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
        times["vae_decode"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return out, times


def child_peak(layout: str) -> None:
    """Run in a fresh process: build, restore one face, print the peak resident memory."""
    from osdface.metrics.speed import process_peak_rss

    pipe = build_pipeline(layout)
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    build_rss = process_peak_rss() / 2**30
    pipe.restore_tensor(lq)
    print(json.dumps({"peak_gb": process_peak_rss() / 2**30, "after_build_gb": build_rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"], choices=["nchw", "channels_last"])
    parser.add_argument("--skip-macs", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child-peak", choices=["nchw", "channels_last"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_peak:
        return child_peak(args.child_peak)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, 512×512 faces, random weights")
    pipe = build_pipeline("nchw")
    from osdface.pipeline import param_counts

    counts = param_counts(pipe)
    total = sum(counts.values())
    print("\nparameters (M): " + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in counts.items())
          + f", total {total / 1e6:.1f}  (paper: {PAPER_PARAMS_M})")
    if not args.skip_macs:
        from osdface.metrics.speed import count_macs

        lq = torch.rand(1, 3, 512, 512) * 2 - 1
        macs, layer_macs = count_macs(pipe, lq), count_macs(pipe, lq, layers_only=True)
        print(f"MACs per face: {macs / 1e9:.0f} G in all, {layer_macs / 1e9:.0f} G in conv + linear layers "
              f"(paper: {PAPER_GMACS} G)")

    results: dict[str, dict[int, dict[str, float]]] = {}
    outputs = {}
    lq_all = torch.rand(max(args.batch_sizes), 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for layout in args.layouts:
        pipe = build_pipeline(layout)
        results[layout] = {}
        for bs in args.batch_sizes:
            lq = lq_all[:bs]
            out, times = timed_components(pipe, lq)
            results[layout][bs] = {k: v / bs for k, v in times.items()}
            outputs[layout, bs] = out
            per_face = results[layout][bs]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in per_face.items() if k != "total")
            print(f"[{layout:13s}] batch {bs}: {per_face['total']:.1f} s/face  ({parts})"
                  f"  target ≤ {TARGET_SECONDS:.0f} s: {'OK' if per_face['total'] <= TARGET_SECONDS else 'MISSED'}")
        del pipe

    if len(args.layouts) == 2:
        base, ours = args.layouts
        for bs in args.batch_sizes:
            ratio = results[base][bs]["total"] / results[ours][bs]["total"]
            diff = (outputs[base, bs] - outputs[ours, bs]).abs().max().item()
            print(f"batch {bs}: {ours} is {ratio:.2f}× {base}; max |Δoutput| = {diff:.2e} (range [-1, 1])")

    if not args.skip_memory:
        for layout in args.layouts:
            proc = subprocess.run([sys.executable, __file__, "--child-peak", layout], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[{layout}] peak memory: failed ({proc.stderr.strip().splitlines()[-1:]})")
                continue
            mem = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"[{layout:13s}] peak memory at batch 1: {mem['peak_gb']:.2f} GB (after build "
                  f"{mem['after_build_gb']:.2f} GB)  target ≤ {TARGET_PEAK_GB:.0f} GB: "
                  f"{'OK' if mem['peak_gb'] <= TARGET_PEAK_GB else 'MISSED'}")


if __name__ == "__main__":
    main()
