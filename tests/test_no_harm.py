"""Never worse: the per-face rule (face/no_harm.py) in the restorer, the CLI, the aligned path and video."""

import itertools
import json
import os

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from test_cli import run_cli

from osdface.face import Detection, FaceRestorer
from osdface.face.alignment import estimate_affine, warp_face
from osdface.face.no_harm import (
    NoHarm,
    band_change,
    detail,
    noise_sigma,
    summarize,
    top_octave_detail,
)
from osdface.face.paste import face_mask
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5

S = 64  # the stand-in model's face size


def blur_model(crops):
    """A stand-in model that only blurs (it cannot add detail)."""
    return [cv2.GaussianBlur(c, (0, 0), 1.5) for c in crops]


def identity_model(crops):
    return [c.copy() for c in crops]


class FixedDetector:
    def __init__(self, landmarks):
        self.landmarks = np.asarray(landmarks, float)

    def detect(self, image):
        p = self.landmarks
        centre, half = p.mean(0), 1.2 * np.ptp(p, axis=0).max()
        return [Detection(box=np.r_[centre - half, centre + half], score=0.99, landmarks5=p)]


class PixelIdentity:
    """A stand-in identity measure: mean |difference| / 100 of the two crops (0 for the same face)."""

    def distance(self, reference_crop, crop):
        crop = cv2.resize(crop, reference_crop.shape[1::-1]) if crop.shape != reference_crop.shape else crop
        return float(np.abs(reference_crop.astype(float) - crop.astype(float)).mean() / 100)


def astronaut(scale=1.0):
    photo = skimage.data.astronaut()
    if scale != 1:
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return photo, np.asarray(ASTRONAUT_LANDMARKS5, float) * scale


