"""degrade_folder: outputs + manifest, reproducible per image, resumable, bad inputs reported."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from osdface.data import DatasetError, degrade, degrade_folder, get_preset, rng_for
from osdface.data.geometry import fit_square
from osdface.data.make_testset import image_key
from osdface.image_utils import read_image


@pytest.fixture()
def src(tmp_path):
    face = skdata.astronaut()
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.ascontiguousarray(face[i * 16 :: 4, i * 8 :: 4])).save(folder / f"img{i}.png")
    return folder


def test_writes_outputs_and_a_complete_manifest(src, tmp_path):
    out = tmp_path / "lq"
    summary = degrade_folder(src, out, "difface", seed=3, size=64, progress=False)
    assert (summary.total, summary.written, summary.skipped_existing, summary.failed) == (4, 4, 0, [])
    assert "4 written" in str(summary)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"] == "difface" and manifest["seed"] == 3 and manifest["size"] == 64
    assert manifest["config"] == get_preset("difface").to_dict()
    assert [e["output"] for e in manifest["images"]] == [f"img{i}.png" for i in range(4)]
    for entry in manifest["images"]:
        lq = read_image(out / entry["output"])
        assert lq.shape == (64, 64, 3)
        # the manifest params and seeding are enough to reproduce the file exactly
        hq = fit_square(read_image(entry["source"]), 64)
        again, params = degrade(hq, "difface", rng_for(3, image_key(entry["output"])))
        assert np.array_equal(again, lq) and params == entry["params"]
    assert not list(out.glob(".*tmp"))  # no temp files left behind


def test_output_of_an_image_does_not_depend_on_the_other_files(src, tmp_path):
    degrade_folder(src, tmp_path / "all", "dual", seed=0, size=64, progress=False)
    for p in src.glob("img[123].png"):
        p.unlink()
    degrade_folder(src, tmp_path / "one", "dual", seed=0, size=64, progress=False)
    assert (tmp_path / "all" / "img0.png").read_bytes() == (tmp_path / "one" / "img0.png").read_bytes()


def test_existing_outputs_are_kept_unless_overwrite(src, tmp_path):
    out = tmp_path / "lq"
    degrade_folder(src, out, "gfpgan", seed=1, size=64, progress=False)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    manifest_before = json.loads((out / "manifest.json").read_text())
    again = degrade_folder(src, out, "gfpgan", seed=1, size=64, progress=False)
    assert (again.written, again.skipped_existing) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamp
    assert json.loads((out / "manifest.json").read_text()) == manifest_before
    (out / "img2.png").unlink()
    (out / "manifest.json").unlink()  # params of kept files are re-derived without rewriting them
    partial = degrade_folder(src, out, "gfpgan", seed=1, size=64, progress=False)
    assert (partial.written, partial.skipped_existing) == (1, 3)
    assert json.loads((out / "manifest.json").read_text())["images"] == manifest_before["images"]
    forced = degrade_folder(src, out, "gfpgan", seed=1, size=64, overwrite=True, progress=False)
    assert (forced.written, forced.skipped_existing) == (4, 0)


def test_a_folder_made_with_other_settings_is_refused(src, tmp_path):
    out = tmp_path / "lq"
    degrade_folder(src, out, "gfpgan", seed=1, size=64, progress=False)
    with pytest.raises(DatasetError, match="different seed"):
        degrade_folder(src, out, "gfpgan", seed=2, size=64, progress=False)
    with pytest.raises(DatasetError, match="different preset, config"):
        degrade_folder(src, out, "codeformer", seed=1, size=64, progress=False)
    assert (
        degrade_folder(src, out, "codeformer", seed=1, size=64, overwrite=True, progress=False).written == 4
    )


def test_bad_input_is_one_line_and_the_rest_goes_on(src, tmp_path, capsys):
    (src / "broken.png").write_bytes(b"")
    (src / "garbage.jpg").write_bytes(b"not an image at all")
    summary = degrade_folder(src, tmp_path / "lq", "codeformer", seed=0, size=64, progress=False)
    assert summary.written == 4 and len(summary.failed) == 2
    assert all("\n" not in line for line in summary.failed)
    assert any("broken.png" in line and "empty" in line for line in summary.failed)
    err = capsys.readouterr().err
    assert "broken.png" in err and "garbage.jpg" in err
    names = [e["output"] for e in json.loads((tmp_path / "lq" / "manifest.json").read_text())["images"]]
    assert "broken.png" not in names and len(names) == 4


def test_gt_dir_receives_resized_targets(src, tmp_path):
    degrade_folder(src, tmp_path / "lq", "daefr", seed=0, size=48, gt_dir=tmp_path / "gt", progress=False)
    gt = read_image(tmp_path / "gt" / "img0.png")
    assert gt.shape == (48, 48, 3)
    assert np.array_equal(gt, fit_square(read_image(src / "img0.png"), 48))


def test_empty_source_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty.*no image files"):
        degrade_folder(tmp_path / "empty", tmp_path / "lq", "gfpgan", seed=0, progress=False)


def test_a_file_that_degrade_did_not_write_is_never_replaced(src, tmp_path, capsys):
    """Issue 19: only files listed in the manifest, or holding exactly this run's output, are replaced."""
    out, gt = tmp_path / "lq", tmp_path / "gt"
    out.mkdir()
    gt.mkdir()
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(out / "img1.png")  # someone else's files
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(gt / "img2.png")
    theirs = {p: p.read_bytes() for p in (out / "img1.png", gt / "img2.png")}
    for overwrite in (False, True):
        summary = degrade_folder(src, out, "gfpgan", seed=0, size=32, gt_dir=gt, overwrite=overwrite, progress=False)
        assert summary.written == 2 and len(summary.failed) == 2
        assert any("img1.png" in line and "not replaced" in line for line in summary.failed)
        assert {p: p.read_bytes() for p in theirs} == theirs
    names = [e["output"] for e in json.loads((out / "manifest.json").read_text())["images"]]
    assert names == ["img0.png", "img3.png"]  # the refused ones are not claimed either
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") and "not replaced" in line for line in err)


def test_a_stopped_runs_outputs_are_ours_and_a_foreign_manifest_refuses_the_folder(src, tmp_path):
    out, gt = tmp_path / "lq", tmp_path / "gt"
    degrade_folder(src, out, "gfpgan", seed=0, size=32, gt_dir=gt, progress=False)
    (out / "manifest.json").unlink()  # stopped before the manifest was written, and one GT not written yet
    (gt / "img2.png").unlink()
    again = degrade_folder(src, out, "gfpgan", seed=0, size=32, gt_dir=gt, progress=False)
    assert again.failed == [] and (gt / "img2.png").is_file()
    (out / "manifest.json").write_text(json.dumps({"size": 128, "faces": [], "template": "ffhq-5point"}))
    for overwrite in (False, True):  # `osdface align`'s manifest: not ours to replace
        with pytest.raises(DatasetError, match="not a manifest of osdface degrade; it is not replaced"):
            degrade_folder(src, out, "gfpgan", seed=0, size=32, overwrite=overwrite, progress=False)
    assert json.loads((out / "manifest.json").read_text())["template"] == "ffhq-5point"
