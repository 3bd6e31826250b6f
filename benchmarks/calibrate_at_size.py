"""Never worse at the model's own size: which faces no larger than 1.1·S the model helps, and what the
input's top-octave detail reads on them (the thresholds ``NoHarm.at_size_restore`` / ``at_size_keep``).

A face whose aligned crop is n ≤ 1.1·S px is restored whole at S (upsampled when n < S), so the input's
detail above the model's band cannot be kept by band fusion: the model either helps the face or replaces
its detail with its own. This bench measures, at the crop level (no detector, no paste, no colour match):

1. **Faces**: held-out real faces (hires val: FFHQ 00250–00299 and the London people 090–102, on neither
   bundled model's training side), aligned at 256 (``scripts/prepare_mini2_data.sh``), shrunk by area to
   n = 0.6, 0.8 and 1.0 × S.
2. **Conditions** at n, each with a fixed seed: sharp; the never-worse bench's recipe (area ÷4, blur σ 0.8,
   noise σ 6, JPEG q35, bicubic back); clean ÷4 and ÷2 + JPEG q40 (bicubic back); blur σ 1.2; JPEG q25 and
   q50 at n; noise σ 8; video (blur σ 0.8, JPEG q25, then H.264 CRF 38: ``bench_video.degrade_clip``).
3. **Per face**: the crop at S (bicubic up from n), the model's output, both brought to n; the PSNR gain
   over the input (against the original, face ellipse), the input's top-octave detail at S
   (``no_harm.top_octave_detail``), α from the rule (``NoHarm.detail_weight``) and the gain with α applied
   (``no_harm.mix`` at S, brought to n, as the photo path pastes it; α = 0: the input itself).

The table: per model, size and condition, the gain with α = 1 (the model's full change) and with the rule,
the detail measure's min / median / max, the mean α, and how many faces end > 0.05 dB further from the
original than the input, with α = 1 and with the rule. Sharp faces report the output ↔ input PSNR instead
of a gain (the input is the original).

Usage:
    python benchmarks/calibrate_at_size.py                 # both bundled models, 30 faces (~3 min, 2 cores)
    python benchmarks/calibrate_at_size.py --models mini128 --count 10
Writes benchmarks/results/at_size.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_mini import aligned_faces, masked_psnr
from bench_no_harm import cpu_isa
from bench_no_harm import degrade as bench_recipe
from bench_video import degrade_clip

FRACTIONS = (0.6, 0.8, 1.0)
CONDITIONS = ("sharp", "bench", "quarter", "half_jpeg40", "blur1.2", "jpeg25", "jpeg50", "noise8", "video")


def area(x: np.ndarray, n: int) -> np.ndarray:
    return cv2.resize(x, (n, n), interpolation=cv2.INTER_AREA)


def cubic(x: np.ndarray, n: int) -> np.ndarray:
    return cv2.resize(x, (n, n), interpolation=cv2.INTER_CUBIC)


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def noisy(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, x.shape)
    return np.clip(np.rint(x + noise), 0, 255).astype(np.uint8)


def blurred(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(np.rint(cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)), 0, 255).astype(np.uint8)


def degrade(x: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """One of ``CONDITIONS`` applied to the n-px face ``x`` (HWC uint8 RGB), back at n px."""
    n = x.shape[0]
    if condition == "sharp":
        return x
    if condition == "bench":
        return bench_recipe(x, seed)
    if condition == "quarter":
        return cubic(area(x, n // 4), n)
    if condition == "half_jpeg40":
        return cubic(jpeg(area(x, n // 2), 40), n)
    if condition == "blur1.2":
        return blurred(x, 1.2)
    if condition in ("jpeg25", "jpeg50"):
        return jpeg(x, int(condition[4:]))
    if condition == "noise8":
        return noisy(x, 8, seed)
    if condition == "video":
        frames, _ = degrade_clip([x, x, x], 1.0, 0.8, 25, 38)  # (n even: the clip keeps its size)
        return frames[1]
    raise ValueError(condition)


def measure(name: str, gts: list[np.ndarray], batch: int = 16) -> list[dict]:
    from osdface.face.no_harm import NoHarm, mix, top_octave_detail
    from osdface.face.paste import face_mask
    from osdface.pipeline import OSDFacePipeline

    pipe = OSDFacePipeline.from_pretrained(name)
    size, rule = pipe.sample_size, NoHarm()
    rows = []
    for fraction in FRACTIONS:
        n = round(size * fraction) // 2 * 2
        mask = face_mask(n, "ellipse")
        # 1. The faces at n, each condition; the model's crops at S
        cases = [(i, c, area(g, n)) for i, g in enumerate(gts) for c in CONDITIONS]
        inputs = [degrade(gt, c, seed=i) for i, c, gt in cases]
        crops = [x if n == size else cubic(x, size) for x in inputs]
        # 2. The model, in batches
        outputs = []
        for start in range(0, len(crops), batch):
            outputs.extend(pipe(crops[start:start + batch], batch_size=batch, output_type="np").images)
        # 3. Gains with α = 1 and with the rule, at n
        for (i, condition, gt), x, crop, out in zip(cases, inputs, crops, outputs):
            t = top_octave_detail(crop)
            alpha = rule.detail_weight(crop, n, t)
            full = out if n == size else area(out, n)
            ruled = mix(crop, out, alpha) if alpha > 0 else x  # (a kept face is not pasted at all)
            ruled = ruled if n == size or alpha <= 0 else area(ruled, n)
            base = masked_psnr(x, gt, mask)
            rows.append({"model": name, "S": size, "n": n, "face": i, "cond": condition, "detail": t,
                         "alpha": alpha, "psnr_in": base, "gain_full": masked_psnr(full, gt, mask) - base,
                         "gain_rule": masked_psnr(ruled, gt, mask) - base,
                         "vs_input_full": masked_psnr(full, x, mask), "vs_input_rule": masked_psnr(ruled, x, mask)})
        print(f"{name}: n = {n} done", flush=True)
    return rows


def report(rows: list[dict], cpu: str, seconds: float) -> str:
    from osdface.face.no_harm import NoHarm

    rule = NoHarm()
    head = (f"CPU: {cpu}. Rule: α = 1 up to a detail of {rule.at_size_restore}, 0 from {rule.at_size_keep} "
            f"(faces ≤ 1.1·S); models of {rule.half_size_from} px and more: α also ≤ 1 up to "
            f"{rule.half_size_restore}, 0 from {rule.half_size_keep} on the crop at S/2 (the detail column: at S). "
            f"{len({(r['model'], r['face']) for r in rows})} model × face pairs, "
            f"{len(rows)} crops, {seconds:.0f} s.")
    columns = ("| model | n | condition | gain, α = 1 | gain, rule | detail min / median / max | mean α "
               "| worse > 0.05 dB: α = 1 → rule |")
    lines = [head, "", columns, "|---|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for n in sorted({r["n"] for r in rows if r["model"] == model}, reverse=True):
            for condition in CONDITIONS:
                sel = [r for r in rows if r["model"] == model and r["n"] == n and r["cond"] == condition]
                if not sel:
                    continue
                d = np.array([r["detail"] for r in sel])
                means = {k: float(np.mean([r[k] for r in sel])) for k in ("gain_full", "gain_rule", "alpha")}
                if condition == "sharp":  # the input is the original: how far the output is from it
                    full, ruled = (min(r[k] for r in sel) for k in ("vs_input_full", "vs_input_rule"))
                    full = f"{full:.1f} dB from input (min)"
                    ruled = "equal to the input" if ruled > 99 else f"{ruled:.1f} dB (min)"
                    worse = "–"
                else:
                    full, ruled = f"{means['gain_full']:+.2f}", f"{means['gain_rule']:+.2f}"
                    worse = (f"{sum(r['gain_full'] < -0.05 for r in sel)} → "
                             f"{sum(r['gain_rule'] < -0.05 for r in sel)} of {len(sel)}")
                lines.append(f"| {model} | {n} | {condition} | {full} | {ruled} | {d.min():.4f} / "
                             f"{np.median(d):.4f} / {d.max():.4f} | {means['alpha']:.2f} | {worse} |")
    return "\n".join(lines) + "\n"


def crop_bench(stem: str, description: str, measure, report, sizes=None) -> None:
    """The command line of the crop-level benches (this one, ``bench_routing.py``): ``--models``, ``--faces``,
    ``--count``, ``--out`` and, with ``sizes``, ``--sizes``; ``measure(model, faces[, sizes])`` → rows,
    ``report(rows, cpu, seconds)`` → the table; writes ``OUT/STEM.{md,json}``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", default=["mini128", "mini256"])
    parser.add_argument("--faces", type=Path, default=HERE.parent / "runs" / "mini2" / "hires_val",
                        help="an `osdface align` folder of held-out faces at 256 px")
    parser.add_argument("--count", type=int, default=30)
    if sizes is not None:
        parser.add_argument("--sizes", type=int, nargs="+", default=list(sizes))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = cpu_isa()
    print(f"CPU: {cpu}", flush=True)
    gts, _ = aligned_faces(args.faces, args.count)
    if not gts:
        sys.exit(f"{args.faces}: no aligned faces (run scripts/prepare_mini2_data.sh)")
    extra = (args.sizes,) if sizes is not None else ()
    start = time.perf_counter()
    rows = [row for name in args.models for row in measure(name, gts, *extra)]
    text = report(rows, cpu, time.perf_counter() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"cpu": cpu, "rows": rows}))
    (args.out / f"{stem}.md").write_text(text)
    print(text)


def main() -> None:
    crop_bench("at_size", __doc__.split("\n\n")[0], measure, report)


if __name__ == "__main__":
    main()