def soft(photo, side):
    """The photo with its detail cut to what ``side`` × ``side`` pixels hold (area down, bicubic back)."""
    h, w = photo.shape[:2]
    small = cv2.resize(photo, (side, side * h // w), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def face_region(photo, landmarks, size):
    """The face's aligned crop at ``size`` (for comparing outputs) and the ellipse mask."""
    affine = estimate_affine(landmarks, face_size=size)
    return warp_face(photo, affine, size).astype(np.float64), face_mask(size, "ellipse")


def psnr(a, b, mask):
    mse = float((((a - b) ** 2) * mask[..., None]).sum() / (mask.sum() * 3))
    return 99.0 if mse < 1e-10 else 10 * np.log10(255**2 / mse)


def restorer(model, no_harm, landmarks, **kw):
    return FaceRestorer(model, detector=FixedDetector(landmarks), face_size=S, no_harm=no_harm, **kw)


# ------------------------------------------------------------------------------------ measures


def test_noise_estimate_matches_the_noise_added():
    rng = np.random.default_rng(0)
    flat = np.full((256, 256), 128.0)
    for sigma in (2.0, 5.0, 10.0):
        assert noise_sigma(flat + rng.normal(0, sigma, flat.shape)) == pytest.approx(sigma, rel=0.05)
    assert noise_sigma(np.tile(np.linspace(0, 255, 256), (256, 1))) < 0.05  # a ramp is no noise


def test_top_octave_detail_tells_sharp_from_downscaled():
    face = warp_face(*astronaut()[:1], estimate_affine(ASTRONAUT_LANDMARKS5, face_size=128), 128)
    soft = cv2.resize(cv2.resize(face, (32, 32), interpolation=cv2.INTER_AREA), (128, 128), interpolation=cv2.INTER_CUBIC)
    rule = NoHarm()
    assert top_octave_detail(soft) < rule.detail_restore < rule.detail_keep < top_octave_detail(face)


def test_detail_is_the_mean_absolute_laplacian():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    luma = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    pad = np.pad(luma, 1, mode="reflect")  # cv2's default border (reflect 101)
    lap = pad[:-2, 1:-1] + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:] - 4 * luma
    assert detail(image, np.ones((32, 32))) == pytest.approx(np.abs(lap).mean(), rel=1e-4)


def test_band_change_formula():
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, (S, S, 3)).astype(np.uint8)
    restored = np.clip(crop.astype(int) + 10, 0, 255).astype(np.uint8)
    big = rng.integers(0, 256, (160, 160, 3)).astype(np.uint8)
    rule = NoHarm(noise_floor=1e9)  # high band kept whole
    change = band_change(crop, restored, big, 0.5, rule)
    expected = 0.5 * cv2.resize(restored.astype(np.float32) - crop.astype(np.float32), (160, 160),
                                interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(change, expected, atol=1e-4)
    assert not band_change(crop, crop, big, 1.0, rule).any()  # no model change: no change at all
    assert not band_change(crop, restored, big, 0.0, rule).any()  # kept: no change at all


def test_wiener_gain_damps_noise_and_keeps_edges():
    rng = np.random.default_rng(3)
    high = rng.normal(0, 4.0, (128, 128, 3)).astype(np.float32)
    high[:, 60:68] += 80.0  # a strong edge pair
    high[:, 68:76] -= 80.0
    gain, sigma = NoHarm().high_band_gain(high, np.ones((128, 128), np.float32))
    assert sigma == pytest.approx(4.0 * 0.95, rel=0.2)
    assert gain[10:118, 10:40].mean() < 0.35 and gain[10:118, 62:74].mean() > 0.9


def test_summary_groups_reasons_with_sizes():
    faces = [{"action": "kept", "reason": "already sharper than the model", "native_size": 612, "model_size": 128},
             {"action": "restored", "native_size": 100, "model_size": 128},
             {"action": "kept", "reason": "already sharper than the model", "native_size": 300, "model_size": 128}]
    assert summarize(faces) == ("1 restored, 2 kept as it was: already sharper than the model "
                                "(300–612-px faces, 128-px model)")


# ------------------------------------------------------------------------------------ the restorer


def test_sharp_large_face_keeps_its_high_band():
    photo, landmarks = astronaut()  # a sharp face about 200 px across: 3× the stand-in model's size
    before, mask = face_region(photo, landmarks, 200)
    old = restorer(blur_model, None, landmarks)(photo)
    new = restorer(blur_model, NoHarm(), landmarks)(photo)
    old_face, new_face = face_region(old.image, landmarks, 200)[0], face_region(new.image, landmarks, 200)[0]
    assert detail(old_face) < 0.5 * detail(before)  # the old path: the model's size, upsampled
    assert psnr(new_face, before, mask) >= 38 and detail(new_face) >= 0.9 * detail(before)
    verdict = new.faces[0].verdict
    assert verdict.fusion == "bands" and verdict.native_size > 2.5 * S and verdict.action == "kept"
    assert np.array_equal(new.image, photo)  # kept: pixel for pixel


def test_blurred_large_face_gets_the_model_in_its_band_and_the_input_above():
    photo, landmarks = astronaut()
    blurred = soft(photo, 64)  # ~20 px of detail in a ~170 px face
    brighten = lambda crops: [np.clip(c.astype(int) + 20, 0, 255).astype(np.uint8) for c in crops]
    result = restorer(brighten, NoHarm(), landmarks, color_match=False)(blurred)
    verdict = result.faces[0].verdict
    assert verdict.action == "restored" and verdict.model_weight == 1.0 and verdict.fusion == "bands"
    out, mask = face_region(result.image, landmarks, 200)
    before = face_region(blurred, landmarks, 200)[0]
    inner = mask > 0.99
    assert abs((out - before)[inner].mean() - 20) < 1.0  # the model's change, added at the face's own size


def test_small_degraded_face_goes_through_as_before():
    photo, landmarks = astronaut(0.25)  # a ~43 px face: below the model's size
    photo = soft(photo, 48)
    old = restorer(blur_model, None, landmarks)(photo)
    new = restorer(blur_model, NoHarm(), landmarks)(photo)
    assert new.faces[0].verdict.fusion == "none" and new.faces[0].verdict.action == "restored"
    assert np.array_equal(old.image, new.image)


def test_sharp_face_at_the_models_size_is_kept_and_a_soft_one_restored():
    """At n ≈ S the face is restored whole (no band fusion): a sharp one is kept as it was (its top-octave
    detail is above the at-size pair), the same face with its detail cut to a quarter is restored."""
    photo, landmarks = astronaut(66 / 171)  # the face's aligned crop ≈ 66 px, the stand-in model's 64
    sharp = restorer(blur_model, NoHarm(), landmarks)(photo)
    verdict = sharp.faces[0].verdict
    assert verdict.fusion == "none" and S <= verdict.native_size <= 1.1 * S
    assert verdict.input_detail > NoHarm().at_size_keep and verdict.action == "kept"
    assert verdict.reason == "already sharp, noisy or blocky at the model's size"
    assert np.array_equal(sharp.image, photo)  # kept: not pasted at all
    assert not np.array_equal(restorer(blur_model, None, landmarks)(photo).image, photo)  # (without the rule: blurred)
    blurred = soft(photo, photo.shape[1] // 4)
    restored = restorer(blur_model, NoHarm(), landmarks)(blurred)
    verdict = restored.faces[0].verdict
    assert verdict.input_detail < NoHarm().at_size_restore and verdict.action == "restored"
    assert np.array_equal(restored.image, restorer(blur_model, None, landmarks)(blurred).image)


def test_a_face_sharp_or_blocky_at_half_a_256_model_is_kept_and_a_soft_one_restored():
    """Models of 256 px and more also measure a face ≤ 1.1·S at S/2: a 204-px face, sharp or JPEG q30 at its
    own size, reads below the at-size pair (α > 0 from it alone) but is already sharp at 128: kept, pixel for
    pixel; the same face with its detail cut to a quarter is restored as without the rule. Below
    ``half_size_from`` the check is off."""
    photo, landmarks = astronaut(204 / 171)  # the face's aligned crop ≈ 204 px, the stand-in model's 256
    _, buf = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    blocky = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    rule = NoHarm()
    for image in (photo, blocky):
        result = FaceRestorer(blur_model, FixedDetector(landmarks), face_size=256, no_harm=rule)(image)
        verdict = result.faces[0].verdict
        assert verdict.fusion == "none" and 0.75 * 256 <= verdict.native_size <= 0.85 * 256
        assert rule.weight_from_detail(verdict.input_detail, at_size=True) > 0  # the at-size pair alone: changed
        assert verdict.input_detail_half > rule.half_size_keep and verdict.action == "kept"
        assert verdict.reason == "already sharp, noisy or blocky at half the model's size"
        assert np.array_equal(result.image, image)
        off = FaceRestorer(blur_model, FixedDetector(landmarks), face_size=256, no_harm=NoHarm(half_size_from=512))
        assert off(image).faces[0].verdict.model_weight > 0 and off(image).faces[0].verdict.input_detail_half is None
    blurred = soft(photo, photo.shape[1] // 4)
    restored = FaceRestorer(blur_model, FixedDetector(landmarks), face_size=256, no_harm=rule)(blurred)
    assert restored.faces[0].verdict.action == "restored"
    plain = FaceRestorer(blur_model, FixedDetector(landmarks), face_size=256)(blurred)
    assert np.array_equal(restored.image, plain.image)


def test_the_weight_is_linear_between_each_pair_of_thresholds():
    rule = NoHarm(detail_restore=0.004, detail_keep=0.010, at_size_restore=0.016, at_size_keep=0.024,
                  half_size_restore=0.012, half_size_keep=0.020)
    for at_size, half, (low, high) in ((False, False, (0.004, 0.010)), (True, False, (0.016, 0.024)),
                                       (True, True, (0.012, 0.020)), (False, True, (0.012, 0.020))):
        for t in np.linspace(0, 0.04, 41):
            expected = 1.0 if t <= low else (0.0 if t >= high else (high - t) / (high - low))
            assert rule.weight_from_detail(t, at_size, half) == pytest.approx(expected, abs=1e-9)
    big = np.zeros((256, 256, 3), np.uint8)
    assert rule.detail_weight(big, 200, 0.0, 0.016) == pytest.approx(0.5)  # a model of 256: capped at S/2
    assert rule.detail_weight(big, 600, 0.0, 0.018) == pytest.approx(0.25)  # larger faces too
    assert rule.detail_weight(big, 600, 0.0, 0.0) == 1.0
    assert rule.half_size_detail(big) == 0.0 and rule.half_size_detail(big[:128, :128]) is None  # off below 256
    with pytest.raises(ValueError, match="half_size_restore < half_size_keep"):
        NoHarm(half_size_restore=0.03, half_size_keep=0.02)
    crop = np.zeros((S, S, 3), np.uint8)
    assert rule.detail_weight(crop, 1.05 * S, 0.02) == pytest.approx(0.5)  # below 1.1·S: the at-size pair
    assert rule.detail_weight(crop, 1.2 * S, 0.02) == 0.0  # larger: the band-fusion pair
    assert NoHarm(enabled=False).weight_from_detail(0.5, True) == 1.0
    with pytest.raises(ValueError, match="at_size_restore < at_size_keep"):
        NoHarm(at_size_restore=0.03, at_size_keep=0.02)


def test_rule_off_pastes_like_before_with_a_verdict():
    photo, landmarks = astronaut()
    old = restorer(blur_model, None, landmarks)(photo)
    off = restorer(blur_model, NoHarm(enabled=False), landmarks)(photo)
    assert np.array_equal(old.image, off.image)
    assert off.faces[0].verdict.fusion == "none" and off.faces[0].verdict.model_weight == 1.0


def test_identity_guard_catches_a_swapped_face_and_keeps_the_input():
    photo, landmarks = astronaut(0.25)
    photo = soft(photo, 48)
    other = np.full((S, S, 3), 30, np.uint8)
    swap = lambda crops: [other.copy() for _ in crops]
    rule = NoHarm(enabled=False, identity=PixelIdentity(), identity_guard=0.05)  # the guard alone
    result = restorer(swap, rule, landmarks, color_match=False)(photo)
    verdict = result.faces[0].verdict
    assert verdict.identity_before_guard > 0.05 >= verdict.identity
    assert verdict.action in ("kept", "blended") and "identity guard" in verdict.reason
    if verdict.action == "kept":
        assert np.array_equal(result.image, photo)
    # the same face under a looser threshold is restored as the model gave it
    loose = restorer(swap, NoHarm(enabled=False, identity=PixelIdentity(), identity_guard=5.0), landmarks,
                     color_match=False)(photo)
    assert loose.faces[0].verdict.action == "restored"


def test_identity_guard_blends_until_under_the_threshold():
    rng = np.random.default_rng(4)
    crop = rng.integers(60, 200, (S, S, 3)).astype(np.uint8)
    restored = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)  # distance 0.40
    verdict = NoHarm(identity=PixelIdentity(), identity_guard=0.15).assess(crop, restored, S)
    assert verdict.action == "blended" and verdict.model_weight == 0.25  # 0.40 → 0.20 → 0.10
    blended = np.clip(np.rint(crop + 0.25 * (restored.astype(float) - crop)), 0, 255).astype(np.uint8)
    assert verdict.identity == pytest.approx(PixelIdentity().distance(crop, blended))


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "hires")),
                    reason="needs ../shared/data/hires")
