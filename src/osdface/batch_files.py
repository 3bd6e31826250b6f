"""Restoring many image files safely: the driver behind ``osdface restore``.

What it promises: each input is done once (sharded across processes under torchrun / accelerate
launch by RANK and WORLD_SIZE), outputs that exist are skipped unless ``overwrite``, an input file
is never written to, every output is written atomically, and a bad file costs one line in the report
while the rest goes on.

Nothing is left half-written: an output's extra images (compare/, faces) are written first, then the
image, then its sidecar JSON last. With a sidecar (``sidecar_of``) an output counts as done only when
both exist, so a run killed between them is repaired by the next one (which redoes that output); a
failed write removes what that output had written; and a sidecar of ours whose image is missing (an
older version wrote it first) is swept by the next run. A JSON file osdface did not write is never
replaced.
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

from .errors import ImageReadError, OSDFaceError
from .files import sweep_stale_temp_files, write_text_atomic
from .image_utils import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_images, read_image, write_image_atomic

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
TEXT_EXTENSIONS = (".md", ".txt", ".json", ".yaml", ".yml", ".csv")  # clearly not images: skipped without a note


@dataclass
class RestoredFile:
    """What ``restore_batch`` returns per input: the main output image, extra files to write next to
    it (path relative to the output folder → HWC uint8 image or JSON-ready dict), and an optional
    note for the report (e.g. "no face found")."""

    image: np.ndarray
    extras: dict[str, Union[np.ndarray, dict]] = field(default_factory=dict)
    note: Optional[str] = None
    faces: list[dict] = field(default_factory=list)  # per-face verdicts (``FaceVerdict.to_json``), for the report


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)  # outputs written
    skipped: list[Path] = field(default_factory=list)  # outputs already present
    failed: list[str] = field(default_factory=list)  # one line each: "<file>: <reason>"
    notes: list[str] = field(default_factory=list)  # one line each: "<file>: <remark>", not failures
    faces: list[dict] = field(default_factory=list)  # one per restored face: {"file", "index", verdict fields}

    def summary(self) -> str:
        """One line of counts, the faces' line (what the no-harm rule did), then the failed files."""
        from .face.no_harm import summarize

        text = f"restored {len(self.done)}, skipped {len(self.skipped)} (already present), failed {len(self.failed)}"
        text += f", {len(self.notes)} notes" if self.notes else ""
        lines = [text]
        if self.faces:
            lines.append("faces: " + summarize(self.faces))
        return "\n".join([*lines, *(["failed:"] + [f"  {line}" for line in self.failed] if self.failed else [])])

    def to_json(self) -> dict:
        return {"done": [str(p) for p in self.done], "skipped": [str(p) for p in self.skipped],
                "failed": self.failed, "notes": self.notes, "faces": self.faces}


def shard() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when run plainly."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), max(1, int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise OSDFaceError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: "
                           "both must be integers (set by torchrun / accelerate launch)") from None
    if not 0 <= rank < world:
        raise OSDFaceError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return rank, world


