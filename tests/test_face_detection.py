"""Detection interface, registry, and the offline MTCNN detector."""

import numpy as np
import pytest
import skimage.data
import torch

from osdface.errors import WeightsFormatError, WeightsNotFoundError
from osdface.face import alignment
from osdface.face.detection import (
    DETECTORS,
    Detection,
    FaceDetector,
    check_rgb_image,
    create_detector,
    register_detector,
)
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5, textured_background


def mtcnn_weights_available() -> bool:
    from osdface.face.mtcnn import WEIGHT_FILES, default_weights_dir

    try:
        folder = default_weights_dir()
    except WeightsNotFoundError:
        return False
    return all((folder / name).is_file() for name in WEIGHT_FILES.values())


needs_mtcnn = pytest.mark.skipif(
    not mtcnn_weights_available(), reason="MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0"
)


@pytest.fixture(scope="module")
def mtcnn():
    if not mtcnn_weights_available():
        pytest.skip("MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")
    return create_detector("mtcnn")


# ----------------------------------------------------------------------------- interface


def test_detection_validates_and_converts():
    d = Detection(box=[1, 2, 11, 22], score=np.float32(0.5), landmarks5=np.zeros((5, 2), np.float32))
    assert d.box.dtype == np.float64 and d.landmarks5.dtype == np.float64
    assert isinstance(d.score, float)
    assert (d.width, d.height, d.center) == (10.0, 20.0, (6.0, 12.0))
    with pytest.raises(ValueError, match="4 numbers"):
        Detection(box=[1, 2, 3], score=1.0, landmarks5=np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        Detection(box=[0, 0, 1, 1], score=1.0, landmarks5=np.zeros((68, 2)))
    with pytest.raises(ValueError, match="finite"):
        Detection(box=[0, 0, np.nan, 1], score=1.0, landmarks5=np.zeros((5, 2)))


def test_check_rgb_image():
    image = np.zeros((4, 5, 3), np.uint8)
    assert check_rgb_image(image) is image
    with pytest.raises(ValueError, match="3 channels"):
        check_rgb_image(np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        check_rgb_image(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(TypeError, match="numpy"):
        check_rgb_image([[0, 0, 0]])


def test_registry_plugs_in_a_detector_with_a_local_weights_path(tmp_path):
    weights = tmp_path / "my_detector.pth"
    weights.write_bytes(b"x")

    class FixedDetector:
        def __init__(self, weights, device="cpu"):
            self.weights = weights

        def detect(self, image):
            return [Detection(box=[0, 0, 10, 10], score=0.99, landmarks5=np.ones((5, 2)))]

    register_detector("fixed-test", FixedDetector)
    try:
        det = create_detector("fixed-test", weights=str(weights))
        assert isinstance(det, FaceDetector) and det.weights == str(weights)
        assert det.detect(np.zeros((8, 8, 3), np.uint8))[0].score == pytest.approx(0.99)
        with pytest.raises(ValueError, match="already registered"):
            register_detector("fixed-test", FixedDetector)
        register_detector("fixed-test", FixedDetector, overwrite=True)
    finally:
        DETECTORS.pop("fixed-test", None)


def test_unknown_detector_and_bad_factory():
    with pytest.raises(ValueError, match="unknown face detector 'nope'.*mtcnn"):
        create_detector("nope")
    register_detector("broken-test", lambda: object())
    try:
        with pytest.raises(TypeError, match="no detect"):
            create_detector("broken-test")
    finally:
        DETECTORS.pop("broken-test", None)


# ----------------------------------------------------------------------------- MTCNN pieces


def test_nms_matches_brute_force():
    from osdface.face.mtcnn import nms

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (200, 2))
    wh = rng.uniform(5, 40, (200, 2))
    boxes = torch.tensor(np.hstack([xy, xy + wh]), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, 200), dtype=torch.float32)
    for mode in ("union", "min"):
        keep = nms(boxes, scores, 0.4, mode).tolist()
        # brute force: visit in score order, keep a box unless it overlaps a kept one too much
        expect = []
        for i in np.argsort(-scores.numpy(), kind="stable"):
            b = boxes[i].numpy()
            ok = True
            for j in expect:
                c = boxes[j].numpy()
                inter = max(0, min(b[2], c[2]) - max(b[0], c[0])) * max(0, min(b[3], c[3]) - max(b[1], c[1]))
                area_b, area_c = (b[2] - b[0]) * (b[3] - b[1]), (c[2] - c[0]) * (c[3] - c[1])
                denom = area_b + area_c - inter if mode == "union" else min(area_b, area_c)
                if inter / denom > 0.4:
                    ok = False
                    break
            if ok:
                expect.append(int(i))
        assert keep == expect
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_missing_or_wrong_weights_give_clear_errors(tmp_path):
    from osdface.face.mtcnn import MTCNNDetector, PNet, RNet, load_mtcnn_nets

    with pytest.raises(WeightsNotFoundError, match="pnet.pt is missing"):
        load_mtcnn_nets(tmp_path)
    torch.save(RNet().state_dict(), tmp_path / "pnet.pt")  # wrong net under the P-Net name
    with pytest.raises(WeightsFormatError, match="do not match PNet"):
        load_mtcnn_nets(tmp_path)
    (tmp_path / "pnet.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsFormatError, match="cannot load"):
        load_mtcnn_nets(tmp_path)
    torch.save(PNet().state_dict(), tmp_path / "pnet.pt")
    with pytest.raises(WeightsNotFoundError, match="rnet.pt is missing"):
        MTCNNDetector(weights=tmp_path)


def test_random_weights_from_an_explicit_folder_run(tmp_path):
    """The loading path works with any folder in the shipped format (here: random weights)."""
    from osdface.face.mtcnn import MTCNNDetector, ONet, PNet, RNet

    torch.manual_seed(0)
    for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        torch.save(net.state_dict(), tmp_path / f"{name}.pt")
    det = MTCNNDetector(weights=tmp_path, min_face_size=40)
    found = det.detect(textured_background(64, 80))
    assert all(isinstance(d, Detection) for d in found)


@needs_mtcnn
def test_shipped_weights_load_with_weights_only():
    from osdface.face.mtcnn import WEIGHT_FILES, default_weights_dir

    for name in WEIGHT_FILES.values():
        state = torch.load(default_weights_dir() / name, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


# ----------------------------------------------------------------------------- MTCNN on real faces


def test_astronaut_face_found_with_sane_landmarks(mtcnn):
    image = skimage.data.astronaut()
    found = mtcnn.detect(image)
    assert found and found[0].score > 0.99
    best = found[0]
    x1, y1, x2, y2 = best.box
    assert 160 < x1 < 200 and 40 < y1 < 80 and 250 < x2 < 290 and 150 < y2 < 190
    np.testing.assert_allclose(best.landmarks5, ASTRONAUT_LANDMARKS5, atol=3.0)
    lm = best.landmarks5
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # viewer's left first
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above nose above mouth
    assert all(d.score <= best.score for d in found)


def test_astronaut_aligned_eyes_level_and_at_template(mtcnn):
    image = skimage.data.astronaut()
    landmarks = mtcnn.detect(image)[0].landmarks5
    affine = alignment.estimate_affine(landmarks, face_size=512)
    crop = alignment.warp_face(image, affine, 512)
    eyes = alignment.transform_points(affine, landmarks[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0
    template_iod = np.linalg.norm(alignment.FFHQ_TEMPLATE_512[1] - alignment.FFHQ_TEMPLATE_512[0])
    assert template_iod == pytest.approx(125.9, abs=0.1)
    assert abs(np.linalg.norm(eyes[1] - eyes[0]) - template_iod) < 4.0
    # detecting again on the aligned crop finds the face where the template says
    again = mtcnn.detect(crop)
    assert again
    np.testing.assert_allclose(again[0].landmarks5[:3], alignment.FFHQ_TEMPLATE_512[:3], atol=8.0)


def test_no_face_and_tiny_images(mtcnn):
    assert mtcnn.detect(textured_background(200, 300)) == []
    assert mtcnn.detect(np.zeros((10, 10, 3), np.uint8)) == []  # smaller than the 12-px window


def test_max_side_shrinks_for_detection_but_reports_full_size_coordinates():
    if not mtcnn_weights_available():
        pytest.skip("MTCNN weights not installed")
    import cv2

    image = cv2.resize(skimage.data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    det = create_detector("mtcnn", max_side=512)
    best = det.detect(image)[0]
    np.testing.assert_allclose(best.landmarks5, (ASTRONAUT_LANDMARKS5 + 0.5) * 2 - 0.5, atol=5.0)


def test_mtcnn_rejects_bad_arguments():
    from osdface.face.mtcnn import MTCNNDetector

    with pytest.raises(ValueError, match="min_face_size"):
        MTCNNDetector(min_face_size=5)
    with pytest.raises(ValueError, match="thresholds"):
        MTCNNDetector(thresholds=(0.5, 0.5))
