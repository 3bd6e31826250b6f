"""Training / evaluation datasets of face images (torch ``Dataset``s, DataLoader-worker safe).

- ``HQFolderDataset``: aligned HQ faces (FFHQ / FFHQR style, any size, searched recursively),
  brought to ``size`` x ``size`` (``geometry.fit_square``), optionally mirrored, and degraded on the
  fly (``degradations.degrade``). Both training stages use it.
- ``PairedFolderDataset``: an LQ folder and an HQ folder paired by file stem (e.g. a synthetic
  test set written by ``make_testset.degrade_folder``, whose manifest params are attached).

Every sample is a dict::

    lq, hq   float32 tensors (3, size, size) in [-1, 1]
    path     str, the HQ file used;   lq_path (paired only) str
    index    int, the index asked for
    params   str, JSON of everything drawn for this sample (degradation params, "hflip")
    mask     (``HQFolderDataset(valid_mask=True)`` only) float32 (1, size, size) in [0, 1]: 1 where
             alignment took the pixel from inside the photo, 0 where it filled in a reflection (between the two
             where the crop was resized to ``size``)

``params`` is a JSON string so that the default collate function batches samples whose params
differ in structure (e.g. one or two stages); ``json.loads`` gives the dict back.

Reproducibility: sample ``index`` of epoch ``epoch`` draws all its randomness from
``rng_for(seed, epoch, index)``, so batches are identical for any ``num_workers``. Call
``set_epoch(epoch)`` before building each epoch's iterator (with ``persistent_workers=True`` the
workers keep the epoch they started with).

Unreadable files never stop an epoch: the sample falls through to the next readable file (in
listing order, wrapping around), a warning is logged once per file, and the file is flagged in a
shared-memory table that all worker processes and the main process see (``num_unreadable``,
``unreadable_paths()``). Only a dataset with no readable file at all raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError, ImageReadError
from ..image_utils import IMAGE_EXTENSIONS, read_image, to_tensor
from .degradations import DegradationConfig, as_degradation_config, degrade, rng_for, target_for
from .geometry import fit_square, hflip

logger = logging.getLogger(__name__)

PathLike = str | Path
MANIFEST_NAME = "manifest.json"


def scan_images(root: PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by suffix, ``image_utils.IMAGE_EXTENSIONS``) under ``root``, sorted by relative
    path. Hidden files (name starting with ".") are ignored. Raises DatasetError when ``root`` is
    missing, not a folder, or holds no image."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [
        p
        for p in candidates
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    if not found:
        where = "under" if recursive else "in"
        raise DatasetError(f"{root}: no image files {where} this folder ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return to_tensor(image)[0]  # (3, H, W) float32 in [-1, 1]


class _SkippingDataset(Dataset):
    """Shared machinery: per-sample seeding, epochs, and skip-and-flag of unreadable files.

    Subclasses implement ``_read(j)`` (raise ImageReadError if file j cannot be read),
    ``_sample(index, j, loaded, rng)`` and ``_describe()``; ``len`` is the number of listed files.
    """

    def __init__(self, count: int, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.epoch = 0
        # One flag per file, in shared memory: forked or spawned workers and the main process
        # all see the same table (writes are idempotent, so no lock is needed).
        self._unreadable = torch.zeros(count, dtype=torch.uint8).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness (degradation, flips) the next samples use."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def num_unreadable(self) -> int:
        """How many listed files turned out unreadable so far (in any process)."""
        return int(self._unreadable.sum())

    def unreadable_paths(self) -> list[str]:
        idx = torch.nonzero(self._unreadable, as_tuple=False).flatten().tolist()
        return [self._path_of(j) for j in idx]

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        index %= n
        for step in range(n):
            j = (index + step) % n
            if self._unreadable[j]:
                continue
            try:
                loaded = self._read(j)
            except ImageReadError as err:
                if not self._unreadable[j]:
                    logger.warning("skipping unreadable image (sample %d uses the next one): %s", index, err)
                self._unreadable[j] = 1
                continue
            return self._sample(index, j, loaded, rng_for(self.seed, self.epoch, index))
        raise DatasetError(f"none of the {n} files of {self._describe()} can be read")

    # subclass hooks
    def _read(self, j: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, index: int, j: int, loaded: Any, rng: np.random.Generator) -> dict:  # pragma: no cover
        raise NotImplementedError

    def _path_of(self, j: int) -> str:  # pragma: no cover
        raise NotImplementedError

    def _describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


class HQFolderDataset(_SkippingDataset):
    """HQ faces from one or more folders (e.g. FFHQ and FFHQR), degraded on the fly.

    Args:
        roots: a folder or a list of folders, each searched recursively (``recursive``).
        size: output side; every image is centre-cropped to square and resized (None: keep size,
            then all images must share one size to be batched).
        degradation: preset name, dict or ``DegradationConfig``; ``None`` gives ``lq`` = ``hq``
            (e.g. for training the HQ codebook), with params ``{"hflip": ...}`` only.
        hflip: mirror each sample with probability 0.5 (drawn from the sample's generator).
        seed: base seed; sample i of epoch e uses ``rng_for(seed, e, i)``.
        recursive: search sub-folders too (FFHQ ships as 70 sub-folders of 1000 images).
        valid_mask: add each sample's ``mask`` (see the module docstring), from the ``manifest.json`` that
            ``osdface align`` wrote in a root (affine and photo size of each crop); a face without a
            record (no manifest, or an older one) is taken as whole.
    """

    def __init__(
        self,
        roots: PathLike | Sequence[PathLike],
        size: int | None = 512,
        degradation: str | Mapping[str, Any] | DegradationConfig | None = "dual",
        hflip: bool = True,
        seed: int = 0,
        recursive: bool = True,
        valid_mask: bool = False,
    ) -> None:
        self.roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
        if not self.roots:
            raise DatasetError("HQFolderDataset needs at least one folder")
        self.paths: list[Path] = [p for root in self.roots for p in scan_images(root, recursive)]
        super().__init__(len(self.paths), seed)
        self.size = size
        self.degradation = None if degradation is None else as_degradation_config(degradation)
        self.hflip = bool(hflip)
        self.valid_mask = bool(valid_mask)
        self._align_records = align_records(self.roots) if valid_mask else {}

    def __len__(self) -> int:
        return len(self.paths)

    def _mask(self, j: int, side: int) -> np.ndarray:
        """(side, side) float32: where file j's crop lies inside its photo (``record_mask``)."""
        return record_mask(self._align_records.get(self.paths[j].resolve()), side)

    def _describe(self) -> str:
        return ", ".join(str(r) for r in self.roots)

    def _path_of(self, j: int) -> str:
        return str(self.paths[j])

    def _read(self, j: int) -> np.ndarray:
        return read_image(self.paths[j])

    def _sample(self, index: int, j: int, hq: np.ndarray, rng: np.random.Generator) -> dict:
        hq = fit_square(hq, self.size)
        mask = self._mask(j, hq.shape[0]) if self.valid_mask else None
        flipped = bool(self.hflip and rng.random() < 0.5)
        if flipped:
            hq = hflip(hq)
            mask = None if mask is None else hflip(mask)
        if self.degradation is None:
            lq, params = hq, {}
        else:
            lq, params = degrade(hq, self.degradation, rng)
            hq = target_for(hq, params)
        params["hflip"] = flipped
        sample = {
            "lq": _to_chw(lq),
            "hq": _to_chw(hq),
            "path": str(self.paths[j]),
            "index": index,
            "params": json.dumps(params),
        }
        if mask is not None:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(mask))[None]  # (1, size, size) in [0, 1]
        return sample