def plan_outputs(inputs: Sequence[Path], output_dir: Path, fmt: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Map inputs to output paths (same stem, ``fmt`` suffix, or the input's own with ``same``; ``keep``:
    the input's file name whatever its suffix, as videos are written).

    Returns (pairs, problems): two inputs with one output name, or an output that would land on an
    input file, are problems, never silent overwrites.
    """
    resolved_inputs = {p.resolve() for p in inputs}
    taken: dict[Path, Path] = {}
    pairs, problems = [], []
    for src in inputs:
        if fmt == "keep":
            dst = output_dir / src.name
        else:
            suffix = src.suffix.lower() if fmt == "same" else FORMATS[fmt]
            if suffix not in WRITABLE_SUFFIXES:  # --format same on a file without an image extension
                suffix = ".png"
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
    sidecar_of: Optional[Callable[[Path], Path]] = None,
) -> BatchReport:
    """Read (``read``), restore (``restore_batch(images, paths)`` → HWC uint8 images or
    RestoredFile) and write every input with its extras (the module docstring says in which order).

    ``sidecar_of(input)``: the sidecar each output gets (among its extras); an output without it is not
    done. Under a multi-process launch each process takes every WORLD_SIZE-th file of the sorted list.
    """
    interactive = progress and sys.stderr.isatty()
    log = log or ((lambda msg: tqdm.write(msg, file=sys.stderr)) if interactive
                  else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    output_dir = Path(output_dir)
    report = BatchReport()
    paths, problems = list_images(inputs)
    pairs, clashes = plan_outputs(sorted(set(paths)), output_dir, fmt)
    rank, world = shard()
    if rank == 0:  # report planning problems once, not once per process
        report.failed.extend(problems + clashes)
        for line in problems + clashes:
            log(f"error: {line}")
        for line in skipped_folder_entries(inputs):
            report.notes.append(line)
            log(f"note: {line}")
        sweep_orphan_sidecars(output_dir)  # (sidecars come after their image: none is being written alone)
    for folder in [output_dir, *(p for p in output_dir.glob("*") if p.is_dir() and not p.name.startswith("."))]:
        sweep_stale_temp_files(folder)  # what a killed earlier run left mid-write
    mine = pairs[rank::world]
    todo = []
    for src, dst in mine:
        done = dst.exists() and (sidecar_of is None or sidecar_of(src).is_file())
        (todo.append((src, dst)) if overwrite or not done else report.skipped.append(dst))
    bar = tqdm(total=len(todo), desc="restore" if world == 1 else f"restore [rank {rank}]", unit="img",
               disable=not interactive, position=rank if world > 1 else None)
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
        for (src, dst), result in zip(ok, _restore_isolated(restore_batch, images, [src for src, _ in ok])):
            if isinstance(result, Exception):
                report.failed.append(f"{src}: restoration failed ({type(result).__name__}: {one_line(result)})")
                log(f"error: {report.failed[-1]}")
                continue
            result = result if isinstance(result, RestoredFile) else RestoredFile(result)
            try:
                write_outputs(result, dst, output_dir)
                report.done.append(dst)
                report.faces.extend({"file": str(src), **face} for face in result.faces)
                if result.note:
                    report.notes.append(f"{src}: {result.note}")
                    log(f"note: {report.notes[-1]}")
            except (OSError, ValueError) as err:
                reason = err.strerror if isinstance(err, OSError) and err.strerror else one_line(err)
                report.failed.append(f"{dst}: cannot write output ({reason})")
                log(f"error: {report.failed[-1]}")
        bar.update(len(chunk))
        if progress and not interactive:
            log(f"restore: {min(start + batch_size, len(todo))}/{len(todo)} files")
    bar.close()
    return report


SIDECAR_KEYS = {"input", "input_size_wh", "faces"}  # in every photo / aligned-crop sidecar osdface writes


def is_our_sidecar(path: Path) -> bool:
    """``path`` is a JSON object with the keys of a sidecar osdface writes."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and SIDECAR_KEYS <= set(data)


def write_outputs(result: RestoredFile, dst: Path, output_dir: Path) -> None:
    """One output, in the order that leaves nothing half: the extra images, the image, the JSON extras
    (the sidecar) last, each atomically. A JSON file there that is not our sidecar is refused before
    anything is written; if a write fails, what this output wrote is removed and the error raised."""
    images = [(output_dir / rel, x) for rel, x in result.extras.items() if isinstance(x, np.ndarray)]
    texts = [(output_dir / rel, x) for rel, x in result.extras.items() if not isinstance(x, np.ndarray)]
    for target, _ in texts:
        if target.exists() and not is_our_sidecar(target):
            raise FileExistsError(f"{target.name} is there and osdface did not write it; it is not replaced "
                                  "(move it, or choose another --output)")
    written: list[Path] = []
    try:
        for target, extra in images:
            write_image_atomic(extra, target)
            written.append(target)
        write_image_atomic(result.image, dst)
        written.append(dst)
        for target, extra in texts:
            write_text_atomic(target, json.dumps(extra, indent=2) + "\n")
            written.append(target)
    except (OSError, ValueError):
        for path in written:
            path.unlink(missing_ok=True)
        raise


def sweep_orphan_sidecars(output_dir: Path) -> list[Path]:
    """Remove each ``STEM.json`` of ours in ``output_dir`` whose image (``STEM`` + an image suffix) is
    missing: a sidecar is written after its image, so one alone was left by an interrupted older run or
    its image was deleted. Returns what went."""
    removed = []
    for path in sorted(Path(output_dir).glob("*.json")) if Path(output_dir).is_dir() else []:
        if any(path.with_suffix(suffix).exists() for suffix in WRITABLE_SUFFIXES) or not is_our_sidecar(path):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] if text else type(err).__name__


def _restore_isolated(restore_batch, images: list, paths: list[Path]) -> list:
    """``restore_batch`` on the whole batch; if it fails, on each image alone, so that one bad image
    (an odd size, a failing face) never costs its neighbours. Failures come back as exceptions."""
    if not images:
        return []
    try:
        results = list(restore_batch(images, paths))
        if len(results) != len(images):
            raise RuntimeError(f"restore_batch returned {len(results)} results for {len(images)} images")
        return results
    except Exception as err:  # noqa: BLE001 (any failure: isolate it)
        if len(images) == 1:
            return [err]
    out = []
    for image, path in zip(images, paths):
        out.extend(_restore_isolated(restore_batch, [image], [path]))
    return out


def skipped_folder_entries(inputs: Sequence[str | Path]) -> list[str]:
    """Entries of input folders that ``list_images`` passes over (subfolders, links to nothing, pipes,
    sockets and devices or links to them, files without an image extension, a file named only an image
    extension such as ``.png``), one line each, so nothing is skipped silently. Other hidden files
    (``.DS_Store``) and text files are passed over without a line."""
    lines = []
    for item in map(Path, inputs):
        try:
            entries = sorted(item.iterdir()) if item.is_dir() else []
        except OSError:
            continue  # (list_images names the folder)
        for entry in entries:
            if entry.is_dir():
                lines.append(f"{entry}: a subfolder; not searched (name it to restore its images)")
            elif not entry.exists():
                lines.append(f"{entry}: a link to nothing; skipped")
            elif not entry.is_file():
                lines.append(f"{entry}: not a regular file (a pipe, socket or device"
                             + (", through a link" if entry.is_symlink() else "") + "); skipped")
            elif entry.name.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
                lines.append(f"{entry}: a hidden file named only an extension; skipped (rename it, e.g. "
                             f"image{entry.name}, to restore it)")
            elif (entry.suffix.lower() not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS + TEXT_EXTENSIONS) and not entry.name.startswith("."):
                lines.append(f"{entry}: not an image extension ({', '.join(IMAGE_EXTENSIONS)}); skipped "
                             "(name the file to try it anyway)")
    return lines
