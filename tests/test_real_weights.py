"""Checks with the real weights: skipped unless OSDFACE_SLOW_WEIGHTS names a folder laid out as
$OSDFACE_HOME (``stable-diffusion-2-1-base/`` and ``osdface-release/``). About 3 minutes on a
2-core CPU; run with ``OSDFACE_SLOW_WEIGHTS=~/.cache/osdface pytest -m slow``."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = os.environ.get("OSDFACE_SLOW_WEIGHTS")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ROOT, reason="set OSDFACE_SLOW_WEIGHTS to a folder with the real weights")]


@pytest.fixture(scope="module")
def real():
    root = Path(ROOT).expanduser()
    return root / "osdface-release", root / "stable-diffusion-2-1-base"


def test_release_loads_restores_and_converts(tmp_path, real):
    import skimage.data

    from osdface.pipeline import OSDFacePipeline

    release, sd = real
    pipe = OSDFacePipeline.from_official(release, sd)  # every VRE/adapter/LoRA key checked
    face = np.asarray(Image.fromarray(skimage.data.astronaut()[:384, 40:424]).resize((512, 512)))
    out = pipe(face, output_type="np").images[0]
    assert out.shape == (512, 512, 3) and 20 < out.mean() < 235 and out.std() > 10
    unmerged = OSDFacePipeline.from_official(release, sd, merge_lora=False)
    diff = np.abs(unmerged(face, output_type="np").images[0].astype(int) - out.astype(int))
    assert diff.max() <= 2
    pipe.save_pretrained(tmp_path / "ours", lora="separate")
    again = OSDFacePipeline.from_pretrained(tmp_path / "ours", sd_model=sd)(face, output_type="np").images[0]
    assert np.array_equal(again, out)
