#!/usr/bin/env bash
# The GPU check of issue 14 in one command (< 8 min on an H100): faces/s at batch 1/8/16/32 in
# fp32/bf16/fp16, peak memory, half-precision outputs vs fp32; NCHW, then channels-last.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
python3 benchmarks/gpu_check.py "$@"
python3 benchmarks/gpu_check.py --channels-last --dtypes float32 bfloat16 --batch-sizes 16 32 "$@"