def test_real_identity_guard_catches_another_person():
    dlib_identity = pytest.importorskip("osdface.models.dlib_identity")
    if not dlib_identity.identity_available():
        if os.environ.get("CI"):
            pytest.fail(dlib_identity.IDENTITY_MISSING)
        pytest.skip(dlib_identity.IDENTITY_MISSING)
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "hires", "ffhq512")
    a, b = (np.asarray(Image.open(os.path.join(root, f"{n}.jpg")).convert("RGB").resize((128, 128), Image.LANCZOS))
            for n in ("00010", "00011"))
    rule = NoHarm(enabled=False, identity=dlib_identity.DlibIdentity(), identity_guard=0.5)  # the guard alone
    swapped = rule.assess(a, b, 128)
    assert swapped.identity_before_guard > 0.5 and swapped.action in ("kept", "blended")
    same = rule.assess(a, cv2.GaussianBlur(a, (0, 0), 0.6), 128)
    assert same.action == "restored" and same.identity < 0.5


# ------------------------------------------------------------------------------------ the command line


@pytest.fixture()
def guards_default(monkeypatch):
    monkeypatch.delenv("OSDFACE_DETAIL_GUARD", raising=False)
    monkeypatch.delenv("OSDFACE_IDENTITY_GUARD", raising=False)


