"""The bundled models: small OSDFaces we train ourselves and ship as package data.

The paper's weights (SD 2.1-base + the release) cannot ship in a wheel, so a fresh install restores with
these until they are installed: the same ``OSDFacePipeline`` and recipe, configs only.

- ``mini256`` (osdface-mini 2): 256 px faces, trained by ``scripts/train_mini2.sh`` on UTKFace and the
  shared high-resolution faces (FFHQ and CC BY studio portraits).
- ``mini128`` (osdface-mini): 128 px faces, trained by ``scripts/train_mini.sh`` on UTKFace.

``mini`` names the default among them (``DEFAULT_ORDER``: the first one installed): mini256, paired with
mini128 for small faces (``SMALL_FACES``): in whole photos and ``--aligned`` crops a face of native size up
to 141 px (1.1 × 128: the faces mini128 holds whole) goes to mini128, a larger one to mini256. Measured
side by side with the "never worse" rule on (benchmarks/bench_routing.py, 30 held-out faces, 8
degradations): up to 128 px mini128 gains more on heavy degradations (the bench's recipe +1.21 dB
against +0.59 at 128) and on most others at 64–96 px; from 154 px mini256 wins 6 of 8 conditions and
leaves at most 3 of 30 faces worse per condition (11 on clean ÷4 at 256 px, mean +0.02 dB) where mini128
leaves up to 12 (30 on clean ÷4 at 256 px, mean −1.14 dB). A video is restored by one model, mini256
(tracks, the prompt's smoothing and the temporal filter run at one face size). ``--model mini256`` /
``--model mini128`` take one model alone. Every one carries non-commercial research terms (UTKFace's and
FFHQ's).

    pipe = OSDFacePipeline.from_pretrained("mini")      # or "mini256", "mini128"

Each folder (``osdface/weights/NAME``) is our format (``save_pretrained``, merged) with the UNet stored
in float16 (it loads as float32), plus ``training/`` (the resolved config of every training run, the
data lists, the final validation figures) and ``TERMS.md``; ``osdface.training.package_mini`` writes it
from a stage-2 export. This module only says where the models live: it imports nothing of the pipeline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_NAME = "mini"
DEFAULT_ORDER = ("mini256", "mini128")  # what "mini" means: the first of these installed (see above)
# "mini" pairs its model with a second one for small faces (``OSDFacePipeline.with_small_faces``): faces of
# native size ≤ the bound go to it. 141 px = 1.1 × 128: the faces mini128 holds whole (see above).
SMALL_FACES: dict[str, tuple[str, int]] = {"mini256": ("mini128", 141)}

_UTKFACE = ("**UTKFace** (Zhang, Song, Qi, CVPR 2017), whose images are available for **non-commercial research "
            "purposes only**; the copyright of the images belongs to their original owners")
_HIRES = """- 300 **FFHQ**-aligned faces at 512 px (FFHQ: CC BY-NC-SA 4.0, per-image licences of the original
  photos; non-commercial research only);
- studio portraits, **CC BY 4.0** / CC BY: DeBruine, L., & Jones, B. (2017). Face Research Lab London Set.
  figshare. doi:10.6084/m9.figshare.5047666.v5 · DeBruine & Jones (2017). Young Adult White Faces with
  Manipulated Versions. figshare. doi:10.6084/m9.figshare.4220517.v1 · DeBruine & Jones (2020). 3DSK face
  set with webmorph templates. OSF. doi:10.17605/OSF.IO/A3947 (derived from 3D.sk images under a licence
  for educational use)."""
_PAPER = """The paper's model (SD 2.1-base + the OSDFace release, trained on FFHQ, CC BY-NC-SA 4.0) is not included;
see the osdface README, section "Weights", to install it.
"""

MODELS: dict[str, dict] = {
    "mini256": {
        "title": "osdface-mini 2",
        "size": 256,
        "data": "UTKFace, FFHQ and CC BY portraits",
        "terms": f"""# osdface-mini 2 (256 px): terms

These weights were trained by the osdface project on {_UTKFACE}, and on:

{_HIRES}

The weights carry the most restrictive of these terms: **non-commercial research use only**.

{_PAPER}""",
    },
    "mini128": {
        "title": "osdface-mini",
        "size": 128,
        "data": "UTKFace",
        "terms": f"""# osdface-mini: terms

These weights were trained by the osdface project on {_UTKFACE}. The weights carry the same terms:
non-commercial research use only.

{_PAPER}""",
    },
}
NAMES = (DEFAULT_NAME, *MODELS)


def bundled_dir(name: str) -> Path:
    """Where the bundled model ``name`` (a key of ``MODELS``) lives inside the installed package."""
    return Path(str(resources.files("osdface"))) / "weights" / name


def is_installed(folder: Path) -> bool:
    return (folder / "model_index.json").is_file()


def resolve_bundled(name: str) -> Path | None:
    """The folder of the bundled model ``name`` ("mini": the first of ``DEFAULT_ORDER`` installed), or None
    when ``name`` is not a bundled name or that model is missing from this install."""
    if name == DEFAULT_NAME:
        return next((bundled_dir(n) for n in DEFAULT_ORDER if is_installed(bundled_dir(n))), None)
    if name in MODELS and is_installed(bundled_dir(name)):
        return bundled_dir(name)
    return None


def small_faces_for(folder: Path) -> tuple[Path, int] | None:
    """(folder, largest native face size) of the model that takes small faces for the bundled model in
    ``folder`` (``SMALL_FACES``), or None: none paired, or it is not installed."""
    name, _ = SMALL_FACES.get(Path(folder).name, (None, 0))
    if name is None or not is_installed(bundled_dir(name)):
        return None
    return bundled_dir(name), SMALL_FACES[Path(folder).name][1]


def model_info(folder: Path | None) -> dict:
    """The ``MODELS`` entry of a bundled folder (by its folder name); the default model's for anything else."""
    name = Path(folder).name if folder is not None else ""
    return MODELS[name if name in MODELS else DEFAULT_ORDER[0]]


def notice(folder: Path, paired: bool = False) -> str:
    """The one line a run prints when it uses a bundled model: which, its terms, how to get the paper's.
    ``paired``: with the model for its small faces (``SMALL_FACES``)."""
    info = model_info(folder)
    small = ""
    if paired and Path(folder).name in SMALL_FACES:
        name, up_to = SMALL_FACES[Path(folder).name]
        small = f"; faces up to {up_to} px by {MODELS[name]['title']}, {MODELS[name]['size']} px"
    return (f"using the bundled {info['title']} model ({info['size']} px faces{small}; trained by osdface on "
            f"{info['data']}: non-commercial research use only). "
            "For the paper's model run `osdface download` (README, 'Weights') or pass --weights DIR; "
            "--model paper insists on it.")
