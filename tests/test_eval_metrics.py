"""Deg., LMD and FID: definitions, preprocessing and numerics with tiny random-weight networks (CPU, offline)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from osdface.errors import WeightsFormatError, WeightsNotFoundError
from osdface.metrics.fid import (
    FIDStats,
    extract_features,
    fid_from_stats,
    fid_input,
    folder_stats,
    frechet_distance,
    frechet_distance_low_rank,
    load_fid_stats,
    save_fid_stats,
    stats_from_features,
)
from osdface.metrics.identity import compute_deg, deg_input, embedding_angle, read_gray, summarize_deg
from osdface.metrics.landmarks import (
    compute_lmd,
    detect_landmarks,
    fan_input,
    heatmaps_to_landmarks,
    landmark_distance,
)
from osdface.models.arcface import ResNetArcFace
from osdface.models.fan import FAN
from osdface.models.inception import FIDInceptionV3


class ForeignObject:
    """Stands for an arbitrary class inside a pickle (must never be instantiated by the loader)."""


def faces(n: int, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Smooth random uint8 RGB images, all different."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.float32)
        big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 8, (size, size, 3))
        out.append(np.clip(big, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def arcface():
    torch.manual_seed(0)
    return ResNetArcFace(channels=(8, 8, 16, 16), embedding_dim=32).eval()  # real 128×128 input


@pytest.fixture(scope="module")
def fan():
    torch.manual_seed(1)
    return FAN(num_stacks=1, width=8, depth=4, input_size=256).eval()  # real 256 input, 64×64 heatmaps


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(2)
    model = FIDInceptionV3().eval()
    for m in model.modules():  # He init: random features of order 1 (the default init makes them ~1e-7)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model


# ----------------------------------------------------------------------------- Deg.


def test_deg_preprocessing_is_vqfr(tmp_path):
    """cv2.imread(path, 0) → cv2.resize 128 INTER_LINEAR → (x − 127.5) / 127.5, 1×128×128."""
    im = faces(1, size=200)[0]
    Image.fromarray(im).save(tmp_path / "a.png")
    Image.fromarray(im).save(tmp_path / "a.jpg", quality=80)
    for name in ("a.png", "a.jpg"):
        gray = read_gray(tmp_path / name)
        assert np.array_equal(gray, cv2.imread(str(tmp_path / name), 0))
        x = deg_input(gray)
        ref = (cv2.resize(gray, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 127.5) / 127.5
        assert x.shape == (1, 128, 128) and x.dtype == torch.float32
        assert np.array_equal(x[0].numpy(), ref)
        assert -1.0 <= x.min() and x.max() <= 1.0


def test_deg_identical_symmetric_and_bounded(tmp_path, arcface):
    images = faces(4, seed=1)
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    same = compute_deg(paths, paths, model=arcface)
    assert np.array_equal(same, np.zeros(4))  # exactly 0, not ~1e-6 or NaN
    ab = compute_deg(paths, paths[::-1], model=arcface)
    ba = compute_deg(paths[::-1], paths, model=arcface)
    assert np.allclose(ab, ba[::-1]) and np.all((ab >= 0) & (ab <= 180)) and np.all(ab[[0, 3]] > 0)
    # in-memory RGB arrays take the BT.601 gray; identical arrays are still exactly 0
    assert np.array_equal(compute_deg(images, images, model=arcface, batch_size=3), np.zeros(4))


def test_embedding_angle_definition():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    b = np.array([[0.0, 1.0], [-1.0, -1.0], [1.0, 1e-9], [0.0, 1.0]])
    assert np.allclose(embedding_angle(a, b), [90.0, 180.0, 0.0, 0.0], atol=1e-6)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 512)), rng.normal(size=(50, 512))
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert np.allclose(embedding_angle(x, y), np.degrees(np.arccos(cos)), atol=1e-9)


def test_deg_mean_excludes_identical_pairs_as_vqfr():
    s = summarize_deg([0.0, 0.5, 30.0, 60.0, float("nan")])
    assert s.mean == pytest.approx(45.0) and s.n == 2 and s.excluded == 2 and s.n_missing == 1
    assert "2 pair(s) with deg < 1" in s.note()
    keep = summarize_deg([0.0, 0.5, 30.0, 60.0], exclude_below=None)
    assert keep.mean == pytest.approx(22.625) and keep.excluded == 0


def test_deg_default_weights_missing_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "metrics")):
        compute_deg(faces(1), faces(1))


# ----------------------------------------------------------------------------- LMD


def test_landmark_distance_known_shift():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 512, (2, 98, 2))
    assert np.array_equal(landmark_distance(lm, lm), np.zeros(2))
    shifted = lm + np.array([3.0, 4.0])  # every point moves by 5 px
    assert np.allclose(landmark_distance(lm, shifted), [5.0, 5.0])
    half = lm.copy()
    half[:, :49] += np.array([6.0, 8.0])  # half the points move by 10 px → mean 5
    assert np.allclose(landmark_distance(half, lm), [5.0, 5.0])
    assert landmark_distance(lm[0], shifted[0]) == pytest.approx(5.0)


def test_heatmap_peaks_to_image_pixels():
    """A known peak at heatmap (x=10, y=20) of 64×64 → (10.5·8, 20.5·8) at 512 px, sub-pixel step included."""
    hm = np.zeros((1, 2, 64, 64))
    hm[0, 0, 20, 10] = 1.0
    hm[0, 1, 30, 40], hm[0, 1, 30, 41], hm[0, 1, 29, 40] = 1.0, 0.3, 0.2  # right and up larger
    pts = heatmaps_to_landmarks(hm, [(512, 512)])
    assert pts[0, 0].tolist() == [84.0, 164.0]
    assert pts[0, 1].tolist() == [(40 + 0.25 + 0.5) * 8, (30 - 0.25 + 0.5) * 8]
    assert heatmaps_to_landmarks(hm, [(256, 128)])[0, 0].tolist() == [10.5 * 2, 20.5 * 4]  # (H, W) = (256, 128)


def test_fan_preprocessing_and_lmd(fan):
    images = faces(3, size=512, seed=2)
    x = fan_input(images[0])
    ref = cv2.resize(images[0], (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) / 255.0
    assert x.shape == (3, 256, 256) and torch.allclose(x, torch.from_numpy(ref).float())
    lm = detect_landmarks(fan, images, batch_size=2)
    assert lm.shape == (3, 98, 2) and lm.min() >= 0 and lm.max() <= 512
    assert np.array_equal(compute_lmd(images, images, model=fan), np.zeros(3))
    d = compute_lmd(images, images[::-1], model=fan)
    assert d[1] == 0 and np.all(d >= 0) and d[0] == pytest.approx(d[2])


# ----------------------------------------------------------------------------- FID


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0, 0.5])
    d1, d2 = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 1.0, 0.25])
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    for method in ("sqrtm", "eigh", "auto"):
        assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2), method=method) == pytest.approx(closed, rel=1e-12)
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(400, 16)), rng.normal(size=(300, 16)) * 1.5 + 0.3
    s1, s2 = stats_from_features(f1), stats_from_features(f2)
    assert frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, method="sqrtm") == pytest.approx(
        frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, method="eigh"), rel=1e-9)
    assert frechet_distance(s1.mu, s1.sigma, s1.mu, s1.sigma) == pytest.approx(0.0, abs=1e-9)
    # the low-rank identity used for small sets equals the covariance route (n < D: singular covariances)
    g1, g2 = rng.normal(size=(8, 50)), rng.normal(size=(6, 50)) + 0.2
    t1, t2 = stats_from_features(g1), stats_from_features(g2)
    expected = frechet_distance(t1.mu, t1.sigma, t2.mu, t2.sigma, method="eigh")
    assert frechet_distance_low_rank(g1, t2.mu, t2.sigma) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_low_rank(g2, t1.mu, t1.sigma) == pytest.approx(expected, rel=1e-6)
    assert fid_from_stats(t1, t2) == pytest.approx(expected, rel=1e-6)
    assert fid_from_stats(t1, FIDStats(t2.mu, t2.sigma)) == pytest.approx(expected, rel=1e-6)  # file: no features


def test_fid_preprocessing_modes():
    im = faces(1, size=64)[0]
    clean = fid_input([im], "clean")[0]
    ref = np.stack([np.asarray(Image.fromarray(im[..., c].astype(np.float32)).resize((299, 299),
                                                                                              Image.BICUBIC))
                    for c in range(3)])
    assert torch.allclose(clean, (torch.from_numpy(ref) - 128) / 128)
    pt = fid_input([im], "pytorch-fid")[0]
    x01 = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
    ref_pt = torch.nn.functional.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False)[0] * 2 - 1
    assert torch.allclose(pt, ref_pt) and pt.shape == (3, 299, 299)
    with pytest.raises(ValueError, match="mode"):
        fid_input([im], "legacy")


def test_fid_of_a_set_with_itself_is_zero(inception, tmp_path):
    images = faces(5, size=64, seed=4)
    feats = extract_features(inception, images, "clean", batch_size=3, size=75)
    assert feats.shape == (5, 2048) and feats.dtype == np.float64
    same = stats_from_features(feats)
    assert fid_from_stats(same, same) == pytest.approx(0.0, abs=1e-7 * np.trace(same.sigma))
    again = stats_from_features(extract_features(inception, images[::-1], "clean", batch_size=2, size=75))
    assert fid_from_stats(same, again) == pytest.approx(0.0, abs=1e-7 * np.trace(same.sigma))  # order-free
    other = stats_from_features(extract_features(inception, faces(5, size=64, seed=5), "clean", size=75))
    assert fid_from_stats(same, other) > 1e-3 * np.trace(same.sigma)
    # statistics files: clean-fid .npz (mu, sigma) round trip; basicsr pickle of numpy mean/cov
    save_fid_stats(tmp_path / "ref.npz", same)
    loaded = load_fid_stats(tmp_path / "ref.npz")
    assert np.array_equal(loaded.mu, same.mu) and loaded.mode == "clean"
    torch.save({"mean": same.mu, "cov": same.sigma}, tmp_path / "inception_FFHQ_512.pth")
    basicsr = load_fid_stats(tmp_path / "inception_FFHQ_512.pth")
    assert np.array_equal(basicsr.sigma, same.sigma) and basicsr.mode == "pytorch-fid"


def test_fid_stats_files_errors_and_folder_stats(tmp_path, inception):
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(WeightsFormatError, match="mu/sigma"):
        load_fid_stats(tmp_path / "bad.npz")
    with pytest.raises(WeightsNotFoundError, match="ffhq_clean_trainval70k_512.npz"):
        load_fid_stats(tmp_path / "missing.npz")

    torch.save({"mean": ForeignObject(), "cov": np.eye(2)}, tmp_path / "evil.pth")  # refused, never run
    with pytest.raises(WeightsFormatError, match="not a FID statistics file"):
        load_fid_stats(tmp_path / "evil.pth")
    folder = tmp_path / "ref"
    folder.mkdir()
    for i, im in enumerate(faces(3, size=80, seed=7)):
        Image.fromarray(im).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"no")
    stats, problems = folder_stats(folder, inception, "pytorch-fid")
    assert stats.n == 3 and stats.mode == "pytorch-fid" and len(problems) == 1 and "broken.png" in problems[0]
    assert isinstance(stats, FIDStats) and not math.isnan(stats.sigma.sum())
