"""FaceRestorer: whole-photo restoration with batched restore_fn calls."""

import numpy as np
import pytest
import skimage.data

from osdface.face import Detection, FaceRestorer, create_detector
from osdface.face.alignment import template_landmarks
from osdface.face.synthetic import (
    ASTRONAUT_LANDMARKS5,
    FacePlacement,
    compose_group_photo,
    textured_background,
)

FACE_SIZE = 64


def brighter(crops):
    return [np.clip(c.astype(np.int16) + 40, 0, 255).astype(np.uint8) for c in crops]


class CountingRestore:
    """restore_fn that brightens the faces and records every call."""

    def __init__(self, fn=brighter):
        self.calls: list[int] = []
        self.fn = fn

    def __call__(self, crops):
        self.calls.append(len(crops))
        return self.fn(crops)


class FixedDetector:
    """Returns faces at given landmark sets (for fast, exact tests)."""

    def __init__(self, landmark_sets, scores=None):
        self.landmark_sets = [np.asarray(p, float) for p in landmark_sets]
        self.scores = scores or [0.99] * len(self.landmark_sets)

    def detect(self, image):
        out = []
        for p, s in zip(self.landmark_sets, self.scores):
            centre, half = p.mean(0), 1.2 * np.ptp(p, axis=0).max()
            out.append(Detection(box=np.r_[centre - half, centre + half], score=s, landmarks5=p))
        return out


def face_at(cx, cy, iod):
    tpl = template_landmarks(512)
    return (tpl - tpl.mean(0)) * iod / np.linalg.norm(tpl[1] - tpl[0]) + [cx, cy]


@pytest.fixture(scope="module")
def mtcnn():
    from osdface.errors import WeightsNotFoundError

    try:
        return create_detector("mtcnn")
    except WeightsNotFoundError:
        pytest.skip("MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")


@pytest.fixture(scope="module")
def group_photo():
    placements = [
        FacePlacement(130, 140, 180, 0),
        FacePlacement(380, 150, 140, 25),
        FacePlacement(640, 180, 230, -30),
        FacePlacement(220, 420, 110, 10),
        FacePlacement(500, 430, 160, -15),
        FacePlacement(740, 460, 100, 35),
    ]
    return compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, placements, 580, 860, seed=2)


# ----------------------------------------------------------------------------- real detector


def test_every_face_found_and_restored_in_one_call(mtcnn, group_photo):
    photo, truth = group_photo
    restore = CountingRestore()
    result = FaceRestorer(restore, mtcnn, face_size=FACE_SIZE)(photo)
    assert restore.calls == [6]
    assert len(result.faces) == 6
    for points in truth:  # each true face matched by one record, landmarks within a few pixels
        iod = np.linalg.norm(points[1] - points[0])
        errors = [np.linalg.norm(f.landmarks5 - points, axis=1) / iod for f in result.faces]
        best = min(errors, key=np.mean)
        assert (
            best[:2].max() < 0.1 and best.mean() < 0.15
        )  # eyes tight; the mouth of a small tilted face less so
    for face in result.faces:
        assert face.cropped.shape == face.restored.shape == face.pasted.shape == (FACE_SIZE, FACE_SIZE, 3)
        assert face.affine.shape == (2, 3) and face.score >= 0.9
    assert result.image.shape == photo.shape and result.image.dtype == np.uint8
    assert not np.array_equal(result.image, photo)


def test_astronaut_upscaled_restoration(mtcnn):
    photo = skimage.data.astronaut()
    restore = CountingRestore()
    result = FaceRestorer(restore, mtcnn, face_size=FACE_SIZE, upscale=2)(photo)
    assert restore.calls == [1] and len(result.faces) == 1
    assert result.image.shape == (1024, 1024, 3)
    np.testing.assert_allclose(result.faces[0].landmarks5, ASTRONAUT_LANDMARKS5, atol=3)


def test_photo_without_faces_passes_through(mtcnn):
    photo = textured_background(160, 200)
    restore = CountingRestore()
    result = FaceRestorer(restore, mtcnn, face_size=FACE_SIZE)(photo)
    assert restore.calls == [] and result.faces == []
    np.testing.assert_array_equal(result.image, photo)
    up = FaceRestorer(restore, mtcnn, face_size=FACE_SIZE, upscale=2)(photo)
    assert up.image.shape == (320, 400, 3) and up.faces == []


