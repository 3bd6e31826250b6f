"""The identity measure (osdface.models.dlib_identity) and the "ID (dlib)" column of ``osdface evaluate``.

Needs the identity extra (pip install -e ".[dev,ui,identity]"); in CI (CI set) a missing one fails instead
of skipping. The real-face checks read the shared data next to the repository (London portraits, ffhq512)
and skip without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_face_detection import mtcnn_weights_available

from osdface.errors import WeightsNotFoundError
from osdface.metrics.evaluate import evaluate_folders
from osdface.models import dlib_identity
from osdface.models.dlib_identity import IDENTITY_MISSING, DlibIdentity

DATA = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[:3]
             if (p / "shared" / "data" / "hires").is_dir()), None)
# FFHQ_BOX × side, rounded: where dlib's HOG detector puts the face in a 512 / 128 px FFHQ crop
BOX = {512: (100, 160, 403, 464), 128: (25, 40, 101, 116)}


@pytest.fixture(scope="module")
def ident() -> DlibIdentity:
    if not dlib_identity.identity_available():
        if os.environ.get("CI"):
            pytest.fail(IDENTITY_MISSING)
        pytest.skip(IDENTITY_MISSING)
    return DlibIdentity()


def smooth_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
            for _ in range(n)]


def direct(image: np.ndarray, shape_image: np.ndarray) -> np.ndarray:
    """dlib called directly: 5 points fitted in the fixed box of ``shape_image``, descriptor of ``image``."""
    import dlib

    folder = dlib_identity._model_dir()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    shape = predictor(shape_image, dlib.rectangle(*BOX[shape_image.shape[0]]))
    return np.asarray(encoder.compute_face_descriptor(image, shape, 0))


def shared(*parts: str) -> Path:
    if DATA is None:
        pytest.skip("shared/data (hires faces) not found next to the repository")
    return DATA.joinpath(*parts)


def ffhq(count: int) -> list[np.ndarray]:
    from osdface.image_utils import read_image

    return [read_image(shared("hires", "ffhq512", f"{i:05d}.jpg")) for i in range(count)]


def test_same_crop_is_at_distance_zero_and_gray_is_accepted(ident):
    image = smooth_images(1, 128)[0]
    assert ident.distance(image, image) == 0.0
    gray = image[:, :, 1]
    d = ident.descriptors([gray, np.repeat(gray[:, :, None], 3, axis=2)])
    assert d.shape == (2, 128) and d.dtype == np.float64 and np.array_equal(d[0], d[1])


def test_descriptors_and_distance_equal_direct_dlib_calls(ident):
    big, small = smooth_images(1, 512, seed=1)[0], smooth_images(1, 128, seed=2)[0]
    np.testing.assert_array_equal(ident.descriptors([big, small]), np.stack([direct(big, big), direct(small, small)]))
    # landmarks from the reference; the 128 px crop enlarged to the reference's 512 px (cubic) first
    enlarged = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(ident.descriptors([small], reference=[big])[0], direct(enlarged, big))
    expected = np.linalg.norm(direct(enlarged, big) - direct(big, big))
    assert ident.distance(big, small) == pytest.approx(expected, abs=1e-12)
    shrunk = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(ident.distances([small], [big]),
                                  [np.linalg.norm(direct(shrunk, small) - direct(small, small))])


def test_same_person_neutral_and_smiling_closer_than_two_people(ident):
    if not mtcnn_weights_available():
        pytest.skip("MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")
    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo
    from osdface.image_utils import read_photo

    detector, people = create_detector("mtcnn"), ("001", "002", "003", "004")
    faces = {}
    for person in people:
        for expression in ("neutral", "smiling"):
            photo = min(shared("hires", "portraits", f"london_{expression}").glob(f"{person}_*"))
            faces[person, expression] = align_photo(read_photo(photo), detector, 256, only_center_face=True)[0][0]
    same = [ident.distance(faces[p, "neutral"], faces[p, "smiling"]) for p in people]
    other = [ident.distance(faces[p, e], faces[q, e]) for e in ("neutral", "smiling")
             for p in people for q in people if p < q]
    assert max(same) < 0.45 and min(other) > 0.6, (same, other)  # dlib's own threshold: 0.6


def test_blurred_copy_closer_than_another_person(ident):
    faces = ffhq(4)
    blurred = [cv2.GaussianBlur(f, (0, 0), 4) for f in faces]
    same = ident.distances(faces, blurred)
    other = ident.distances(faces, faces[1:] + faces[:1])
    assert np.all(same < other) and same.max() < 0.45, (same, other)


def test_evaluate_column_equals_direct_dlib(ident, tmp_path):
    gt = smooth_images(3, 128, seed=3)
    pred = [cv2.GaussianBlur(gt[0], (0, 0), 2), smooth_images(1, 128, seed=4)[0],
            cv2.resize(gt[2], (64, 64), interpolation=cv2.INTER_AREA)]  # a smaller crop: enlarged to 128
    for folder, images in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(tmp_path / folder / f"{i}.png")
    result = evaluate_folders({"m": tmp_path / "pred"}, gt_dir=tmp_path / "gt", metrics=["deg", "id_dlib"],
                              progress=False)
    r = result.methods["m"]
    pred[2] = cv2.resize(pred[2], (128, 128), interpolation=cv2.INTER_CUBIC)
    expected = [np.linalg.norm(direct(p, g) - direct(g, g)) for p, g in zip(pred, gt)]
    assert [rec["id_dlib"] for rec in r.records] == pytest.approx(expected, abs=1e-12)
    assert r.means["id_dlib"]["mean"] == pytest.approx(np.mean(expected), abs=1e-12) and r.means["id_dlib"]["n"] == 3
    header = next(line for line in result.render_markdown().splitlines() if line.startswith("| Method"))
    assert "| Deg.↓ | ID (dlib)↓ | LMD↓ |" in header


def test_missing_extra_is_one_note_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dlib_identity, "identity_available", lambda: False)
    with pytest.raises(WeightsNotFoundError, match=r"pip install 'osdface\[identity\]'"):
        DlibIdentity()
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        Image.fromarray(smooth_images(1, 64)[0]).save(tmp_path / folder / "a.png")
    result = evaluate_folders([tmp_path / "pred"], gt_dir=tmp_path / "gt", metrics=["psnr", "id_dlib"],
                              progress=False)
    r = result.methods["pred"]
    assert r.unavailable == {"id_dlib": IDENTITY_MISSING} and r.records[0]["psnr"] == float("inf")
    md = result.render_markdown()
    assert "ID (dlib)↓" in md and md.count(IDENTITY_MISSING) == 1