def record_mask(record: dict | None, side: int) -> np.ndarray:
    """(side, side) float32: 1 where a crop described by an ``align_records`` record lies inside its photo,
    0 where alignment filled it by reflection (``alignment.inside_mask``); all ones without a record."""
    from ..face.alignment import inside_mask

    if record is None:
        return np.ones((side, side), np.float32)
    return fit_square(inside_mask(np.array(record["affine"]), record["size"], record["image_hw"]), side)


def align_records(roots: Sequence[Path]) -> dict[Path, dict]:
    """{resolved crop path: {"affine", "image_hw", "size"}} from the ``osdface align`` manifests of ``roots``
    (records without ``image_hw``, from before it was recorded, are left out)."""
    records: dict[Path, dict] = {}
    for root in roots:
        try:
            manifest = json.loads((root / MANIFEST_NAME).read_text())
        except (OSError, ValueError):
            continue
        for r in manifest.get("faces", []) if isinstance(manifest, dict) else []:
            if "image_hw" in r and "affine" in r and "file" in r:
                records[(root / r["file"]).resolve()] = {"affine": r["affine"], "image_hw": r["image_hw"],
                                                         "size": int(manifest["size"])}
    return records


class PairedFolderDataset(_SkippingDataset):
    """LQ / HQ image pairs matched by file stem (``x.png`` in one folder ↔ ``x.jpg`` in the other).

    Args:
        lq_dir, hq_dir: flat folders (not searched recursively).
        size: both images are centre-cropped to square and resized to ``size`` (LQ smaller than
            ``size`` is enlarged bicubically); None keeps the files' sizes.
        hflip: mirror both images of a pair with probability 0.5 (off by default: evaluation).
        seed: base seed for the flips, as in ``HQFolderDataset``.

    Every file must have a partner: otherwise DatasetError lists the unpaired names. If ``lq_dir``
    holds a ``manifest.json`` from ``degrade_folder``, each sample's params carry its entry under
    "degradation".
    """

    def __init__(
        self, lq_dir: PathLike, hq_dir: PathLike, size: int | None = 512, hflip: bool = False, seed: int = 0
    ) -> None:
        self.lq_dir, self.hq_dir = Path(lq_dir), Path(hq_dir)
        lq_by_stem = self._by_stem(scan_images(self.lq_dir, recursive=False), self.lq_dir)
        hq_by_stem = self._by_stem(scan_images(self.hq_dir, recursive=False), self.hq_dir)
        only_lq = sorted(set(lq_by_stem) - set(hq_by_stem))
        only_hq = sorted(set(hq_by_stem) - set(lq_by_stem))
        if only_lq or only_hq:
            lines = [f"LQ/HQ folders do not pair up by file name ({self.lq_dir} vs {self.hq_dir}):"]
            for label, names, other in (("LQ", only_lq, self.hq_dir), ("HQ", only_hq, self.lq_dir)):
                if names:
                    shown = ", ".join(names[:10]) + (
                        f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
                    )
                    lines.append(f"  {len(names)} {label} name(s) with no partner in {other}: {shown}")
            raise DatasetError("\n".join(lines))
        stems = sorted(lq_by_stem)
        self.pairs: list[tuple[Path, Path]] = [(lq_by_stem[s], hq_by_stem[s]) for s in stems]
        super().__init__(len(self.pairs), seed)
        self.size = size
        self.hflip = bool(hflip)
        self._manifest = self._load_manifest(self.lq_dir)

    @staticmethod
    def _by_stem(paths: list[Path], folder: Path) -> dict[str, Path]:
        by_stem: dict[str, Path] = {}
        for p in paths:
            if p.stem in by_stem:
                raise DatasetError(
                    f"{folder}: two files share the name {p.stem!r} ({by_stem[p.stem].name}, {p.name})"
                )
            by_stem[p.stem] = p
        return by_stem

    @staticmethod
    def _load_manifest(folder: Path) -> dict[str, dict]:
        path = folder / MANIFEST_NAME
        if not path.is_file():
            return {}
        try:
            entries = json.loads(path.read_text())["images"]
            return {e["output"]: e["params"] for e in entries}
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("%s: ignoring unreadable manifest (%s)", path, err)
            return {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _describe(self) -> str:
        return f"{self.lq_dir} / {self.hq_dir}"

    def _path_of(self, j: int) -> str:
        return str(self.pairs[j][1])

    def _read(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        lq_path, hq_path = self.pairs[j]
        return read_image(lq_path), read_image(hq_path)

    def _sample(
        self, index: int, j: int, loaded: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> dict:
        lq, hq = (fit_square(im, self.size) for im in loaded)
        flipped = bool(self.hflip and rng.random() < 0.5)
        if flipped:
            lq, hq = hflip(lq), hflip(hq)
        lq_path, hq_path = self.pairs[j]
        params = {"hflip": flipped, "degradation": self._manifest.get(lq_path.name)}
        return {
            "lq": _to_chw(lq),
            "hq": _to_chw(hq),
            "path": str(hq_path),
            "lq_path": str(lq_path),
            "index": index,
            "params": json.dumps(params),
        }
