"""osdface-mini 2's data (issue 21): the identity-held-out split of ../shared/data/hires (the background
network's training holds out the same files, ``training.background_sr``), and a report of how much of each
aligned face lies outside its photo.

The split (no person on both sides):

- ``ffhq512/``: 00250–00299 held out (as elsewhere in the project), 00000–00249 for training;
- ``portraits/london_neutral`` and ``london_smiling``: the same 102 people, the person id being the
  file name's first field (``090_03.jpg`` and ``090_08.jpg`` are person 090); people 090–102 are held
  out in both expressions (the data README's suggestion; the background network holds out the same);
- ``portraits/canada`` and ``3dsk``: one photo per person, all for training.

Usage (``scripts/prepare_mini2_data.sh`` runs both)::

    python -m osdface.training.mini2_data split ../shared/data/hires runs/mini2   # hires_{train,val}.txt
    python -m osdface.training.mini2_data report runs/mini2/utk_train runs/mini2/hires_train
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

FFHQ_VAL = range(250, 300)  # ffhq512/00250 … 00299
LONDON_VAL = range(90, 103)  # London people 090 … 102, both expressions
LONDON_DIRS = ("portraits/london_neutral", "portraits/london_smiling")
OTHER_DIRS = ("portraits/canada", "portraits/3dsk")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def person_of(relative: str) -> str:
    """The identity a hires file shows: ``london:090`` for both London expressions of person 090,
    ``ffhq:00012``, ``canada:003f``, ``3dsk:female_agata`` (one photo per person there)."""
    parts = Path(relative).parts
    stem = Path(relative).stem
    if parts[0] == "ffhq512":
        return f"ffhq:{stem}"
    if len(parts) >= 3 and parts[1].startswith("london_"):
        return f"london:{stem.split('_')[0]}"
    return f"{parts[-2]}:{stem}"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def split_hires(root: str | Path) -> dict[str, list[str]]:
    """{"train": [...], "val": [...]}: file paths relative to ``root``, sorted (see the module docstring)."""
    root = Path(root)
    out: dict[str, list[str]] = {"train": [], "val": []}
    for p in _images(root / "ffhq512"):
        out["val" if int(p.stem) in FFHQ_VAL else "train"].append(p.relative_to(root).as_posix())
    for d in LONDON_DIRS:
        for p in _images(root / d):
            person = re.match(r"(\d+)_", p.name)
            if person is None:
                raise ValueError(f"{p}: a London file name should start with the person id (NNN_)")
            out["val" if int(person.group(1)) in LONDON_VAL else "train"].append(p.relative_to(root).as_posix())
    for d in OTHER_DIRS:
        out["train"].extend(p.relative_to(root).as_posix() for p in _images(root / d))
    return {k: sorted(v) for k, v in out.items()}


def shared_people(train: list[str], val: list[str]) -> set[str]:
    """The people with a photo on both sides (empty for a sound split)."""
    return {person_of(r) for r in train} & {person_of(r) for r in val}


def write_split(root: str | Path, out_dir: str | Path) -> dict[str, list[str]]:
    """Write ``out_dir/hires_train.txt`` and ``hires_val.txt`` (one relative path a line)."""
    split = split_hires(root)
    if shared_people(split["train"], split["val"]):
        raise AssertionError(f"people on both sides: {sorted(shared_people(split['train'], split['val']))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, files in split.items():
        (out_dir / f"hires_{name}.txt").write_text("".join(f + "\n" for f in files))
    return split


def outside_report(folder: str | Path) -> dict:
    """Quantiles of the ``outside`` share over the faces of an ``osdface align`` folder's manifest."""
    faces = json.loads((Path(folder) / "manifest.json").read_text())["faces"]
    values = np.array([r["outside"] for r in faces if "outside" in r], dtype=np.float64)
    if not len(values):
        return {"folder": str(folder), "faces": len(faces), "with_outside": 0}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"folder": str(folder), "faces": len(faces), "with_outside": len(values),
            "outside_quantiles": [round(float(v), 4) for v in q], "whole": int((values == 0).sum())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m osdface.training.mini2_data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="write hires_train.txt / hires_val.txt")
    p.add_argument("hires"), p.add_argument("out_dir")
    p = sub.add_parser("report", help="how much of the aligned faces lies outside their photos")
    p.add_argument("folders", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "split":
        split = write_split(args.hires, args.out_dir)
        print(f"hires: {len(split['train'])} train, {len(split['val'])} val files; no person on both sides")
    else:
        for folder in args.folders:
            print(json.dumps(outside_report(folder)))


if __name__ == "__main__":
    main()
