#!/usr/bin/env bash
# osdface-mini 2 (issue 21): align the training and held-out faces at 256 px, as `osdface restore` aligns them.
#
#   bash scripts/prepare_mini2_data.sh [UTKFACE_DIR] [HIRES_DIR] [WORK_DIR]
#
# Writes WORK/{utk_train,utk_val,hires_train,hires_val}/ (STEM_KK.png + manifest.json) and
# WORK/hires_{train,val}.txt. The hires split holds people out (osdface.training.mini2_data: FFHQ
# 00250-00299 and the London people 090-102 in both expressions are validation). Each face's manifest
# record carries "outside" (the share of the crop that alignment filled by reflection) and what gives the
# per-pixel mask; stage 2 leaves those pixels out of its losses (data.valid_mask in stage2_mini256.yaml).
# Resumable: a rerun skips the photos already aligned (osdface align keeps its manifest).
set -euo pipefail
UTK=${1:-../shared/data/utkface}
HIRES=${2:-../shared/data/hires}
WORK=${3:-runs/mini2}
SIZE=256
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

# 1. The fixed identity-held-out split of hires.
python3 -m osdface.training.mini2_data split "$HIRES" "$WORK"

# 2. Align: UTKFace by its fixed train/val lists, hires by the split above (one face a photo, the central one).
for split in train val; do
  stamp "align utkface $split"
  sed "s|^|$UTK/crop_part1/|" "$UTK/$split.txt" | xargs -d '\n' osdface align --size $SIZE --only-center-face \
    --quiet --output "$WORK/utk_$split"
  stamp "align hires $split"
  sed "s|^|$HIRES/|" "$WORK/hires_$split.txt" | xargs -d '\n' osdface align --size $SIZE --only-center-face \
    --quiet --output "$WORK/hires_$split"
done

# 3. How much of the faces lies outside their photos (quantiles of "outside" per folder).
python3 -m osdface.training.mini2_data report "$WORK"/utk_train "$WORK"/utk_val "$WORK"/hires_train "$WORK"/hires_val
stamp "done"
