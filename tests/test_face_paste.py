"""Paste-back: masks, untouched background, overlaps, borders, colour matching."""

import cv2
import numpy as np
import pytest
import skimage.data

from osdface.face.alignment import (
    estimate_affine,
    invert_affine,
    resize_affine,
    template_landmarks,
    warp_face,
)
from osdface.face.color import match_color
from osdface.face.paste import face_mask, inside_mask, paste_face, paste_faces
from osdface.face.synthetic import textured_background


def face_affine(cx, cy, iod, angle=0.0, face_size=64):
    """Affine (photo → crop) of a face centred at (cx, cy) with inter-ocular distance ``iod`` pixels."""
    tpl = template_landmarks(512)
    tpl_iod = np.linalg.norm(tpl[1] - tpl[0])
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    points = (tpl - tpl.mean(0)) @ rot.T * (iod / tpl_iod) + [cx, cy]
    return estimate_affine(points, face_size=face_size), points


def footprint(affine, face_size, hw):
    """Photo pixels whose crop mask is non-zero."""
    mask = face_mask(face_size)
    warped = cv2.warpAffine(mask, invert_affine(affine), (hw[1], hw[0]), flags=cv2.INTER_CUBIC)
    return warped > 0


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("size", [64, 512])
@pytest.mark.parametrize("shape", ["square", "ellipse"])
def test_mask_is_soft_zero_on_the_edge_and_one_inside(size, shape):
    mask = face_mask(size, shape)
    assert mask.shape == (size, size) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == pytest.approx(1.0)
    assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0.0
    assert mask[size // 2, size // 2] == pytest.approx(1.0)
    # feathered: there are intermediate values along a line from the edge to the centre
    line = mask[size // 2, : size // 2]
    assert ((line > 0.05) & (line < 0.95)).sum() >= (2 if size == 64 else 10)


def test_parsing_mask_restricts_the_mask():
    parsing = np.zeros((128, 128), np.uint8)
    parsing[32:96, 32:96] = 255
    mask = face_mask(64, parsing=parsing)  # resized to the crop
    assert mask[32, 32] > 0.9 and mask[4, 32] == 0.0 and mask[32, 10] < 0.05
    assert face_mask(64, parsing=parsing.astype(bool)).max() > 0.9
    with pytest.raises(ValueError, match="one channel"):
        face_mask(64, parsing=np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match="mask shape"):
        face_mask(64, "circle")


def test_inside_mask_marks_crop_pixels_from_the_photo():
    affine, _ = face_affine(5, 50, 20)  # face centred near the left edge
    inside = inside_mask(affine, 64, (100, 100))
    assert 0 < inside.mean() < 1
    assert inside[:, -1].all() and not inside[:, 0].any()


# ----------------------------------------------------------------------------- paste-back


def test_pixels_outside_every_mask_are_untouched():
    photo = textured_background(300, 400, seed=3)
    affines = [face_affine(70, 80, 30)[0], face_affine(170, 100, 40, angle=25)[0]]
    faces = [np.full((64, 64, 3), (250, 10, 10), np.uint8), np.full((64, 64, 3), (10, 250, 10), np.uint8)]
    out, _ = paste_faces(photo, faces, affines, color_match=False)
    assert out.shape == photo.shape and out.dtype == np.uint8
    covered = footprint(affines[0], 64, photo.shape) | footprint(affines[1], 64, photo.shape)
    covered = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (~covered).sum() > 0.5 * covered.size
    np.testing.assert_array_equal(out[~covered], photo[~covered])
    # and the faces did land: the centre of each takes the face's colour
    assert tuple(out[80, 70]) == (250, 10, 10) and tuple(out[100, 170]) == (10, 250, 10)
    # input canvas not modified
    assert not np.shares_memory(out, photo)


def test_identity_restoration_changes_the_photo_very_little():
    photo = skimage.data.astronaut()
    affine = estimate_affine(
        np.array([[204.3, 100.8], [247, 103.9], [224.5, 129.3], [201.2, 139.6], [244.9, 142.9]])
    )
    crop = warp_face(photo, affine, 512)
    out, _ = paste_faces(photo, [crop], [affine], references=[crop])
    diff = np.abs(out.astype(int) - photo.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) < 20


def test_overlapping_faces_paste_cleanly_larger_on_top():
    photo = np.full((200, 200, 3), 128, np.uint8)
    small, _ = face_affine(90, 100, 30)
    large, _ = face_affine(110, 100, 45)
    faces = [np.full((64, 64, 3), 20, np.uint8), np.full((64, 64, 3), 230, np.uint8)]
    out, _ = paste_faces(photo, faces, [large, small], color_match=False)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert out[100, 105] == pytest.approx([20, 20, 20], abs=1)  # overlap: the larger face wins
    # values along a line stay between the pasted colours and the background (no double counting)
    assert out.min() >= 20 and out.max() <= 230
    # swapping the order of the inputs gives the same picture
    out2, _ = paste_faces(photo, faces[::-1], [small, large], color_match=False)
    np.testing.assert_array_equal(out, out2)


@pytest.mark.parametrize("cx, cy", [(0, 60), (119, 60), (60, 0), (60, 119), (0, 0), (-30, 60)])
def test_faces_on_the_border_paste_cleanly(cx, cy):
    photo = textured_background(120, 120, seed=1)
    affine, _ = face_affine(cx, cy, 30)
    crop = warp_face(photo, affine, 64)
    face = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)
    out, pasted = paste_faces(photo, [face], [affine], references=[crop])
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert pasted[0].shape == (64, 64, 3)
    covered = footprint(affine, 64, photo.shape)
    if covered.any():
        # colour matching brings the brightened face back near the original
        assert np.abs(out.astype(int) - photo.astype(int))[covered].mean() < 6


def test_face_entirely_outside_is_skipped():
    photo = textured_background(50, 50)
    affine, _ = face_affine(500, 500, 30)
    out, _ = paste_faces(photo, [np.zeros((64, 64, 3), np.uint8)], [affine], color_match=False)
    np.testing.assert_array_equal(out, photo)


@pytest.mark.parametrize("iod", [8, 300])  # crop shrinks a lot on the way back / face far larger than crop
def test_paste_scales_without_shifting(iod):
    size = 64
    photo = np.zeros((800, 800, 3), np.uint8)
    affine, points = face_affine(400, 400, iod, face_size=size)
    face = np.zeros((size, size, 3), np.uint8)
    nose = np.round(template_landmarks(size)[2]).astype(int)
    face[nose[1] - 2 : nose[1] + 3, nose[0] - 2 : nose[0] + 3] = 255  # a bright dot on the nose
    out = photo.copy()
    paste_face(out, face, affine, face_mask(size))
    ys, xs = np.nonzero(out[..., 0] > out[..., 0].max() * 0.5)
    assert abs(xs.mean() - points[2, 0]) < max(1.5, iod / 40) and abs(ys.mean() - points[2, 1]) < max(
        1.5, iod / 40
    )


def test_upscaled_canvas_uses_resized_affine():
    photo = textured_background(100, 150)
    affine, _ = face_affine(75, 50, 25)
    canvas = cv2.resize(photo, (300, 200), interpolation=cv2.INTER_LANCZOS4)
    face = np.full((64, 64, 3), 255, np.uint8)
    out, _ = paste_faces(canvas, [face], [resize_affine(affine, (100, 150), (200, 300))], color_match=False)
    assert out.shape == (200, 300, 3)
    assert tuple(out[100, 150]) == (255, 255, 255) and tuple(out[5, 5]) == tuple(canvas[5, 5])


def test_paste_faces_checks_its_inputs():
    photo = np.zeros((50, 50, 3), np.uint8)
    affine, _ = face_affine(25, 25, 10)
    with pytest.raises(ValueError, match="2 faces but 1 affines"):
        paste_faces(photo, [np.zeros((64, 64, 3), np.uint8)] * 2, [affine])
    with pytest.raises(ValueError, match="square HWC uint8"):
        paste_faces(photo, [np.zeros((64, 64, 3), np.float32)], [affine])


# ----------------------------------------------------------------------------- colour matching


@pytest.mark.parametrize("method", ["adain", "wavelet"])
def test_color_match_identity_and_shift_removal(method):
    crop = skimage.data.astronaut()[40:168, 150:278].copy()
    assert np.array_equal(match_color(crop, crop, method=method), crop)
    shifted = np.clip(crop.astype(int) * [1.0, 0.8, 1.1] + [20, -10, 5], 0, 255).astype(np.uint8)
    fixed = match_color(shifted, crop, method=method)
    before = np.abs(shifted.astype(int) - crop).mean()
    after = np.abs(fixed.astype(int) - crop).mean()
    assert after < before / 3


def test_color_match_keeps_restored_detail():
    rng = np.random.default_rng(0)
    reference = np.full((64, 64, 3), 100, np.uint8)
    restored = np.clip(150 + rng.normal(0, 10, (64, 64, 3)), 0, 255).astype(np.uint8)  # brighter, with detail
    out = match_color(restored, reference)
    assert abs(out.mean() - 100) < 2
    high = lambda x: x.astype(float) - cv2.GaussianBlur(x.astype(float), (0, 0), 2)
    assert np.corrcoef(high(out).ravel(), high(restored).ravel())[0, 1] > 0.95


def test_color_match_weights_and_errors():
    a = np.full((32, 32, 3), 50, np.uint8)
    b = np.full((32, 32, 3), 90, np.uint8)
    assert match_color(a, b, weights=np.ones((32, 32))).mean() == pytest.approx(90, abs=1)
    assert match_color(a, b, weights=np.zeros((32, 32))).mean() == pytest.approx(90, abs=1)
    with pytest.raises(ValueError, match="equal HWC"):
        match_color(a, b[:16])
    with pytest.raises(ValueError, match="method"):
        match_color(a, b, method="histogram")
