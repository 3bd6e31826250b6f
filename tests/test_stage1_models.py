"""Stage-1 building blocks: VQ autoencoder, PatchGAN, LPIPS, VQ and association losses."""

import math

import pytest
import torch

from conftest import TINY_VRE
from osdface.errors import WeightsFormatError
from osdface.losses.association import AssociationLoss, association_loss
from osdface.losses.perceptual import LPIPS, LPIPS_CHANNELS, LPIPS_TAPS
from osdface.models.patchgan import PatchDiscriminator
from osdface.models.vgg import VGG16Features
from osdface.models.vqgan import VQAutoencoder, vq_loss
from osdface.models.vre import VisualRepresentationEmbedder

TINY_AE = {k: v for k, v in TINY_VRE.items() if k != "num_tokens"}


def tiny_ae(**kw) -> VQAutoencoder:
    torch.manual_seed(0)
    return VQAutoencoder(**{**TINY_AE, **kw})


def images(n=2, size=32, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- association loss ----------------------------------------------------------------------------

def test_association_loss_equals_explicit_loops():
    g = torch.Generator().manual_seed(0)
    h_hq, h_lq = torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)  # K = 2·2·2 = 8
    s = math.log(1 / 0.07)
    rows_hq, rows_lq = [], []
    for b in range(2):  # rows in (b, y, x) order, each divided by its norm
        for y in range(2):
            for x in range(2):
                for rows, h in ((rows_hq, h_hq), (rows_lq, h_lq)):
                    v = [h[b, c, y, x].item() for c in range(3)]
                    norm = math.sqrt(sum(t * t for t in v))
                    rows.append([t / norm for t in v])
    K = len(rows_hq)
    logits = [[math.exp(s) * sum(a * b for a, b in zip(rows_hq[i], rows_lq[j])) for j in range(K)] for i in range(K)]
    ce_hq = sum(-logits[i][i] + math.log(sum(math.exp(logits[i][j]) for j in range(K))) for i in range(K)) / K
    ce_lq = sum(-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(K))) for j in range(K)) / K
    expected = (ce_hq + ce_lq) / 2
    assert association_loss(h_hq, h_lq, s).item() == pytest.approx(expected, rel=1e-5)
    assert AssociationLoss()(h_hq, h_lq).item() == pytest.approx(expected, rel=1e-5)


def test_association_loss_is_minimal_when_positions_match():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 8, 4, 4, generator=g)
    matched = association_loss(h, h, math.log(1 / 0.07))
    flat = h.permute(0, 2, 3, 1).reshape(-1, 8)  # (K, C)
    for seed in range(5):  # any other pairing of HQ and LQ positions costs more
        perm = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(seed))
        shuffled = flat[perm].reshape(2, 4, 4, 8).permute(0, 3, 1, 2)
        assert association_loss(h, shuffled, math.log(1 / 0.07)) > matched + 1.0
    noisy = h + 0.3 * torch.randn(h.shape, generator=g)
    assert association_loss(h, noisy, math.log(1 / 0.07)) > matched
    # orthonormal matched rows: diagonal logit 1/T, off-diagonal 0, so CE = log(1 + (K−1)·e^(−1/T)); T = 0.5
    eye = torch.eye(8).reshape(8, 8, 1, 1)  # B = 8 images of one position, K = 8
    assert association_loss(eye, eye, math.log(2)).item() == pytest.approx(math.log1p(7 * math.exp(-2)), rel=1e-5)


def test_association_temperature_fixed_by_default_learnable_on_request():
    fixed, learnable = AssociationLoss(), AssociationLoss(learnable=True)
    assert list(fixed.parameters()) == [] and fixed.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert [p.shape for p in learnable.parameters()] == [torch.Size([])]
    h = torch.randn(1, 4, 2, 2, requires_grad=True)
    learnable(h, h.detach() + 0.1).backward()
    assert learnable.logit_scale.grad is not None and h.grad.abs().sum() > 0


# --- VQ ------------------------------------------------------------------------------------------

def test_straight_through_gradients_reach_the_encoder():
    ae = tiny_ae()
    out = ae(images())
    assert out.reconstruction.shape == (2, 3, 32, 32) and out.features.shape == (2, 16, 8, 8)
    out.reconstruction.square().mean().backward()  # only through the quantiser's straight-through path
    for name in ("encoder.conv_in.weight", "quant_conv.weight", "decoder.conv_out.weight", "post_quant_conv.weight"):
        assert dict(ae.named_parameters())[name].grad.abs().sum() > 0, name
    assert ae.quantize.embedding.weight.grad is None  # the codebook learns from the VQ loss only
    ae.zero_grad()
    ae(images()).vq_loss.backward()
    assert ae.quantize.embedding.weight.grad.abs().sum() > 0 and ae.encoder.conv_in.weight.grad.abs().sum() > 0


def test_codebook_step_moves_codes_toward_their_features():
    ae = tiny_ae()
    with torch.no_grad():
        ae.quantize.embedding.weight.normal_(0, 1, generator=torch.Generator().manual_seed(2))
    h = ae.encode(images()).detach()
    _, _, idx = ae.quantize_features(h)
    rows = h.permute(0, 2, 3, 1).reshape(-1, 16)
    idx = idx.flatten()

    def dist():
        return (rows - ae.quantize.embedding.weight[idx]).square().sum().item()

    before = dist()
    opt = torch.optim.SGD(ae.quantize.parameters(), lr=1.0)
    _, loss, idx2 = ae.quantize_features(h)
    loss.backward()
    opt.step()
    assert torch.equal(idx2.flatten(), idx) and dist() < before


