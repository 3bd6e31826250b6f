"""Calibrate the identity guard's default threshold: dlib descriptor distances of one face, LQ vs GT.

The guard flags a restored face whose descriptor distance from ITS INPUT crop exceeds a threshold
(``osdface.models.dlib_identity``: landmarks fitted on the reference crop, the input). A faithful
restoration is close to the ground truth, so the distance it should be allowed is the distance between a
degraded face and its own clean version: the threshold is the 99th percentile of same-person LQ ↔ GT
distances at the bundled mini model's training degradations.

1. **UTKFace val** (``val.txt``, 476 names, never trained on): aligned at 128 px as ``scripts/train_mini.sh``
   aligns them (``osdface align --size 128 --only-center-face``: MTCNN, FFHQ template); photos where no face
   is found are skipped and counted. LQ = ``degrade(gt, "mini", rng_for(seed, 0, i))``, the preset and
   per-sample generator of training (``configs/stage2_mini.yaml``; seed = its ``val_seed``, 12345).
2. **ffhq512** (300 faces, already aligned), to see whether the threshold depends on the crop size:
   - at 128 px (INTER_AREA), degraded with the ``mini`` preset as above;
   - at 512 px, with the same recipe in relative terms: the ``mini`` stage is the classic GFPGAN stage
     brought to 128 px (blur kernel and sigma ÷4), so at 512 its blur is ×4 (kernel 41, sigma 0.4–10) and
     the rest is unchanged (downsampling 1–4×, Gaussian noise 0–20, JPEG 40–95, resized back).

For each set: same-person distances with the LQ as reference (the guard's setting) and with the GT as
reference (the ``ID (dlib)`` column's setting), percentiles 50/90/95/99/99.9 and max; for context,
different-person distances (GT of face i vs GT of face i+1, i's landmarks) at the 1st/5th percentile.

Writes ``--output`` (JSON) and ``--markdown`` (the table). Usage (~11 min on 2 cores; ``--count 50`` for a quick look):
    python benchmarks/calibrate_identity_guard.py
    python benchmarks/calibrate_identity_guard.py --val-dir runs/mini/faces_val   # faces aligned already
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAME_PCT = (50, 90, 95, 99, 99.9)
OTHER_PCT = (1, 5)


def utk_val_faces(utk: Path, val_dir: Path | None, size: int, count: int | None) -> tuple[list[np.ndarray], int, int]:
    """(aligned val faces, photos, photos skipped): from ``val_dir`` (``osdface align`` output) or aligned here."""
    from osdface.image_utils import read_image

    names = (utk / "val.txt").read_text().split()[:count]
    if val_dir is not None and val_dir.is_dir():
        faces = [read_image(p) for p in sorted(val_dir.glob("*.png"))]
        return faces, len(names), len(names) - len(faces)
    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo
    from osdface.image_utils import read_photo

    detector, faces = create_detector("mtcnn"), []
    for name in names:
        found = align_photo(read_photo(utk / "crop_part1" / name), detector, size, only_center_face=True)
        if found:
            faces.append(found[0][0])
    return faces, len(names), len(names) - len(faces)


def percentiles(values: np.ndarray, points) -> dict[str, float]:
    return {f"p{p:g}": float(np.percentile(values, p)) for p in points}


def measure(ident, gt: list[np.ndarray], lq: list[np.ndarray]) -> dict:
    """Same-person (LQ-referenced and GT-referenced) and different-person distance statistics."""
    d_gt, d_lq, nxt = ident.descriptors(gt), ident.descriptors(lq), gt[1:] + gt[:1]
    same_lq = np.linalg.norm(ident.descriptors(gt, reference=lq) - d_lq, axis=1)
    same_gt = np.linalg.norm(ident.descriptors(lq, reference=gt) - d_gt, axis=1)
    other = np.linalg.norm(ident.descriptors(nxt, reference=gt) - d_gt, axis=1)
    other_lq = np.linalg.norm(ident.descriptors(nxt, reference=lq) - d_lq, axis=1)  # a restoration to someone else
    return {
        "n": len(gt),
        "same_lq_ref": {**percentiles(same_lq, SAME_PCT), "max": float(same_lq.max()), "mean": float(same_lq.mean())},
        "same_gt_ref": {**percentiles(same_gt, SAME_PCT), "max": float(same_gt.max()), "mean": float(same_gt.mean())},
        "other": {**percentiles(other, OTHER_PCT), "min": float(other.min()), "mean": float(other.mean())},
        "other_lq_ref": {**percentiles(other_lq, OTHER_PCT), "min": float(other_lq.min()),
                         "mean": float(other_lq.mean())},
        "_same_lq": same_lq, "_other": other, "_other_lq": other_lq,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utk", type=Path, default=DATA / "utkface")
    parser.add_argument("--ffhq", type=Path, default=DATA / "hires" / "ffhq512")
    parser.add_argument("--val-dir", type=Path, default=None, help="UTKFace val faces aligned at 128 already")
    parser.add_argument("--seed", type=int, default=12345, help="stage2_mini.yaml's val_seed")
    parser.add_argument("--count", type=int, default=None, help="at most this many faces per set (a quick check)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/identity_calibration.json"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/results/identity_calibration.md"))
    args = parser.parse_args()

    from osdface.data.degradations import DegradationConfig, degrade, get_preset, rng_for
    from osdface.hardware import cpu_description
    from osdface.image_utils import read_image
    from osdface.models.dlib_identity import DlibIdentity

    cpu = cpu_description()
    print(f"CPU: {cpu}")
    ident, start = DlibIdentity(), time.perf_counter()
    mini = get_preset("mini")
    mini512 = DegradationConfig(name="mini_x4", stage=dataclasses.replace(mini.stage, kernel_sizes=(41,),
                                                                           blur_sigma=(0.4, 10.0)))

    def degraded(faces: list[np.ndarray], cfg) -> list[np.ndarray]:
        return [degrade(face, cfg, rng_for(args.seed, 0, i))[0] for i, face in enumerate(faces)]

    # 1. UTKFace val at 128, the mini preset.
    utk, photos, skipped = utk_val_faces(args.utk, args.val_dir, 128, args.count)
    print(f"UTKFace val: {len(utk)} faces aligned, {skipped} of {photos} photos skipped (no face) "
          f"({time.perf_counter() - start:.0f} s)")
    sets = {"utkface_val_128": {"degradation": "mini preset", "photos": photos, "skipped": skipped,
                                **measure(ident, utk, degraded(utk, mini))}}
    print(f"UTKFace measured ({time.perf_counter() - start:.0f} s)")
    # 2. ffhq512 at 128 (mini) and 512 (mini recipe, blur ×4).
    big = [read_image(p) for p in sorted(args.ffhq.glob("*.jpg"))[:args.count]]
    small = [cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in big]
    sets["ffhq_128"] = {"degradation": "mini preset", **measure(ident, small, degraded(small, mini))}
    sets["ffhq_512"] = {"degradation": "mini recipe at 512: blur kernel 41, sigma 0.4-10 (x4); downsample 1-4x, "
                        "noise 0-20, JPEG 40-95", **measure(ident, big, degraded(big, mini512))}
    print(f"ffhq512 measured ({time.perf_counter() - start:.0f} s)")

    # 3. Threshold: UTKFace p99 (LQ-referenced, as the guard), rounded up to 0.01.
    utk_set = sets["utkface_val_128"]
    threshold = math.ceil(utk_set["same_lq_ref"]["p99"] * 100) / 100
    for s in sets.values():
        s["same_above_threshold"] = float(np.mean(s.pop("_same_lq") > threshold))
        s["other_below_threshold"] = float(np.mean(s.pop("_other") <= threshold))
        s["other_lq_ref_below_threshold"] = float(np.mean(s.pop("_other_lq") <= threshold))
    result = {"cpu": cpu, "seed": args.seed, "threshold": threshold,
              "threshold_rule": "99th percentile of UTKFace-val same-person LQ<->GT distances (LQ-referenced), "
                                "rounded up to 0.01", "sets": sets}

    lines = [f"CPU: {cpu}", "", f"Seed {args.seed} (`rng_for(seed, 0, i)`, as training's validation set).", "",
             "Same person, LQ ↔ GT (reference: whose landmarks; LQ = the guard's setting, GT = the ID (dlib) column's):",
             "", "| set | n | reference | p50 | p90 | p95 | p99 | p99.9 | max | same > thr |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in sets.items():
        for ref in ("lq", "gt"):
            q = s[f"same_{ref}_ref"]
            cells = [f"{q[k]:.3f}" for k in ("p50", "p90", "p95", "p99", "p99.9", "max")]
            cells.append(f"{s['same_above_threshold']:.1%}" if ref == "lq" else "")
            lines.append(f"| {name} | {s['n']} | {ref.upper()} | " + " | ".join(cells) + " |")
    lines += ["", ("Different people (face i vs face i+1): GT ↔ GT, and LQ ↔ GT (what the guard sees when a restoration "
              "turns face i into person i+1):"), "",
              "| set | GT↔GT p1 | GT↔GT p5 | GT↔GT ≤ thr | LQ↔GT p1 | LQ↔GT p5 | LQ↔GT ≤ thr |", "|---|---|---|---|---|---|---|"]
    for name, s in sets.items():
        o, ol = s["other"], s["other_lq_ref"]
        lines.append(f"| {name} | {o['p1']:.3f} | {o['p5']:.3f} | {s['other_below_threshold']:.1%} | {ol['p1']:.3f} "
                     f"| {ol['p5']:.3f} | {s['other_lq_ref_below_threshold']:.1%} |")
    lines += ["", (f"UTKFace val: {skipped} of {photos} photos skipped (no face found by MTCNN). ffhq_512 degradation: "
              f"{sets['ffhq_512']['degradation']}."), "",
              (f"Threshold by the rule (UTKFace p99, LQ-referenced, rounded up to 0.01): **{threshold:.2f}**. "
               "'same > thr': same-person pairs it would flag; '≤ thr': different-person pairs it would let through.")]
    report = "\n".join(lines) + "\n"
    print(report)
    print(f"total {time.perf_counter() - start:.0f} s")
    for path, text in ((args.output, json.dumps(result, indent=2) + "\n"), (args.markdown, report)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