# ----------------------------------------------------------------------------- fixed detector


def test_restore_many_batches_faces_across_photos():
    photos = [textured_background(200, 200, seed=s) for s in range(3)]
    detectors = {0: 2, 1: 0, 2: 3}  # faces per photo

    class PerPhoto:
        def detect(self, image):
            seed = next(i for i, p in enumerate(photos) if np.array_equal(p, image))
            sets = [face_at(40 + 55 * k, 100, 20) for k in range(detectors[seed])]
            return FixedDetector(sets).detect(image)

    restore = CountingRestore()
    restorer = FaceRestorer(restore, PerPhoto(), face_size=FACE_SIZE)
    results = restorer.restore_many(photos, batch_size=2)
    assert restore.calls == [2, 2, 1]
    assert [len(r.faces) for r in results] == [2, 0, 3]
    np.testing.assert_array_equal(results[1].image, photos[1])
    # same result as one call per photo
    for photo, many in zip(photos, results):
        np.testing.assert_array_equal(restorer(photo).image, many.image)
    with pytest.raises(ValueError, match="batch_size"):
        restorer.restore_many(photos, batch_size=0)


def test_stateless_repeated_calls_agree():
    photo = textured_background(160, 160)
    restorer = FaceRestorer(CountingRestore(), FixedDetector([face_at(80, 80, 30)]), face_size=FACE_SIZE)
    first, second = restorer(photo), restorer(photo)
    np.testing.assert_array_equal(first.image, second.image)
    assert first.faces[0] is not second.faces[0]


