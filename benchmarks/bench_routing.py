"""Which bundled model for which face size: mini128 and mini256 side by side on the sizes between them.

``--model mini`` sends a face of native size n to mini128 when n ≤ ``bundled.SMALL_FACES``'s bound (141 px)
and to mini256 above it. This bench checks that bound at the crop level, with the "never worse" rule on
exactly as ``osdface restore --aligned`` applies it (``photos.restore_aligned_faces``: a crop no larger
than 1.1·S is restored at S and mixed by α; a larger one keeps its size, the model's change added in its
band; no identity guard, the same for both models):

1. **Faces**: held-out real faces (hires val, aligned at 256 by ``scripts/prepare_mini2_data.sh``), shrunk
   by area to n = 64, 96, 128, 154, 180, 204, 230 and 256 px (even: H.264 for the video condition).
2. **Conditions** at n (``calibrate_at_size.CONDITIONS``, fixed seeds): sharp; the never-worse bench's recipe;
   clean ÷4; ÷2 + JPEG q40; blur σ 1.2; JPEG q25 / q50; noise σ 8; video blocking.
3. **Per model, size and condition**: the mean PSNR gain over the input against the original (face
   ellipse, at n; an output at S is brought to n by area or bicubic; a face the rule keeps is the input
   itself, as the photo path does not paste it), and how many faces end > 0.05 dB further from the
   original than the input; sharp faces: the output ↔ input PSNR (min).

Usage:
    python benchmarks/bench_routing.py                      # 30 faces, ~5 min on 2 cores
    python benchmarks/bench_routing.py --count 10 --sizes 154 204
Writes benchmarks/results/routing.{md,json}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_mini import masked_psnr, resize
from calibrate_at_size import CONDITIONS, area, crop_bench, degrade

SIZES = (64, 96, 128, 154, 180, 204, 230, 256)  # even: the video condition encodes H.264


def measure(name: str, gts: list[np.ndarray], sizes, batch: int = 16) -> list[dict]:
    from osdface.face.no_harm import NoHarm
    from osdface.face.paste import face_mask
    from osdface.photos import restore_aligned_faces
    from osdface.pipeline import OSDFacePipeline

    pipe = OSDFacePipeline.from_pretrained(name, small_faces=False)
    rows = []
    for n in sorted({n // 2 * 2 for n in sizes}):
        mask = face_mask(n, "ellipse")
        cases = [(i, c, area(g, n)) for i, g in enumerate(gts) for c in CONDITIONS]
        inputs = [degrade(gt, c, seed=i) for i, c, gt in cases]
        out = restore_aligned_faces(pipe, inputs, batch_size=batch, no_harm=NoHarm())
        for (i, condition, gt), x, (y, verdict) in zip(cases, inputs, out):
            y = x if verdict.model_weight == 0 else resize(y, n)  # a kept face is not pasted (photo path)
            base = masked_psnr(x, gt, mask)
            rows.append({"model": name, "S": pipe.sample_size, "n": n, "face": i, "cond": condition,
                         "alpha": verdict.model_weight, "fusion": verdict.fusion,
                         "gain": masked_psnr(y, gt, mask) - base, "vs_input": masked_psnr(y, x, mask)})
        print(f"{name}: n = {n} done", flush=True)
    return rows


def report(rows: list[dict], cpu: str, seconds: float) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = sorted({r["n"] for r in rows})
    head = (f"CPU: {cpu}. {len({r['face'] for r in rows})} faces × {len(CONDITIONS)} conditions × {len(sizes)} "
            f"sizes, models {' / '.join(models)} (the \"never worse\" rule on, as `--aligned`), {seconds:.0f} s. "
            "Each cell: mean PSNR gain over the input (dB), then faces > 0.05 dB worse; sharp: output ↔ input, "
            "min dB. **Bold**: the better model.")
    lines = [head, "", "| condition | " + " | ".join(f"{n} px" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for condition in CONDITIONS:
        cells = []
        for n in sizes:
            parts, values = [], []
            for model in models:
                sel = [r for r in rows if r["model"] == model and r["n"] == n and r["cond"] == condition]
                if condition == "sharp":
                    v = min(r["vs_input"] for r in sel)
                    values.append(v)
                    parts.append("=" if v > 99 else f"{v:.1f}")
                else:
                    v = float(np.mean([r["gain"] for r in sel]))
                    values.append(v)
                    parts.append(f"{v:+.2f} ({sum(r['gain'] < -0.05 for r in sel)})")
            best = int(np.argmax(values))
            if len(models) > 1 and values.count(values[best]) == 1:
                parts[best] = f"**{parts[best]}**"
            cells.append(" / ".join(parts))
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    crop_bench("routing", __doc__.split("\n\n")[0], measure, report, SIZES)


if __name__ == "__main__":
    main()
