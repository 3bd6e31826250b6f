"""Pair restored images with their ground truths by file stem, and report everything that does not pair.

``pair_by_stem(pred, gt)`` never raises for file problems: missing folders, files without a partner,
two files with the same stem in one folder, and unreadable images all end up in the returned
``PairingResult`` as lists (and as readable lines in ``problems()``), and the remaining pairs are usable.

Ordering is deterministic: pairs are sorted by stem (plain string order, case-sensitive), whatever order
the file system lists the folders in. "001.png" pairs with "001.jpg" (the extension does not matter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageReadError
from ..image_utils import list_images, read_image

PathLike = str | Path


@dataclass
class PairingResult:
    """What ``pair_by_stem`` found. All lists are sorted by stem, then by path."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)  # (pred, gt), same stem
    unpaired_pred: list[Path] = field(default_factory=list)  # no ground truth with that stem
    unpaired_gt: list[Path] = field(default_factory=list)  # no prediction with that stem
    duplicates: list[tuple[str, list[Path]]] = field(default_factory=list)  # stem → several files, one side
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # file, reason (its pair is dropped)
    input_problems: list[str] = field(default_factory=list)  # missing folders, folders without images

    @property
    def names(self) -> list[str]:
        """The stems of the pairs, in order."""
        return [pred.stem for pred, _ in self.pairs]

    @property
    def ok(self) -> bool:
        """True when every file found was paired."""
        return not (
            self.unpaired_pred
            or self.unpaired_gt
            or self.duplicates
            or self.unreadable
            or self.input_problems
        )

    def problems(self) -> list[str]:
        """One readable line per problem (empty when ``ok``)."""
        lines = list(self.input_problems)
        lines += [f"{p}: no ground truth with stem {p.stem!r}" for p in self.unpaired_pred]
        lines += [f"{g}: no prediction with stem {g.stem!r}" for g in self.unpaired_gt]
        lines += [
            f"stem {stem!r} is ambiguous, several files: {', '.join(str(p) for p in paths)} (not paired)"
            for stem, paths in self.duplicates
        ]
        lines += [f"{path}: unreadable ({reason}); its pair is skipped" for path, reason in self.unreadable]
        return lines


def _as_inputs(where: PathLike | Sequence[PathLike]) -> list[PathLike]:
    return [where] if isinstance(where, (str, Path)) else list(where)


def _index_by_stem(paths: list[Path]) -> tuple[dict[str, Path], list[tuple[str, list[Path]]]]:
    """stem → path for stems seen once; stems seen more than once come back as duplicates."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    unique = {stem: group[0] for stem, group in by_stem.items() if len(group) == 1}
    dups = [(stem, sorted(group)) for stem, group in sorted(by_stem.items()) if len(group) > 1]
    return unique, dups


def _read_problem(path: Path) -> str | None:
    """None if the image decodes, else the reason."""
    try:
        read_image(path)
    except ImageReadError as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def pair_by_stem(
    pred: PathLike | Sequence[PathLike],
    gt: PathLike | Sequence[PathLike],
    check_readable: bool = True,
) -> PairingResult:
    """Pair prediction and ground-truth images (folders, one level, or file lists) by file stem.

    ``check_readable`` decodes every paired file once (``image_utils.read_image``) and moves pairs with an
    unreadable side to ``unreadable``. Nothing here raises for missing or bad files.
    """
    result = PairingResult()
    pred_paths, pred_problems = list_images(_as_inputs(pred))
    gt_paths, gt_problems = list_images(_as_inputs(gt))
    result.input_problems = [f"pred: {p}" for p in pred_problems] + [f"gt: {p}" for p in gt_problems]

    pred_by_stem, pred_dups = _index_by_stem(pred_paths)
    gt_by_stem, gt_dups = _index_by_stem(gt_paths)
    result.duplicates = sorted(pred_dups + gt_dups, key=lambda d: (d[0], [str(p) for p in d[1]]))
    ambiguous = {stem for stem, _ in result.duplicates}

    for stem in sorted(set(pred_by_stem) | set(gt_by_stem)):
        if stem in ambiguous:
            continue
        p, g = pred_by_stem.get(stem), gt_by_stem.get(stem)
        if p is None:
            result.unpaired_gt.append(g)
            continue
        if g is None:
            result.unpaired_pred.append(p)
            continue
        if check_readable:
            bad = [(path, reason) for path in (p, g) if (reason := _read_problem(path)) is not None]
            if bad:
                result.unreadable.extend(bad)
                continue
        result.pairs.append((p, g))
    return result
