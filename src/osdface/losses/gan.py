"""Adversarial losses on discriminator logits (any shape: per sample or per patch, averaged).

- Stage 1 (DAEFR's VQGAN code): ``hinge`` (default there) or ``vanilla`` discriminator loss, the
  generator term −mean(D(fake)), and the adaptive weight that balances it against the
  reconstruction loss at the decoder's last layer.
- Stage 2 (OSDFace Eq. 15–16, softplus form): L_G = softplus(−s_fake),
  L_D = softplus(s_fake) + softplus(−s_real), i.e. −log D(fake) and −log(1 − D(fake)) − log D(real).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5·(mean relu(1 − D(real)) + mean relu(1 + D(fake)))."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def d_loss_vanilla(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5·(mean softplus(−D(real)) + mean softplus(D(fake))): the paper's log form, halved as taming."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def g_loss_nonsaturating_mean(fake_logits: torch.Tensor) -> torch.Tensor:
    """Stage-1 generator term of the taming/DAEFR code: −mean(D(fake))."""
    return -fake_logits.mean()


def g_loss_softplus(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 15: L_G = E[softplus(−s_fake)] = −E log σ(s_fake)."""
    return F.softplus(-fake_logits).mean()


def d_loss_softplus(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 16: L_D = E[softplus(s_fake)] + E[softplus(−s_real)]."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                        disc_weight: float = 0.8, max_weight: float = 1e4) -> torch.Tensor:
    """taming/DAEFR: ‖∇_last rec‖ / (‖∇_last g‖ + 1e-4), clamped to [0, max], times ``disc_weight``.

    Both losses must depend on ``last_layer`` (the decoder's final conv weight); the result is detached.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach() * disc_weight
