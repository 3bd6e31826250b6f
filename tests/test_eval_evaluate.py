"""evaluate_folders: pairing, per-image values, means, unavailable metrics with reasons, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from osdface.metrics import evaluate as ev
from osdface.metrics import runners
from osdface.metrics.evaluate import evaluate_folders
from osdface.metrics.fid import save_fid_stats, stats_from_features
from osdface.models.arcface import ResNetArcFace
from osdface.models.dlib_identity import identity_available
from osdface.models.fan import FAN
from osdface.models.inception import FIDInceptionV3

SIZE = 192  # NIQE needs at least two 96×96 blocks


def gt_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth images with values in [20, 230], so that adding ±5 never clips."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.uniform(20, 230, (SIZE // 8, SIZE // 8, 3))
        big = np.kron(small, np.ones((8, 8, 1))) + rng.normal(0, 3, (SIZE, SIZE, 3))
        out.append(np.clip(np.round(big), 20, 230).astype(np.uint8))
    return out


def write(folder, images, names=None, order=None):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:03d}" for i in range(len(images))]
    for i in order or range(len(images)):
        Image.fromarray(images[i]).save(folder / f"{names[i]}.png")
    return folder


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    inception = FIDInceptionV3().eval()
    for m in inception.modules():  # He init: random features of order 1 (the default init makes them ~1e-7)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return {
        "arcface": ResNetArcFace(channels=(8, 8, 16, 16), embedding_dim=32).eval(),
        "fan": FAN(num_stacks=1, width=8, depth=2, input_size=64).eval(),
        "inception": inception,
    }


@pytest.fixture(autouse=True)
def _no_home_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path / "home"))  # no weights installed


def test_psnr_ssim_end_to_end_known_values(tmp_path):
    gt = gt_images(3)
    pred = [gt[0].copy(), (gt[1].astype(int) + 5).astype(np.uint8), (gt[2].astype(int) - 5).astype(np.uint8)]
    write(tmp_path / "gt", gt)
    write(tmp_path / "pred", pred)
    result = evaluate_folders({"m": tmp_path / "pred"}, gt_dir=tmp_path / "gt", metrics=["psnr", "ssim"],
                              progress=False)
    r = result.methods["m"]
    psnr = [rec["psnr"] for rec in r.records]
    assert [rec["name"] for rec in r.records] == ["000", "001", "002"]
    assert psnr[0] == math.inf and psnr[1] == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr[2] == pytest.approx(psnr[1])
    assert r.records[0]["ssim"] == pytest.approx(1.0) and 0.9 < r.records[1]["ssim"] < 1.0
    assert r.means["psnr"]["mean"] == math.inf and r.means["ssim"]["n"] == 3
    assert r.problems == [] and r.unavailable == {}


def test_unpaired_unreadable_and_unavailable_are_reported(tmp_path):
    gt = gt_images(4)
    write(tmp_path / "gt", gt[:3], names=["a", "b", "c"])
    write(tmp_path / "pred", gt, names=["a", "b", "c", "extra"])
    (tmp_path / "pred" / "b.png").write_bytes(b"not an image")
    result = evaluate_folders({"m": tmp_path / "pred"}, gt_dir=tmp_path / "gt", progress=False)  # default set
    r = result.methods["m"]
    assert [rec["name"] for rec in r.records] == ["a", "c"]
    assert any("extra.png: no ground truth" in p for p in r.problems)
    assert any("b.png" in p and "skipped" in p for p in r.problems)
    reasons = r.unavailable
    no_dlib = set() if identity_available() else {"id_dlib"}  # ID (dlib) runs wherever the identity extra is
    assert set(reasons) == {"lpips", "dists", "musiq", "deg", "lmd", "fid_ffhq", "fid_hq"} | no_dlib
    assert reasons["lpips"].startswith("pyiqa unavailable: ")
    assert "resnet18_110.pth" in reasons["deg"] and str(tmp_path / "home" / "metrics") in reasons["deg"]
    assert "alignment_WFLW_4HG.pth" in reasons["lmd"]
    assert "pt_inception-2015-12-05-6726825d.pth" in reasons["fid_ffhq"]
    assert r.means["psnr"]["n"] == 2 and r.means["niqe"]["n"] == 2
    # without ground truth, full-reference metrics say so
    nogt = evaluate_folders([tmp_path / "gt"], metrics=["psnr", "niqe"], progress=False).methods["gt"]
    assert nogt.unavailable == {"psnr": ev.NEEDS_GT} and len(nogt.records) == 3
    missing = evaluate_folders({"x": tmp_path / "nowhere"}, metrics=["niqe"], progress=False).methods["x"]
    assert missing.records == [] and "no such file or folder" in missing.problems[0]


def test_learned_metrics_with_tiny_models_are_deterministic(tmp_path, models):
    gt = gt_images(5, seed=1)
    noisy = [np.clip(im.astype(int) + np.random.default_rng(i).integers(-20, 21, im.shape), 0, 255).astype(np.uint8)
             for i, im in enumerate(gt)]
    write(tmp_path / "gt", gt)
    write(tmp_path / "a", noisy)
    write(tmp_path / "b", noisy, order=[4, 2, 0, 3, 1])  # same files, written in another order
    ref = stats_from_features(np.random.default_rng(0).normal(size=(6, 2048)))
    save_fid_stats(tmp_path / "ffhq.npz", ref)
    metrics = ["deg", "lmd", "fid_hq", "fid_ffhq", "psnr"]
    kw = {"gt_dir": tmp_path / "gt", "metrics": metrics, "models": models, "progress": False,
          "fid_ref": tmp_path / "ffhq.npz"}
    one = evaluate_folders({"a": tmp_path / "a", "b": tmp_path / "b", "gt": tmp_path / "gt"}, batch_size=2, **kw)
    other = evaluate_folders({"a": tmp_path / "a"}, batch_size=3, **kw)
    a, b, same = one.methods["a"], one.methods["b"], one.methods["gt"]
    assert a.unavailable == {} and b.unavailable == {}
    for key in ("deg", "lmd", "psnr"):
        assert [r[key] for r in a.records] == [r[key] for r in b.records]
        assert np.allclose([r[key] for r in a.records], [r[key] for r in other.methods["a"].records])
        assert a.means[key]["mean"] == pytest.approx(other.methods["a"].means[key]["mean"])
    assert a.means["fid_hq"]["mean"] == pytest.approx(b.means["fid_hq"]["mean"])
    assert a.means["fid_ffhq"]["mean"] == pytest.approx(other.methods["a"].means["fid_ffhq"]["mean"], rel=1e-6)
    # ground truth against itself: Deg. 0 (all pairs "identical": left out, counted), LMD 0, FID ≈ 0
    assert [r["deg"] for r in same.records] == [0.0] * 5 and same.means["deg"]["excluded"] == 5
    assert same.means["deg"]["mean"] is None and "5 pair(s) with deg < 1" in same.notes["deg"]
    assert same.means["lmd"]["mean"] == 0.0
    assert abs(same.means["fid_hq"]["mean"]) < 1e-9 * a.means["fid_hq"]["mean"] and a.means["fid_hq"]["mean"] > 1e-3
    assert all(0 <= r["deg"] <= 180 for r in a.records)
    assert "ffhq.npz" in a.notes["fid_ffhq"] and "'clean'" in a.notes["fid_ffhq"]
    kept = evaluate_folders({"gt": tmp_path / "gt"}, gt_dir=tmp_path / "gt", metrics=["deg"], models=models,
                            progress=False, deg_exclude_below=None).methods["gt"]
    assert kept.means["deg"]["mean"] == 0.0 and kept.means["deg"]["excluded"] == 0


def test_fid_reference_folder_and_missing_reference(tmp_path, models):
    write(tmp_path / "pred", gt_images(3, seed=2))
    write(tmp_path / "ref", gt_images(3, seed=3))
    r = evaluate_folders({"m": tmp_path / "pred"}, metrics=["fid_ffhq"], fid_ref=tmp_path / "ref", models=models,
                         progress=False, fid_mode="pytorch-fid").methods["m"]
    assert r.means["fid_ffhq"]["mean"] > 0 and r.means["fid_ffhq"]["n"] == 3
    none = evaluate_folders({"m": tmp_path / "pred"}, metrics=["fid_ffhq"], models=models,
                            progress=False).methods["m"]
    assert none.unavailable["fid_ffhq"].startswith("no FFHQ reference: pass --fid-ref")
    single = tmp_path / "single"
    write(single, gt_images(1))
    one = evaluate_folders({"m": single}, metrics=["fid_ffhq"], fid_ref=tmp_path / "ref", models=models,
                           progress=False).methods["m"]
    assert one.unavailable["fid_ffhq"] == "FID needs at least 2 images, got 1"


def test_pyiqa_backend_wiring_without_pyiqa(tmp_path, monkeypatch):
    """With a (fake) importable pyiqa, metrics are created with SPEC §7.2 options and fed [0, 1] RGB tensors."""
    import sys
    import types

    calls = []

    class FakeMetric:
        def __init__(self, name, **options):
            self.name, self.options = name, options

        def __call__(self, *args, **kwargs):
            calls.append((self.name, self.options, args, kwargs))
            if isinstance(args[0], torch.Tensor):
                assert args[0].dtype == torch.float32 and 0 <= args[0].min() and args[0].max() <= 1
                return torch.full((args[0].shape[0], 1), 0.25)
            return 12.5

    fake = types.SimpleNamespace(create_metric=lambda metric_name, device=None, **o: FakeMetric(metric_name, **o))
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    monkeypatch.setattr(runners, "pyiqa_status", lambda: "available")
    write(tmp_path / "gt", gt_images(2))
    write(tmp_path / "pred", gt_images(2, seed=1))
    r = evaluate_folders({"m": tmp_path / "pred"}, gt_dir=tmp_path / "gt",
                         metrics=["lpips", "maniqa", "fid_hq_pyiqa"], progress=False).methods["m"]
    assert r.unavailable == {} and r.means["lpips"]["mean"] == 0.25 and r.means["fid_hq_pyiqa"]["mean"] == 12.5
    by_name = {c[0]: c for c in calls}
    assert by_name["lpips"][1] == {"net": "alex", "version": "0.1"} and len(by_name["lpips"][2]) == 2
    assert by_name["maniqa"][1] == {"train_dataset": "koniq", "scale": 0.8} and len(by_name["maniqa"][2]) == 1
    assert by_name["fid"][2] == (str(tmp_path / "pred"), str(tmp_path / "gt")) and by_name["fid"][3] == {"mode": "clean"}


def test_write_outputs_in_paper_column_order(tmp_path):
    write(tmp_path / "gt", gt_images(2))
    write(tmp_path / "pred", gt_images(2, seed=5))
    result = evaluate_folders({"ours": tmp_path / "pred"}, gt_dir=tmp_path / "gt", progress=False)
    paths = result.write(tmp_path / "out")
    md = paths["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    # the paper's columns, with our ID (dlib) after Deg. (a default metric with a ground truth)
    assert header.replace(" ", "") == "|Method|LPIPS↓|DISTS↓|MUSIQ↑|NIQE↓|Deg.↓|ID(dlib)↓|LMD↓|FID(FFHQ)↓|FID(HQ)↓|"
    assert "| PSNR↑ | SSIM↑ |" in md and "pyiqa unavailable" in md and "resnet18_110.pth" in md
    csv_header = paths["csv"].read_text().splitlines()[0]
    assert csv_header == "method,name,pred,gt,psnr,ssim,lpips,dists,musiq,niqe,deg,id_dlib,lmd"
    assert result.table_kind() == 1
    table2 = result.render_markdown(table=2)
    assert "Table 2" in table2 and "Test set CLIPIQA↑" in table2


def test_one_failing_image_costs_only_its_own_value(tmp_path):
    folder = write(tmp_path / "pred", gt_images(2))
    Image.fromarray(gt_images(1)[0][:64, :64]).save(folder / "small.png")  # too small for NIQE
    r = evaluate_folders([folder], metrics=["niqe"], progress=False).methods["pred"]
    values = {rec["name"]: rec["niqe"] for rec in r.records}
    assert values["small"] is None and values["000"] > 0 and values["001"] > 0
    assert r.means["niqe"]["n"] == 2 and r.means["niqe"]["n_missing"] == 1
    assert any(p.startswith("niqe: small: ValueError") for p in r.problems)
