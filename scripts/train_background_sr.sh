#!/usr/bin/env bash
# Regenerate the background ×2 network (src/osdface/weights/background_sr) from the shared CC BY portraits,
# then measure it on the held-out photos (benchmarks/results/background.md). Seeded; ~35 min on a 2-core
# CPU with one torch thread (10,000 steps of 16 crops).
#
#   bash scripts/train_background_sr.sh [HIRES_DIR] [RUN_DIR]
set -euo pipefail
HIRES=${1:-../shared/data/hires}
RUN=${2:-runs/background_sr}
export HF_HUB_OFFLINE=1
python3 -m osdface.training.background_sr train --output "$RUN" data_root="$HIRES" max_steps=10000
python3 -m osdface.training.background_sr export "$RUN" src/osdface/weights/background_sr
python3 benchmarks/bench_background.py
