"""Metric registry: names and options of SPEC §7.2, directions, pyiqa availability without importing it."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from osdface.metrics import registry
from osdface.metrics.registry import (
    METRICS,
    metric_status,
    pyiqa_create_kwargs,
    pyiqa_status,
    resolve_function,
)

# SPEC §7.2 (pyiqa 0.1.12 default_model_configs), transcribed: registry name → (pyiqa name, options).
SPEC_72 = {
    "lpips": ("lpips", {"net": "alex", "version": "0.1"}),
    "lpips_vgg": ("lpips-vgg", {"net": "vgg", "version": "0.1"}),
    "dists": ("dists", {}),
    "musiq": ("musiq", {"pretrained": "koniq10k"}),
    "niqe": ("niqe", {"test_y_channel": True}),
    "clipiqa": ("clipiqa", {}),
    "maniqa": ("maniqa", {"train_dataset": "koniq", "scale": 0.8}),
    "fid_ffhq": ("fid", {}),
    "fid_hq": ("fid", {}),
}
FID_FFHQ_CALL = {"dataset_name": "FFHQ", "dataset_res": 512, "mode": "clean", "dataset_split": "trainval70k"}

# direction of every metric in the paper's tables (arrows of Tables 1 and 2)
HIGHER_IS_BETTER = {
    "lpips": False,
    "dists": False,
    "musiq": True,
    "niqe": False,
    "deg": False,
    "lmd": False,
    "fid_ffhq": False,
    "fid_hq": False,
    "clipiqa": True,
    "maniqa": True,
    "psnr": True,
    "ssim": True,
}


@pytest.fixture(autouse=True)
def _fresh_status():
    pyiqa_status.cache_clear()
    yield
    pyiqa_status.cache_clear()


def test_pyiqa_names_and_options_match_spec_7_2():
    for name, (pyiqa_name, options) in SPEC_72.items():
        spec = METRICS[name]
        assert spec.pyiqa_name == pyiqa_name, name
        assert spec.pyiqa_options == options, name
        assert pyiqa_create_kwargs(name) == {"metric_name": pyiqa_name, **options}
    assert METRICS["fid_ffhq"].pyiqa_call_options == FID_FFHQ_CALL
    assert METRICS["fid_hq"].pyiqa_call_options == {"mode": "clean"}
    assert METRICS["fid_ffhq"].level == METRICS["fid_hq"].level == "dataset"
    assert METRICS["fid_hq"].mode == "FR" and METRICS["fid_ffhq"].mode == "NR"


def test_spec_file_names_are_in_the_registry():
    """If the shared SPEC is next to the repo, every pyiqa name in its §7.2 table is in the registry."""
    here = Path(__file__).resolve()
    candidates = [p / "shared" / "SPEC.md" for p in here.parents[:3]]
    spec_md = next((p for p in candidates if p.is_file()), None)
    if spec_md is None:
        pytest.skip("shared/SPEC.md not found next to the repository")
    text = spec_md.read_text(encoding="utf-8")
    section = text[text.index("### 7.2") : text.index("### 7.3")]
    table_names = set()
    for line in section.splitlines():
        if line.startswith("| ") and "`'" in line:
            table_names.update(re.findall(r"`'([a-z0-9-]+)'`", line))
    assert table_names, "no pyiqa names found in SPEC §7.2"
    assert table_names <= {spec.pyiqa_name for spec in METRICS.values()}


def test_directions_and_backends():
    for name, higher in HIGHER_IS_BETTER.items():
        assert METRICS[name].higher_is_better is higher, name
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.mode in ("FR", "NR") and spec.level in ("image", "dataset")
        assert spec.backend in ("builtin", "pyiqa")
        assert spec.input_range and spec.color_space and spec.label
        if spec.backend == "pyiqa":
            assert spec.pyiqa_name and spec.function is None


def test_deg_and_lmd_are_builtin_full_reference_metrics():
    for name, function in (("deg", "osdface.metrics.identity:compute_deg"),
                           ("lmd", "osdface.metrics.landmarks:compute_lmd")):
        spec = METRICS[name]
        assert spec.backend == "builtin" and spec.mode == "FR" and spec.function == function
        assert callable(resolve_function(name))


def test_builtin_functions_resolve_and_run():
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)  # 4 NIQE blocks
    for name in ("psnr", "psnr_y", "ssim", "ssim_y"):
        assert metric_status(name) == "available"
        assert resolve_function(name)(img, img)[0] in (float("inf"), pytest.approx(1.0))
    assert np.isfinite(resolve_function("niqe")(img)[0])


def test_pyiqa_status_without_pyiqa_imports_nothing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("pyiqa", "torchvision") else real_find_spec(name, *a),
    )
    imported = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name))
    status = pyiqa_status()
    assert status.startswith("unavailable: pyiqa is not installed")
    assert imported == [] and "pyiqa" not in sys.modules
    assert not registry.is_pyiqa_available()
    assert metric_status("lpips") == status and metric_status("psnr") == "available"


def test_pyiqa_status_torchvision_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            object() if name == "pyiqa" else (None if name == "torchvision" else real_find_spec(name, *a))
        ),
    )
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: pytest.fail(f"imported {name}"))
    assert pyiqa_status() == "unavailable: pyiqa is installed but torchvision, which it imports, is not"


def test_pyiqa_status_broken_torchvision(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())

    def fake_import(name, *a):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        pytest.fail(f"imported {name} after torchvision failed")

    monkeypatch.setattr(importlib, "import_module", fake_import)
    status = pyiqa_status()
    assert (
        status
        == "unavailable: import torchvision failed (RuntimeError: operator torchvision::nms does not exist)"
    )


def test_pyiqa_status_available(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: object())
    assert pyiqa_status() == "available" and registry.is_pyiqa_available()


def test_unknown_metric():
    with pytest.raises(KeyError, match="known"):
        registry.get_spec("psnrr")
    with pytest.raises(ValueError, match="no pyiqa counterpart"):
        pyiqa_create_kwargs("psnr")
