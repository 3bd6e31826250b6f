"""Visual Representation Embedder (VRE): LQ face → 77 visual prompt tokens.

The released VRE is the LQ branch of a DAEFR-style VQGAN: a convolutional encoder (ch 64,
ch_mult 1,2,2,2,4,8, single-head attention at 16×16, z 512), a 1×1 ``quant_conv`` and a
1024×512 codebook. At inference it does not quantise position by position: it keeps the *distinct*
nearest codes, ordered by the best distance any position reaches to them, and returns the first 77
(zero rows when fewer exist). Parameter names match ``associate_2.ckpt`` after stripping
``vqvae_LQ.`` (173 tensors, SPEC §3), so the official weights load by key.

Training (stage 1) reuses ``VQEncoder`` and ``VectorQuantizer.quantize`` (straight-through).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GN → swish → conv3 → GN → swish → conv3, plus a skip (1×1 ``nin_shortcut`` when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout is 0 in the release
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the spatial positions, residual.

    ``norm2`` exists in the checkpoint (DAEFR's cross-attention mode) but is unused here.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = _norm(channels)
        self.norm2 = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm1(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        k = self.k(h).flatten(2).transpose(1, 2)
        v = self.v(h).flatten(2).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √C) v, (B, HW, C)
        out = out.transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3×3 conv without padding (taming/DAEFR style)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Level(nn.Module):
    """One encoder resolution level: ``block.{i}``, optional ``attn.{i}``, optional ``downsample``."""

    def __init__(self, in_ch: int, out_ch: int, num_res_blocks: int, attention: bool, downsample: bool):
        super().__init__()
        self.block = nn.ModuleList(
            [ResnetBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(num_res_blocks)]
        )
        self.attn = nn.ModuleList([AttnBlock(out_ch) for _ in range(num_res_blocks)] if attention else [])
        if downsample:
            self.downsample = Downsample(out_ch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return self.downsample(h) if hasattr(self, "downsample") else h


class _Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class VQEncoder(nn.Module):
    """The VQGAN encoder (``MultiHeadEncoder`` of the release, single head). Image → (B, z, R/2^L, R/2^L)."""

    def __init__(
        self,
        in_channels: int = 3,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 512,
        z_channels: int = 512,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch * m for m in (1, *ch_mult)]  # input width of each level, then its output width
        self.down = nn.ModuleList()
        res = resolution
        for level in range(len(ch_mult)):
            last = level == len(ch_mult) - 1
            self.down.append(
                _Level(widths[level], widths[level + 1], num_res_blocks, res in attn_resolutions, not last)
            )
            res = res if last else res // 2
        self.mid = _Mid(widths[-1])
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, R, R)
        for level in self.down:
            h = level(h)  # ... → (B, ch·ch_mult[-1], R/2^(L-1), R/2^(L-1))
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z, 16, 16) at the release sizes


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared L2 distance of every position to every code, reduced to (min distance, argmin).

    z: (B, C, H, W); codebook: (N, C). Returns (B, HW) distances and (B, HW) code indices, positions in
    row-major (h, w) order. The expression order ``|z|² + |e|² − 2 z·eᵀ`` is the official one.
    """
    B, C = z.shape[:2]
    z_flat = z.permute(0, 2, 3, 1).reshape(B, -1, C)  # (B, HW, C)
    d = (
        z_flat.pow(2).sum(dim=2, keepdim=True)
        + codebook.pow(2).sum(dim=1)
        - 2 * torch.matmul(z_flat, codebook.t())
    )  # (B, HW, N)
    best, index = d.min(dim=2)  # ties → first index, as torch.min
    return best, index


