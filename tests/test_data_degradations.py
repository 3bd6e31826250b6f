"""Degradation model: each step has the measurable effect it claims, params stay in range, runs repeat."""

import itertools
import json
import math

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from osdface.data.degradations import (
    PRESETS,
    DegradationConfig,
    StageConfig,
    as_degradation_config,
    degrade,
    get_preset,
    rng_for,
    sample_stage_params,
    target_for,
)
from osdface.data.kernels import gaussian_kernel, gaussian_kernel_1d, kernel_covariance, kernel_moments

OFF = {"blur_sigma": None, "downsample_range": None, "noise_range": None, "jpeg_range": None}


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return skdata.astronaut()  # 512x512 RGB, one frontal face


def only(**stage) -> DegradationConfig:
    """A config with every step off except the given ranges."""
    return DegradationConfig(name="test", stage=StageConfig(**{**OFF, **stage}))


def laplacian_var(img: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


# ----------------------------------------------------------------------------- kernels


def test_kernel_normalised_and_shaped_as_its_covariance():
    k = gaussian_kernel(41, 4.0, 1.5, math.radians(30))
    assert k.shape == (41, 41) and k.dtype == np.float32 and k.min() >= 0
    assert abs(float(k.sum()) - 1.0) < 1e-5
    np.testing.assert_allclose(kernel_moments(k), kernel_covariance(4.0, 1.5, math.radians(30)), atol=0.02)
    # anisotropic: elongated along 30°, so its principal axis is rotated, not axis-aligned
    eigval, eigvec = np.linalg.eigh(kernel_moments(k))
    angle = math.degrees(math.atan2(eigvec[1, 1], eigvec[0, 1])) % 180
    assert abs(angle - 30) < 1.0 and eigval[1] / eigval[0] > 6


def test_isotropic_kernel_is_separable():
    np.testing.assert_allclose(
        np.outer(gaussian_kernel_1d(21, 2.5), gaussian_kernel_1d(21, 2.5)),
        gaussian_kernel(21, 2.5),
        atol=1e-7,
    )
    with pytest.raises(ValueError):
        gaussian_kernel(40, 1.0)


# ----------------------------------------------------------------------------- each step's effect


def test_blur_lowers_high_frequencies_more_with_larger_sigma(face):
    energies = [laplacian_var(face)]
    for sigma in (0.8, 2.0, 5.0):
        lq, params = degrade(
            face, only(blur_sigma=(sigma, sigma), kernel_types=("iso",), kernel_probs=(1,)), rng_for(0)
        )
        assert params["stages"][0]["sigma_x"] == sigma
        energies.append(laplacian_var(lq))
    assert all(a > 1.5 * b for a, b in itertools.pairwise(energies)), energies


def test_anisotropic_blur_smooths_along_its_long_axis_and_rotates():
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # isotropic texture
    checked = 0
    for rotation, swap in ((0.0, False), (math.pi / 2, True)):
        cfg = only(
            blur_sigma=(0.7, 4.0),
            kernel_types=("aniso",),
            kernel_probs=(1,),
            rotation_range=(rotation, rotation),
        )
        for seed in range(10):
            lq, params = degrade(noise, cfg, rng_for(seed))
            p = params["stages"][0]
            if abs(p["sigma_x"] - p["sigma_y"]) < 1.0:
                continue
            gx = np.abs(np.diff(lq.astype(float), axis=1)).mean()  # detail left along x (columns)
            gy = np.abs(np.diff(lq.astype(float), axis=0)).mean()  # detail left along y (rows)
            long_axis_is_x = (p["sigma_x"] > p["sigma_y"]) != swap
            assert (gx < gy) == long_axis_is_x, p
            checked += 1
    assert checked >= 6


def test_noise_sigma_is_recovered_from_the_output():
    flat = np.full((256, 256, 3), 128, np.uint8)  # far from 0/255: no clipping
    for sigma in (3.0, 10.0, 20.0):
        lq, params = degrade(flat, only(noise_range=(sigma, sigma)), rng_for(1))
        diff = lq.astype(np.float64) - flat
        assert params["stages"][0]["noise_sigma"] == sigma
        assert abs(diff.std() - sigma) < 0.05 * sigma + 0.3, (sigma, diff.std())
        assert abs(diff.mean()) < 0.3
        # per-channel noise: channels are independent
        assert abs(np.corrcoef(diff[..., 0].ravel(), diff[..., 1].ravel())[0, 1]) < 0.05


def test_gray_noise_is_shared_by_the_three_channels():
    flat = np.full((128, 128, 3), 128, np.uint8)
    lq, params = degrade(flat, only(noise_range=(10, 10), gray_noise_prob=1.0), rng_for(2))
    assert params["stages"][0]["gray_noise"] is True
    assert np.array_equal(lq[..., 0], lq[..., 1]) and np.array_equal(lq[..., 1], lq[..., 2])
    assert 9 < (lq.astype(float) - 128).std() < 11


def test_jpeg_quality_maps_monotonically_to_fidelity(face):
    scores = []
    for q in (10, 30, 50, 70, 90, 100):
        lq, params = degrade(face, only(jpeg_range=(q, q)), rng_for(0))
        assert params["stages"][0]["jpeg_quality"] == q
        scores.append(psnr(face, lq))
    assert all(a < b for a, b in itertools.pairwise(scores)), scores
    assert scores[0] < 32 and scores[-1] > 40
    # lower quality leaves less information: the lossless (PNG) size of the result shrinks
    sizes = [
        len(cv2.imencode(".png", degrade(face, only(jpeg_range=(q, q)), rng_for(0))[0])[1]) for q in (10, 90)
    ]
    assert sizes[0] < sizes[1]


def test_downsampling_factor_reduces_detail(face):
    detail = []
    for r in (1.5, 3.0, 6.0, 12.0):
        lq, params = degrade(face, only(downsample_range=(r, r)), rng_for(0))
        p = params["stages"][0]
        assert p["lq_size"] == [int(512 // r), int(512 // r)] and lq.shape == face.shape
        detail.append(laplacian_var(lq))
    assert all(a > 1.5 * b for a, b in itertools.pairwise(detail)), detail


def test_upscaling_factor_below_one_keeps_detail(face):
    lq, params = degrade(face, only(downsample_range=(0.8, 0.8)), rng_for(0))
    assert params["stages"][0]["lq_size"][0] > 512
    assert psnr(face, lq) > 28


# ----------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_seed_same_bytes_other_seed_differs(preset):
    img = skdata.astronaut()[128:384, 128:384].copy()
    lq1, p1 = degrade(img, preset, rng_for(5, 0, 17))
    lq2, p2 = degrade(img, preset, rng_for(5, 0, 17))
    lq3, p3 = degrade(img, preset, rng_for(6, 0, 17))
    assert lq1.tobytes() == lq2.tobytes() and p1 == p2
    assert lq1.tobytes() != lq3.tobytes() and p1 != p3
    assert json.loads(json.dumps(p1)) == p1  # JSON-serialisable, round-trips exactly


def test_rng_for_keys_give_independent_streams():
    a, b = rng_for(0, 0, 1).random(4), rng_for(0, 1, 0).random(4)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError):
        rng_for(-1)


# ----------------------------------------------------------------------------- ranges and presets


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sampled_params_stay_in_and_cover_the_configured_ranges(preset):
    cfg = get_preset(preset)
    stages = [cfg.stage] + ([cfg.severe] if cfg.severe is not None else [])
    for stage in stages:
        rng = rng_for(11)
        draws = [sample_stage_params(stage, rng, (512, 512)) for _ in range(3000)]
        for key, (lo, hi) in (
            ("sigma_x", stage.blur_sigma),
            ("sigma_y", stage.blur_sigma),
            ("scale", stage.downsample_range),
            ("noise_sigma", stage.noise_range),
            ("jpeg_quality", stage.jpeg_range),
        ):
            values = np.array([d[key] for d in draws])
            assert values.min() >= lo and values.max() <= hi, key
            span = hi - lo
            assert values.min() < lo + 0.02 * span and values.max() > hi - 0.02 * span, (
                key
            )  # covers the range
        rot = np.array([d["rotation"] for d in draws if d["kernel_type"] == "aniso"])
        assert rot.min() >= -math.pi and rot.max() <= math.pi and rot.std() > 1.5
        kinds = [d["kernel_type"] for d in draws]
        assert 0.45 < kinds.count("iso") / len(kinds) < 0.55
        assert {d["kernel_size"] for d in draws} == set(stage.kernel_sizes)
        iso = [d for d in draws if d["kernel_type"] == "iso"]
        assert all(d["sigma_x"] == d["sigma_y"] and d["rotation"] == 0.0 for d in iso)
        assert all(isinstance(d["jpeg_quality"], int) for d in draws)


def test_colour_augmentations_stay_in_range_and_act():
    cfg = DegradationConfig(
        stage=StageConfig(**OFF),
        color_jitter_prob=0.5,
        color_jitter_shift=20,
        color_jitter_pt_prob=0.5,
        gray_prob=0.5,
        gray_target=True,
    )
    img = skdata.astronaut()[::16, ::16].copy()  # 32x32
    counts = {"shift": 0, "bcsh": 0, "gray": 0}
    for i in range(400):
        lq, p = degrade(img, cfg, rng_for(0, i))
        if p["color_shift"] is not None:
            counts["shift"] += 1
            assert all(-20 <= v <= 20 for v in p["color_shift"])
        if p["bcsh"] is not None:
            counts["bcsh"] += 1
            b = p["bcsh"]
            assert 0.5 <= b["brightness"] <= 1.5 and 0.5 <= b["contrast"] <= 1.5
            assert 0 <= b["saturation"] <= 1.5 and -0.1 <= b["hue"] <= 0.1
            assert sorted(b["order"]) == ["brightness", "contrast", "hue", "saturation"]
        if p["gray"]:
            counts["gray"] += 1
            assert np.array_equal(lq[..., 0], lq[..., 2])
            tgt = target_for(img, p)
            assert np.array_equal(tgt[..., 0], tgt[..., 1]) and tgt.dtype == np.uint8
        else:
            assert target_for(img, p) is img
    assert all(150 < c < 250 for c in counts.values()), counts


def test_colour_shift_moves_channel_means():
    flat = np.full((64, 64, 3), 128, np.uint8)
    cfg = DegradationConfig(stage=StageConfig(**OFF), color_jitter_prob=1.0, color_jitter_shift=30)
    lq, p = degrade(flat, cfg, rng_for(4))
    np.testing.assert_allclose(lq.reshape(-1, 3).mean(0) - 128, p["color_shift"], atol=0.6)


def test_presets_load_and_round_trip_through_dicts():
    assert {"gfpgan", "daefr", "codeformer", "difface", "dual", "dual_chain"} <= set(PRESETS)
    for name, cfg in PRESETS.items():
        assert cfg.name == name
        assert DegradationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert get_preset("codeformer").stage.downsample_range == (4.0, 30.0)
    assert get_preset("difface").stage.jpeg_range == (30, 100)
    over = as_degradation_config({"preset": "dual", "severe": {"noise_range": [0, 5]}, "severe_prob": 0.2})
    assert over.severe.noise_range == (0.0, 5.0) and over.severe.downsample_range == (0.8, 32.0)
    assert over.severe_prob == 0.2 and over.stage == get_preset("dual").stage
    with pytest.raises(ValueError, match="unknown degradation preset"):
        get_preset("waveface")
    with pytest.raises(ValueError, match="noise_sigma"):
        DegradationConfig.from_dict({"preset": "gfpgan", "noise_sigma": 3})
    with pytest.raises(ValueError, match="jpeg_range"):
        StageConfig(jpeg_range=(50, 120))
    with pytest.raises(ValueError, match="needs a 'severe'"):
        DegradationConfig(mode="mix")


def test_rejects_wrong_image_layout():
    with pytest.raises(ValueError, match="HWC uint8"):
        degrade(np.zeros((3, 32, 32), np.uint8), "gfpgan", rng_for(0))
    with pytest.raises(ValueError, match="HWC uint8"):
        degrade(np.zeros((32, 32, 3), np.float32), "gfpgan", rng_for(0))


# ----------------------------------------------------------------------------- dual-stage modes


def test_dual_mix_produces_mild_and_severe_samples():
    img = skdata.astronaut()[::2, ::2].copy()  # 256x256
    mild, severe = [], []
    for i in range(60):
        lq, p = degrade(img, "dual", rng_for(0, 0, i))
        assert len(p["stages"]) == 1
        (severe if p["severity"] == "severe" else mild).append((lq, p["stages"][0]))
    assert 15 < len(severe) < 45 and len(mild) + len(severe) == 60
    assert max(s["scale"] for _, s in mild) <= 8.0 and min(s["jpeg_quality"] for _, s in mild) >= 60
    assert max(s["scale"] for _, s in severe) > 8.0  # reaches the wide (DifFace) ranges
    # severe samples are, on average, further from the HQ image
    assert np.mean([psnr(img, lq) for lq, _ in severe]) < np.mean([psnr(img, lq) for lq, _ in mild]) - 1.0


def test_dual_chain_applies_a_second_stage_to_severe_samples():
    img = skdata.astronaut()[::4, ::4].copy()
    n_stages = {"mild": set(), "severe": set()}
    for i in range(40):
        _, p = degrade(img, "dual_chain", rng_for(1, 0, i))
        n_stages[p["severity"]].add(len(p["stages"]))
    assert n_stages == {"mild": {1}, "severe": {2}}
