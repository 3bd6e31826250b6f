import pytest
import torch

from official_reference import select_tokens_loop
from osdface.models.vre import VisualRepresentationEmbedder, VectorQuantizer, select_unique_codes


def _batched(z, codebook, n):
    vq = VectorQuantizer(codebook.shape[0], codebook.shape[1])
    vq.embedding.weight.data.copy_(codebook)
    return vq.select_tokens(z, n)


@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_selection_matches_loop_reference(batch):
    g = torch.Generator().manual_seed(batch)
    codebook = torch.randn(1024, 512, generator=g)
    z = torch.randn(batch, 512, 16, 16, generator=g)
    got = _batched(z, codebook, 77)
    assert got.shape == (batch, 77, 512)
    for i in range(batch):
        assert torch.equal(got[i:i + 1], select_tokens_loop(z[i:i + 1], codebook, 77))


def test_fewer_distinct_codes_than_tokens_gives_zero_rows():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(1024, 64, generator=g)
    # every position sits next to one of 5 codes → 5 distinct codes, 72 zero rows
    picks = torch.tensor([3, 900, 17, 44, 512])[torch.randint(0, 5, (2, 256), generator=g)]
    z = (codebook[picks] + 0.01 * torch.randn(2, 256, 64, generator=g)).view(2, 16, 16, 64).permute(0, 3, 1, 2)
    got = _batched(z, codebook, 77)
    for i in range(2):
        ref = select_tokens_loop(z[i:i + 1], codebook, 77)
        assert torch.equal(got[i:i + 1], ref)
    nonzero = got.abs().sum(-1) > 0
    assert nonzero.sum(1).tolist() == [5, 5] and not nonzero[:, 5:].any()


def test_ties_in_distance_and_duplicate_codes():
    # integer-valued data → exact ties between positions (same distance) and between codes
    g = torch.Generator().manual_seed(1)
    codebook = torch.randint(-2, 3, (32, 8), generator=g).float()
    codebook[5] = codebook[9]  # identical codes: argmin must take the first (5)
    z = torch.randint(-2, 3, (3, 8, 4, 4), generator=g).float()
    got = _batched(z, codebook, 12)
    for i in range(3):
        assert torch.equal(got[i:i + 1], select_tokens_loop(z[i:i + 1], codebook, 12))


def test_selection_codes_are_the_best_distance_order():
    best = torch.tensor([[0.5, 0.1, 0.3, 0.1, 0.9]])
    index = torch.tensor([[2, 7, 2, 4, 7]])
    codes, valid = select_unique_codes(best, index, num_codes=8, max_tokens=4)
    # walk: pos1 (0.1, code 7), pos3 (0.1, code 4), pos2 (0.3, code 2), pos0 dup, pos4 dup
    assert codes[0, :3].tolist() == [7, 4, 2] and valid.tolist() == [[True, True, True, False]]


def test_release_architecture_key_names_and_size():
    vre = VisualRepresentationEmbedder()
    keys = vre.state_dict().keys()
    assert len(keys) == 173 and sum(k.startswith("encoder.") for k in keys) == 170
    for key in ("encoder.down.5.attn.1.proj_out.weight", "encoder.down.4.downsample.conv.bias",
                "encoder.mid.attn_1.norm2.weight", "quant_conv.weight", "quantize.embedding.weight"):
        assert key in keys
    assert vre.state_dict()["encoder.down.5.block.0.nin_shortcut.weight"].shape == (512, 256, 1, 1)
    assert sum(p.numel() for p in vre.parameters()) == pytest.approx(29.17e6, rel=1e-3)


def test_double_normalisation_quirk():
    from conftest import TINY_VRE

    vre = VisualRepresentationEmbedder(**TINY_VRE)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(vre.preprocess(x), 2 * x - 1)  # (x − 0.5)/0.5 on a [-1, 1] input
    plain = VisualRepresentationEmbedder(**{**TINY_VRE, "double_normalize": False})
    assert torch.equal(plain.preprocess(x), x)


def test_quantize_straight_through_reaches_encoder_and_codebook_moves():
    vq = VectorQuantizer(16, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, loss, idx = vq.quantize(z)
    assert torch.allclose(z_q.detach(), vq.embedding.weight[idx].permute(0, 3, 1, 2).detach(), atol=1e-6)
    (z_q.sum() + loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert vq.embedding.weight.grad.abs().sum() > 0
