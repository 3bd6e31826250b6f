"""Restoring many image files safely: the driver behind ``osdface restore``.

What it promises: each input is done once (sharded across processes under torchrun / accelerate
launch by RANK and WORLD_SIZE), outputs that exist are skipped unless ``overwrite``, an input file
is never written to, every output is written atomically, and a bad file costs one line in the report
while the rest goes on.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from .errors import ImageReadError
from .files import write_text_atomic
from .image_utils import list_images, read_image, write_image_atomic

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}


@dataclass
class RestoredFile:
    """What ``restore_batch`` returns per input: the main output image, extra files to write next to
    it (path relative to the output folder → HWC uint8 image or JSON-ready dict), and an optional
    note for the report (e.g. "no face found")."""

    image: np.ndarray
    extras: dict[str, Union[np.ndarray, dict]] = field(default_factory=dict)
    note: Optional[str] = None


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)  # outputs written
    skipped: list[Path] = field(default_factory=list)  # outputs already present
    failed: list[str] = field(default_factory=list)  # one line each: "<file>: <reason>"
    notes: list[str] = field(default_factory=list)  # one line each: "<file>: <remark>", not failures

    def summary(self) -> str:
        text = f"restored {len(self.done)}, skipped {len(self.skipped)} (already present), failed {len(self.failed)}"
        return text + (f", {len(self.notes)} notes" if self.notes else "")


def shard() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when run plainly."""
    return int(os.environ.get("RANK", 0)), max(1, int(os.environ.get("WORLD_SIZE", 1)))


def plan_outputs(inputs: Sequence[Path], output_dir: Path, fmt: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Map inputs to output paths (same stem, ``fmt`` suffix, or the input's own with ``same``).

    Returns (pairs, problems): two inputs with one output name, or an output that would land on an
    input file, are problems, never silent overwrites.
    """
    resolved_inputs = {p.resolve() for p in inputs}
    taken: dict[Path, Path] = {}
    pairs, problems = [], []
    for src in inputs:
        suffix = src.suffix.lower() if fmt == "same" else FORMATS[fmt]
        dst = output_dir / (src.stem + suffix)
        if dst.resolve() in resolved_inputs:
            problems.append(f"{src}: output {dst} would overwrite an input file; choose another --output")
        elif dst in taken:
            problems.append(f"{src}: output name {dst.name} is already used by {taken[dst]}; rename one of them")
        else:
            taken[dst] = src
            pairs.append((src, dst))
    return pairs, problems


def restore_files(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    restore_batch: Callable[[list[np.ndarray], list[Path]], list[Union[np.ndarray, RestoredFile]]],
    batch_size: int = 4,
    overwrite: bool = False,
    fmt: str = "png",
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    read: Callable[[Path], np.ndarray] = read_image,
) -> BatchReport:
    """Read (``read``), restore (``restore_batch(images, paths)`` → HWC uint8 images or
    RestoredFile) and write every input with its extras.

    Under a multi-process launch each process takes every WORLD_SIZE-th file of the sorted list.
    """
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    output_dir = Path(output_dir)
    report = BatchReport()
    paths, problems = list_images(inputs)
    pairs, clashes = plan_outputs(sorted(set(paths)), output_dir, fmt)
    rank, world = shard()
    if rank == 0:  # report planning problems once, not once per process
        report.failed.extend(problems + clashes)
        for line in problems + clashes:
            log(f"error: {line}")
    mine = pairs[rank::world]
    todo = []
    for src, dst in mine:
        (todo.append((src, dst)) if overwrite or not dst.exists() else report.skipped.append(dst))
    bar = tqdm(total=len(todo), desc="restore" if world == 1 else f"restore [rank {rank}]", unit="img",
               disable=not progress, position=rank if world > 1 else None)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images, ok = [], []
        for src, dst in chunk:
            try:
                images.append(read(src))
                ok.append((src, dst))
            except ImageReadError as err:
                report.failed.append(str(err))
                log(f"error: {err}")
        if ok:
            try:
                restored = restore_batch(images, [src for src, _ in ok])
            except Exception as err:  # e.g. out of memory: this batch fails, the rest goes on
                for src, _ in ok:
                    report.failed.append(f"{src}: restoration failed ({type(err).__name__}: {err})")
                    log(f"error: {report.failed[-1]}")
                restored = []
            for (src, dst), result in zip(ok, restored):
                result = result if isinstance(result, RestoredFile) else RestoredFile(result)
                try:
                    for rel, extra in result.extras.items():
                        target = output_dir / rel
                        if isinstance(extra, np.ndarray):
                            write_image_atomic(extra, target)
                        else:
                            write_text_atomic(target, json.dumps(extra, indent=2) + "\n")
                    write_image_atomic(result.image, dst)  # last: its presence means "done"
                    report.done.append(dst)
                    if result.note:
                        report.notes.append(f"{src}: {result.note}")
                        log(f"note: {report.notes[-1]}")
                except OSError as err:
                    report.failed.append(f"{dst}: cannot write output ({err.strerror or err})")
                    log(f"error: {report.failed[-1]}")
        bar.update(len(chunk))
    bar.close()
    return report
