"""The bundled osdface-mini model on held-out faces: quality against its input, and speed.

1. **Val split** (UTKFace ``val.txt``, never trained on): faces aligned at 128 as inference aligns them
   (``osdface align``), degraded with the ``mini`` preset and a fixed seed (face i: ``rng_for(seed, 0, i)``).
   The LQ input is the degraded face at the model size (the preset resizes back with bilinear).
2. **Unseen faces**: real faces from outside UTKFace, photographed at higher resolution and downscaled
   to the model size by the alignment: scikit-image's astronaut and the six people of insightface's
   ``t1.jpg`` (read from the insightface wheel, fetched from the package registry into a cache and never
   installed; skipped when unreachable), each degraded with 4 seeds.

Metrics: PSNR and SSIM (RGB, 8-bit), and NIQE. NIQE needs at least two 96-px blocks, so it is computed on
the faces upscaled ×4 (bicubic, 512 px) — the same for every column. Seconds per face: fp32 (and bf16
autocast where the CPU has native bf16) at batch 1 and 16.

Writes a Markdown table (``--output``) and a grid PNG (``--grid``): LQ | mini | GT, two faces a row
(8 val faces, then 4 unseen ones).

Usage:
    python benchmarks/bench_mini.py                          # ~5 min on 2 cores
    python benchmarks/bench_mini.py --val-dir runs/mini/faces_val --count 100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

TARGET_PSNR_GAIN = 1.5  # dB over the LQ input (issue 9)
UTK = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface"
CACHE = Path.home() / ".cache" / "osdface-tests"


def val_faces(val_dir: Path | None, count: int, size: int) -> tuple[list[np.ndarray], list[str]]:
    """Aligned val faces: from ``val_dir`` (written by ``osdface align``), else aligned here from UTKFace."""
    from osdface.image_utils import read_image

    if val_dir is not None and val_dir.is_dir():
        paths = sorted(val_dir.glob("*.png"))[:count]
        return [read_image(p) for p in paths], [p.name for p in paths]
    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo
    from osdface.image_utils import read_photo

    detector = create_detector("mtcnn")
    faces, names = [], []
    for name in (UTK / "val.txt").read_text().split():
        found = align_photo(read_photo(UTK / "crop_part1" / name), detector, size, only_center_face=True)
        if found:
            faces.append(found[0][0])
            names.append(name)
        if len(faces) == count:
            break
    return faces, names


def unseen_faces(size: int) -> list[np.ndarray]:
    """Aligned faces of scikit-image's astronaut and insightface's t1.jpg (when the wheel can be had)."""
    import skimage.data

    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo

    detector = create_detector("mtcnn")
    photos = [skimage.data.astronaut()]
    wheels = sorted(CACHE.glob("insightface-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "insightface==2.1", "-d",
                        str(CACHE)], capture_output=True, timeout=180)
        wheels = sorted(CACHE.glob("insightface-*.whl"))
    if wheels:
        with zipfile.ZipFile(wheels[0]) as z:
            data = np.frombuffer(z.read("insightface/data/images/t1.jpg"), np.uint8)
        photos.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    else:
        print("note: insightface wheel not reachable; unseen faces = the astronaut only")
    return [crop for photo in photos for crop, _ in align_photo(photo, detector, size)]


def restore(pipe, faces: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    return list(pipe(faces, batch_size=batch_size, output_type="np").images)


def niqe_x4(faces: list[np.ndarray]) -> float:
    from osdface.metrics.niqe import compute_niqe

    big = [cv2.resize(f, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC) for f in faces]
    return float(np.nanmean(compute_niqe(big)))


def quality(pred: list[np.ndarray], gt: list[np.ndarray]) -> dict[str, float]:
    from osdface.metrics.full_reference import compute_psnr, compute_ssim

    return {"PSNR": float(compute_psnr(np.stack(pred), np.stack(gt)).mean()),
            "SSIM": float(compute_ssim(np.stack(pred), np.stack(gt)).mean()), "NIQE": niqe_x4(pred)}


def seconds_per_face(pipe, size: int, batch: int, repeats: int = 3) -> float:
    from osdface.metrics.speed import time_per_face

    lq = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return time_per_face(pipe, lq, repeats=repeats)


def grid(rows: list[tuple[np.ndarray, ...]], gap: int = 4) -> np.ndarray:
    """Rows of equally sized HWC images side by side, rows stacked, white gaps."""
    h, w = rows[0][0].shape[:2]
    n = len(rows[0])
    out = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini", help="'mini' (the bundled model) or one of our model folders")
    parser.add_argument("--val-dir", type=Path, default=Path("runs/mini/faces_val"))
    parser.add_argument("--count", type=int, default=1000, help="val faces used (all 452 by default)")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/mini.md"))
    parser.add_argument("--grid", type=Path, default=Path("docs/mini_grid.png"))
    args = parser.parse_args()

    from osdface.data.degradations import degrade, rng_for
    from osdface.image_utils import write_image_atomic
    from osdface.hardware import cpu_description
    from osdface.pipeline import OSDFacePipeline

    torch.set_grad_enabled(False)
    pipe = OSDFacePipeline.from_pretrained(args.model)
    size = pipe.sample_size
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model: {args.model} ({size} px); preset {args.preset}, seed {args.seed}")

    # 1. Val split and unseen faces, degraded with fixed seeds.
    start = time.perf_counter()
    gt_val, _ = val_faces(args.val_dir, args.count, size)
    lq_val = [degrade(face, args.preset, rng_for(args.seed, 0, i))[0] for i, face in enumerate(gt_val)]
    unseen = unseen_faces(size)
    gt_new = [face for face in unseen for _ in range(4)]
    lq_new = [degrade(face, args.preset, rng_for(args.seed + 1, 0, i))[0] for i, face in enumerate(gt_new)]
    print(f"{len(gt_val)} val faces, {len(unseen)} unseen faces × 4 degradations ({time.perf_counter() - start:.0f} s)")

    # 2. Restore and measure.
    out_val, out_new = restore(pipe, lq_val), restore(pipe, lq_new)
    rows = []
    for name, lq, out, gt in (("val", lq_val, out_val, gt_val), ("unseen", lq_new, out_new, gt_new)):
        q_lq, q_out, q_gt = quality(lq, gt), quality(out, gt), {"NIQE": niqe_x4(gt)}
        rows.append((name, len(gt), q_lq, q_out, q_gt))

    # 3. Speed.
    speed = {(dt, b): None for dt in ("fp32", "bf16") for b in (1, 16)}
    for b in (1, 16):
        speed["fp32", b] = seconds_per_face(pipe, size, b)
    from osdface.hardware import cpu_native_bf16
    from osdface.metrics.full_reference import compute_psnr

    bf16 = OSDFacePipeline.from_pretrained(args.model, dtype=torch.bfloat16)
    agreement = compute_psnr(np.stack(restore(bf16, lq_val)), np.stack(out_val))  # bf16 vs fp32 outputs
    if cpu_native_bf16():  # emulated bf16 is slow: timed only where the CPU has it
        for b in (1, 16):
            speed["bf16", b] = seconds_per_face(bf16, size, b)

    # 4. Report.
    lines = [f"CPU: {cpu_description()}; torch {torch.__version__}", "",
             f"Degradation: preset `{args.preset}`, seed {args.seed}; NIQE on ×4 bicubic upscales (512 px).", "",
             "| faces | n | PSNR LQ | PSNR mini | gain | SSIM LQ | SSIM mini | NIQE LQ | NIQE mini | NIQE GT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, n, q_lq, q_out, q_gt in rows:
        lines.append(f"| {name} | {n} | {q_lq['PSNR']:.2f} | {q_out['PSNR']:.2f} | {q_out['PSNR'] - q_lq['PSNR']:+.2f} "
                     f"| {q_lq['SSIM']:.4f} | {q_out['SSIM']:.4f} | {q_lq['NIQE']:.3f} | {q_out['NIQE']:.3f} "
                     f"| {q_gt['NIQE']:.3f} |")
    lines += ["", "| seconds per face | batch 1 | batch 16 |", "|---|---|---|"]
    for dt in ("fp32", "bf16"):
        if speed[dt, 1] is not None:
            lines.append(f"| {dt} | {speed[dt, 1]:.4f} | {speed[dt, 16]:.4f} |")
    lines += ["", f"bf16 (weights cast, VRE/adapter fp32) vs fp32 outputs on the val faces: PSNR mean "
              f"{agreement.mean():.1f} dB, min {agreement.min():.1f} dB (target ≥ 40)."]
    name, n, q_lq, q_out, _ = rows[0]
    gain = q_out["PSNR"] - q_lq["PSNR"]
    lines += ["", f"Targets (val): PSNR gain {gain:+.2f} dB (≥ +{TARGET_PSNR_GAIN}: "
              f"{'met' if gain >= TARGET_PSNR_GAIN else 'NOT met'}); NIQE {q_out['NIQE']:.3f} vs LQ {q_lq['NIQE']:.3f} "
              f"({'met' if q_out['NIQE'] < q_lq['NIQE'] else 'NOT met'})."]
    report = "\n".join(lines) + "\n"
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    # grid: two (LQ | mini | GT) triplets per row; 8 val faces, then 4 unseen ones
    picks = [(lq_val[i], out_val[i], gt_val[i]) for i in range(0, min(len(gt_val), 64), 8)]
    picks += [(lq_new[i], out_new[i], gt_new[i]) for i in range(0, len(gt_new), 4)][:4]
    picks = picks[: len(picks) // 2 * 2]
    rows = [picks[i] + picks[i + 1] for i in range(0, len(picks), 2)]
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    write_image_atomic(grid(rows), args.grid)
    print(f"wrote {args.output} and {args.grid}")


if __name__ == "__main__":
    main()
