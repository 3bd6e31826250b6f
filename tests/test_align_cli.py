"""``osdface align``: faces of the example photos aligned as inference aligns them, the manifest, re-runs
and the error paths."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osdface.cli import app
from osdface.face import create_detector, estimate_affine, warp_face
from osdface.image_utils import read_photo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args):
    return CliRunner().invoke(app, ["align", *map(str, args)])


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned")
    result = run(EXAMPLES / "astronaut.jpg", EXAMPLES / "group.jpg", "--output", out, "--size", 128, "-q")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_faces_found_crop_size_and_manifest(aligned):
    out, text = aligned
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["size"] == 128 and manifest["no_face"] == [] and manifest["failed"] == []
    names = sorted(r["file"] for r in manifest["faces"])
    assert names == ["astronaut_00.png"] + [f"group_{k:02d}.png" for k in range(6)]
    assert sorted(p.name for p in out.glob("*.png")) == names
    for name in names:
        with Image.open(out / name) as im:
            assert im.size == (128, 128) and im.mode == "RGB"
    assert "7 faces aligned" in text


def test_crops_equal_the_restorers_alignment(aligned):
    """Independent path: detect, fit the template and warp by hand; the written crop must be that."""
    out, _ = aligned
    record = next(r for r in json.loads((out / "manifest.json").read_text())["faces"] if r["file"] == "astronaut_00.png")
    photo = read_photo(EXAMPLES / "astronaut.jpg")
    (det,) = [d for d in create_detector("mtcnn").detect(photo) if d.score >= 0.9]
    crop = warp_face(photo, estimate_affine(det.landmarks5, face_size=128), 128)
    assert np.array_equal(np.asarray(Image.open(out / "astronaut_00.png")), crop)
    np.testing.assert_allclose(record["landmarks5"], det.landmarks5, atol=0.01)


def test_rerun_keeps_faces_and_refuses_another_size(aligned, tmp_path, capsys):
    from test_cli import run_cli

    out, _ = aligned
    work = tmp_path / "a"
    shutil.copytree(out, work)
    before = (work / "group_03.png").stat().st_mtime_ns
    result = run(EXAMPLES / "astronaut.jpg", "--output", work, "--size", 128, "-q")  # a subset of the photos
    assert result.exit_code == 0, result.output
    assert (work / "group_03.png").stat().st_mtime_ns == before
    assert len(json.loads((work / "manifest.json").read_text())["faces"]) == 7  # group.jpg's entries kept
    code, err = run_cli(["align", EXAMPLES / "astronaut.jpg", "--output", work, "--size", 256], capsys)
    assert code == 2 and "aligned at 128 px" in err and len(err.strip().splitlines()) == 1


def test_bad_photos_no_face_and_failures(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.jpg").write_bytes(b"not an image at all")
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "flat.png")
    shutil.copy(EXAMPLES / "astronaut.jpg", src / "face.jpg")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    result = run(src, tmp_path / "missing.png", "--output", tmp_path / "out", "--size", 64, "-q")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("broken.jpg" in e for e in errors) and any("missing.png" in e for e in errors)
    assert "no face found in 1 photo" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["no_face"] == [str(src / "flat.png")] and len(manifest["faces"]) == 1
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_two_photos_with_one_name_keep_both_faces(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(EXAMPLES / "astronaut.jpg", tmp_path / sub / "face.jpg")
    result = run(tmp_path / "a" / "face.jpg", tmp_path / "b" / "face.jpg", "--output", tmp_path / "out", "--size", 64, "-q")
    assert result.exit_code == 0, result.output
    files = [r["file"] for r in json.loads((tmp_path / "out" / "manifest.json").read_text())["faces"]]
    assert len(set(files)) == 2 and all((tmp_path / "out" / f).is_file() for f in files)


# Issue 19: a crop name taken by a file align did not write; the manifest as crops are added


@pytest.fixture
def two_astronauts(tmp_path):
    (tmp_path / "photos").mkdir()
    for name in ("a", "b"):
        shutil.copy(EXAMPLES / "astronaut.jpg", tmp_path / "photos" / f"{name}.jpg")
    return tmp_path / "photos"


def test_align_never_replaces_a_crop_it_did_not_write(tmp_path, two_astronauts):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(out / "a_00.png")
    before = (out / "a_00.png").read_bytes()
    result = run(two_astronauts, "-o", out, "--size", 64, "-q")
    assert result.exit_code == 1 and "a_00.png is there and osdface align did not write it; not replaced" in result.output
    assert (out / "a_00.png").read_bytes() == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["file"] for r in manifest["faces"]] == ["b_00.png"] and len(manifest["failed"]) == 1


def test_align_records_crops_as_it_goes_and_a_rerun_takes_back_unlisted_ones(tmp_path, monkeypatch, two_astronauts):
    from osdface.face import align_folder

    original = align_folder.write_image_atomic

    def killed_at_b(image, path):
        if Path(path).name == "b_00.png":
            raise KeyboardInterrupt
        return original(image, path)

    monkeypatch.setattr(align_folder, "MANIFEST_EVERY", 0.0)
    monkeypatch.setattr(align_folder, "write_image_atomic", killed_at_b)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        align_folder.align_folder([two_astronauts], out, size=64, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())  # written as crops were added
    assert [r["file"] for r in manifest["faces"]] == ["a_00.png"]
    monkeypatch.undo()
    (out / "manifest.json").unlink()  # as if killed before its first manifest: a_00.png is unlisted
    result = run(two_astronauts, "-o", out, "--size", 64, "-q")
    assert result.exit_code == 0, result.output  # the unlisted crop holds exactly this run's crop: ours
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["file"] for r in manifest["faces"]) == ["a_00.png", "b_00.png"] and manifest["failed"] == []
