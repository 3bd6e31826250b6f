"""NIQE: pyiqa's published calibration values, pyiqa-computed golden values, and contract checks.

Calibration images. pyiqa's calibration set (ResultsCalibra/dist_dir/I03…I19.bmp, 512x384 TID2013 images)
is not shipped here (590 KB each; pyiqa is CC BY-NC-SA and TID2013 has its own terms). The test reads them
straight from a pyiqa wheel (the 0.1.16 wheel contains them) or an extracted ResultsCalibra folder:

    pip download --no-deps pyiqa==0.1.16 -d /tmp/pyiqa
    OSDFACE_PYIQA_CALIBRATION=/tmp/pyiqa/pyiqa-0.1.16-py3-none-any.whl pytest tests/test_metrics_niqe.py

Without the variable the test fetches that wheel from the package registry into
``~/.cache/osdface-tests`` (never installing it) and is skipped only when the registry is unreachable;
the golden-value test below runs everywhere.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from osdface.image_utils import pil_to_numpy, to_tensor
from osdface.metrics.niqe import compute_niqe, imresize, imresize_weights, load_niqe_params

# pyiqa ResultsCalibra/calibration_summary.csv, row "niqe(ours)": pyiqa's own NIQE ('niqe', defaults) on
# the distorted calibration images.
PYIQA_CALIBRATION = {
    "I03.bmp": 15.6538,
    "I04.bmp": 3.6549,
    "I06.bmp": 3.2342,
    "I08.bmp": 3.1921,
    "I19.bmp": 9.0722,
}

# pyiqa 0.1.12's niqe_arch.calculate_niqe run on scikit-image's bundled images (RGB uint8 / 255 as float32
# tensors, default options), with the pristine model in osdface/metrics/data. These agree with the
# calibration above to 0.002 on the calibration images.
PYIQA_GOLDEN = {"astronaut": 3.062382, "coffee": 4.061582, "chelsea": 2.572077}

NPZ_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


def _pyiqa_wheel() -> str | None:
    """The pyiqa 0.1.16 wheel, fetched once from the package registry into a cache (7.8 MB; the
    package is never installed: the test only reads the BMPs inside the archive)."""
    import subprocess
    import sys

    cache = Path(os.environ.get("OSDFACE_TEST_CACHE", Path.home() / ".cache" / "osdface-tests"))
    wheels = sorted(cache.glob("pyiqa-0.1.16-*.whl"))
    if not wheels:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "pyiqa==0.1.16",
                            "-d", str(cache)], check=True, capture_output=True, timeout=180)
        except (subprocess.SubprocessError, OSError):
            return None
        wheels = sorted(cache.glob("pyiqa-0.1.16-*.whl"))
    return str(wheels[0]) if wheels else None


def _calibration_images() -> dict[str, np.ndarray]:
    source = os.environ.get("OSDFACE_PYIQA_CALIBRATION") or _pyiqa_wheel()
    if not source:
        pytest.skip(
            "no pyiqa 0.1.16 wheel (registry unreachable): set OSDFACE_PYIQA_CALIBRATION to the wheel "
            "or a ResultsCalibra folder (pip download --no-deps pyiqa==0.1.16 -d DIR)"
        )
    from PIL import Image

    path = Path(source)
    images = {}
    for name in PYIQA_CALIBRATION:
        if path.is_dir():
            candidates = [path / "dist_dir" / name, path / "ResultsCalibra" / "dist_dir" / name]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                pytest.fail(f"{name} not found under {path}")
            data = found.read_bytes()
        else:
            with zipfile.ZipFile(path) as z:
                data = z.read(f"ResultsCalibra/dist_dir/{name}")
        with Image.open(io.BytesIO(data)) as im:
            images[name] = pil_to_numpy(im)
    return images


def test_pyiqa_calibration_values():
    images = _calibration_images()
    scores = compute_niqe(list(images.values()))
    for (name, expected), got in zip(PYIQA_CALIBRATION.items(), scores):
        assert abs(got - expected) < 0.01, f"{name}: {got:.5f} vs pyiqa {expected}"


def test_matches_pyiqa_on_skimage_images():
    data = pytest.importorskip("skimage.data")
    images = [getattr(data, name)() for name in PYIQA_GOLDEN]
    scores = compute_niqe(images)  # different sizes: 512x512, 400x600, 300x451
    for (name, expected), got in zip(PYIQA_GOLDEN.items(), scores):
        assert abs(got - expected) < 1e-3, f"{name}: {got:.6f} vs pyiqa {expected}"


def test_options_change_luma_and_numerics():
    data = pytest.importorskip("skimage.data")
    img = data.astronaut()
    base = compute_niqe(img)[0]
    assert compute_niqe(img, color_space="ycbcr")[0] != pytest.approx(base, abs=1e-3)
    assert compute_niqe(img, numerics="float64")[0] == pytest.approx(
        base, abs=0.01
    )  # no flat areas to speak of
    with pytest.raises(ValueError, match="numerics"):
        compute_niqe(img, numerics="float16")
    with pytest.raises(ValueError, match="color_space"):
        compute_niqe(img, color_space="lab")


def test_batch_equals_singles_and_tensor_input():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (14, 14, 3)), np.ones((16, 16, 1)))[:200, :220]
    imgs = [np.clip(smooth + rng.normal(0, s, smooth.shape), 0, 255).astype(np.uint8) for s in (2, 10)]
    batch = compute_niqe(np.stack(imgs))
    singles = [compute_niqe(im)[0] for im in imgs]
    np.testing.assert_allclose(batch, singles, atol=1e-12)
    assert np.all(np.isfinite(batch)) and batch[1] > batch[0]  # more noise, worse (higher) NIQE
    from_tensor = compute_niqe(torch.cat([to_tensor(im) for im in imgs]))
    np.testing.assert_allclose(from_tensor, batch, atol=1e-2)


def test_small_and_flat_images():
    with pytest.raises(ValueError, match="at least 96x96"):
        compute_niqe(np.zeros((95, 200, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 96x96"):
        compute_niqe(np.zeros((120, 120, 3), np.uint8), crop_border=20)
    assert math.isnan(compute_niqe(np.full((192, 192, 3), 128, np.uint8))[0])  # no texture → no features


def test_imresize_weights_matlab_properties():
    m = imresize_weights(96, 0.5)
    assert m.shape == (48, 96)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(48, dtype=torch.float64))
    # interior rows: 8 taps of the stretched cubic kernel (antialiased), symmetric about the centre
    row = m[20]
    nz = row[row.abs() > 0]
    assert nz.numel() == 8
    torch.testing.assert_close(nz, nz.flip(0))
    # a linear ramp stays a (shifted) linear ramp away from the borders
    ramp = torch.arange(96, dtype=torch.float64).view(1, 1, 96, 1).expand(1, 1, 96, 4)
    out = imresize(ramp, 0.5)[0, 0, 4:-4, 0]
    torch.testing.assert_close(out, 2 * torch.arange(4, 44, dtype=torch.float64) + 0.5)


def test_packaged_params():
    path = resources.files("osdface.metrics") / "data" / "niqe_pris_params.npz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == NPZ_SHA256
    p = load_niqe_params()
    assert p.mu.shape == (36,) and p.cov.shape == (36, 36) and p.window.shape == (7, 7)
    assert float(p.window.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p.cov, p.cov.T)
    with pytest.raises(FileNotFoundError):
        load_niqe_params("/nonexistent/niqe.npz")