def select_unique_codes(best: torch.Tensor, index: torch.Tensor, num_codes: int, max_tokens: int):
    """The release's token selection, batched and loop-free.

    Walk the positions in ascending order of their best distance (stable: equal distances keep
    position order) and keep each code the first time it appears; stop at ``max_tokens``.
    Equivalently: give every code the rank of its first appearance in that walk and take the
    ``max_tokens`` smallest ranks.

    best, index: (B, P). Returns codes (B, max_tokens) long and valid (B, max_tokens) bool; rows past
    the number of distinct codes are invalid (their code index is meaningless).
    """
    B, P = index.shape
    order = best.argsort(dim=1, stable=True)  # (B, P) walk order
    walk_codes = index.gather(1, order)  # (B, P) code met at each walk step
    steps = torch.arange(P, device=index.device).expand(B, P)
    first_step = torch.full((B, num_codes), P, dtype=torch.long, device=index.device)
    first_step.scatter_reduce_(1, walk_codes, steps, reduce="amin")  # (B, N), P = never met
    k = min(max_tokens, num_codes)
    step_of_rank, codes = first_step.topk(k, dim=1, largest=False, sorted=True)  # (B, k), ties impossible
    valid = step_of_rank < P
    if k < max_tokens:  # tiny codebooks: pad to the fixed token count
        pad = max_tokens - k
        codes = F.pad(codes, (0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    return codes, valid


class VectorQuantizer(nn.Module):
    """Codebook ``embedding`` (N×C) with the two ways the project uses it.

    - ``quantize``: standard nearest-code VQ with straight-through gradients (stage-1 training).
    - ``select_tokens``: the release's "distinct nearest codes" prompt (stage 2 and inference).
    """

    def __init__(self, num_codes: int = 1024, dim: int = 512, beta: float = 0.25):
        super().__init__()
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.embedding = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_codes, 1.0 / num_codes)

    def select_tokens(self, z: torch.Tensor, max_tokens: int = 77) -> torch.Tensor:
        """(B, C, H, W) → (B, max_tokens, C) codebook rows, zero rows after the distinct codes."""
        codebook = self.embedding.weight
        best, index = nearest_codes(z, codebook)
        codes, valid = select_unique_codes(best, index, self.num_codes, max_tokens)
        tokens = codebook[codes]  # (B, T, C); exact rows, same values as one-hot @ codebook
        return tokens * valid.unsqueeze(-1).to(tokens.dtype)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest-code VQ. Returns (z_q with straight-through gradient, vq loss, indices (B, H, W)).

        The loss is DAEFR's code form: ``|sg(z_q) − z|² + β·|z_q − sg(z)|²`` (commitment weight 1,
        codebook weight β), the reverse β placement of the paper's Eq. 7; see docs in training.
        """
        B, C, H, W = z.shape
        _, index = nearest_codes(z, self.embedding.weight)
        z_q = self.embedding(index).view(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)
        loss = F.mse_loss(z_q.detach(), z) + self.beta * F.mse_loss(z_q, z.detach())
        z_q = z + (z_q - z).detach()
        return z_q, loss, index.view(B, H, W)


class VisualRepresentationEmbedder(ModelMixin, ConfigMixin):
    """LQ face (B, 3, H, W) in [-1, 1] → visual prompt tokens (B, num_tokens, embed_dim).

    ``double_normalize=True`` reproduces the release: its wrapper applies ``(x − 0.5) / 0.5`` to an
    input that is already in [-1, 1], so the encoder sees [-3, 1]. The released LoRA and adapter were
    trained with that input, so keep it for the official weights.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 512,
        z_channels: int = 512,
        num_codes: int = 1024,
        embed_dim: int = 512,
        num_tokens: int = 77,
        double_normalize: bool = True,
    ):
        super().__init__()
        self.encoder = VQEncoder(in_channels, ch, ch_mult, num_res_blocks, tuple(attn_resolutions),
                                 resolution, z_channels)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantize = VectorQuantizer(num_codes, embed_dim)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images of any size → the encoder's input (resolution², bilinear, align_corners=False)."""
        size = self.config.resolution
        x = images
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.config.double_normalize:
            x = (x - 0.5) / 0.5  # the release's second normalisation: [-1, 1] → [-3, 1]
        return x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation features h = quant_conv(encoder(x)): (B, embed_dim, 16, 16)."""
        return self.quant_conv(self.encoder(self.preprocess(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encode(images)  # (B, 512, 16, 16)
        return self.quantize.select_tokens(z, self.config.num_tokens)  # (B, 77, 512)

