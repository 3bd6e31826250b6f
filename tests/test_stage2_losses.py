"""Stage-2 losses: DISTS, Sobel, EA-DISTS, identity, GAN (CPU, random weights)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from osdface.errors import WeightsFormatError, WeightsNotFoundError
from osdface.losses.dists import DISTS, DISTS_CHANNELS, L2Pooling, load_dists_weights, make_dists
from osdface.losses.edge_dists import EdgeAwareDISTS, sobel_magnitude, to_gray
from osdface.losses.gan import d_loss_softplus, g_loss_softplus
from osdface.losses.identity import IdentityLoss
from osdface.models.arcface import ResNetArcFace


@pytest.fixture(scope="module")
def dists():
    torch.manual_seed(0)
    return make_dists(allow_random=True)


def _images(n=2, size=32, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)


def _sobel_by_hand(rgb: np.ndarray, gray: str) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W): loops over pixels, zero padding, Gx/Gy of SPEC §5.2."""
    g = rgb.mean(0) if gray == "mean" else 0.2989 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    p = np.pad(g, 1)
    gx_k = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    gy_k = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
    out = np.zeros_like(g)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            win = p[i:i + 3, j:j + 3]
            out[i, j] = np.sqrt((win * gx_k).sum() ** 2 + (win * gy_k).sum() ** 2 + 1e-6)
    return out


@pytest.mark.parametrize("gray", ["mean", "luma"])
def test_sobel_magnitude_equals_a_hand_computation(gray):
    x = _images(2, 9, seed=1, channels=3).double()
    got = sobel_magnitude(x, gray)
    assert got.shape == (2, 1, 9, 9)
    for b in range(2):
        np.testing.assert_allclose(got[b, 0].numpy(), _sobel_by_hand(x[b].numpy(), gray), rtol=0, atol=1e-12)
    # a vertical step edge of height 1: |Gx| = 4 on both columns next to the step, ~0 far from it and the border
    step = torch.zeros(1, 3, 6, 6, dtype=torch.float64)
    step[..., 3:] = 1.0
    mag = sobel_magnitude(step, gray)[0, 0]
    height = 1.0 if gray == "mean" else 0.2989 + 0.587 + 0.114  # the gray value of white
    assert torch.allclose(mag[2:4, 2:4], torch.full((2, 2), (16 * height**2 + 1e-6) ** 0.5, dtype=torch.float64))
    assert torch.allclose(mag[2:4, 0], torch.full((2,), 1e-3, dtype=torch.float64))


def test_gray_variants():
    x = _images(1, 4, seed=2)
    assert torch.allclose(to_gray(x, "mean"), x.mean(1, keepdim=True))
    assert torch.allclose(to_gray(x, "luma")[0, 0], 0.2989 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2])
    with pytest.raises(ValueError, match="gray mode"):
        to_gray(x, "rec709")


def test_l2_pooling_filter_is_the_normalised_hann_window():
    pool = L2Pooling(2)
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    assert torch.allclose(pool.filter[0, 0], expected) and torch.allclose(pool.filter[1, 0], expected)
    x = torch.rand(1, 2, 8, 8)
    manual = (F.conv2d(x**2, pool.filter, stride=2, padding=1, groups=2) + 1e-12).sqrt()
    assert torch.equal(pool(x), manual) and pool(x).shape == (1, 2, 4, 4)


def test_dists_formula_identity_and_shapes(dists):
    x, y = _images(3, 32, seed=3), _images(3, 32, seed=4)
    assert not any(p.requires_grad for p in dists.parameters())
    # the weighted structure/texture formula, written out from the stage features
    fx, fy = dists.stage_features(x), dists.stage_features(y)
    assert [f.shape[1] for f in fx] == list(DISTS_CHANNELS)
    alpha, beta = dists.alpha.flatten(), dists.beta.flatten()
    total, offset = alpha.sum() + beta.sum(), 0
    score = torch.zeros(3)
    for a, b in zip(fx, fy):
        c = a.shape[1]
        ma, mb = a.mean((2, 3)), b.mean((2, 3))
        va, vb = a.var((2, 3), unbiased=False), b.var((2, 3), unbiased=False)
        cov = (a * b).mean((2, 3)) - ma * mb
        s1 = (2 * ma * mb + 1e-6) / (ma**2 + mb**2 + 1e-6)
        s2 = (2 * cov + 1e-6) / (va + vb + 1e-6)
        score += (s1 * alpha[offset:offset + c]).sum(1) / total + (s2 * beta[offset:offset + c]).sum(1) / total
        offset += c
    expected = 1 - score
    torch.testing.assert_close(dists(x, y, reduction="none"), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dists(x, y), expected.mean(), atol=1e-5, rtol=1e-5)
    assert dists(x, x).abs() < 1e-5
    assert (dists(x, y, reduction="none") > 1e-3).all()
    # 1-channel edge maps broadcast as in pyiqa: the raw-input term uses all three α/β of stage 0
    e = sobel_magnitude(x)
    assert dists(e, e).abs() < 1e-5 and dists(e, sobel_magnitude(y)) > 0


