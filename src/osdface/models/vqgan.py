"""The stage-1 VQ autoencoder (one per branch, HQ and LQ): encoder → quantiser → decoder.

``VQAutoencoder`` = ``VQEncoder`` + 1×1 ``quant_conv`` + ``VectorQuantizer`` (nearest code, straight
through) + 1×1 ``post_quant_conv`` + ``VQDecoder`` (DAEFR's ``MultiHeadDecoder`` with one head).
Parameter names are DAEFR's ``VQVAEGAN`` names, so the LQ branch's ``state_dict()`` is exactly the
``vqvae_LQ.*`` part of ``associate_2.ckpt`` (encoder, quant_conv, quantize, post_quant_conv,
decoder) and ``vre_state_dict()`` loads by key into ``VisualRepresentationEmbedder``.

The VQ loss has two β placements (SPEC §4.2), chosen by ``beta_placement``:

- ``"codebook"`` (default, DAEFR's code): ``|sg(z_q) − h|² + β·|z_q − sg(h)|²``;
- ``"commitment"`` (the paper's Eq. 7):    ``|z_q − sg(h)|² + β·|sg(z_q) − h|²``.

Example::

    ae = VQAutoencoder(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=32,
                       z_channels=16, num_codes=16, embed_dim=16)
    out = ae(images)                       # images (B, 3, 32, 32) in [-1, 1]
    out.reconstruction, out.vq_loss, out.features, out.indices
    vre = ae.to_vre(num_tokens=8)          # the inference module (encoder + quant_conv + codebook)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .vre import AttnBlock, ResnetBlock, VectorQuantizer, VisualRepresentationEmbedder, VQEncoder, _Mid, _norm

# Keys of the inference module (VisualRepresentationEmbedder); the rest is training-only.
VRE_PREFIXES = ("encoder.", "quant_conv.", "quantize.")


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv (taming/DAEFR ``Upsample(with_conv=True)``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _UpLevel(nn.Module):
    """One decoder level: ``block.{0..n}`` (n = num_res_blocks), optional ``attn.{i}``, optional ``upsample``."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, attention: bool, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(num_blocks)])
        self.attn = nn.ModuleList([AttnBlock(out_ch) for _ in range(num_blocks)] if attention else [])
        if upsample:
            self.upsample = Upsample(out_ch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return self.upsample(h) if hasattr(self, "upsample") else h


class VQDecoder(nn.Module):
    """Mirror of ``VQEncoder``: (B, z, r, r) → (B, out_channels, R, R), r = R / 2^(L−1).

    conv_in → mid (resnet, attention, resnet) → levels L−1 … 0, each num_res_blocks + 1 ResnetBlocks
    (attention after each at the resolutions in ``attn_resolutions``) and a nearest ×2 upsample except
    at level 0 → GN → swish → conv_out. ``up.{l}`` is stored in level order (DAEFR's ``insert(0, …)``).
    """

    def __init__(
        self,
        out_channels: int = 3,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 512,
        z_channels: int = 512,
    ):
        super().__init__()
        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in)
        up = []
        for level in reversed(range(levels)):
            block_out = ch * ch_mult[level]
            up.append(_UpLevel(block_in, block_out, num_res_blocks + 1, res in attn_resolutions, level != 0))
            block_in = block_out
            res = res * 2 if level != 0 else res
        self.up = nn.ModuleList(reversed(up))  # up[l] is level l
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, ch·ch_mult[-1], r, r)
        for level in reversed(self.up):
            h = level(h)  # … → (B, ch·ch_mult[0], R, R)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, R, R)


@dataclass
class VQAutoencoderOutput:
    """``reconstruction`` (B, 3, R, R); ``vq_loss`` scalar; ``features`` the pre-quantisation
    ``quant_conv`` output h (B, embed_dim, r, r), used by the association loss; ``indices`` (B, r, r)."""

    reconstruction: torch.Tensor
    vq_loss: torch.Tensor
    features: torch.Tensor
    indices: torch.Tensor


def vq_loss(h: torch.Tensor, codes: torch.Tensor, beta: float, beta_placement: str = "codebook") -> torch.Tensor:
    """VQ loss between features h and their nearest codes (both (B, C, H, W), ``codes`` not straight-through).

    ``"codebook"``: mean|sg(codes) − h|² + β·mean|codes − sg(h)|² (DAEFR/taming code: β on the codebook term).
    ``"commitment"``: mean|codes − sg(h)|² + β·mean|sg(codes) − h|² (paper Eq. 7: β on the commitment term).
    """
    commitment = F.mse_loss(codes.detach(), h)  # pulls the encoder towards its codes
    codebook = F.mse_loss(codes, h.detach())  # pulls the codes towards the features
    if beta_placement == "codebook":
        return commitment + beta * codebook
    if beta_placement == "commitment":
        return codebook + beta * commitment
    raise ValueError(f"beta_placement must be 'codebook' or 'commitment', got {beta_placement!r}")


