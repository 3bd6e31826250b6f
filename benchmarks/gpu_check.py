"""GPU check, one command, under 8 minutes on an H100: faces/s, peak memory and accuracy per precision.

For the full-size OSDFace architecture (random weights, built offline) on the first CUDA device:
faces per second at batch 1 / 8 / 16 / 32 in float32, bfloat16 and float16, peak memory at batch 1,
and each half-precision output against the float32 one (max |Δ| and PSNR on the same faces). Targets
(issue 14, H100): ≥ 150 faces/s at batch ≥ 16 in bf16; ≤ 8 GB peak at batch 1.

Usage (see gpu_check.sh):
    python benchmarks/gpu_check.py [--batch-sizes 1 8 16 32] [--dtypes float32 bfloat16 float16] [--channels-last]
"""

from __future__ import annotations

import argparse
import time

import torch

TARGET_FACES_PER_S = 150.0
TARGET_PEAK_GB = 8.0


def faces_per_second(pipe, lq: torch.Tensor, repeats: int = 3) -> float:
    pipe.restore_tensor(lq)  # warm-up: cuDNN autotuning, allocator
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        pipe.restore_tensor(lq)
    torch.cuda.synchronize()
    return lq.shape[0] * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights and inputs")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    from osdface.metrics.speed import build_random_pipeline

    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, capability {torch.cuda.get_device_capability(device)}, "
          f"torch {torch.__version__}, channels_last={args.channels_last}")
    pipe = build_random_pipeline()
    g = torch.Generator().manual_seed(0)
    probe = (torch.rand(4, 3, 512, 512, generator=g) * 2 - 1).to(device)
    reference = None
    for name in args.dtypes:
        dtype = getattr(torch, name)
        pipe.to(device, dtype)
        if args.channels_last:
            pipe.channels_last()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        out = pipe.restore_tensor(probe[:1]).float()
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        out = pipe.restore_tensor(probe).float()
        if reference is None:
            reference = out
            accuracy = "reference"
        else:
            mse = ((out - reference) / 2).pow(2).mean().item()
            accuracy = f"vs float32: max |Δ| {(out - reference).abs().max().item():.3e}, PSNR {10 * torch.log10(torch.tensor(1 / max(mse, 1e-20))).item():.1f} dB"
        rates = []
        for bs in args.batch_sizes:
            try:
                lq = (torch.rand(bs, 3, 512, 512, generator=g) * 2 - 1).to(device)
                rates.append(f"batch {bs}: {faces_per_second(pipe, lq):.1f} faces/s")
            except torch.cuda.OutOfMemoryError:
                rates.append(f"batch {bs}: out of memory")
                torch.cuda.empty_cache()
        ok = "OK" if peak <= TARGET_PEAK_GB else "MISSED"
        print(f"[{name:8s}] peak at batch 1 {peak:.2f} GB (≤ {TARGET_PEAK_GB:.0f}: {ok}); {accuracy}")
        print(f"[{name:8s}] " + "; ".join(rates))
    print(f"target: ≥ {TARGET_FACES_PER_S:.0f} faces/s in bfloat16 at batch ≥ 16")


if __name__ == "__main__":
    main()