def test_dists_gradients_reach_the_prediction_only(dists):
    x = _images(2, 32, seed=5).requires_grad_(True)
    y = _images(2, 32, seed=6)
    dists(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_dists_weight_files(tmp_path, dists):
    total = sum(DISTS_CHANNELS)
    ab = {"alpha": torch.rand(1, total, 1, 1), "beta": torch.rand(1, total, 1, 1)}
    torch.save(ab, tmp_path / "weights.pt")
    model = DISTS()
    assert load_dists_weights(model, tmp_path / "weights.pt") is False
    assert torch.equal(model.alpha, ab["alpha"]) and torch.equal(model.beta, ab["beta"])
    # a full pyiqa state dict: stage1.0.weight … stage5.28.bias + L2 pooling filters + alpha/beta
    full = dict(ab)
    stage_of = {i: k + 1 for k, (lo, hi) in enumerate([(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]) for i in range(lo, hi)}
    for key, value in dists.features.state_dict().items():
        index, name = key.split(".")
        full[f"stage{stage_of[int(index)]}.{index}.{name}"] = value.clone()
    full["stage2.4.filter"] = torch.ones(64, 1, 3, 3)
    full["mean"], full["std"] = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    torch.save(full, tmp_path / "pyiqa.pth")
    other = DISTS()
    assert load_dists_weights(other, tmp_path / "pyiqa.pth") is True
    x, y = _images(1, 32, seed=7), _images(1, 32, seed=8)
    model.features.load_state_dict(dists.features.state_dict())
    torch.testing.assert_close(other(x, y), model(x, y))
    # VGG16 from a torchvision state dict
    tv = {f"features.{k}": v for k, v in dists.features.state_dict().items()}
    tv["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(tv, tmp_path / "vgg16.pth")
    third = make_dists(tmp_path / "weights.pt", tmp_path / "vgg16.pth")
    torch.testing.assert_close(third(x, y), model(x, y))
    with pytest.raises(WeightsNotFoundError, match="DISTS"):
        make_dists(None, None)
    with pytest.raises(WeightsNotFoundError, match="VGG16"):
        make_dists(tmp_path / "weights.pt", None)
    torch.save({"alpha": torch.rand(5)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsFormatError, match="alpha"):
        load_dists_weights(DISTS(), tmp_path / "bad.pt")


def test_ea_dists_is_dists_of_images_plus_dists_of_hand_sobel_maps(dists):
    x, y = _images(2, 16, seed=9), _images(2, 16, seed=10)
    for gray in ("mean", "luma"):
        ea = EdgeAwareDISTS(dists, gray=gray)
        edge_x = torch.stack([torch.from_numpy(_sobel_by_hand(im.double().numpy(), gray)) for im in x])[:, None].float()
        edge_y = torch.stack([torch.from_numpy(_sobel_by_hand(im.double().numpy(), gray)) for im in y])[:, None].float()
        expected = dists(x, y) + dists(edge_x, edge_y)
        torch.testing.assert_close(ea(x, y), expected, atol=1e-5, rtol=1e-5)
        image_term, edge_term = ea.terms(x, y)
        torch.testing.assert_close(image_term + edge_term, ea(x, y))
        assert ea(x, x).abs() < 1e-5
    with pytest.raises(ValueError, match="gray"):
        EdgeAwareDISTS(dists, gray="rgb")


def test_identity_loss_zero_for_identical_inputs_and_invariant_to_batch_order():
    torch.manual_seed(0)
    arcface = ResNetArcFace(channels=(8, 8, 16, 16), input_size=32, embedding_dim=32)
    with torch.no_grad():  # non-trivial BatchNorm statistics: eval mode must use them, per sample
        for m in arcface.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    loss = IdentityLoss(arcface).train()  # train() must not put ArcFace's BatchNorm in training mode
    assert not loss.arcface.training and not any(p.requires_grad for p in loss.parameters())
    x = _images(4, 48, seed=11) * 2 - 1  # [-1, 1], resized to 32 inside
    y = _images(4, 48, seed=12) * 2 - 1
    assert loss(x, x).abs() < 1e-6
    per_sample = loss(x, y, reduction="none")
    assert per_sample.shape == (4,) and (per_sample > 1e-4).all() and (per_sample <= 2).all()
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(loss(x[perm], y[perm], reduction="none"), per_sample[perm], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss(x[perm], y[perm]), loss(x, y), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss(x[:1], y[:1]), per_sample[0], atol=1e-6, rtol=1e-5)  # batch size
    a, b = arcface.embed(x), arcface.embed(y)
    torch.testing.assert_close(per_sample, 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)), atol=1e-5, rtol=1e-5)
    xg = x.clone().requires_grad_(True)
    loss(xg, y).backward()
    assert xg.grad.abs().sum() > 0


def test_gan_losses_are_the_softplus_formulas():
    s_fake, s_real = torch.tensor([[0.3], [-1.2], [2.0]]), torch.tensor([[1.5], [-0.4], [0.1]])
    sig = torch.sigmoid
    torch.testing.assert_close(g_loss_softplus(s_fake), -torch.log(sig(s_fake)).mean())
    torch.testing.assert_close(d_loss_softplus(s_real, s_fake),
                               -torch.log(1 - sig(s_fake)).mean() - torch.log(sig(s_real)).mean())