@pytest.mark.parametrize("flags, words", [
    (["--identity-guard", "-1"], "--identity-guard must be"),
    (["--identity-guard", "abc"], "--identity-guard must be"),
    (["--identity-guard", "nan"], "--identity-guard must be"),
    (["--detail-guard", "maybe"], "--detail-guard must be"),
])
def test_bad_guard_values_are_one_error_line(tmp_path, capsys, flags, words, tiny_model_dir):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    code, err = run_cli(["restore", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                         "--aligned", *flags], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
    assert not (tmp_path / "out").exists()


def test_guards_are_on_by_default_and_say_when_identity_is_missing(tmp_path, capsys, guards_default, monkeypatch,
                                                                   tiny_model_dir):
    from osdface.models import dlib_identity

    monkeypatch.setattr(dlib_identity, "identity_available", lambda: False)
    crop = np.asarray(Image.fromarray(skimage.data.astronaut()).crop((140, 40, 300, 200)).resize((160, 160)))
    Image.fromarray(crop).save(tmp_path / "a.png")
    code, err = run_cli(["restore", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                         "--aligned", "-q", "--report", tmp_path / "r.json"], capsys)
    assert code == 0, err
    assert "note: identity guard off: the identity measure needs the 'identity' extra" in err
    verdict = json.loads((tmp_path / "out" / "a.json").read_text())["faces"][0]
    assert verdict["native_size"] == 160 and verdict["model_size"] < 144 and verdict["fusion"] == "bands"
    assert {"detail_before", "detail_after", "identity", "action", "model_weight", "noise"} <= set(verdict)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["faces"][0]["file"].endswith("a.png") and report["faces"][0]["action"] == verdict["action"]
    assert "faces: " in err
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert out.shape == (160, 160, 3)  # an aligned crop larger than the model keeps its size
    # an explicit threshold without the extra is an error, before any model loads
    code, err = run_cli(["restore", tmp_path / "a.png", "-o", tmp_path / "out2", "--weights", tiny_model_dir,
                         "--aligned", "--identity-guard", "0.6"], capsys)
    assert code == 2 and "pip install 'osdface[identity]'" in err


def test_photo_sidecar_and_summary_carry_the_verdict(tmp_path, capsys, guards_default, tiny_model_dir):
    photo, _ = astronaut()
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    code, err = run_cli(["restore", tmp_path / "astronaut.png", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                         "--identity-guard", "off", "-q"], capsys)
    if code == 0 and "no face found" in err:
        pytest.skip("MTCNN weights not installed")
    assert code == 0, err
    face = json.loads((tmp_path / "out" / "astronaut.json").read_text())["faces"][0]
    assert face["verdict"]["action"] == "kept" and face["verdict"]["fusion"] == "bands"
    assert "kept as it was: already sharper than the model" in err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "astronaut.png")), photo)


