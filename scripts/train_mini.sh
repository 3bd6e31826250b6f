#!/usr/bin/env bash
# Regenerate the bundled osdface-mini weights (src/osdface/weights/mini128) from the shared UTKFace faces.
# Every step is seeded (configs: osdface/configs/stage1_mini.yaml, stage2_mini.yaml); the README
# ("The bundled mini model") gives the wall time of each step on a 2-core CPU.
#
#   bash scripts/train_mini.sh [UTKFACE_DIR] [WORK_DIR]
#
# Run nothing else CPU-heavy beside it: two torch processes on 2 cores slow each other down ~10×.
set -euo pipefail
UTK=${1:-../shared/data/utkface}
WORK=${2:-runs/mini}
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

# 1. Align the faces at the mini model's size, exactly as `osdface restore` aligns them (the fixed split).
for split in train val; do
  stamp "align $split"
  sed "s|^|$UTK/crop_part1/|" "$UTK/$split.txt" | xargs -d '\n' osdface align --size 128 --only-center-face \
    --quiet --output "$WORK/faces_$split"
done

# 2. Stage 1: HQ codebook, LQ codebook, association → the VRE (export/visual_embedder).
S1="--config stage1_mini data.roots=[$WORK/faces_train]"
stamp "stage 1 hq";    osdface train-vre $S1 --phase hq train.max_steps=400 --output "$WORK/vre_hq"
stamp "stage 1 lq";    osdface train-vre $S1 --phase lq train.max_steps=300 --output "$WORK/vre_lq"
stamp "stage 1 assoc"; osdface train-vre $S1 --phase assoc train.max_steps=200 \
  train.init_hq="$WORK/vre_hq" train.init_lq="$WORK/vre_lq" --output "$WORK/vre_assoc"

# 3. Stage 2: the one-step generator on the frozen VRE: 5,500 steps of a cosine schedule, then resumed
#    to 7,500 (the schedule stretched: a warm restart at a low learning rate), as the shipped run was.
stamp "stage 2"
osdface train --config stage2_mini model.vre="$WORK/vre_assoc/export" data.roots=["$WORK/faces_train"] \
  data.val_roots=["$WORK/faces_val"] --output "$WORK/stage2"
stamp "stage 2, resumed to 7500 steps"
osdface train --resume latest --output "$WORK/stage2" train.max_steps=7500

# 4. Package: float16 weights, configs, data lists and terms into the package data folder.
stamp "package"
python3 -m osdface.training.package_mini package "$WORK/stage2/export/osdface" src/osdface/weights/mini128 \
  --run "$WORK/vre_hq" --run "$WORK/vre_lq" --run "$WORK/vre_assoc" --run "$WORK/stage2" \
  --data-list "$UTK/train.txt" --data-list "$UTK/val.txt"
stamp "done"
