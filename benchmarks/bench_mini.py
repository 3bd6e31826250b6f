"""The bundled models, osdface-mini (128 px) and osdface-mini 2 (256 px), on held-out faces: quality, how
much each uses its visual prompt, and speed, side by side in one run.

1. **Faces** held out from both models' training, aligned at 256 by ``osdface align`` as inference aligns
   them (``scripts/prepare_mini2_data.sh`` writes them):
   - **UTKFace val** (the fixed ``val.txt``; 200-px photos, so ~60 % of each 256-px crop is the alignment's
     reflection of the photo's border; PSNR is also given over the inside-the-photo pixels only);
   - **hires val** (``osdface.training.mini2_data.split_hires``: FFHQ 00250–00299 and the London people
     090–102, people on neither model's training side).
   The 128-px faces are the 256-px ones shrunk by area.
2. **Two protocols**, each face degraded with a fixed seed:
   - **at 128**: the ``mini`` preset (blur, ÷1–4, noise, JPEG) on the 128-px face, resized back (mini's
     training recipe and its README figures);
   - **at 256**: area ÷4, Gaussian noise σ 5, JPEG q 60, bicubic back to 256 (issue 21's held-out recipe).
   Each model restores both: a model of the other size gets the LQ resized to its own size (bicubic up,
   area down) and its output resized back the same way, as the photo path does.
3. **Prompt use**: the 256 protocol on hires val through each model with its prompt as is, zeroed, and
   shuffled (each face given its neighbour's prompt in the batch): the mean absolute change of the output
   (of 255) and the PSNR between the two outputs.
4. **Speed**: seconds per face on this CPU, fp32 and (where the CPU has native bf16) bf16 autocast, batch
   1 and 16; the size of each model's folder.

NIQE needs at least two 96-px blocks: it is computed on faces brought to 512 px (bicubic ×4 at 128, ×2 at
256): the same for every column. Writes ``--output`` (Markdown) and ``--grid`` (PNG: LQ | mini 128 |
mini 256 | GT at 256 px, hires val then UTKFace val).

Usage:
    bash scripts/prepare_mini2_data.sh                         # the aligned faces (runs/mini2/*_val)
    python benchmarks/bench_mini.py                            # ~10 min on 2 cores
    python benchmarks/bench_mini.py --model256 runs/mini2/stage2/export/osdface   # a model before packaging
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

TARGET_PSNR_GAIN = 1.5  # dB over the LQ input (issues 9 and 21)
TARGET_SECONDS = 0.1  # a face at batch 16 on CPU (issue 21)
TARGET_MB = 60
NOISE_256, JPEG_256 = 5.0, 60


# ----------------------------------------------------------------------------- faces and degradations


def aligned_faces(folder: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` crops of an ``osdface align`` folder (sorted by name) and, per crop, the mask of
    its pixels inside the photo (1) against those filled by reflection (0), from the manifest's records."""
    from osdface.data.datasets import align_records, record_mask
    from osdface.image_utils import read_image

    records = align_records([folder])
    paths = sorted(folder.glob("*.png"))[:count]
    faces = [read_image(p) for p in paths]
    return faces, [record_mask(records.get(p.resolve()), f.shape[0]) for p, f in zip(paths, faces)]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area when shrinking, bicubic when enlarging (as the photo path aligns and pastes)."""
    if image.shape[0] == size:
        return image
    method = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=method)


def degrade_256(face: np.ndarray, seed: int) -> np.ndarray:
    """Issue 21's held-out recipe: area ÷4, noise σ 5, JPEG q 60, bicubic back to the face's size."""
    size = face.shape[0]
    small = cv2.resize(face, (size // 4, size // 4), interpolation=cv2.INTER_AREA).astype(np.float32)
    small += np.random.default_rng(seed).normal(0.0, NOISE_256, small.shape).astype(np.float32)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    _, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_256])
    small = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def degrade_128(face: np.ndarray, seed: int, index: int) -> np.ndarray:
    from osdface.data.degradations import degrade, rng_for

    return degrade(face, "mini", rng_for(seed, 0, index))[0]


# ----------------------------------------------------------------------------- models and measures


def restore(pipe, lq: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
    """Each LQ face through ``pipe`` at the model's size, the output brought back to the LQ's size."""
    size, own = lq[0].shape[0], pipe.sample_size
    out = pipe([resize(x, own) for x in lq], batch_size=batch_size, output_type="np").images
    return [resize(x, size) for x in out]


def masked_psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit) over the pixels where ``mask`` (H, W) is 1 (``compute_psnr`` takes whole images)."""
    err = (pred.astype(np.float64) - gt.astype(np.float64)) ** 2
    mse = (err * mask[..., None]).sum() / max(mask.sum() * 3, 1)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def niqe_512(faces: list[np.ndarray]) -> float:
    from osdface.metrics.niqe import compute_niqe

    return float(np.nanmean(compute_niqe([resize(f, 512) for f in faces])))


