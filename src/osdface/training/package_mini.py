"""Package a bundled model (``osdface/weights/NAME``, ``bundled.MODELS``) from a stage-2 export.

    python -m osdface.training.package_mini package EXPORT DEST --name mini256 --run RUN ... --data-list FILE ...

The last step of ``scripts/train_mini.sh`` and ``scripts/train_mini2.sh``: our merged format, the UNet in
float16, the resolved config of every training run, the data lists and the model's terms.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Sequence

import torch

from ..bundled import MODELS
from ..files import atomic_folder
from ..pipeline import OSDFacePipeline


def package(export_dir: str | Path, dest: str | Path, runs: Sequence[str | Path] = (),
            data_lists: Sequence[str | Path] = (), name: str = "mini128") -> Path:
    """Write the bundled folder ``dest`` from a stage-2 export (our merged format), atomically.

    The UNet is stored in float16 (half the size; the VRE and adapter stay float32, so the token
    selection is the trained one exactly). ``runs``: training run folders whose ``config.yaml`` (and
    the last ``val/*`` line of ``metrics.jsonl``) go to ``training/``; ``data_lists``: the file lists
    trained and validated on; ``name``: the key of ``bundled.MODELS`` whose terms go to ``TERMS.md``.
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {', '.join(MODELS)}; got {name!r}")
    pipe = OSDFacePipeline.from_pretrained(export_dir)
    torch.nn.Module.to(pipe.unet, dtype=torch.float16)
    with atomic_folder(Path(dest)) as tmp:
        pipe.save_pretrained(tmp / "model", lora="merged")
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        (tmp / "TERMS.md").write_text(MODELS[name]["terms"])
        training = tmp / "training"
        training.mkdir()
        summary = {}
        for run in map(Path, runs):
            shutil.copyfile(run / "config.yaml", training / f"{run.name}.yaml")
            summary[run.name] = _last_validation(run / "metrics.jsonl")
        for listing in map(Path, data_lists):
            shutil.copyfile(listing, training / listing.name)
        (training / "runs.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Path(dest)


def _last_validation(path: Path) -> dict:
    """The last ``val/*`` values and the last step logged in a run's metrics.jsonl ({} if none)."""
    last: dict = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if any(k.startswith("val/") for k in record):
                last = record
    return last


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m osdface.training.package_mini", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("package", help="write the bundled folder from a stage-2 export")
    p.add_argument("export_dir")
    p.add_argument("dest")
    p.add_argument("--name", default="mini128", choices=sorted(MODELS), help="which bundled model (its terms)")
    p.add_argument("--run", action="append", default=[], help="a training run folder (repeatable)")
    p.add_argument("--data-list", action="append", default=[], help="a data list file (repeatable)")
    args = parser.parse_args(argv)
    print(package(args.export_dir, args.dest, args.run, args.data_list, name=args.name))


if __name__ == "__main__":
    main()
