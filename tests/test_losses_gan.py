import math

import torch

from osdface.losses import gan
from osdface.models.vgg import VGG16_RELU_TAPS, VGG16Features, load_vgg16_weights


def test_softplus_losses_equal_the_log_formulas():
    s_fake, s_real = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([1.5, -0.4, 0.1])
    sig = torch.sigmoid
    assert torch.allclose(gan.g_loss_softplus(s_fake), -torch.log(sig(s_fake)).mean())
    expected_d = -torch.log(1 - sig(s_fake)).mean() - torch.log(sig(s_real)).mean()
    assert torch.allclose(gan.d_loss_softplus(s_real, s_fake), expected_d)


def test_hinge_and_vanilla_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert math.isclose(gan.d_loss_hinge(real, fake).item(), 0.5 * ((0 + 0.5) / 2 + (0 + 1.0) / 2))
    assert math.isclose(gan.d_loss_vanilla(real, fake).item(),
                        0.5 * (torch.nn.functional.softplus(-real).mean() + torch.nn.functional.softplus(fake).mean()).item())


def test_adaptive_weight_is_the_gradient_norm_ratio():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 3)
    rec, g = (x @ w.t()).pow(2).mean(), -(x @ w.t()).mean() * 3
    gr = torch.autograd.grad(rec, w, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, w, retain_graph=True)[0].norm()
    got = gan.adaptive_gan_weight(rec, g, w, disc_weight=0.8)
    assert torch.allclose(got, (gr / (gg + 1e-4)) * 0.8) and not got.requires_grad


def test_vgg16_torchvision_keys_and_taps(tmp_path):
    vgg = VGG16Features()
    convs = [k for k in vgg.state_dict() if k.endswith("weight")]
    assert convs[0] == "features.0.weight" and convs[-1] == "features.28.weight" and len(convs) == 13
    state = {f"features.{k}": torch.randn_like(v) for k, v in vgg.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "vgg16.pth")
    load_vgg16_weights(vgg, tmp_path / "vgg16.pth")
    assert torch.equal(vgg.features[28].bias, state["features.28.bias"])
    out = vgg(torch.rand(1, 3, 32, 32))
    assert list(out) == list(VGG16_RELU_TAPS) and out["relu5_3"].shape == (1, 512, 2, 2)
