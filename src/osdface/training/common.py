"""Pieces both training stages share: accelerator, resumable data order, logging and sample grids.

Stage scripts (``stage1.py``, ``stage2.py``) own their models, losses and step functions; this
module holds only what is the same for both:

- ``make_accelerator``: CPU / one GPU / many GPUs / nodes through ``accelerate launch``, mixed
  precision and gradient accumulation from the config;
- ``EpochSampler`` + ``batches_from``: the data order is a pure function of (seed, epoch), so a run
  resumed at step k sees exactly the batches an uninterrupted run sees after step k;
- ``RunLogger``: TensorBoard event files (scalars and images) plus ``samples/step-XXXXXX.png`` grids
  on disk, main process only;
- ``save_grid``: rows of image tensors in [-1, 1] → one PNG (e.g. LQ | restored | HQ).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..image_utils import tensor_to_numpy, write_image_atomic


def make_accelerator(mixed_precision: str = "no", gradient_accumulation_steps: int = 1, cpu: bool = False,
                     project_dir: Optional[str | Path] = None):
    """An ``accelerate.Accelerator`` (import deferred: accelerate is the ``train`` extra)."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                       cpu=cpu, project_dir=str(project_dir) if project_dir else None)


class EpochSampler(Sampler[int]):
    """Shuffled (or not) indices from a generator seeded by (seed, epoch); shards by rank.

    Every process of a ``world_size``-process run takes every ``world_size``-th index of the same
    permutation (padded by wrapping so all ranks get the same count).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = len(self) * self.world_size
        order = (order * math.ceil(total / max(1, len(order))))[:total]
        return iter(order[self.rank::self.world_size])


def check_batch_fits(dataset: Dataset, batch_size: int, world_size: int = 1) -> None:
    """Raise DatasetError (before any model is built or run folder written) when the training set holds
    fewer images than one optimizer step takes, or none of its files can be read."""
    from ..errors import DatasetError

    describe = getattr(dataset, "_describe", lambda: "the training set")()
    if len(dataset) < batch_size * world_size:
        raise DatasetError(f"{describe}: {len(dataset)} images, fewer than one batch of {batch_size}"
                           + (f" × {world_size} processes" if world_size > 1 else "")
                           + "; add images or lower train.batch_size")
    dataset[0]  # raises DatasetError when none of its files can be read


def batches_from(dataset: Dataset, batch_size: int, seed: int, start_step: int = 0, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True) -> Iterator[tuple[int, int, dict]]:
    """Endless (epoch, step, batch) stream that starts exactly at optimizer-step ``start_step``.

    One step consumes one batch per process; with ``drop_last`` an epoch is floor(N / (B·world)) steps.
    The dataset's ``set_epoch`` (if any) is called so its own per-sample randomness follows the epoch.
    """
    sampler = EpochSampler(len(dataset), seed, rank=rank, world_size=world_size)
    steps_per_epoch = len(sampler) // batch_size if drop_last else math.ceil(len(sampler) / batch_size)
    if steps_per_epoch == 0:
        from ..errors import DatasetError

        raise DatasetError(f"dataset of {len(dataset)} images is smaller than one batch of {batch_size}×{world_size}")
    epoch, skip = divmod(start_step, steps_per_epoch)
    step = start_step
    while True:
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        indices = list(sampler)[skip * batch_size:]  # resume mid-epoch without loading skipped samples
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                            drop_last=drop_last, persistent_workers=False)
        for batch in loader:
            yield epoch, step, batch
            step += 1
        epoch, skip = epoch + 1, 0


def save_grid(rows: Sequence[torch.Tensor], path: str | Path, labels: Sequence[str] = ()) -> np.ndarray:
    """Columns = the tensors of ``rows`` (each (B, 3, H, W) in [-1, 1]), one image row per sample.

    E.g. ``save_grid([lq, restored, hq], "samples/step-000100.png")``. Returns the HWC uint8 grid.
    """
    columns = [torch.nn.functional.interpolate(r.detach().float().cpu(), size=rows[0].shape[-2:],
                                               mode="bilinear", align_corners=False) if r.shape[-2:] != rows[0].shape[-2:]
               else r.detach().float().cpu() for r in rows]
    per_sample = [torch.cat([c[i] for c in columns], dim=-1) for i in range(columns[0].shape[0])]  # (3, H, k·W)
    grid = tensor_to_numpy(torch.cat(per_sample, dim=-2)[None], rounding="nearest")[0]
    write_image_atomic(grid, path)
    return grid


class RunLogger:
    """Scalars and images to TensorBoard (``<run>/logs``) and grids to ``<run>/samples``; main process only."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "logs"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, float(value), step)

    def grid(self, name: str, rows: Sequence[torch.Tensor], step: int) -> Optional[Path]:
        if not self.enabled:
            return None
        path = self.run_dir / "samples" / f"{name}-step-{step:06d}.png"
        grid = save_grid(rows, path)
        if self.writer is not None:
            self.writer.add_image(name, grid, step, dataformats="HWC")
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