# ------------------------------------------------------------------------------------ video


def test_video_weight_is_one_decision_per_track():
    from osdface.video.restorer import PROMPT_WINDOW, WeightSmoother

    smooth = WeightSmoother()
    seq = [1.0, 0.0, 1.0, 0.0] * 5
    out = [smooth(7, w) for w in seq]
    for t in range(len(seq)):  # the mean of the last PROMPT_WINDOW values: a plain loop as the reference
        window = seq[max(0, t + 1 - PROMPT_WINDOW):t + 1]
        assert out[t] == pytest.approx(sum(window) / len(window))
    assert max(out[PROMPT_WINDOW:]) - min(out[PROMPT_WINDOW:]) < 0.2  # no switching from frame to frame
    assert smooth(8, 0.3) == 0.3  # tracks are independent


# ------------------------------------------------------------------------------------ the page


def test_page_captions_carry_the_verdict(tiny_pipe, tmp_path):
    from osdface.ui.jobs import Options, RestoreService, Upload

    root = tmp_path / "uploads"
    (root / "h0").mkdir(parents=True)
    crop = np.asarray(Image.fromarray(skimage.data.astronaut()).crop((140, 40, 300, 200)).resize((160, 160)))
    Image.fromarray(crop).save(root / "h0" / "face.png")
    service = RestoreService(tiny_pipe, upload_root=root, no_harm=NoHarm())
    try:
        job = service.run([Upload(root / "h0" / "face.png", "face.png")], Options(aligned=True))
        face = job.photos[0].faces[0]
        assert face.verdict["native_size"] == 160 and face.verdict["action"] in ("kept", "blended", "restored")
        assert f"160-px face, {tiny_pipe.sample_size}-px model · {face.verdict['action']}" in face.caption
        assert job.photos[0].size == (160, 160)  # the crop keeps its size
    finally:
        service.close()


