"""Metric networks: ArcFace, AWing FAN and FID Inception load the public checkpoint layouts by key name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osdface.errors import WeightsFormatError, WeightsNotFoundError
from osdface.models.arcface import ArcFacePreprocess, ResNetArcFace, load_arcface
from osdface.models.fan import FAN, calculate_points, coordinate_channels, load_fan
from osdface.models.inception import FIDInceptionV3, load_fid_inception

TINY_ARCFACE = {"channels": (8, 8, 16, 16), "embedding_dim": 32}  # input 128×128 as the real one
TINY_FAN = {"num_stacks": 2, "width": 8, "depth": 2, "input_size": 64}


def randomized_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every float tensor (positive running variances), so loading is checkable."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            value = torch.randn(value.shape, generator=g) * 0.1
            if key.endswith("running_var"):
                value = value.abs() + 0.5
        state[key] = value
    return state


# ----------------------------------------------------------------------------- ArcFace


def test_arcface_key_names_of_both_public_layouts():
    """ronghuaiyang's resnet_face18 and basicsr's ResNetArcFace name their parameters identically."""
    keys = set(ResNetArcFace().state_dict())
    expected = {"conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn0.weight", "layer1.0.prelu.weight",
                "layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                "layer4.1.bn2.bias", "bn4.weight", "fc5.weight", "fc5.bias", "bn5.running_var"}
    assert expected <= keys
    assert "layer1.0.downsample.0.weight" not in keys  # 64 → 64, stride 1: no shortcut conv
    assert not any(".se." in k for k in keys)
    assert ResNetArcFace().fc5.in_features == 512 * 8 * 8
    assert any(".se.fc.2.weight" in k for k in ResNetArcFace(use_se=True).state_dict())


@pytest.mark.parametrize("layout", ["ronghuaiyang_dataparallel", "basicsr_plain", "basicsr_params", "pre_0_4_1"])
def test_arcface_loads_public_layouts(tmp_path, layout):
    model = ResNetArcFace(**TINY_ARCFACE)
    state = randomized_state(model)
    if layout == "ronghuaiyang_dataparallel":  # resnet18_110.pth: saved from DataParallel
        saved = {f"module.{k}": v for k, v in state.items()}
    elif layout == "basicsr_params":
        saved = {"params": state}
    elif layout == "pre_0_4_1":
        saved = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    else:
        saved = state
    torch.save(saved, tmp_path / "arcface.pth")
    loaded = load_arcface(tmp_path / "arcface.pth", **TINY_ARCFACE)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for key, value in loaded.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key


def test_arcface_wrong_keys_and_missing_file(tmp_path):
    state = randomized_state(ResNetArcFace(**TINY_ARCFACE))
    state["layer9.weight"] = state.pop("fc5.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsFormatError, match=r"missing keys \(fc5.weight\).*unexpected keys \(layer9.weight\)"):
        load_arcface(tmp_path / "bad.pth", **TINY_ARCFACE)
    se_state = randomized_state(ResNetArcFace(use_se=True, **TINY_ARCFACE))
    torch.save(se_state, tmp_path / "se.pth")
    with pytest.raises(WeightsFormatError, match="pass use_se=True"):
        load_arcface(tmp_path / "se.pth", **TINY_ARCFACE)
    with pytest.raises(WeightsNotFoundError, match=r"resnet18_110\.pth.*arcface_resnet18\.pth.*Put either file in"):
        load_arcface(tmp_path / "nope" / "resnet18_110.pth")


def test_arcface_embed_is_differentiable_with_documented_preprocessing():
    torch.manual_seed(0)
    model = ResNetArcFace(**TINY_ARCFACE).eval()
    images = (torch.rand(1, 3, 48, 40) * 2 - 1).requires_grad_(True)
    def identity_loss(x, y):  # stage 2's 1 − cos
        return (1 - torch.nn.functional.cosine_similarity(model.embed(x), model.embed(y), dim=1)).mean()

    loss = identity_loss(images, images.flip(-1).detach())
    loss.backward()
    assert loss.item() > 0 and images.grad is not None and images.grad.abs().sum() > 0
    # GFPGAN's gray + bilinear resize by default
    w = torch.tensor([0.2989, 0.5870, 0.1140]).view(1, 3, 1, 1)
    expected = torch.nn.functional.interpolate((images * w).sum(1, keepdim=True), size=(128, 128), mode="bilinear",
                                               align_corners=False)
    assert torch.allclose(model.to_network_input(images), expected)
    mean_gray = model.to_network_input(images, ArcFacePreprocess(gray_weights=(1 / 3, 1 / 3, 1 / 3), resize="area"))
    assert mean_gray.shape == (1, 1, 128, 128)
    assert torch.allclose(identity_loss(images, images), torch.zeros(()), atol=1e-6)


# ----------------------------------------------------------------------------- FAN


def test_fan_keys_match_awing_layout():
    keys = set(FAN().state_dict())
    for key in ("conv1.conv.weight", "conv1.conv.bias", "bn1.running_mean", "conv2.downsample.2.weight",
                "conv4.bn3.weight", "m0.coordconv.conv.weight", "m0.b1_4.conv1.weight", "m0.b2_plus_1.bn1.weight",
                "m3.b3_1.conv3.weight", "top_m_3.bn1.weight", "conv_last3.weight", "bn_end0.weight",
                "l3.weight", "bl2.weight", "al2.bias"):
        assert key in keys, key
    assert "bl3.weight" not in keys and "al3.weight" not in keys
    fan = FAN()
    assert fan.conv1.conv.in_channels == 6  # RGB + xx, yy, r
    assert fan.m0.coordconv.conv.in_channels == 259 and fan.m1.coordconv.conv.in_channels == 261
    assert fan.l0.out_channels == 99 and fan.heatmap_size == 64


def test_fan_loads_state_dict_checkpoint(tmp_path):
    model = FAN(**TINY_FAN)
    state = randomized_state(model, seed=3)
    torch.save({"state_dict": state, "epoch": 10}, tmp_path / "alignment_WFLW_4HG.pth")
    loaded = load_fan(tmp_path / "alignment_WFLW_4HG.pth", **TINY_FAN)
    out = loaded(torch.rand(2, 3, 64, 64))
    assert len(out) == 2 and out[-1].shape == (2, 99, 16, 16)
    assert loaded.landmark_heatmaps(torch.rand(1, 3, 64, 64)).shape == (1, 98, 16, 16)
    del state["l1.bias"]
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsFormatError, match=r"missing keys \(l1.bias\).*AWing FAN"):
        load_fan(tmp_path / "bad.pth", **TINY_FAN)
    with pytest.raises(WeightsNotFoundError, match="alignment_WFLW_4HG.pth"):
        load_fan(tmp_path / "missing.pth")


def test_coordinate_channels_orientation():
    c = coordinate_channels(1, 3, 5, torch.zeros(1))
    assert torch.allclose(c[0, 0, :, 0], torch.tensor([-1.0, 0.0, 1.0]))  # "xx" runs down the rows
    assert torch.allclose(c[0, 1, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))  # "yy" along the columns
    assert c[0, 2].max() == 1.0


def test_calculate_points_known_peaks():
    hm = np.zeros((1, 3, 8, 8))
    hm[0, 0, 3, 5] = 1.0  # symmetric neighbours → no sub-pixel step
    hm[0, 1, 2, 4], hm[0, 1, 2, 5], hm[0, 1, 3, 4] = 1.0, 0.5, 0.25  # right and down neighbours larger
    hm[0, 2, 5, 2], hm[0, 2, 5, 1], hm[0, 2, 4, 2] = 1.0, 0.5, 0.25  # left and up larger
    pts = calculate_points(hm)
    assert pts[0, 0].tolist() == [5.5, 3.5]
    assert pts[0, 1].tolist() == [4.75, 2.75]
    assert pts[0, 2].tolist() == [2.25, 5.25]
    assert np.array_equal(calculate_points(hm, quirks=False), pts)


def test_calculate_points_reproduces_awing_border_quirk():
    """A landmark on the last row makes every landmark's "y + 1" neighbour the map's last element."""
    hm = np.zeros((1, 2, 8, 8))
    hm[0, 0, 3, 5], hm[0, 0, 4, 5] = 1.0, 0.5  # below is larger: +0.25 in y normally
    hm[0, 1, 7, 2] = 1.0  # on the last row
    quirky, clean = calculate_points(hm), calculate_points(hm, quirks=False)
    assert clean[0, 0].tolist() == [5.5, 3.75]
    assert quirky[0, 0].tolist() == [5.5, 3.5]  # y+1 neighbour taken from [7, 7] (0) → sign(0 − 0) = 0
    two = np.concatenate([hm, hm[:, ::-1]])  # batched: the quirk applies image by image
    assert np.array_equal(calculate_points(two)[0], quirky[0])


# ----------------------------------------------------------------------------- Inception


def test_inception_keys_and_loading(tmp_path):
    model = FIDInceptionV3()
    keys = set(model.state_dict())
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_var", "Mixed_5b.branch5x5_2.conv.weight",
                "Mixed_6b.branch7x7dbl_5.bn.bias", "Mixed_7a.branch7x7x3_4.conv.weight",
                "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight", "fc.bias"):
        assert key in keys, key
    assert not any(k.startswith("AuxLogits") for k in keys)
    assert model.fc.out_features == 1008 and model.Conv2d_1a_3x3.bn.eps == 0.001
    state = {k: v for k, v in randomized_state(model, seed=5).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "pt_inception.pth")
    loaded = load_fid_inception(tmp_path / "pt_inception.pth")
    assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    with torch.no_grad():
        feats = loaded.features(torch.rand(2, 3, 96, 96) * 2 - 1)  # any size >= 75 runs; FID uses 299
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    with pytest.raises(WeightsNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        load_fid_inception(tmp_path / "none" / "pt_inception-2015-12-05-6726825d.pth")
    state.pop("fc.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsFormatError, match=r"fc\.bias"):
        load_fid_inception(tmp_path / "bad.pth")
