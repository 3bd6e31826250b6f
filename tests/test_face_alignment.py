"""Alignment: template fits, warping into the crop and back."""

import numpy as np
import pytest
import skimage.data

from osdface.face.alignment import (
    FFHQ_TEMPLATE_512,
    affine_scale,
    compose_affine,
    estimate_affine,
    invert_affine,
    resize_affine,
    similarity_lstsq,
    template_landmarks,
    transform_points,
    warp_face,
)
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


@pytest.mark.parametrize("method", ["lmeds", "lstsq"])
def test_template_landmarks_give_identity(method):
    affine = estimate_affine(FFHQ_TEMPLATE_512, template_size=512, face_size=512, method=method)
    np.testing.assert_allclose(affine, IDENTITY, atol=1e-6)


@pytest.mark.parametrize("face_size", [64, 256, 512])
def test_template_scaled_to_face_size(face_size):
    points = template_landmarks(face_size)
    np.testing.assert_allclose(points, FFHQ_TEMPLATE_512 * face_size / 512)
    affine = estimate_affine(points, face_size=face_size)
    np.testing.assert_allclose(affine, IDENTITY, atol=1e-6)


@pytest.mark.parametrize("method", ["lmeds", "lstsq"])
def test_recovers_known_similarity(method):
    truth = similarity(0.7, 20.0, 30.0, -12.0)  # image → crop
    image_points = transform_points(invert_affine(truth), FFHQ_TEMPLATE_512)
    affine = estimate_affine(image_points, method=method)
    np.testing.assert_allclose(affine, truth, atol=1e-4)  # LMEDS refines iteratively
    assert affine_scale(affine) == pytest.approx(0.7)


def test_lmeds_ignores_one_bad_landmark_lstsq_does_not():
    truth = similarity(1.3, -10.0, 5.0, 8.0)
    points = transform_points(invert_affine(truth), FFHQ_TEMPLATE_512)
    points[3] += [25.0, 30.0]  # one mouth corner badly off
    robust = estimate_affine(points, method="lmeds")
    plain = estimate_affine(points, method="lstsq")
    assert np.abs(robust - truth).max() < np.abs(plain - truth).max()
    assert np.abs(transform_points(robust, points[:3]) - FFHQ_TEMPLATE_512[:3]).max() < 1.0


def test_lstsq_matches_closed_form_on_exact_points():
    truth = similarity(2.0, 45.0, -3.0, 4.0)
    src = np.random.default_rng(0).uniform(0, 100, (7, 2))
    np.testing.assert_allclose(similarity_lstsq(src, transform_points(truth, src)), truth, atol=1e-9)


def test_bad_landmarks_raise():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        estimate_affine(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        estimate_affine(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="same point"):
        estimate_affine(np.ones((5, 2)), method="lstsq")
    with pytest.raises(ValueError, match="method"):
        estimate_affine(FFHQ_TEMPLATE_512, method="ransac")


def test_warp_then_inverse_warp_returns_original():
    import cv2

    image = skimage.data.astronaut()
    affine = estimate_affine(ASTRONAUT_LANDMARKS5, face_size=512)  # face grows ~3x into the crop
    crop = warp_face(image, affine, 512)
    back = cv2.warpAffine(crop, invert_affine(affine), (512, 512), flags=cv2.INTER_LINEAR)
    # compare inside the crop's footprint, away from its edges
    inside = cv2.warpAffine(np.ones((512, 512), np.uint8), invert_affine(affine), (512, 512))
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8)).astype(bool)
    diff = np.abs(back.astype(int) - image.astype(int))[inside]
    assert inside.sum() > 5000
    assert diff.mean() < 3.0 and np.percentile(diff, 99) < 30


def test_warp_face_shrinks_big_faces_without_shifting_them():
    """A face much larger than the crop takes the area-averaging path; it must land at the same place."""
    import cv2

    image = cv2.resize(skimage.data.astronaut(), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    landmarks = (ASTRONAUT_LANDMARKS5 + 0.5) * 4 - 0.5
    affine = estimate_affine(landmarks, face_size=128)
    assert affine_scale(affine) < 0.5
    fast = warp_face(image, affine, 128)
    plain = cv2.warpAffine(
        image, affine, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    blurred = cv2.GaussianBlur(plain, (0, 0), 1.5).astype(float)
    assert np.abs(cv2.GaussianBlur(fast, (0, 0), 1.5).astype(float) - blurred).mean() < 4.0


def test_warp_face_border_modes_and_small_size():
    image = np.full((40, 40, 3), 200, np.uint8)
    affine = estimate_affine(template_landmarks(64) * 0.5 + 25, face_size=64)  # crop spills past the image
    assert warp_face(image, affine, 64).min() == 200  # reflect: no black
    assert warp_face(image, affine, 64, border="constant").min() == 0
    with pytest.raises(ValueError, match="border"):
        warp_face(image, affine, 64, border="wrap")


def test_resize_affine_maps_the_same_points():
    affine = similarity(0.5, 10.0, 3.0, 7.0)
    up = resize_affine(affine, (100, 200), (200, 400))  # same photo, 2x larger
    point_small = np.array([[10.0, 20.0]])
    point_big = (point_small + 0.5) * 2 - 0.5
    np.testing.assert_allclose(
        transform_points(up, point_big), transform_points(affine, point_small), atol=1e-9
    )


def test_compose_and_invert():
    a, b = similarity(1.5, 30.0, 1.0, 2.0), similarity(0.5, -10.0, -4.0, 3.0)
    np.testing.assert_allclose(compose_affine(invert_affine(a), a), IDENTITY, atol=1e-9)
    p = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(
        transform_points(compose_affine(a, b), p), transform_points(a, transform_points(b, p))
    )
