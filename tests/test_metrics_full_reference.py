"""PSNR / SSIM: closed-form values, basicsr conventions, and skimage as an independent SSIM reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from osdface.image_utils import to_tensor
from osdface.metrics.full_reference import compute_psnr, compute_ssim, gaussian_window_1d
from osdface.metrics.image_input import rgb_to_y


def _image(seed: int = 0, h: int = 48, w: int = 40, low: int = 0, high: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth-ish content (SSIM on pure noise is degenerate), HWC uint8 RGB
    base = rng.integers(low, high, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.float64)
    up = np.kron(base, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(up + rng.normal(0, 6, up.shape), low, high - 1).astype(np.uint8)


def test_psnr_identical_is_inf():
    a = _image()
    assert compute_psnr(a, a)[0] == math.inf
    assert compute_psnr(a, a, test_y_channel=True)[0] == math.inf


@pytest.mark.parametrize("sigma", [1, 5, 20])
def test_psnr_constant_offset_matches_formula(sigma):
    gt = _image(1, low=0, high=200)
    pred = (gt.astype(np.int32) + sigma).astype(np.uint8)  # every pixel off by sigma: MSE = sigma^2
    assert compute_psnr(pred, gt)[0] == pytest.approx(10 * math.log10(255**2 / sigma**2), abs=1e-10)
    # on Y of YCbCr the offset shrinks to sigma * (65.481 + 128.553 + 24.966) / 255 = sigma * 219 / 255
    y_err = sigma * 219.0 / 255.0
    assert compute_psnr(pred, gt, test_y_channel=True)[0] == pytest.approx(
        10 * math.log10(255**2 / y_err**2), abs=1e-9
    )


def test_psnr_plus_minus_noise_pattern():
    gt = np.full((16, 16, 3), 100, np.uint8)
    pred = gt.copy()
    pred[::2] += 7
    pred[1::2] -= 7  # |error| = 7 everywhere
    assert compute_psnr(pred, gt)[0] == pytest.approx(10 * math.log10(255**2 / 49), abs=1e-10)


def test_crop_border_equals_cropping_first():
    a, b = _image(2), _image(3)
    for fn in (compute_psnr, compute_ssim):
        assert fn(a, b, crop_border=4)[0] == pytest.approx(fn(a[4:-4, 4:-4], b[4:-4, 4:-4])[0], abs=1e-12)


def test_batched_equals_singles_and_lists_of_different_sizes():
    preds = [_image(s) for s in range(3)]
    gts = [_image(s + 10) for s in range(3)]
    batch_psnr = compute_psnr(np.stack(preds), np.stack(gts))
    batch_ssim = compute_ssim(np.stack(preds), np.stack(gts))
    singles = [(compute_psnr(p, g)[0], compute_ssim(p, g)[0]) for p, g in zip(preds, gts)]
    np.testing.assert_allclose(batch_psnr, [s[0] for s in singles], atol=1e-12)
    np.testing.assert_allclose(batch_ssim, [s[1] for s in singles], atol=1e-12)
    mixed = [_image(5, 32, 32), _image(6, 48, 24)]
    out = compute_ssim(mixed, [m[::-1].copy() for m in mixed])
    assert out.shape == (2,)


def test_tensor_input_in_minus_one_one_matches_uint8():
    a, b = _image(4), _image(5)
    ta, tb = to_tensor(a), to_tensor(b)  # (1, 3, H, W) in [-1, 1]
    assert compute_psnr(ta, tb)[0] == pytest.approx(compute_psnr(a, b)[0], abs=1e-4)
    assert compute_ssim(ta, tb)[0] == pytest.approx(compute_ssim(a, b)[0], abs=1e-6)


def test_shape_mismatch_and_count_mismatch_raise():
    with pytest.raises(ValueError, match="shape"):
        compute_psnr(_image(0, 32, 32), _image(0, 32, 40))
    with pytest.raises(ValueError, match="images"):
        compute_psnr([_image(0)], [_image(0), _image(1)])


def test_ssim_identical_is_one_and_decreases_with_noise():
    gt = _image(6)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (0, 2, 8, 32):
        noisy = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).astype(np.uint8) if sigma else gt
        scores.append(compute_ssim(noisy, gt)[0])
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(scores)), scores


def test_ssim_window_is_the_11_tap_gaussian():
    g = gaussian_window_1d()
    assert g.numel() == 11 and float(g.sum()) == pytest.approx(1.0)
    x = torch.arange(11, dtype=torch.float64) - 5
    ref = torch.exp(-(x**2) / (2 * 1.5**2))
    torch.testing.assert_close(g, ref / ref.sum())


def test_ssim_matches_skimage():
    """skimage with gaussian_weights, sigma 1.5, population statistics and data_range 255 is the same SSIM:
    its 3.5-sigma truncation gives the same 11x11 window and it averages only the valid region (crop 5)."""
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    gt = _image(7, 64, 56)
    pred = np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)
    ref_rgb = skm.structural_similarity(
        pred,
        gt,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    assert compute_ssim(pred, gt)[0] == pytest.approx(ref_rgb, abs=1e-10)
    # Y channel: the same SSIM on our BT.601 Y planes (float, not rounded, as basicsr)
    to_y = lambda im: rgb_to_y(torch.from_numpy(im).permute(2, 0, 1)[None].double())[0, 0].numpy()
    ref_y = skm.structural_similarity(
        to_y(pred), to_y(gt), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert compute_ssim(pred, gt, test_y_channel=True)[0] == pytest.approx(ref_y, abs=1e-10)


def test_y_channel_is_bt601_studio_swing():
    x = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0]], dtype=torch.float64).T.reshape(1, 3, 3, 1)
    y = rgb_to_y(x, "ycbcr").flatten().tolist()
    assert y == pytest.approx([16.0, 235.0, 16 + 65.481])
    assert rgb_to_y(x, "yiq").flatten().tolist() == pytest.approx([0.0, 255.0, 0.299 * 255])
