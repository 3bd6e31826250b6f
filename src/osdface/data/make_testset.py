"""Write a synthetic LQ test set (CelebA-Test style) from a folder of HQ faces.

``degrade_folder(hq_dir, lq_dir, preset, seed)`` reads every image of ``hq_dir`` (flat folder),
centre-crops/resizes it to ``size``, degrades it with the preset, and writes ``lq_dir/<stem>.png``
(lossless, so the only compression is the simulated JPEG). Optionally the resized HQ target is
written to ``gt_dir`` as well (gray when the sample was made gray with ``gray_target``).

``lq_dir/manifest.json`` records the preset, its full config, the seed and size, and per image::

    {"source": "<hq file>", "output": "<lq file name>", "gt": "<gt file name or null>", "params": {...}}

with every parameter drawn (see ``degradations.degrade``). Image i uses the generator
``rng_for(seed, crc32(file name))``: an image's LQ depends only on (preset, seed, its name, its
pixels), not on which other files are in the folder or the processing order.

Re-runs are resumable: existing outputs are kept (not recomputed when the manifest already has
their entry) unless ``overwrite``; a folder made with another preset/seed/size is refused unless
``overwrite``. Writes are atomic. A bad input is reported in one line and the rest goes on.

Only our own files are ever replaced: a file under an output name that the manifest does not list and
that does not hold exactly this run's output is reported (one line) and left alone, even with
``overwrite``, and a ``manifest.json`` that degrade did not write refuses the folder.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import ImageReadError
from ..files import write_text_atomic
from ..image_utils import read_image, write_image_atomic
from .datasets import MANIFEST_NAME, DatasetError, scan_images
from .degradations import DegradationConfig, as_degradation_config, degrade, rng_for, target_for
from .geometry import fit_square

PathLike = str | Path


@dataclass
class DegradeFolderSummary:
    """What ``degrade_folder`` did. ``failed`` holds one line per input that could not be used."""

    lq_dir: Path
    manifest_path: Path
    total: int = 0
    written: int = 0
    skipped_existing: int = 0
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.total} inputs: {self.written} written, {self.skipped_existing} existing kept, "
            f"{len(self.failed)} failed -> {self.lq_dir} (manifest {self.manifest_path.name})"
        )


def image_key(name: str) -> int:
    """The per-image key mixed into the seed: CRC-32 of the file name (stable across runs and OSes)."""
    return zlib.crc32(name.encode("utf-8"))


def _write_json_atomic(data: Any, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def _previous_manifest(manifest_path: Path) -> dict | None:
    """An earlier run's manifest (None if there is none); one that degrade did not write is refused, as it
    would be replaced (whatever ``overwrite`` says)."""
    if not manifest_path.exists():
        return None
    try:
        old = json.loads(manifest_path.read_text())
        if (not isinstance(old, dict) or not {"preset", "seed", "size", "images"} <= set(old)
                or not all(isinstance(e, dict) and "output" in e for e in old["images"])):
            raise ValueError("not ours")
    except (OSError, ValueError, TypeError):
        raise DatasetError(
            f"{manifest_path}: not a manifest of osdface degrade; it is not replaced (choose another output folder)"
        ) from None
    return old


def _previous_entries(old: dict | None, manifest_path: Path, header: dict, overwrite: bool) -> dict[str, dict]:
    """Entries of an earlier run into the same folder, by output name; refuses a different setup."""
    if overwrite or old is None:
        return {}
    old_header = {k: old.get(k) for k in header}
    entries = {e["output"]: e for e in old["images"]}
    if old_header != header:
        diff = [k for k in header if old_header.get(k) != header[k]]
        raise DatasetError(
            f"{manifest_path.parent}: was made with a different {', '.join(diff)} "
            f"(preset {old_header.get('preset')!r}, seed {old_header.get('seed')}, size {old_header.get('size')}); "
            "use another output folder or overwrite=True"
        )
    return entries


def _ours(old: dict | None, gt_dir: Path | None) -> tuple[set[str], set[str]]:
    """(LQ names, GT names) an earlier run into this folder wrote, by its manifest: files it may replace."""
    if old is None:
        return set(), set()
    lq = {e["output"] for e in old["images"]}
    same_gt = gt_dir is not None and old.get("gt_dir") == str(gt_dir.resolve())
    return lq, {e["gt"] for e in old["images"] if e.get("gt")} if same_gt else set()


def _holds(path: Path, image) -> bool:
    """Whether ``path`` holds exactly ``image`` (an earlier run's output with no manifest entry yet)."""
    if image.ndim == 2:  # a gray target: read back as three equal channels
        image = np.repeat(image[..., None], 3, axis=2)
    try:
        return np.array_equal(read_image(path), image)
    except (ImageReadError, OSError, ValueError):
        return False


def degrade_folder(
    hq_dir: PathLike,
    lq_dir: PathLike,
    preset: str | Mapping[str, Any] | DegradationConfig,
    seed: int,
    size: int | None = 512,
    overwrite: bool = False,
    *,
    gt_dir: PathLike | None = None,
    progress: bool = True,
) -> DegradeFolderSummary:
    """Degrade every image of ``hq_dir`` into ``lq_dir`` and write ``lq_dir/manifest.json``.

    Args:
        hq_dir: flat folder of HQ faces (any size; centre-cropped to square and resized to ``size``).
        lq_dir: output folder (created). Outputs are ``<stem>.png``.
        preset: preset name (``degradations.PRESETS``), dict or ``DegradationConfig``.
        seed: non-negative base seed.
        size: output side in pixels, or None to keep each image's size.
        overwrite: regenerate outputs that already exist (and ignore an old manifest).
        gt_dir: if given, also write the resized HQ targets there (``<stem>.png``).
        progress: show a tqdm progress bar (on stderr).

    Returns:
        A ``DegradeFolderSummary``. Raises DatasetError only for problems with the folders
        themselves (missing/empty ``hq_dir``, two inputs with one stem, a mismatching old manifest).
    """
    cfg = as_degradation_config(preset)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    hq_dir, lq_dir = Path(hq_dir), Path(lq_dir)
    gt_dir = Path(gt_dir) if gt_dir is not None else None
    sources = scan_images(hq_dir, recursive=False)
    stems: dict[str, Path] = {}
    for p in sources:
        if p.stem in stems:
            raise DatasetError(
                f"{hq_dir}: {stems[p.stem].name} and {p.name} would both be written as {p.stem}.png"
            )
        stems[p.stem] = p

    manifest_path = lq_dir / MANIFEST_NAME
    old = _previous_manifest(manifest_path)
    header = {"preset": cfg.name, "config": cfg.to_dict(), "seed": int(seed), "size": size}
    entries = _previous_entries(old, manifest_path, header, overwrite)
    ours_lq, ours_gt = _ours(old, gt_dir)
    lq_dir.mkdir(parents=True, exist_ok=True)
    if gt_dir is not None:
        gt_dir.mkdir(parents=True, exist_ok=True)
    summary = DegradeFolderSummary(lq_dir=lq_dir, manifest_path=manifest_path, total=len(sources))

    for src in tqdm(sources, desc="degrade", unit="img", disable=not progress, file=sys.stderr):
        out = lq_dir / f"{src.stem}.png"
        gt_out = gt_dir / f"{src.stem}.png" if gt_dir is not None else None
        exists = out.is_file() and (gt_out is None or gt_out.is_file())
        if exists and not overwrite and out.name in entries:
            summary.skipped_existing += 1
            continue
        try:
            hq = fit_square(read_image(src), size)
            lq, params = degrade(hq, cfg, rng_for(seed, image_key(src.name)))
            files = [(out, lq, out.name in ours_lq)]
            if gt_out is not None:
                files.append((gt_out, target_for(hq, params), gt_out.name in ours_gt))
            # A file that is there is replaced only if an earlier run wrote it (listed in the manifest, or
            # holding exactly this output: a run stopped before its manifest); anything else is left alone.
            foreign = [path for path, image, listed in files
                       if path.exists() and not listed and not _holds(path, image)]
            if foreign:
                one = len(foreign) == 1
                raise DatasetError(f"{src}: {' and '.join(map(str, foreign))} already exist{'s' if one else ''} and "
                                   f"osdface degrade did not write {'it' if one else 'them'}; not replaced (move "
                                   f"{'it' if one else 'them'} away, or choose another folder)")
            if exists and not overwrite:
                summary.skipped_existing += 1  # kept as is; params re-derived for the manifest
            else:
                for path, image, _ in files:
                    write_image_atomic(image, path)
                summary.written += 1
        except Exception as err:  # one bad input must not stop the folder  # noqa: BLE001
            line = str(err) if str(src) in str(err) else f"{src}: {type(err).__name__}: {err}"
            line = " ".join(line.split())  # always one line
            summary.failed.append(line)
            tqdm.write(f"error: {line}", file=sys.stderr)
            continue
        entries[out.name] = {
            "source": str(src),
            "output": out.name,
            "gt": gt_out.name if gt_out is not None else None,
            "params": params,
        }

    manifest = {
        **header,
        "seeding": "rng_for(seed, crc32(source file name))",
        "gt_dir": str(gt_dir.resolve()) if gt_dir is not None else None,
        "images": [entries[k] for k in sorted(entries)],
    }
    _write_json_atomic(manifest, manifest_path)
    return summary
