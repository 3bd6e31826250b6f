"""The background at ``--upscale`` > 1: Lanczos-4, bicubic and the shipped ×2 network, on held-out photos.

Images: never trained on (``osdface.training.background_sr.held_out_files``): the London portraits of people
090–102 (both expressions, 1024 px) and FFHQ ``ffhq512/00250``–``00299`` (512 px; the network saw no FFHQ
image). Each is cropped to a multiple of 4 and shrunk ×2 or ×4 with cv2 INTER_AREA (the main figures), or
with PIL's antialiased bicubic, or ×2 then JPEG quality 85; each method brings it back to the original's
size. PSNR in RGB over the whole image less an 8-px border, averaged over images. ×3 uses the same
images cropped to a multiple of 3.

Speed: ms per output megapixel of ×2 on a 1024×1024 input (4 MP out), with torch's thread count as set
(default: all cores; shared with other work, so the figure is a bound, not a constant).

Usage:
    python benchmarks/bench_background.py                 # ~3 min on 2 cores
    python benchmarks/bench_background.py --weights runs/bg/export --limit 10
Writes benchmarks/results/background.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "hires"
BORDER = 8


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[BORDER:-BORDER, BORDER:-BORDER].astype(np.float64), b[BORDER:-BORDER, BORDER:-BORDER].astype(np.float64)
    return float(10 * np.log10(255.0 ** 2 / max(np.mean((a - b) ** 2), 1e-12)))


def methods(net):
    from osdface.models.background_sr import upscale_image

    def resize(kind):
        return lambda im, s, size: cv2.resize(im, size, interpolation=kind)

    def learned_then_lanczos(im, s, size):  # the alternative rule for ×3: one pass, then Lanczos ×1.5
        from osdface.models.background_sr import upscale_pass

        return cv2.resize(upscale_pass(net, im), size, interpolation=cv2.INTER_LANCZOS4)

    return {"bicubic": resize(cv2.INTER_CUBIC), "lanczos": resize(cv2.INTER_LANCZOS4),
            "learned": lambda im, s, size: upscale_image(net, im, s), "learned 1 pass + lanczos": learned_then_lanczos}


def degrade(hr: np.ndarray, factor: int, kind: str) -> np.ndarray:
    from osdface.training.background_sr import downscale, jpeg

    if kind == "area":
        return downscale(hr, factor, "area")
    if kind == "bicubic":
        return downscale(hr, factor, "bicubic")
    return jpeg(downscale(hr, factor, "area"), 85)


def evaluate(net, images: dict[str, list[np.ndarray]], cases) -> list[dict]:
    fns = methods(net)
    rows = []
    for factor, kind, names in cases:
        for set_name, hrs in images.items():
            scores = {name: [] for name in names}
            for hr in hrs:
                h, w = (hr.shape[0] // (2 * factor)) * 2 * factor, (hr.shape[1] // (2 * factor)) * 2 * factor
                hr = np.ascontiguousarray(hr[:h, :w])
                lr = degrade(hr, factor, kind)
                for name in names:
                    scores[name].append(psnr(fns[name](lr, factor, (w, h)), hr))
            row = {"factor": factor, "lr": kind, "set": set_name, "n": len(hrs),
                   **{name: float(np.mean(v)) for name, v in scores.items()}}
            rows.append(row)
            print(row, flush=True)
    return rows


def speed(net) -> dict[str, float]:
    from osdface.models.background_sr import upscale_image

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8), (0, 0), 2)
    out_mp = 2048 * 2048 / 1e6
    timings = {}
    for name, fn in (("lanczos", lambda: cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_LANCZOS4)),
                     ("bicubic", lambda: cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_CUBIC)),
                     ("learned", lambda: upscale_image(net, image, 2.0))):
        fn()
        best = min(_time(fn) for _ in range(3))
        timings[name] = 1000 * best / out_mp
    return timings


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="a save_pretrained folder (default: the shipped one)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per set (0: all)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "background.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from osdface.hardware import cpu_description
    from osdface.models.background_sr import BackgroundSR, background_sr_dir
    from osdface.training.background_sr import held_out_files, read_rgb

    weights = args.weights or background_sr_dir()
    net = BackgroundSR.from_pretrained(str(weights), use_safetensors=True).eval()
    files = held_out_files(SHARED)
    images = {k: [read_rgb(p) for p in (v[:args.limit] if args.limit else v)] for k, v in files.items()}
    base = ("bicubic", "lanczos", "learned")
    cases = [(2, "area", base), (4, "area", base), (3, "area", (*base, "learned 1 pass + lanczos")),
             (2, "bicubic", base), (2, "jpeg85", base)]
    rows = evaluate(net, images, cases)
    timings = speed(net)
    params = sum(p.numel() for p in net.parameters())
    size_mb = sum(f.stat().st_size for f in Path(weights).glob("*.safetensors")) / 1e6

    lines = [
        "# Background upsampler at `--upscale` > 1",
        "",
        f"CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        f"Network: `{Path(weights).name}` ({params:,} parameters, {size_mb:.2f} MB safetensors; "
        f"config {({k: v for k, v in net.config.items() if not k.startswith('_')})}).",
        "Held-out images (never trained on): London portraits 090–102, both expressions (1024 px); FFHQ "
        "00250–00299 (512 px). LR: ×N with cv2 INTER_AREA (`area`), PIL antialiased bicubic (`bicubic`) or area "
        "then JPEG q85 (`jpeg85`). PSNR in RGB, 8-px border excluded, mean over images.",
        "",
        "| ×N | LR | set | n | bicubic | Lanczos-4 | learned | learned − Lanczos |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| ×{r['factor']} | {r['lr']} | {r['set']} | {r['n']} | {r['bicubic']:.2f} | {r['lanczos']:.2f} | "
                     f"{r['learned']:.2f} | {r['learned'] - r['lanczos']:+.2f} |")
    alt = [r for r in rows if "learned 1 pass + lanczos" in r]
    if alt:
        lines += ["", "×3, the two ways to reach it: the shipped rule (`round(log2 3)` = 2 passes, then INTER_AREA down) vs "
                  "one pass then Lanczos ×1.5:", ""]
        lines += [f"- {r['set']}: 2 passes + area {r['learned']:.2f} dB; 1 pass + Lanczos "
                  f"{r['learned 1 pass + lanczos']:.2f} dB" for r in alt]
    lines += ["", "| speed, ×2 of a 1024² input | ms per output MP |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in timings.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
