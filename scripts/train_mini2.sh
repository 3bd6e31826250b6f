#!/usr/bin/env bash
# osdface-mini 2 (issue 21): the 256-px bundled model, trained from UTKFace + ../shared/data/hires with the
# same OSDFacePipeline and two stages as osdface-mini (configs: stage1_mini256.yaml, stage2_mini256.yaml).
# Seeded; every step resumes: rerun the same command after an interruption (aligned photos are skipped,
# finished phases are skipped, an unfinished one continues from its last checkpoint with --resume latest,
# bit-identical to an uninterrupted run). Plan and measured costs: docs/mini2_plan.md.
#
#   bash scripts/train_mini2.sh [--device cpu|cuda] [UTKFACE_DIR] [HIRES_DIR] [WORK_DIR] [STAGE2_STEPS]
#
# HQ_STEPS, LQ_STEPS, ASSOC_STEPS (environment) set stage 1's phases (a smoke run: a few steps each); FT_STEPS,
# MIX_STEPS and BROAD_STEPS (default 1200 each) the three fine-tunes that follow stage 2 (0: skip one); DEST
# (environment) where the packaged model goes (default: the package's src/osdface/weights/mini256).
# --device cuda trains on the GPU (the configs say cpu: true). On this 2-core CPU the whole script takes
# about 3 h: run nothing else CPU-heavy beside it.
set -euo pipefail
DEVICE=cpu
if [ "${1:-}" = "--device" ]; then DEVICE=$2; shift 2; fi
case $DEVICE in cpu) ON_CPU=true ;; cuda) ON_CPU=false ;; *) echo "--device must be cpu or cuda, got $DEVICE" >&2; exit 2 ;; esac
UTK=${1:-../shared/data/utkface}
HIRES=${2:-../shared/data/hires}
WORK=${3:-runs/mini2}
STEPS=${4:-3600}
DEST=${DEST:-src/osdface/weights/mini256}
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

# 1. Faces aligned at 256 (UTKFace's fixed split; hires held out by person), with their outside-the-photo records.
bash "$(dirname "$0")/prepare_mini2_data.sh" "$UTK" "$HIRES" "$WORK"
# hires is ~6 % of the faces and the only one with real detail at 256 px: listed three times (oversampled).
TRAIN="[$WORK/utk_train,$WORK/hires_train,$WORK/hires_train,$WORK/hires_train]"
VAL="[$WORK/hires_val,$WORK/utk_val]"

# 2. Stage 1: HQ codebook, LQ codebook, association → the VRE (export/visual_embedder). A phase whose export
#    exists is done; otherwise it starts or continues from its latest checkpoint.
phase() {  # phase NAME STEPS [overrides...]
  local name=$1 steps=$2; shift 2
  if [ -d "$WORK/vre_$name/export" ]; then stamp "stage 1 $name: done already"; return; fi
  stamp "stage 1 $name"
  osdface train-vre --config stage1_mini256 --phase "$name" --resume latest data.roots="$TRAIN" \
    train.max_steps="$steps" train.cpu=$ON_CPU "$@" --output "$WORK/vre_$name"
}
phase hq "${HQ_STEPS:-400}"
phase lq "${LQ_STEPS:-300}"
phase assoc "${ASSOC_STEPS:-200}" train.init_hq="$WORK/vre_hq" train.init_lq="$WORK/vre_lq"

# 3. Stage 2: the one-step generator on the frozen VRE (MSE + edge L1, reflected borders masked out).
if [ -d "$WORK/stage2/export/osdface" ]; then
  stamp "stage 2: done already"
else
  stamp "stage 2 ($STEPS steps)"
  osdface train --config stage2_mini256 --resume latest model.vre="$WORK/vre_assoc/export" data.roots="$TRAIN" \
    data.val_roots="$VAL" train.max_steps="$STEPS" train.cpu=$ON_CPU \
    --output "$WORK/stage2"
fi

# 4. Stage 2, fine-tunes: each continues the run before it from its last checkpoint (a copy of that run,
#    resumed; the cosine schedule stretched to the new end, so it restarts low and decays to 0).
#    a. FT_STEPS (default 1200) with MSE alone: the edge term makes the model draw detail that mildly
#       degraded faces do not have; without it they lose 0.1–0.5 dB less (benchmarks/calibrate_at_size.py).
#    b. MIX_STEPS (default 1200) on the `mini256_mixed` degradation: half the faces only mildly degraded
#       (light blur, ÷1–4, little noise, JPEG 70–95), which the model made worse at 256 px.
#    c. BROAD_STEPS (default 1200) on `mini256_broad`: the mild stage widened to JPEG q20–95, noise ≤ 8, ÷1–3
#       (60 % of the faces), which the model still made worse at 154–256 px after b.
#    0 steps skips a phase.
FT_STEPS=${FT_STEPS:-1200}
MIX_STEPS=${MIX_STEPS:-1200}
BROAD_STEPS=${BROAD_STEPS:-1200}
RUN="$WORK/stage2"
TOTAL=$STEPS
RUNS=(--run "$WORK/vre_hq" --run "$WORK/vre_lq" --run "$WORK/vre_assoc" --run "$WORK/stage2")  # packaged configs
continue_run() {  # continue_run NAME STEPS [overrides...]: RUN → $WORK/NAME, STEPS more
  local name=$1 steps=$2; shift 2
  if [ "$steps" -le 0 ]; then return; fi
  local from=$RUN
  RUN="$WORK/$name"
  RUNS+=(--run "$RUN")
  TOTAL=$((TOTAL + steps))
  if [ -d "$RUN/export/osdface" ]; then stamp "$name: done already"; return; fi
  if [ ! -d "$RUN" ]; then
    mkdir -p "$RUN" && cp -r "$from/checkpoints" "$from/config.yaml" "$RUN/"
  fi
  stamp "$name ($steps steps: $*)"
  osdface train --resume latest --output "$RUN" "$@" train.max_steps=$TOTAL train.output_dir="$RUN" \
    train.cpu=$ON_CPU
}
continue_run stage2_ft "$FT_STEPS" losses.edge=0.0
continue_run stage2_mix "$MIX_STEPS" losses.edge=0.0 data.degradation=mini256_mixed
continue_run stage2_broad "$BROAD_STEPS" losses.edge=0.0 data.degradation=mini256_broad

# 5. Package: float16 UNet, the configs of every run, the data lists and the terms (bundled.MODELS["mini256"]).
stamp "package into $DEST"
python3 -m osdface.training.package_mini package "$RUN/export/osdface" "$DEST" --name mini256 "${RUNS[@]}" \
  --data-list "$UTK/train.txt" --data-list "$UTK/val.txt" --data-list "$WORK/hires_train.txt" \
  --data-list "$WORK/hires_val.txt"
stamp "done: $DEST"
