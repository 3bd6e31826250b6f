"""The bundled model, ``osdface-mini``: a small OSDFace we train ourselves and ship as package data.

The paper's weights (SD 2.1-base + the release) cannot ship in a wheel, so a fresh install restores with
this one until they are installed: the same ``OSDFacePipeline`` and recipe, at 128 px, trained by
``scripts/train_mini.sh`` on UTKFace (non-commercial research terms, which the weights inherit).

    pipe = OSDFacePipeline.from_pretrained("mini")

The folder (``osdface/weights/mini``) is our format (``save_pretrained``, merged) with the UNet stored in
float16 (it loads as float32), plus ``training/`` (the resolved config of every training run, the data
lists, the final validation figures) and ``TERMS.md``.

``python -m osdface.training.package_mini EXPORT DEST --run RUN ... --data-list FILE ...`` writes such a
folder from a stage-2 export (the last step of ``scripts/train_mini.sh``). This module only says where the
model lives: it imports nothing of the pipeline, which imports it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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
