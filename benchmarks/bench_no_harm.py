"""Never worse: real faces at native sizes 64–1024 px, sharp and degraded, through the default command.

Faces: held-out real faces from ``../shared/data/hires`` (FFHQ-aligned ``ffhq512/00250``… and the London
portraits 090–102, neutral). Each photo is scaled so that its face's aligned crop (the FFHQ template
``osdface restore`` aligns to) is N px, N in 64, 128, 256, 512, 1024 (1024 is an upscale of the source:
the portraits' faces are ~650 px, the FFHQ faces 512).

- **sharp**: that photo as it is;
- **degraded** (stated recipe, on the whole photo at its size): area ÷4, Gaussian blur σ = 0.8 px (at
  the low resolution), Gaussian noise σ = 6 levels, JPEG quality 35, bicubic ×4 back to the size.

Both go through ``osdface restore`` with its defaults (``--detail-guard on``, ``--identity-guard auto``,
``--dtype auto``), and once more with both guards off (what the command did before the rule). Measured
in the face's aligned crop at its native size (the ellipse of the paste mask), against the original:
PSNR, SSIM, detail (mean |Laplacian|; the ratio output / input), NIQE (N ≥ 128), and the dlib identity
distance to the original (the ``identity`` extra). Sharp inputs are compared with the input itself
(PSNR output ↔ input, detail ratio).

Targets (issue 18), at every size: degraded output at least as close to the original as the input (PSNR)
and no further in identity; sharp, N ≥ 256: ≥ 38 dB from the input with ≥ 0.9 of its detail; faces at or
below the model's size keep their gains.

Usage:
    python benchmarks/bench_no_harm.py                      # 12 + 12 faces (~15 min on 2 cores)
    python benchmarks/bench_no_harm.py --faces 4 --sizes 128 512
    python benchmarks/bench_no_harm.py --sizes 128 256 512 1024 --model mini256 --out DIR --plot DIR/p.png
Writes benchmarks/results/no_harm.{json,md} and docs/no_harm.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "hires"
SIZES = (64, 128, 256, 512, 1024)


def cpu_isa() -> str:
    flags = ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    found = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {f}" in flags]
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, ISA: {' '.join(found) or 'n/a'}"


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    """The stated recipe: area ÷4, blur σ 0.8, noise σ 6, JPEG q35, bicubic ×4 back (HWC uint8 RGB)."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w / 4)), max(1, round(h / 4))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 0.8)
    small = np.clip(np.rint(small + rng.normal(0, 6.0, small.shape)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 35])
    small = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def source_faces(count: int) -> list[Path]:
    ffhq = sorted((SHARED / "ffhq512").glob("*.jpg"))[250:250 + count]
    london = sorted((SHARED / "portraits" / "london_neutral").glob("*.jpg"))
    london = [p for p in london if 90 <= int(p.name[:3]) <= 102][:count]
    return ffhq + london


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=12, help="faces from each set (ffhq512, London)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "no_harm.png")
    parser.add_argument("--model", default=None, help="osdface restore --model (default: the command's own)")
    parser.add_argument("--work", type=Path, default=None, help="keep the photos here (default: a temp folder)")
    parser.add_argument("--from-json", type=Path, default=None, help="only redo the table and plot from a run's no_harm.json")
    args = parser.parse_args()
    if args.from_json:
        record = json.loads(args.from_json.read_text())
        sizes = sorted({r["n"] for r in record["rows"]})
        report(record, sizes, args.out, args.plot)
        return

    from osdface.face import create_detector
    from osdface.face.alignment import affine_scale, compose_affine, estimate_affine, warp_face
    from osdface.face.no_harm import detail
    from osdface.face.paste import face_mask
    from osdface.image_utils import read_photo, write_image_atomic
    from osdface.metrics.niqe import compute_niqe
    from osdface.models.dlib_identity import DlibIdentity, identity_available

    print(f"CPU: {cpu_isa()}", flush=True)
    detector = create_detector("mtcnn", max_side=2048)
    identity = DlibIdentity() if identity_available() else None
    work = args.work or Path(tempfile.mkdtemp(prefix="no_harm_"))

    def largest(photo):
        found = [d for d in detector.detect(photo) if d.score >= 0.9]
        return max(found, key=lambda d: d.width * d.height) if found else None

    # 1. The photos: each source scaled so that its face's aligned crop is N px; sharp and degraded
    cases = []
    for src in source_faces(args.faces):
        image = read_photo(src)
        face = largest(image)
        if face is None:
            print(f"skip {src.name}: no face", flush=True)
            continue
        native = 512 / affine_scale(estimate_affine(face.landmarks5, face_size=512))
        for n in args.sizes:
            f = n / native
            size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
            sharp = cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LANCZOS4)
            face_n = largest(sharp)
            if face_n is None:
                print(f"skip {src.name} at {n}: no face found at that size", flush=True)
                continue
            affine = estimate_affine(face_n.landmarks5, face_size=n)  # photo → the native-size aligned crop
            name = f"{src.parent.name}_{src.stem}_{n}"
            for cond, photo in (("sharp", sharp), ("degraded", degrade(sharp, seed=len(cases)))):
                folder = work / "in" / cond
                folder.mkdir(parents=True, exist_ok=True)
                write_image_atomic(photo, folder / f"{name}.png")
                cases.append({"name": name, "n": n, "cond": cond, "original": sharp, "input": photo, "affine": affine})
    print(f"{len(cases)} photos in {work}", flush=True)

    # 2. The default command, and the same with both guards off (the command before the rule)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSDFACE_") or k == "OSDFACE_HOME"}
    env["HF_HUB_OFFLINE"] = "1"
    times = {}
    for variant, extra in (("default", []), ("guards off", ["--detail-guard", "off", "--identity-guard", "off"])):
        for cond in ("sharp", "degraded"):
            start = time.perf_counter()
            cmd = ["osdface", "restore", str(work / "in" / cond), "-o", str(work / variant / cond), "-q",
                   "--overwrite", "--report", str(work / f"{variant}_{cond}.json"), *extra,
                   *(["--model", args.model] if args.model else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
            times[(variant, cond)] = time.perf_counter() - start
            print(f"{variant}, {cond}: {times[(variant, cond)]:.0f} s; {proc.stderr.strip().splitlines()[-1]}", flush=True)

    # 3. Measure in the aligned face at its native size (capped at 1024), inside the paste mask's ellipse
    def aligned(photo, case):
        n = case["n"]
        return warp_face(photo, case["affine"], n).astype(np.float64)

    rows = []
    for case in cases:
        n = case["n"]
        mask = face_mask(n, "ellipse")
        weight = mask[..., None]

        def psnr(a, b):
            mse = float((((a - b) ** 2) * weight).sum() / (weight.sum() * 3))
            return 99.0 if mse < 1e-10 else 10 * np.log10(255**2 / mse)

        def ssim(a, b):
            from skimage.metrics import structural_similarity

            _, full = structural_similarity(cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2GRAY),
                                            cv2.cvtColor(b.astype(np.uint8), cv2.COLOR_RGB2GRAY), full=True,
                                            data_range=255, win_size=min(7, n // 8 * 2 - 1 if n < 56 else 7))
            return float((full * mask).sum() / mask.sum())

        original, inp = aligned(case["original"], case), aligned(case["input"], case)
        row = {"name": case["name"], "n": n, "cond": case["cond"]}
        for variant in ("default", "guards off"):
            out_photo = read_photo(work / variant / case["cond"] / f"{case['name']}.png")
            out = aligned(out_photo, case)
            key = "" if variant == "default" else "off_"
            row[key + "psnr_in"], row[key + "psnr_out"] = psnr(inp, original), psnr(out, original)
            row[key + "ssim_in"], row[key + "ssim_out"] = ssim(inp, original), ssim(out, original)
            row[key + "psnr_out_vs_input"] = psnr(out, inp)
            row[key + "detail_ratio"] = detail(out) / max(detail(inp), 1e-6)
            if identity is not None:
                ref = original.astype(np.uint8)
                row[key + "id_in"] = float(identity.distance(ref, inp.astype(np.uint8)))
                row[key + "id_out"] = float(identity.distance(ref, out.astype(np.uint8)))
                row[key + "id_move"] = float(identity.distance(inp.astype(np.uint8), out.astype(np.uint8)))
            if n >= 128:
                niqe = compute_niqe([inp.astype(np.uint8), out.astype(np.uint8)])
                row[key + "niqe_in"], row[key + "niqe_out"] = float(niqe[0]), float(niqe[1])
        run_report = json.loads((work / f"default_{case['cond']}.json").read_text())
        verdicts = [f for f in run_report["faces"] if Path(f["file"]).stem == case["name"]]
        row["action"] = verdicts[0]["action"] if verdicts else "no face"
        row["model_weight"] = verdicts[0]["model_weight"] if verdicts else None
        rows.append(row)

    # 4. The table (means per size and condition) and the plot
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"cpu": cpu_isa(), "rows": rows, "seconds": {f"{v}, {c}": t for (v, c), t in times.items()}}
    (args.out / "no_harm.json").write_text(json.dumps(record, indent=1) + "\n")
    report(record, args.sizes, args.out, args.plot)


def report(record: dict, sizes, out: Path, plot_path: Path) -> None:
    """The table (means per size and condition, over the faces the detector found) and the plot."""
    rows, times = record["rows"], record["seconds"]
    lines = [f"CPU: {record['cpu']}; {len(rows)} photos", "",
             "| face | N | found | PSNR in | PSNR out (off → **default**) | SSIM in → default | ID in → default (off) "
             "| ID change ± s.e. | NIQE in → default | detail ratio (off → default) | out ↔ input dB, min / median (off → default) "
             "| kept / blended / restored |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for cond in ("degraded", "sharp"):
        for n in sizes:
            sel = [r for r in rows if r["n"] == n and r["cond"] == cond and r["action"] != "no face"]
            total = sum(r["n"] == n and r["cond"] == cond for r in rows)
            if not sel:
                continue

            def m(key):
                vals = [r[key] for r in sel if r.get(key) is not None]
                return float(np.mean(vals)) if vals else float("nan")

            change = np.array([r["id_out"] - r["id_in"] for r in sel if r.get("id_out") is not None])
            se = change.std(ddof=1) / np.sqrt(len(change)) if len(change) > 1 else float("nan")
            counts = "/".join(str(sum(r["action"] == a for r in sel)) for a in ("kept", "blended", "restored"))
            summary[(cond, n)] = {k: m(k) for k in ("psnr_in", "psnr_out", "off_psnr_out")}
            vs_input = {k: [r[k] for r in sel] for k in ("psnr_out_vs_input", "off_psnr_out_vs_input")}
            summary[(cond, n)].update({k: float(np.median(v)) for k, v in vs_input.items()})  # 99 = equal
            niqe = f"{m('niqe_in'):.2f} → {m('niqe_out'):.2f}" if n >= 256 else "–"
            lines.append(
                f"| {cond} | {n} | {len(sel)}/{total} | {m('psnr_in'):.2f} | {m('off_psnr_out'):.2f} → **{m('psnr_out'):.2f}** "
                f"| {m('ssim_in'):.3f} → {m('ssim_out'):.3f} | {m('id_in'):.3f} → {m('id_out'):.3f} ({m('off_id_out'):.3f}) "
                f"| {change.mean():+.3f} ± {se:.3f} | {niqe} | {m('off_detail_ratio'):.2f} → **{m('detail_ratio'):.2f}** "
                f"| {min(vs_input['off_psnr_out_vs_input']):.1f} / {np.median(vs_input['off_psnr_out_vs_input']):.1f} → "
                f"**{min(vs_input['psnr_out_vs_input']):.1f} / {np.median(vs_input['psnr_out_vs_input']):.1f}** | {counts} |")
    degraded = [r for r in rows if r["cond"] == "degraded" and r["action"] != "no face"]
    worse = [r for r in degraded if r["psnr_out"] < r["psnr_in"] - 0.05]
    lines += ["", f"Degraded faces whose default output is > 0.05 dB further from the original than the input: "
                  f"{len(worse)} of {len(degraded)}" + (f" (worst {min(r['psnr_out'] - r['psnr_in'] for r in worse):+.2f} dB)"
                                                       if worse else "") + ".",
              "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + "."]
    (out / "no_harm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(summary, sizes, plot_path)


def plot(summary: dict, sizes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))  # means over the faces the detector found
    xs = [n for n in sizes if ("degraded", n) in summary]
    gain = lambda key: [summary[("degraded", n)][key] - summary[("degraded", n)]["psnr_in"] for n in xs]  # noqa: E731
    a.axhline(0, color="gray", lw=0.8)
    a.plot(xs, gain("off_psnr_out"), "o--", label="guards off (before)")
    a.plot(xs, gain("psnr_out"), "o-", label="default")
    a.set(xscale="log", xticks=xs, xticklabels=xs, xlabel="face size N (px)", ylabel="PSNR gain over the input (dB)",
          title="degraded faces")
    a.legend()
    xs = [n for n in sizes if ("sharp", n) in summary]
    b.axhline(38, color="gray", lw=0.8, ls=":")
    b.plot(xs, [min(summary[("sharp", n)]["off_psnr_out_vs_input"], 60) for n in xs], "o--", label="guards off (before)")
    b.plot(xs, [min(summary[("sharp", n)]["psnr_out_vs_input"], 60) for n in xs], "o-", label="default")
    b.set(xscale="log", xticks=xs, xticklabels=xs, xlabel="face size N (px)", ylabel="output ↔ input PSNR, median (dB; 60: equal)",
          title="sharp faces")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