def test_auto_identity_guard_is_the_calibration_by_model_size():
    from osdface.face.no_harm import IDENTITY_GUARD_CALIBRATION, auto_identity_guard

    for size, value in IDENTITY_GUARD_CALIBRATION:
        assert auto_identity_guard(size) == pytest.approx(value)
    assert auto_identity_guard(64) == pytest.approx(0.70) and auto_identity_guard(1024) == pytest.approx(0.59)
    assert auto_identity_guard(256) == pytest.approx((0.70 + 0.59) / 2)  # halfway in log2(size)
    rule = NoHarm(identity=PixelIdentity(), identity_guard="auto")
    assert rule.guard_for(128) == 0.70 and rule.guard_for(512) == 0.59


def test_video_uses_the_same_rule_once_per_track():
    pytest.importorskip("av")
    from test_video import CropPatternPipe, ScriptedDetector

    from osdface.face.synthetic import FacePlacement, compose_group_photo
    from osdface.video.io import Frame
    from osdface.video.restorer import PROMPT_WINDOW, Stabilisers, VideoFaceRestorer

    sharp, (lm,) = compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(100, 100, 170)],
                                       200, 200, seed=0)
    n = 16
    frames = [Frame(i, i, sharp if i < n // 2 else soft(sharp, 12)) for i in range(n)]  # sharp, then blurred
    plan = [[Detection([10, 10, 190, 190], 0.99, lm)] for _ in range(n)]
    pipe = CropPatternPipe()
    faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=pipe.sample_size,
                         min_face_size=1, no_harm=NoHarm())
    out = list(VideoFaceRestorer(pipe, faces, Stabilisers.off(), batch_size=4)(frames))
    weights = [r.faces[0].verdict.model_weight for r in out]
    raw = [NoHarm().weight_from_detail(top_octave_detail(r.faces[0].cropped)) for r in out]
    assert raw[: n // 2] == [0.0] * (n // 2) and min(raw[n // 2:]) > 0.3  # per frame: kept, then (partly) restored
    for t in range(n):  # per track: the mean of the last PROMPT_WINDOW frames' weights
        window = raw[max(0, t + 1 - PROMPT_WINDOW):t + 1]
        assert weights[t] == pytest.approx(sum(window) / len(window))
    assert all(np.array_equal(r.rgb, sharp) for r in out[: n // 2])  # kept frames: the input itself
    assert all(b >= a for a, b in itertools.pairwise(weights))  # a ramp, no switching back and forth


def test_video_identity_guard_is_measured_per_track_every_window():
    """In video the identity guard is one decision per track: measured at the track's first restored frame
    and at every PROMPT_WINDOW-th frame number, its halvings applied to the frames between; a photo-style
    measurement of every frame would halve α the same way here (the change is the same every frame)."""
    pytest.importorskip("av")
    from test_video import CropPatternPipe, ScriptedDetector

    from osdface.face.synthetic import FacePlacement, compose_group_photo
    from osdface.video.io import Frame
    from osdface.video.restorer import PROMPT_WINDOW, Stabilisers, VideoFaceRestorer

    photo, (lm,) = compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(100, 100, 170)],
                                       200, 200, seed=0)
    n = 19
    frames = [Frame(i, i, soft(photo, 12)) for i in range(3, 3 + n)]  # starts at frame 3: measured at 3, 8, 16
    plan = [[Detection([10, 10, 190, 190], 0.99, lm)] for _ in range(3 + n)]

    class CountingIdentity(PixelIdentity):
        calls = 0

        def distance(self, reference_crop, crop):
            CountingIdentity.calls += 1
            return super().distance(reference_crop, crop)

    pipe = CropPatternPipe()
    rule = NoHarm(enabled=False, identity=CountingIdentity(), identity_guard=0.05)
    faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=pipe.sample_size,
                         min_face_size=1, no_harm=rule)
    out = list(VideoFaceRestorer(pipe, faces, Stabilisers.off(), batch_size=4)(frames))
    verdicts = [r.faces[0].verdict for r in out]
    measured = [r.index for r, v in zip(out, verdicts) if v.identity is not None]
    assert measured == [3, 8, 16] and PROMPT_WINDOW == 8
    halvings = {v.guard_halvings for v in verdicts}
    assert len(halvings) == 1 and 0 < halvings.pop() < 7  # the guard acted, the same way on every frame
    assert len({round(v.model_weight, 6) for v in verdicts}) == 1
    first = verdicts[0]
    assert first.identity <= 0.05 < first.identity_before_guard
    assert CountingIdentity.calls == 3 * (1 + first.guard_halvings)  # only the measured frames cost a call


class SizePipe:
    """A stand-in pipeline for ``restore_aligned_faces``: shifts every crop by ``shift`` at its face size."""

    def __init__(self, size, shift):
        import torch

        self.sample_size, self.shift, self.device, self.small_faces, self.calls = size, shift, torch.device("cpu"), None, []

    def __call__(self, images, **kw):
        from types import SimpleNamespace

        self.calls.append([im.shape[0] for im in images])
        out = [cv2.resize(im, (self.sample_size,) * 2, interpolation=cv2.INTER_AREA) for im in images]
        return SimpleNamespace(images=[np.clip(o.astype(np.int16) + self.shift, 0, 255).astype(np.uint8) for o in out])


def test_aligned_crops_go_to_the_small_face_model_by_their_side():
    """With ``pipe.small_faces``, an aligned crop of side ≤ up_to is restored by the small model, at its size
    and with its verdict; the others as without the pairing."""
    from osdface.photos import restore_aligned_faces

    crops = [astronaut_crop(side) for side in (40, 100, 64, 30)]
    large, small = SizePipe(64, 20), SizePipe(32, -20)
    rule = NoHarm(enabled=False)
    alone = restore_aligned_faces(large, crops, no_harm=rule)
    large.small_faces = (small, 50)
    paired = restore_aligned_faces(large, crops, no_harm=rule)
    assert len(large.calls[-1]) == 2 and small.calls == [[32, 32]]  # two crops each, at each model's size
    for k in (1, 2):  # the large ones: as without the pairing
        np.testing.assert_array_equal(paired[k][0], alone[k][0])
    for k in (0, 3):  # the small ones: the small model's output at 32 px, and its verdict
        assert paired[k][0].shape == (32, 32, 3) and paired[k][1].model_size == 32
        shrink = cv2.INTER_AREA if crops[k].shape[0] > 32 else cv2.INTER_CUBIC
        expected = SizePipe(32, -20)([cv2.resize(crops[k], (32, 32), interpolation=shrink)]).images[0]
        np.testing.assert_array_equal(paired[k][0], expected)


def astronaut_crop(side):
    photo = skimage.data.astronaut()
    return warp_face(photo, estimate_affine(ASTRONAUT_LANDMARKS5, face_size=side), side)
