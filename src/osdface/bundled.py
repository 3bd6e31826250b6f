"""The bundled model, ``osdface-mini``: a small OSDFace we train ourselves and ship as package data.

The paper's weights (SD 2.1-base + the release) cannot ship in a wheel, so a fresh install restores with
this one until they are installed: the same ``OSDFacePipeline`` and recipe, at 128 px, trained by
``scripts/train_mini.sh`` on UTKFace (non-commercial research terms, which the weights inherit).

    pipe = OSDFacePipeline.from_pretrained("mini")

The folder (``osdface/weights/mini``) is our format (``save_pretrained``, merged) with the UNet stored in
float16 (it loads as float32), plus ``training/`` (the resolved config of every training run, the data
lists, the final validation figures) and ``TERMS.md``.

``python -m osdface.bundled package EXPORT DEST --run RUN ... --data-list FILE ...`` writes such a folder
from a stage-2 export (the last step of ``scripts/train_mini.sh``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Sequence

BUNDLED_NAME = "mini"
TERMS = """# osdface-mini: terms

These weights were trained by the osdface project on **UTKFace** (Zhang, Song, Qi, CVPR 2017), whose
images are available for **non-commercial research purposes only**; the copyright of the images belongs
to their original owners. The weights carry the same terms: non-commercial research use only.

The paper's model (SD 2.1-base + the OSDFace release, trained on FFHQ, CC BY-NC-SA 4.0) is not included;
see the osdface README, section "Weights", to install it.
"""
NOTICE = ("using the bundled osdface-mini model (128 px faces; trained by osdface on UTKFace: non-commercial "
          "research use only). For the paper's model run `osdface download` (README, 'Weights') or pass "
          "--weights DIR; --model paper insists on it.")


def bundled_dir() -> Path:
    """Where the bundled model lives inside the installed package."""
    return Path(str(resources.files("osdface"))) / "weights" / BUNDLED_NAME


def bundled_available() -> bool:
    return (bundled_dir() / "model_index.json").is_file()


def package(export_dir: str | Path, dest: str | Path, runs: Sequence[str | Path] = (),
            data_lists: Sequence[str | Path] = ()) -> Path:
    """Write the bundled folder ``dest`` from a stage-2 export (our merged format), atomically.

    The UNet is stored in float16 (half the size; the VRE and adapter stay float32, so the token
    selection is the trained one exactly). ``runs``: training run folders whose ``config.yaml`` (and
    the last ``val/*`` line of ``metrics.jsonl``) go to ``training/``; ``data_lists``: the file lists
    trained and validated on.
    """
    import torch

    from .files import atomic_folder
    from .pipeline import OSDFacePipeline

    pipe = OSDFacePipeline.from_pretrained(export_dir)
    torch.nn.Module.to(pipe.unet, dtype=torch.float16)
    with atomic_folder(Path(dest)) as tmp:
        pipe.save_pretrained(tmp / "model", lora="merged")
        for item in (tmp / "model").iterdir():
            item.rename(tmp / item.name)
        (tmp / "model").rmdir()
        (tmp / "TERMS.md").write_text(TERMS)
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
    parser = argparse.ArgumentParser(prog="python -m osdface.bundled", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("package", help="write the bundled folder from a stage-2 export")
    p.add_argument("export_dir")
    p.add_argument("dest")
    p.add_argument("--run", action="append", default=[], help="a training run folder (repeatable)")
    p.add_argument("--data-list", action="append", default=[], help="a data list file (repeatable)")
    args = parser.parse_args(argv)
    print(package(args.export_dir, args.dest, args.run, args.data_list))


if __name__ == "__main__":
    main()
