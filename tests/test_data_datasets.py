"""Datasets: tensors and layout, worker-count independence, skip-and-count, clear folder errors."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch.utils.data import DataLoader

from osdface.data import DatasetError, HQFolderDataset, PairedFolderDataset, degrade_folder
from osdface.data.geometry import fit_square


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def hq_folder(tmp_path_factory):
    """Eight faces of mixed sizes: astronaut crops and synthetic textures, one in a sub-folder."""
    root = tmp_path_factory.mktemp("hq")
    face = skdata.astronaut()
    rng = np.random.default_rng(0)
    for i in range(6):
        crop = face[i * 20 : i * 20 + 300, i * 15 : i * 15 + 300]
        _save(root / f"face_{i}.png", np.ascontiguousarray(crop[:: 2 + i % 2, :: 2 + i % 2]))
    _save(root / "noise.png", rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))  # not square
    _save(root / "sub" / "deep.jpg", face[::4, ::4].copy())
    return root


def test_samples_are_tensors_in_range_with_params(hq_folder):
    ds = HQFolderDataset(hq_folder, size=64, degradation="dual", seed=1)
    assert len(ds) == 8  # sub-folder searched
    s = ds[0]
    for key in ("lq", "hq"):
        assert s[key].shape == (3, 64, 64) and s[key].dtype == torch.float32
        assert s[key].min() >= -1 and s[key].max() <= 1
    params = json.loads(s["params"])
    assert params["preset"] == "dual" and isinstance(params["hflip"], bool)
    assert s["path"].endswith("face_0.png") and s["index"] == 0
    assert not torch.equal(s["lq"], s["hq"])
    assert ds[6]["hq"].shape == (3, 64, 64)  # 80x60 source, centre-cropped


def test_no_degradation_and_hflip_act_on_the_image(hq_folder):
    ds = HQFolderDataset(hq_folder, size=64, degradation=None, hflip=True, seed=0)
    src = fit_square(np.asarray(Image.open(hq_folder / "face_1.png").convert("RGB")), 64)
    flips = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[1]
        flipped = json.loads(s["params"])["hflip"]
        flips.append(flipped)
        expected = src[:, ::-1] if flipped else src
        got = ((s["hq"].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        assert np.array_equal(got, expected)
        assert torch.equal(s["lq"], s["hq"])
    assert True in flips and False in flips


def test_epoch_and_seed_change_the_degradation_deterministically(hq_folder):
    ds = HQFolderDataset(hq_folder, size=64, degradation="gfpgan", seed=3)
    a = ds[2]
    assert torch.equal(a["lq"], ds[2]["lq"]) and a["params"] == ds[2]["params"]
    ds.set_epoch(1)
    assert a["params"] != ds[2]["params"]
    other = HQFolderDataset(hq_folder, size=64, degradation="gfpgan", seed=4)
    assert a["params"] != other[2]["params"]


def _collect(ds, workers):
    loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers)
    return [b for b in loader]


def test_dataloader_workers_give_the_same_batches(hq_folder):
    ds = HQFolderDataset(hq_folder, size=64, degradation="dual", seed=7)
    ds.set_epoch(2)
    single, multi = _collect(ds, 0), _collect(ds, 2)
    assert len(single) == len(multi) == 3
    for b0, b2 in zip(single, multi):
        assert torch.equal(b0["lq"], b2["lq"]) and torch.equal(b0["hq"], b2["hq"])
        assert b0["params"] == b2["params"] and b0["path"] == b2["path"]


@pytest.fixture()
def folder_with_bad_files(tmp_path):
    face = skdata.astronaut()[::8, ::8].copy()
    for name in ("a.png", "c.png", "e.png"):
        _save(tmp_path / name, face)
    (tmp_path / "b.png").write_bytes(b"")  # zero bytes
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return tmp_path


def test_unreadable_files_are_skipped_counted_and_warned_once(folder_with_bad_files, caplog):
    ds = HQFolderDataset(folder_with_bad_files, size=32, degradation="gfpgan")
    assert len(ds) == 5 and ds.num_unreadable == 0
    with caplog.at_level(logging.WARNING, logger="osdface.data.datasets"):
        for _ in range(2):
            paths = [ds[i]["path"] for i in range(len(ds))]
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["a.png", "c.png", "c.png", "e.png", "e.png"]
    assert ds.num_unreadable == 2
    assert sorted(p.rsplit("/", 1)[-1] for p in ds.unreadable_paths()) == ["b.png", "d.jpg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and any("b.png" in w and "empty" in w for w in warnings)
    # the substitute sample still uses the randomness of its own index
    assert ds[1]["params"] != ds[2]["params"]


def test_unreadable_files_counted_across_workers(folder_with_bad_files):
    ds = HQFolderDataset(folder_with_bad_files, size=32, degradation="daefr")
    batches = _collect(ds, 2)
    assert sum(len(b["path"]) for b in batches) == 5
    assert ds.num_unreadable == 2  # flags set inside the workers are visible here


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    ds = HQFolderDataset(tmp_path, size=32)
    with pytest.raises(DatasetError, match="none of the 1 files"):
        ds[0]


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=str(tmp_path)) as err:
        HQFolderDataset(tmp_path)
    assert "no image files" in str(err.value)
    with pytest.raises(DatasetError, match="no such folder"):
        HQFolderDataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no image files"):
        PairedFolderDataset(tmp_path, tmp_path)


# ----------------------------------------------------------------------------- paired


def test_paired_dataset_pairs_by_stem_and_resizes(tmp_path):
    face = skdata.astronaut()
    for i in range(3):
        _save(tmp_path / "hq" / f"{i:03d}.png", face[::8, ::8].copy())  # 64x64
        _save(tmp_path / "lq" / f"{i:03d}.jpg", face[::16, ::16].copy())  # 32x32, other suffix
    ds = PairedFolderDataset(tmp_path / "lq", tmp_path / "hq", size=64)
    assert len(ds) == 3
    s = ds[2]
    assert s["lq"].shape == s["hq"].shape == (3, 64, 64)
    assert s["path"].endswith("002.png") and s["lq_path"].endswith("002.jpg")
    assert json.loads(s["params"]) == {"hflip": False, "degradation": None}
    assert len(_collect(ds, 0)[0]["path"]) == 3


def test_paired_dataset_lists_unpaired_names(tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    for name in ("a", "b", "c"):
        _save(tmp_path / "hq" / f"{name}.png", img)
    for name in ("a", "x"):
        _save(tmp_path / "lq" / f"{name}.png", img)
    with pytest.raises(DatasetError) as err:
        PairedFolderDataset(tmp_path / "lq", tmp_path / "hq")
    msg = str(err.value)
    assert "1 LQ name(s) with no partner" in msg and "x" in msg
    assert "2 HQ name(s) with no partner" in msg and "b, c" in msg
    _save(tmp_path / "lq" / "a.jpg", img)
    with pytest.raises(DatasetError, match="two files share the name 'a'"):
        PairedFolderDataset(tmp_path / "lq", tmp_path / "hq")


def test_paired_dataset_attaches_manifest_params(tmp_path):
    face = skdata.astronaut()
    for i in range(2):
        _save(tmp_path / "src" / f"f{i}.png", face[i * 8 :: 8, ::8].copy())
    degrade_folder(
        tmp_path / "src",
        tmp_path / "lq",
        "codeformer",
        seed=5,
        size=64,
        gt_dir=tmp_path / "gt",
        progress=False,
    )
    ds = PairedFolderDataset(tmp_path / "lq", tmp_path / "gt", size=64)
    manifest = json.loads((tmp_path / "lq" / "manifest.json").read_text())
    params = json.loads(ds[1]["params"])
    assert params["degradation"] == manifest["images"][1]["params"]
    assert params["degradation"]["preset"] == "codeformer"
