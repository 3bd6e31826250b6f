"""The stage-2 latent discriminator: a faithful copy of the UNet's encoder half, LoRA + head trainable."""

import pytest
import torch
from conftest import TINY_UNET, randomize
from diffusers import UNet2DConditionModel

from osdface.models.discriminator import HEADS, LatentDiscriminator, diffuse
from osdface.models.stable_diffusion import alphas_cumprod_from_config, sd21_base_config


@pytest.fixture(scope="module")
def unet():
    return randomize(UNet2DConditionModel(**TINY_UNET), 2, std=0.03).eval()


def _inputs(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([5, 700][:batch]),
            torch.randn(batch, 8, 32, generator=g))


def test_backbone_is_the_unets_encoder_half(unet):
    latents, t, context = _inputs()
    captured = {}
    handle = unet.mid_block.register_forward_hook(lambda m, i, o: captured.update(mid=o))
    with torch.no_grad():
        unet(latents, t, encoder_hidden_states=context)
    handle.remove()
    disc = LatentDiscriminator.from_unet(unet, head="mlp", lora_rank=4)  # LoRA B = 0: same features
    with torch.no_grad():
        features = disc.features(latents, t, context)
    torch.testing.assert_close(features, captured["mid"], atol=1e-5, rtol=1e-5)
    assert features.shape == (2, 64, 8, 8)
    # a copy: changing the UNet does not change the discriminator
    with torch.no_grad():
        unet.conv_in.weight.add_(1.0)
        assert not torch.equal(disc.backbone["conv_in"].weight, unet.conv_in.weight)
        unet.conv_in.weight.sub_(1.0)


@pytest.mark.parametrize("head,n_logits", [("mlp", 1), ("conv", 1), ("patch", 64)])
def test_heads_and_trainable_parameters(unet, head, n_logits):
    disc = LatentDiscriminator.from_unet(unet, head=head, lora_rank=4, mlp_hidden=16)
    latents, t, context = _inputs(1)
    logits = disc(latents, t, context)
    assert logits.shape == (2, n_logits) and logits.dtype == torch.float32
    trainable = {n for n, p in disc.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert {id(p) for p in disc.trainable_parameters()} == {id(p) for p in disc.parameters() if p.requires_grad}
    assert any(n.startswith("head.") for n in trainable) and any("lora_B" in n for n in trainable)
    logits.sum().backward()
    assert all(p.grad is None for n, p in disc.named_parameters() if n not in trainable)
    # the prompt conditions it (cross-attention), and so does t
    with torch.no_grad():
        other_context = disc(latents, t, context + 1.0)
        other_t = disc(latents, torch.tensor([900, 3]), context)
    assert not torch.allclose(logits, other_context) and not torch.allclose(logits, other_t)


def test_checks(unet):
    with pytest.raises(ValueError, match="head"):
        LatentDiscriminator.from_unet(unet, head="transformer")
    from peft import LoraConfig

    with_lora = UNet2DConditionModel(**TINY_UNET)
    with_lora.add_adapter(LoraConfig(r=2, target_modules=["to_q"]))
    with pytest.raises(ValueError, match="before the generator's LoRA"):
        LatentDiscriminator.from_unet(with_lora)
    assert set(HEADS) == {"mlp", "conv", "patch"}


def test_gradient_checkpointing_gives_the_same_gradients(unet):
    latents, t, context = _inputs(2)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        disc = LatentDiscriminator.from_unet(unet, head="mlp", lora_rank=4, mlp_hidden=16)
        if checkpointing:
            disc.enable_gradient_checkpointing()
        disc(latents, t, context).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in disc.trainable_parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_diffuse_is_the_ddpm_forward_process():
    ac = alphas_cumprod_from_config(sd21_base_config("scheduler"))
    z, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 399, 999])
    got = diffuse(z, t, eps, ac)
    for i in range(3):
        a = ac[t[i]]
        torch.testing.assert_close(got[i], a.sqrt() * z[i] + (1 - a).sqrt() * eps[i])
    from diffusers import DDPMScheduler

    ref = DDPMScheduler.from_config({k: v for k, v in sd21_base_config("scheduler").items() if not k.startswith("_")})
    torch.testing.assert_close(got, ref.add_noise(z, eps, t), atol=1e-6, rtol=1e-5)
