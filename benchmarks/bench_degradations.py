"""Throughput of the degradation pipeline, per DataLoader worker (one process), 512x512 inputs.

For each preset: ``degrade`` alone (images/s, ms/image), and a full ``HQFolderDataset`` sample
(PNG read + degradation + two tensors). Mean PSNR(LQ, HQ) is shown as a severity reference.
OpenCV and torch threads default to 1, as in a DataLoader worker (torch sets 1 thread there; one
worker should use one core); ``--threads 0`` keeps the libraries' defaults.

    PYTHONPATH=src python3 benchmarks/bench_degradations.py [--images 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from osdface.data import HQFolderDataset, degrade, preset_names, rng_for
from osdface.image_utils import write_image_atomic


def test_faces(count: int, size: int = 512) -> list[np.ndarray]:
    """Real face crops when scikit-image is there (astronaut), else textured synthetic images."""
    try:
        from skimage import data

        base = data.astronaut()
    except ImportError:  # pragma: no cover
        base = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    faces = []
    for i in range(count):
        shifted = np.roll(base, shift=(i * 7) % size, axis=1)  # vary content a little
        faces.append(cv2.resize(shifted, (size, size), interpolation=cv2.INTER_AREA))
    return faces


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def bench_degrade(preset: str, faces: list[np.ndarray]) -> tuple[float, float]:
    degrade(faces[0], preset, rng_for(0, 10**6))  # warm-up
    scores = []
    start = time.perf_counter()
    for i, hq in enumerate(faces):
        lq, _ = degrade(hq, preset, rng_for(0, i))
        scores.append(psnr(hq, lq))
    return len(faces) / (time.perf_counter() - start), float(np.mean(scores))


def bench_dataset(preset: str, folder: Path, count: int) -> float:
    ds = HQFolderDataset(folder, size=512, degradation=preset, hflip=True)
    ds[0]  # warm-up
    start = time.perf_counter()
    for i in range(count):
        ds[i % len(ds)]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100, help="images per preset (default 100)")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenCV and torch threads (0: library defaults)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        cv2.setNumThreads(args.threads)
        torch.set_num_threads(args.threads)
    faces = test_faces(args.images)
    print(
        f"{args.images} images of 512x512 per preset, one process, "
        f"threads: OpenCV {cv2.getNumThreads()}, torch {torch.get_num_threads()}"
    )
    print(f"{'preset':<12} {'degrade img/s':>14} {'ms/img':>8} {'dataset img/s':>14} {'PSNR(LQ,HQ) dB':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, face in enumerate(faces[:16]):
            write_image_atomic(face, Path(tmp) / f"{i:03d}.png")
        for preset in preset_names():
            rate, mean_psnr = bench_degrade(preset, faces)
            ds_rate = bench_dataset(preset, Path(tmp), max(16, args.images // 2))
            print(f"{preset:<12} {rate:>14.1f} {1000 / rate:>8.1f} {ds_rate:>14.1f} {mean_psnr:>15.2f}")


if __name__ == "__main__":
    main()