@pytest.mark.parametrize("placement, code_weight, commit_weight", [("codebook", 0.25, 1.0), ("commitment", 1.0, 0.25)])
def test_beta_placement(placement, code_weight, commit_weight):
    h = torch.randn(1, 4, 2, 2, requires_grad=True)
    codes = torch.randn(1, 4, 2, 2, requires_grad=True)
    vq_loss(h, codes, 0.25, placement).backward()
    n = h.numel()
    assert torch.allclose(codes.grad, code_weight * 2 * (codes - h).detach() / n)
    assert torch.allclose(h.grad, commit_weight * 2 * (h - codes).detach() / n)
    ae = tiny_ae(beta_placement=placement)
    x = ae.encode(images()).detach()
    _, loss, idx = ae.quantize_features(x)
    c = ae.quantize.embedding(idx).permute(0, 3, 1, 2)
    assert loss.item() == pytest.approx(vq_loss(x, c, 0.25, placement).item(), rel=1e-6)


def test_autoencoder_keys_are_the_official_layout():
    with torch.device("meta"):
        ae = VQAutoencoder()  # release size: ch 64, ch_mult (1,2,2,2,4,8), z 512
        vre = VisualRepresentationEmbedder()
    keys = ae.state_dict()
    assert set(ae.vre_state_dict()) == set(vre.state_dict()) and len(ae.vre_state_dict()) == 173
    assert {k.split(".")[0] for k in keys} == {"encoder", "quant_conv", "quantize", "post_quant_conv", "decoder"}
    assert keys["post_quant_conv.weight"].shape == (512, 512, 1, 1)
    assert keys["decoder.conv_in.weight"].shape == (512, 512, 3, 3)
    assert keys["decoder.up.5.attn.2.q.weight"].shape == (512, 512, 1, 1)  # 3 blocks + attention at 16×16
    assert "decoder.up.4.attn.0.q.weight" not in keys and "decoder.up.0.upsample.conv.weight" not in keys
    assert [f"decoder.up.{l}.upsample.conv.weight" in keys for l in range(6)] == [False] + [True] * 5
    assert keys["decoder.up.0.block.0.conv1.weight"].shape == (64, 128, 3, 3)
    assert keys["decoder.conv_out.weight"].shape == (3, 64, 3, 3)
    assert sum(v.numel() for v in ae.vre_state_dict().values()) == 29_172_416  # SPEC §1.3: ≈ 29.17M


def test_to_vre_reproduces_the_encoder_and_tokens():
    ae = tiny_ae()
    vre = ae.to_vre(num_tokens=8)
    x = images()
    assert torch.equal(vre.encode(x), ae.encode(x))
    assert vre(x).shape == (2, 8, 16)
    frozen = [n for n, p in ae.named_parameters() if not p.requires_grad]
    assert frozen and all(".attn" in n and ".norm2." in n for n in frozen)  # unused in self-attention


# --- PatchGAN and LPIPS ---------------------------------------------------------------------------

def test_patch_discriminator_layout_and_init():
    torch.manual_seed(0)
    d = PatchDiscriminator()
    assert d(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    keys = list(d.state_dict())
    assert keys[:3] == ["main.0.weight", "main.0.bias", "main.2.weight"] and "main.2.bias" not in keys
    assert d.main[11].weight.shape == (1, 512, 4, 4) and isinstance(d.main[3], torch.nn.BatchNorm2d)
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 2e-3 and abs(w.mean().item()) < 1e-3


def test_lpips_zero_for_identical_inputs_and_direct_formula():
    torch.manual_seed(0)
    lpips = LPIPS()
    x, y = images(seed=3), images(seed=4)
    assert torch.equal(lpips(x, x), torch.zeros(2))
    d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    feats = VGG16Features()
    feats.load_state_dict(lpips.net.state_dict())
    fx, fy = feats((x + 1) / 2), feats((y + 1) / 2)
    expected = torch.zeros(2)
    for k, tap in enumerate(LPIPS_TAPS):
        nx = fx[tap] / (fx[tap].norm(dim=1, keepdim=True) + 1e-10)
        ny = fy[tap] / (fy[tap].norm(dim=1, keepdim=True) + 1e-10)
        w = getattr(lpips, f"lin{k}").model[1].weight.view(1, -1, 1, 1)
        expected += ((nx - ny).square() * w).sum(1).mean(dim=(1, 2))
    assert torch.allclose(d, expected, rtol=1e-4)
    lpips.train()
    assert not lpips.training and not any(p.requires_grad for p in lpips.parameters())


def test_lpips_loads_weights_in_the_official_layouts(tmp_path):
    g = torch.Generator().manual_seed(5)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(LPIPS_CHANNELS)}
    torch.save({**lin, "net.slice1.0.weight": torch.zeros(1)}, tmp_path / "vgg.pth")  # lpips' weights/v0.1/vgg.pth
    vgg = {f"features.{k}": torch.randn(v.shape, generator=g) * 0.05
           for k, v in VGG16Features().features.state_dict().items()}
    torch.save({**vgg, "classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "vgg16.pth")  # torchvision keys
    lpips = LPIPS.from_pretrained(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    assert torch.equal(lpips.lin3.model[1].weight, lin["lin3.model.1.weight"])
    assert torch.equal(lpips.net.features[28].weight, vgg["features.28.weight"])
    x, y = images(seed=6), images(seed=7)
    d = lpips(x, y)
    for k in range(5):  # the distance is linear in the lin weights
        with torch.no_grad():
            getattr(lpips, f"lin{k}").model[1].weight.mul_(2)
    assert torch.allclose(lpips(x, y), 2 * d, rtol=1e-5)
    del lin["lin4.model.1.weight"]
    torch.save(lin, tmp_path / "bad.pth")
    with pytest.raises(WeightsFormatError, match="lin4"):
        LPIPS().load_lin_weights(tmp_path / "bad.pth")