def quality(pred: list[np.ndarray], gt: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    from osdface.metrics.full_reference import compute_psnr, compute_ssim

    per_face = compute_psnr(np.stack(pred), np.stack(gt))
    return {"PSNR": float(per_face.mean()), "per_face": per_face,
            "PSNR in": float(np.mean([masked_psnr(p, g, m) for p, g, m in zip(pred, gt, masks)])),
            "SSIM": float(compute_ssim(np.stack(pred), np.stack(gt)).mean()), "NIQE": niqe_512(pred)}


@torch.no_grad()
def prompt_use(pipe, lq: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """{"zeroed"|"shuffled": (mean |Δ| of 255, PSNR in dB)} of the output against the output with the prompt as is."""
    from osdface.image_utils import to_tensor

    batch = torch.cat([to_tensor(resize(x, pipe.sample_size)) for x in lq]).to(pipe.device, pipe.dtype)
    base = pipe.generate(batch)
    prompts = base["prompt_embeds"]
    changed = {"zeroed": torch.zeros_like(prompts), "shuffled": prompts.roll(1, dims=0)}
    def to_255(t: torch.Tensor) -> torch.Tensor:
        return (t.float().clamp(-1, 1) + 1) * 127.5

    out = {}
    for name, prompt in changed.items():
        image = pipe.generate(batch, prompt_embeds=prompt)["image"]
        diff = (to_255(image) - to_255(base["image"])).abs()
        mse = float((diff ** 2).mean())
        out[name] = (float(diff.mean()), 10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))
    return out


def seconds_per_face(pipe, batch: int) -> float:
    from osdface.metrics.speed import time_per_face

    size = pipe.sample_size
    lq = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return time_per_face(pipe, lq, repeats=3)


def folder_mb(name: str) -> float:
    from osdface.bundled import resolve_bundled

    folder = resolve_bundled(name) or Path(name)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def grid(rows: list[tuple[np.ndarray, ...]], gap: int = 4) -> np.ndarray:
    """Rows of equally sized HWC images side by side, rows stacked, white gaps."""
    h, w = rows[0][0].shape[:2]
    n = len(rows[0])
    out = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return out


# ----------------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model128", default="mini128", help="the 128-px model: a bundled name or a model folder")
    parser.add_argument("--model256", default="mini256", help="the 256-px model: a bundled name or a model folder")
    parser.add_argument("--faces", type=Path, default=Path("runs/mini2"), help="holds utk_val/ and hires_val/ (aligned at 256)")
    parser.add_argument("--count", type=int, default=1000, help="faces of each set at most (all by default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/mini.md"))
    parser.add_argument("--grid", type=Path, default=Path("docs/mini_grid.png"))
    args = parser.parse_args()

    from osdface.hardware import cpu_description, cpu_native_bf16
    from osdface.image_utils import write_image_atomic
    from osdface.pipeline import OSDFacePipeline

    torch.set_grad_enabled(False)
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    names = {"mini 128": args.model128, "mini 256": args.model256}
    pipes = {label: OSDFacePipeline.from_pretrained(name) for label, name in names.items()}

    # 1. Faces (256 px, and shrunk to 128) and their LQ under both protocols.
    start = time.perf_counter()
    sets = {}
    for label, folder in (("hires val", "hires_val"), ("UTKFace val", "utk_val")):
        gt, masks = aligned_faces(args.faces / folder, args.count)
        gt128 = [resize(f, 128) for f in gt]
        masks128 = [(cv2.resize(m, (128, 128), interpolation=cv2.INTER_AREA) > 0.5).astype(np.float32) for m in masks]
        sets[label, 128] = (gt128, masks128, [degrade_128(f, args.seed, i) for i, f in enumerate(gt128)])
        sets[label, 256] = (gt, masks, [degrade_256(f, args.seed * 100_003 + i) for i, f in enumerate(gt)])
    print("faces: " + ", ".join(f"{k[0]} {len(v[0])}" for k, v in sets.items() if k[1] == 256)
          + f" ({time.perf_counter() - start:.0f} s)")

    # 2. Quality: every set, both protocols, both models.
    results, outputs = {}, {}
    for (label, size), (gt, masks, lq) in sets.items():
        results[label, size, "LQ"] = quality(lq, gt, masks)
        for model, pipe in pipes.items():
            start = time.perf_counter()
            outputs[label, size, model] = restore(pipe, lq)
            results[label, size, model] = quality(outputs[label, size, model], gt, masks)
            print(f"{label} at {size}: {model} {results[label, size, model]['PSNR']:.2f} dB "
                  f"(LQ {results[label, size, 'LQ']['PSNR']:.2f}; {time.perf_counter() - start:.0f} s)")
        results[label, size, "GT"] = {"NIQE": niqe_512(gt)}

    # 3. Prompt use, 4. speed and size.
    hires_lq = sets["hires val", 256][2]
    prompt = {model: prompt_use(pipe, hires_lq[:64]) for model, pipe in pipes.items()}
    speed = {}
    for model, name in names.items():
        speed[model, "fp32"] = [seconds_per_face(pipes[model], b) for b in (1, 16)]
        if cpu_native_bf16():  # emulated bf16 is slow: timed only where the CPU has it
            bf16 = OSDFacePipeline.from_pretrained(name, dtype=torch.bfloat16)
            speed[model, "bf16"] = [seconds_per_face(bf16, b) for b in (1, 16)]
    sizes = {model: folder_mb(name) for model, name in names.items()}

    # 5. Report.
    lines = [f"CPU: {cpu_description()}; torch {torch.__version__}", "",
             (f"At 128: preset `mini`, seed {args.seed}. At 256: area ÷4, noise σ {NOISE_256:g}, JPEG q {JPEG_256}, "
              "bicubic back. NIQE on faces brought to 512 px. PSNR in: over the pixels inside the photo "
              "(UTKFace's crops are ~60 % reflection). Worse: faces whose PSNR fell below their LQ's."), "",
             ("| faces | px | n | PSNR LQ | mini 128 | mini 256 | gain 128 | gain 256 | PSNR in: LQ / 128 / 256 "
              "| SSIM LQ / 128 / 256 | NIQE LQ / 128 / 256 / GT | worse 128 / 256 |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (label, size), (gt, _, _) in sets.items():
        lq, a, b = (results[label, size, k] for k in ("LQ", "mini 128", "mini 256"))
        worse = [int((r["per_face"] < lq["per_face"]).sum()) for r in (a, b)]
        lines.append(f"| {label} | {size} | {len(gt)} | {lq['PSNR']:.2f} | {a['PSNR']:.2f} | {b['PSNR']:.2f} "
                     f"| {a['PSNR'] - lq['PSNR']:+.2f} | {b['PSNR'] - lq['PSNR']:+.2f} "
                     f"| {lq['PSNR in']:.2f} / {a['PSNR in']:.2f} / {b['PSNR in']:.2f} "
                     f"| {lq['SSIM']:.4f} / {a['SSIM']:.4f} / {b['SSIM']:.4f} "
                     f"| {lq['NIQE']:.2f} / {a['NIQE']:.2f} / {b['NIQE']:.2f} / {results[label, size, 'GT']['NIQE']:.2f} "
                     f"| {worse[0]} / {worse[1]} |")
    lines += ["", "Prompt use (hires val at 256, 64 faces): the output's change when the prompt is replaced.", "",
              "| model | zeroed: mean abs (of 255) | zeroed: PSNR to as-is | shuffled: mean abs | shuffled: PSNR |",
              "|---|---|---|---|---|"]
    for model, p in prompt.items():
        lines.append(f"| {model} | {p['zeroed'][0]:.2f} | {p['zeroed'][1]:.1f} dB | {p['shuffled'][0]:.2f} "
                     f"| {p['shuffled'][1]:.1f} dB |")
    lines += ["", "| model | folder MB | fp32 s/face, batch 1 | batch 16 | bf16 batch 1 | batch 16 |", "|---|---|---|---|---|---|"]
    for model in names:
        fp32, bf16 = speed[model, "fp32"], speed.get((model, "bf16"), [float("nan")] * 2)
        lines.append(f"| {model} | {sizes[model]:.1f} | {fp32[0]:.4f} | {fp32[1]:.4f} | {bf16[0]:.4f} | {bf16[1]:.4f} |")
    gain128 = results["UTKFace val", 128, "mini 256"]["PSNR"] - results["UTKFace val", 128, "LQ"]["PSNR"]
    gain256 = results["hires val", 256, "mini 256"]["PSNR"] - results["hires val", 256, "LQ"]["PSNR"]
    niqe = results["hires val", 256, "mini 256"]["NIQE"], results["hires val", 256, "LQ"]["NIQE"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines += ["", "Targets for mini 256 (issue 21):",
              f"- PSNR at 128, UTKFace val: {gain128:+.2f} dB over LQ (≥ +{TARGET_PSNR_GAIN}: {verdict(gain128 >= TARGET_PSNR_GAIN)});",
              f"- PSNR at 256, hires val: {gain256:+.2f} dB over LQ (≥ +{TARGET_PSNR_GAIN}: {verdict(gain256 >= TARGET_PSNR_GAIN)});",
              f"- NIQE at 256, hires val: {niqe[0]:.2f} vs LQ {niqe[1]:.2f} ({verdict(niqe[0] < niqe[1])});",
              (f"- size {sizes['mini 256']:.1f} MB (≤ {TARGET_MB}: {verdict(sizes['mini 256'] <= TARGET_MB)}); "
               f"{speed['mini 256', 'fp32'][1]:.4f} s a face at batch 16, fp32 (≤ {TARGET_SECONDS}: "
               f"{verdict(speed['mini 256', 'fp32'][1] <= TARGET_SECONDS)}).")]
    report = "\n".join(lines) + "\n"
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)

    # grid at 256 px: LQ | mini 128 | mini 256 | GT; 6 hires val faces, then 2 UTKFace val ones (256 protocol)
    picks = []
    for label, count in (("hires val", 6), ("UTKFace val", 2)):
        gt, _, lq = sets[label, 256]
        for i in np.linspace(0, len(gt) - 1, count).astype(int):
            picks.append((lq[i], outputs[label, 256, "mini 128"][i], outputs[label, 256, "mini 256"][i], gt[i]))
    rows = [picks[i] + picks[i + 1] for i in range(0, len(picks) - 1, 2)]
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    write_image_atomic(grid(rows), args.grid)
    print(f"wrote {args.output} and {args.grid}")


if __name__ == "__main__":
    main()
