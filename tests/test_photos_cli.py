"""Whole-photo mode of `osdface restore` with the tiny model and the real MTCNN detector."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from osdface.face.synthetic import FacePlacement, compose_group_photo
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5
from test_cli import run_cli


@pytest.fixture(autouse=True)
def needs_mtcnn():
    from osdface.errors import WeightsNotFoundError
    from osdface.face import create_detector

    try:
        create_detector("mtcnn")
    except WeightsNotFoundError:
        pytest.skip("MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")


@pytest.fixture
def counted_pipe(tiny_pipe, monkeypatch):
    """The tiny pipeline handed to the CLI, counting model calls and faces per call."""
    calls = []
    original = tiny_pipe.restore_tensor

    def counting(lq, **kw):
        calls.append(lq.shape[0])
        return original(lq, **kw)

    monkeypatch.setattr(tiny_pipe, "restore_tensor", counting)
    monkeypatch.setattr("osdface.loading.load_pipeline", lambda *a, **k: tiny_pipe)
    return calls


def group_photo():
    placements = [FacePlacement(130, 140, 180, 0), FacePlacement(380, 150, 140, 25),
                  FacePlacement(640, 180, 230, -30), FacePlacement(220, 420, 110, 10),
                  FacePlacement(500, 430, 160, -15), FacePlacement(740, 460, 100, 35)]
    return compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, placements, 580, 860, seed=2)


def test_astronaut_found_restored_and_pasted(tmp_path, capsys, counted_pipe):
    (tmp_path / "in").mkdir()
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "in" / "astronaut.png")
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--save-faces", "--compare", "-q"], capsys)
    assert code == 0, err
    out = np.asarray(Image.open(tmp_path / "out" / "astronaut.png"))
    assert out.shape == (512, 512, 3)
    sidecar = json.loads((tmp_path / "out" / "astronaut.json").read_text())
    assert len(sidecar["faces"]) == 1
    (lx, ly), (rx, ry) = sidecar["faces"][0]["landmarks5"][:2]
    assert abs(ly - ry) < 10 and 30 < rx - lx < 60  # eyes found where the face is
    assert sidecar["faces"][0]["score"] > 0.9 and np.array(sidecar["faces"][0]["affine_input_to_crop"]).shape == (2, 3)
    assert (tmp_path / "out" / "restored_faces" / "astronaut_00.png").is_file()
    assert Image.open(tmp_path / "out" / "compare" / "astronaut.png").size[0] > 1024
    assert counted_pipe == [1]
    assert not np.array_equal(out, skimage.data.astronaut())  # the face changed


def test_group_photo_every_face_once_in_one_model_call(tmp_path, capsys, counted_pipe):
    photo, _ = group_photo()
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "group.png")
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--batch-size", 8, "-q"], capsys)
    assert code == 0, err
    faces = json.loads((tmp_path / "out" / "group.json").read_text())["faces"]
    assert len(faces) == 6 and counted_pipe == [6]  # all faces of the photo in one batched call
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out2", "--max-faces", 2, "-q"], capsys)
    assert counted_pipe[1:] == [2]


def test_faces_of_several_photos_share_batches(tmp_path, capsys, counted_pipe):
    photo, _ = group_photo()
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "a.png")
    Image.fromarray(photo[:, ::-1]).save(tmp_path / "in" / "b.png")
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--batch-size", 4, "-q"], capsys)
    assert code == 0 and sorted(counted_pipe) == [4, 4, 4]  # 12 faces from 2 photos, 3 full batches


def test_odd_inputs_each_behave(tmp_path, capsys, counted_pipe):
    src = tmp_path / "in"
    src.mkdir()
    astro = skimage.data.astronaut()
    Image.fromarray(astro).convert("L").save(src / "gray.png")
    rgba = np.dstack([astro, np.linspace(0, 255, 512, dtype=np.uint8)[None, :].repeat(512, 0)])
    Image.fromarray(rgba).save(src / "alpha.png")
    Image.fromarray((astro[..., 0].astype(np.uint16) * 257)).save(src / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(np.ascontiguousarray(np.rot90(astro[:, :400], 1))).save(src / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(skimage.data.astronaut()[:200, 380:]).save(src / "noface.png")
    good = (src / "gray.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 3])
    (src / "zero.png").write_bytes(b"")
    (src / "text.png").write_text("hello")
    code, err = run_cli(["restore", src, "-o", tmp_path / "out", "--upscale", 2, "-q"], capsys)
    assert code == 1  # three bad files
    out = tmp_path / "out"
    gray = np.asarray(Image.open(out / "gray.png").convert("RGB"))
    assert gray.shape == (1024, 1024, 3) and np.array_equal(gray[..., 0], gray[..., 1])
    alpha = np.asarray(Image.open(out / "alpha.png"))
    assert alpha.shape == (1024, 1024, 4) and abs(int(alpha[5, 1000, 3]) - 250) <= 3
    assert np.asarray(Image.open(out / "deep16.png")).shape[:2] == (1024, 1024)
    assert Image.open(out / "rotated.png").size == (800, 1024)  # EXIF applied: portrait 400×512 ×2
    noface = np.asarray(Image.open(out / "noface.png"))
    assert noface.shape == (400, 264, 3) and json.loads((out / "noface.json").read_text())["faces"] == []
    assert "noface.png: no face found; copied through (upscaled ×2)" in err
    for name, reason in [("truncated.png", "cannot decode"), ("zero.png", "empty file"), ("text.png", "not an image")]:
        assert f"{name}: {reason}" in err
    assert "restored 5, skipped 0 (already present), failed 3, 1 notes" in err


def test_over_size_limit_is_a_clear_error(tmp_path, monkeypatch):
    from osdface.errors import ImageReadError
    from osdface.image_utils import read_photo

    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="big.png: 300×200 = 60,000 pixels is over the limit of 50,000"):
        read_photo(tmp_path / "big.png", max_pixels=50_000)


def test_restore_photo_api_on_a_pil_image_keeps_alpha_and_reports_faces(tiny_pipe):
    from osdface.photos import restore_photo

    rgba = np.dstack([skimage.data.astronaut(), np.full((512, 512), 200, np.uint8)])
    result = restore_photo(tiny_pipe, Image.fromarray(rgba), upscale=2)
    assert result.image.shape == (1024, 1024, 4) and (result.image[..., 3] == 200).all()
    assert len(result.faces) == 1 and result.faces[0].restored.shape == (tiny_pipe.sample_size,) * 2 + (3,)
    again = restore_photo(tiny_pipe, Image.fromarray(rgba), upscale=2)  # stateless: same call, same result
    assert np.array_equal(again.image, result.image)
