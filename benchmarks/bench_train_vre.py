"""Stage-1 (VRE) training throughput on this machine: images per second through the real loop.

Runs ``train_vre`` (data loading + degradation in the main process, forward, both updates, logging)
on faces written to a temporary folder and reads the per-step ``perf/images_per_s`` it logs; the
first step (warm-up) is left out. Checkpoint writing and export are switched off (the paper-size
state is ~1.7 GB per branch pair and is not part of the step time).

- ``tiny``: the test-size model (32×32, ch 32, ch_mult 1,1,2, 16 codes);
- ``paper``: the release VRE autoencoder (512×512, ch 64, ch_mult 1,2,2,2,4,8, z 512, 1024 codes),
  VGG16-LPIPS and the PatchGAN, every loss term on (disc_start 0).

It also times the degradation of one 512×512 face (``dual`` preset, one thread, as in a DataLoader
worker) to give the number of workers a run needs to keep up; ``bench_degradations.py`` has the
full per-preset table.

Usage:
    PYTHONPATH=src python3 benchmarks/bench_train_vre.py                          # tiny + paper, assoc, batch 1
    PYTHONPATH=src python3 benchmarks/bench_train_vre.py --sizes paper --phases hq assoc --batch-size 2
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = {
    "tiny": ["model.ch=32", "model.ch_mult=[1, 1, 2]", "model.num_res_blocks=1", "model.attn_resolutions=[8]",
             "model.resolution=32", "model.z_channels=16", "model.num_codes=16", "model.embed_dim=16",
             "model.num_tokens=8", "disc.ndf=8", "disc.n_layers=2"],
    "paper": ["model.ch=64", "model.ch_mult=[1, 2, 2, 2, 4, 8]", "model.num_res_blocks=2",
              "model.attn_resolutions=[16]", "model.resolution=512", "model.z_channels=512", "model.num_codes=1024",
              "model.embed_dim=512", "model.num_tokens=77", "disc.ndf=64", "disc.n_layers=3"],  # the release VRE
}


def write_faces(folder: Path, count: int, size: int) -> None:
    import cv2

    from osdface.image_utils import write_image_atomic

    try:
        from skimage import data

        base = data.astronaut()
    except ImportError:  # pragma: no cover
        base = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    for i in range(count):
        face = cv2.resize(np.roll(base, 7 * i, axis=1), (size, size), interpolation=cv2.INTER_AREA)
        write_image_atomic(face, folder / f"{i:03d}.png")


def bench(size: str, phase: str, batch_size: int, steps: int, root: Path) -> tuple[float, float, float]:
    """(images/s median, s/step median, peak RSS GB so far) over ``steps`` timed steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from osdface.training.checkpoint import CheckpointManager
    from osdface.training.stage1 import load_run_config, train_vre

    resolution = 32 if size == "tiny" else 512
    faces = root / f"faces{resolution}"
    if not faces.exists():
        faces.mkdir()
        write_faces(faces, max(4, 2 * batch_size), resolution)
    run = root / f"{size}-{phase}-b{batch_size}"
    cfg = load_run_config("stage1_tiny", [*SIZES[size], f"data.roots=[{faces}]", "data.degradation=dual",
                                          f"train.batch_size={batch_size}", f"train.max_steps={steps + 1}",
                                          "train.log_every=1", f"train.sample_every={10 ** 9}",
                                          "train.export=false", "loss.disc_start=0", "loss.perceptual_weight=1.0"],
                          phase=phase, output_dir=run)
    save = CheckpointManager.save
    CheckpointManager.save = lambda self, step, *a, **k: self.root  # not part of the step time
    try:
        train_vre(cfg)
    finally:
        CheckpointManager.save = save
    events = EventAccumulator(str(run / "logs"))
    events.Reload()
    rates = [e.value for e in sorted(events.Scalars("perf/images_per_s"), key=lambda e: e.step)][1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rate = statistics.median(rates)
    return rate, batch_size / rate, peak


def degradation_rate(count: int = 8) -> float:
    import cv2

    from osdface.data import degrade, rng_for

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        write_faces(Path(tmp), 1, 512)
        from osdface.image_utils import read_image

        face = read_image(Path(tmp) / "000.png")
    degrade(face, "dual", rng_for(0, 10**6))
    start = time.perf_counter()
    for i in range(count):
        degrade(face, "dual", rng_for(0, i))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=list(SIZES))
    parser.add_argument("--phases", nargs="+", default=["assoc"], choices=["hq", "lq", "assoc"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (tiny: ×10)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: library default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, CPU; batch {args.batch_size} per step")
    print(f"{'model':<6} {'phase':<6} {'images/s':>9} {'s/step':>8} {'peak RSS GB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for phase in args.phases:
                steps = args.steps * 10 if size == "tiny" else args.steps
                rate, per_step, peak = bench(size, phase, args.batch_size, steps, Path(tmp))
                print(f"{size:<6} {phase:<6} {rate:>9.3f} {per_step:>8.2f} {peak:>12.1f}", flush=True)
    deg = degradation_rate()
    print(f"degradation ('dual', 512×512, 1 thread): {deg:.1f} images/s per DataLoader worker")


if __name__ == "__main__":
    main()