class VQAutoencoder(ModelMixin, ConfigMixin):
    """One branch of the stage-1 model. Images (B, 3, R, R) in [-1, 1] → reconstruction in [-1, 1].

    ``double_normalize``: apply the release's second normalisation (x − 0.5)/0.5 before the encoder,
    so the encoder is trained on the [-3, 1] input the official inference code gives it (see
    ``VisualRepresentationEmbedder``); the reconstruction target stays the [-1, 1] image.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 512,
        z_channels: int = 512,
        num_codes: int = 1024,
        embed_dim: int = 512,
        beta: float = 0.25,
        beta_placement: str = "codebook",
        double_normalize: bool = True,
    ):
        super().__init__()
        if beta_placement not in ("codebook", "commitment"):
            raise ValueError(f"beta_placement must be 'codebook' or 'commitment', got {beta_placement!r}")
        attn = tuple(attn_resolutions)
        self.encoder = VQEncoder(in_channels, ch, tuple(ch_mult), num_res_blocks, attn, resolution, z_channels)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantize = VectorQuantizer(num_codes, embed_dim, beta)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.decoder = VQDecoder(out_channels, ch, tuple(ch_mult), num_res_blocks, attn, resolution, z_channels)
        # The attention blocks' norm2 exists only for DAEFR's cross-attention mode (kept for the key
        # layout). Frozen, so optimizers and DDP never see parameters that get no gradient.
        for module in self.modules():
            if isinstance(module, AttnBlock):
                module.norm2.requires_grad_(False)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight compares gradient norms."""
        return self.decoder.conv_out.weight

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation features h = quant_conv(encoder(x)): (B, embed_dim, r, r)."""
        x = (images - 0.5) / 0.5 if self.config.double_normalize else images
        return self.quant_conv(self.encoder(x))

    def quantize_features(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest-code VQ in float32 (autocast off: half-precision distances pick wrong codes).

        Returns (z_q with straight-through gradient, vq loss, indices (B, r, r)).
        """
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.float()
            z_q, loss, indices = self.quantize.quantize(h)  # β on the codebook term (DAEFR)
            if self.config.beta_placement == "commitment":
                codes = self.quantize.embedding(indices).permute(0, 3, 1, 2)  # (B, C, r, r), no STE
                loss = vq_loss(h, codes, self.config.beta, "commitment")
        return z_q, loss, indices

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z_q))  # (B, 3, R, R)

    def forward(self, images: torch.Tensor) -> VQAutoencoderOutput:
        h = self.encode(images)  # (B, C, r, r)
        z_q, loss, indices = self.quantize_features(h)
        return VQAutoencoderOutput(self.decode(z_q), loss, h, indices)

    # --- export -------------------------------------------------------------------------------
    def vre_state_dict(self) -> dict[str, torch.Tensor]:
        """The inference part (encoder, quant_conv, codebook): ``VisualRepresentationEmbedder`` keys."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(VRE_PREFIXES)}

    def training_only_state_dict(self) -> dict[str, torch.Tensor]:
        """post_quant_conv + decoder: what ``associate_2.ckpt`` holds besides the VRE."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(VRE_PREFIXES)}

    def vre_config(self, num_tokens: int = 77) -> dict:
        """Constructor kwargs of the matching ``VisualRepresentationEmbedder``."""
        c = self.config
        return {"in_channels": c.in_channels, "ch": c.ch, "ch_mult": tuple(c.ch_mult),
                "num_res_blocks": c.num_res_blocks, "attn_resolutions": tuple(c.attn_resolutions),
                "resolution": c.resolution, "z_channels": c.z_channels, "num_codes": c.num_codes,
                "embed_dim": c.embed_dim, "num_tokens": num_tokens, "double_normalize": c.double_normalize}

    def to_vre(self, num_tokens: int = 77) -> VisualRepresentationEmbedder:
        """A ``VisualRepresentationEmbedder`` holding a copy of this branch's encoder and codebook."""
        vre = VisualRepresentationEmbedder(**self.vre_config(num_tokens))
        vre.load_state_dict(self.vre_state_dict(), strict=True)
        return vre