def test_grayscale_in_grayscale_out():
    gray = textured_background(160, 160)[..., 1]
    colourful = lambda crops: [np.dstack([c[..., 0], c[..., 1] // 2, 255 - c[..., 2]]) for c in crops]
    det = FixedDetector([face_at(80, 80, 30)])
    for image in (np.repeat(gray[..., None], 3, axis=2), gray, gray[..., None]):
        result = FaceRestorer(colourful, det, face_size=FACE_SIZE, upscale=2)(image)
        assert result.image.shape[:2] == (320, 320) and result.image.ndim == image.ndim
        if image.ndim == 3 and image.shape[2] == 3:
            assert np.array_equal(result.image[..., 0], result.image[..., 1])
            assert np.array_equal(result.image[..., 1], result.image[..., 2])


def test_rgba_keeps_alpha():
    rgb = textured_background(120, 160)
    alpha = np.zeros((120, 160), np.uint8)
    alpha[:, 40:] = 255
    alpha[60:, :] = 128
    rgba = np.dstack([rgb, alpha])
    det = FixedDetector([face_at(80, 60, 25)])
    same = FaceRestorer(brighter, det, face_size=FACE_SIZE, color_match=False)(rgba)
    assert same.image.shape == (120, 160, 4)
    np.testing.assert_array_equal(same.image[..., 3], alpha)
    assert same.image[60, 80, :3].astype(int).sum() > rgb[60, 80].astype(int).sum()
    up = FaceRestorer(brighter, det, face_size=FACE_SIZE, upscale=2)(rgba)
    assert up.image.shape == (240, 320, 4)
    assert up.image[5, 5, 3] == 0 and up.image[5, 300, 3] == 255 and up.image[200, 10, 3] == 128


def test_outside_masks_untouched_at_upscale_1_and_upsampler_hook():
    photo = textured_background(200, 300)
    det = FixedDetector([face_at(70, 70, 20), face_at(230, 130, 25)])
    result = FaceRestorer(brighter, det, face_size=FACE_SIZE)(photo)
    np.testing.assert_array_equal(result.image[180:, :], photo[180:, :])  # far from both faces
    np.testing.assert_array_equal(result.image[:, 140:160], photo[:, 140:160])

    seen = []

    def upsampler(image, scale):
        seen.append((image.shape, scale))
        return np.zeros((image.shape[0] * 4, image.shape[1] * 4, 3), np.uint8)  # fixed x4: resized to fit

    up = FaceRestorer(brighter, det, face_size=FACE_SIZE, upscale=2, background_upsampler=upsampler)(photo)
    assert seen == [((200, 300, 3), 2.0)]
    assert up.image.shape == (400, 600, 3) and up.image[390, 590].max() == 0


def test_overlapping_and_border_faces():
    photo = textured_background(150, 150)
    det = FixedDetector([face_at(60, 70, 30), face_at(80, 75, 35), face_at(2, 140, 30), face_at(148, 5, 20)])
    for upscale in (1, 1.5):
        result = FaceRestorer(brighter, det, face_size=FACE_SIZE, upscale=upscale)(photo)
        side = round(150 * upscale)
        assert result.image.shape == (side, side, 3) and len(result.faces) == 4


def test_selection_options():
    sets = [face_at(40, 40, 15), face_at(100, 100, 30), face_at(170, 60, 22)]
    photo = textured_background(200, 200)
    det = FixedDetector(sets, scores=[0.99, 0.95, 0.5])
    # low score dropped by default
    assert len(FaceRestorer(brighter, det, face_size=FACE_SIZE)(photo).faces) == 2
    assert len(FaceRestorer(brighter, det, face_size=FACE_SIZE, min_score=0.0)(photo).faces) == 3
    centre = FaceRestorer(brighter, det, face_size=FACE_SIZE, only_center_face=True)(photo).faces
    assert len(centre) == 1 and np.allclose(centre[0].landmarks5, sets[1])
    largest = FaceRestorer(brighter, det, face_size=FACE_SIZE, min_score=0.0, max_faces=2)(photo).faces
    assert [np.allclose(f.landmarks5, s) for f, s in zip(largest, sets[1:])] == [True, True]
    big_only = FaceRestorer(brighter, det, face_size=FACE_SIZE, min_face_size=60)(photo).faces
    assert len(big_only) == 1


def test_restore_fn_output_is_checked():
    photo = textured_background(100, 100)
    det = FixedDetector([face_at(50, 50, 20)])
    with pytest.raises(ValueError, match="returned 0 faces for 1 crops"):
        FaceRestorer(lambda crops: [], det, face_size=FACE_SIZE)(photo)
    with pytest.raises(ValueError, match=r"\(64, 64, 3\) uint8"):
        FaceRestorer(lambda crops: [c.astype(np.float32) for c in crops], det, face_size=FACE_SIZE)(photo)


def test_bad_arguments_and_inputs():
    det = FixedDetector([])
    with pytest.raises(TypeError, match="callable"):
        FaceRestorer(None, det)
    with pytest.raises(ValueError, match="face_size"):
        FaceRestorer(brighter, det, face_size=8)
    with pytest.raises(ValueError, match="upscale"):
        FaceRestorer(brighter, det, upscale=0)
    with pytest.raises(ValueError, match="color_method"):
        FaceRestorer(brighter, det, color_method="lab")
    with pytest.raises(ValueError, match="mask_shape"):
        FaceRestorer(brighter, det, mask_shape="circle")
    with pytest.raises(TypeError, match="detect"):
        FaceRestorer(brighter, object())
    restorer = FaceRestorer(brighter, det, face_size=FACE_SIZE)
    with pytest.raises(ValueError, match="uint8"):
        restorer(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="RGBA"):
        restorer(np.zeros((10, 10, 2), np.uint8))


def test_parsing_fn_limits_the_paste():
    photo = np.full((160, 160, 3), 100, np.uint8)
    det = FixedDetector([face_at(80, 80, 40)])

    def upper_half(crops):
        masks = []
        for c in crops:
            m = np.zeros(c.shape[:2], np.float32)
            m[: c.shape[0] // 2] = 1
            masks.append(m)
        return masks

    result = FaceRestorer(brighter, det, face_size=FACE_SIZE, color_match=False, parsing_fn=upper_half)(photo)
    affine = result.faces[0].affine
    # a crop pixel low in the face (mouth) maps to a photo pixel that kept its value
    mouth = np.linalg.solve(affine[:, :2], np.array([32.0, 52.0]) - affine[:, 2])
    eyes = np.linalg.solve(affine[:, :2], np.array([32.0, 20.0]) - affine[:, 2])
    assert tuple(result.image[int(mouth[1]), int(mouth[0])]) == (100, 100, 100)
    assert tuple(result.image[int(eyes[1]), int(eyes[0])]) == (140, 140, 140)


# ----------------------------------------------------------------------------- small faces: a second model


def native_size(landmarks, face_size=FACE_SIZE):
    from osdface.face.alignment import affine_scale, estimate_affine

    return face_size / affine_scale(estimate_affine(landmarks, face_size=face_size))


def darker(crops):
    return [np.clip(c.astype(np.int16) - 50, 0, 255).astype(np.uint8) for c in crops]


def test_small_faces_go_to_the_second_model_at_its_size():
    """Faces of native size ≤ up_to are aligned at the small model's size and restored by it; the photo is
    the one two single-model restorers give, each pasting its own faces (far apart: pastes are local)."""
    from osdface.face.restorer import SmallFaces

    photo = textured_background(300, 420, seed=7)
    small_face, large_face = face_at(80, 150, 16), face_at(290, 150, 40)
    up_to = 0.5 * (native_size(small_face) + native_size(large_face))  # between the two faces
    big, small = CountingRestore(brighter), CountingRestore(darker)
    routed = FaceRestorer(big, FixedDetector([small_face, large_face]), face_size=FACE_SIZE, color_match=False,
                          small=SmallFaces(small, 32, up_to))
    result = routed(photo)
    assert big.calls == [1] and small.calls == [1]  # each model once, with its own face
    assert [f.cropped.shape[0] for f in result.faces] == [32, FACE_SIZE]
    # the reference: one model per face, one after the other
    only_large = FaceRestorer(brighter, FixedDetector([large_face]), face_size=FACE_SIZE, color_match=False)
    only_small = FaceRestorer(darker, FixedDetector([small_face]), face_size=32, color_match=False)
    expected = only_small(only_large(photo).image).image
    np.testing.assert_array_equal(result.image, expected)
    # a bound below both faces: the second model is never called, and the photo is the one-model photo
    unused = CountingRestore(darker)
    one = FaceRestorer(brighter, FixedDetector([small_face, large_face]), face_size=FACE_SIZE, color_match=False,
                       small=SmallFaces(unused, 32, 1.0))
    plain = FaceRestorer(brighter, FixedDetector([small_face, large_face]), face_size=FACE_SIZE, color_match=False)
    np.testing.assert_array_equal(one(photo).image, plain(photo).image)
    assert unused.calls == []


def test_small_faces_batch_per_model_across_photos_and_under_the_no_harm_rule():
    from osdface.face.no_harm import NoHarm
    from osdface.face.restorer import SmallFaces

    photos = [textured_background(240, 300, seed=s) for s in range(3)]
    sets = [face_at(60, 120, 14), face_at(200, 120, 36)]  # a small and a large face in every photo
    up_to = 0.5 * (native_size(sets[0]) + native_size(sets[1]))
    big, small = CountingRestore(brighter), CountingRestore(darker)
    restorer = FaceRestorer(big, FixedDetector(sets), face_size=FACE_SIZE, small=SmallFaces(small, 32, up_to),
                            no_harm=NoHarm(enabled=False))
    results = restorer.restore_many(photos, batch_size=2)
    assert big.calls == [2, 1] and small.calls == [2, 1]
    for r in results:
        assert [f.verdict.model_size for f in r.faces] == [32, FACE_SIZE]  # the verdict names each face's model
        assert [f.restored.shape[0] for f in r.faces] == [32, FACE_SIZE]
    for photo, many in zip(photos, results):
        np.testing.assert_array_equal(restorer(photo).image, many.image)


def test_small_faces_checks():
    from osdface.face.restorer import SmallFaces

    with pytest.raises(ValueError, match="size"):
        SmallFaces(brighter, 8, 100)
    with pytest.raises(ValueError, match="up_to"):
        SmallFaces(brighter, 32, 0)
    with pytest.raises(TypeError, match="small must be"):
        FaceRestorer(brighter, FixedDetector([]), face_size=FACE_SIZE, small=(brighter, 32, 100))
    photo = textured_background(200, 200, seed=1)
    wrong = FaceRestorer(brighter, FixedDetector([face_at(100, 100, 14)]), face_size=FACE_SIZE,
                         small=SmallFaces(lambda crops: brighter([c[:16, :16] for c in crops]), 32, 1e6))
    with pytest.raises(ValueError, match=r"small.restore_fn output 0 must be a \(32, 32, 3\)"):
        wrong(photo)
