import pytest
import torch
from diffusers import UNet2DConditionModel

from conftest import TINY_UNET, make_lora_state, randomize
from official_reference import merge_lora_official
from osdface.errors import WeightsFormatError
from osdface.models.lora import add_lora_adapter, lora_state_dict, merge_lora, parse_lora_state_dict


def _unet(seed=2):
    return randomize(UNet2DConditionModel(**TINY_UNET), seed, std=0.03).eval()


def _run(unet):
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 8, 32, generator=g)
    with torch.no_grad():
        return unet(x, 399, encoder_hidden_states=ctx).sample


@pytest.mark.parametrize("fmt", ["peft", "legacy"])
def test_merged_equals_unmerged_peft_forward(fmt):
    lora = make_lora_state(_unet(), fmt=fmt)
    pairs = parse_lora_state_dict(lora)
    assert any(p.down.ndim == 4 for p in pairs.values())  # conv LoRA included
    merged, unmerged, base = _unet(), _unet(), _run(_unet())
    assert merge_lora(merged, pairs) == len(lora) // 2
    add_lora_adapter(unmerged, pairs)
    out_m, out_u = _run(merged), _run(unmerged)
    assert (out_u - base).abs().max() > 1e-2  # the LoRA does something
    torch.testing.assert_close(out_m, out_u, atol=2e-5, rtol=1e-4)


def test_merge_matches_official_rule():
    unet = _unet()
    lora = make_lora_state(unet, fmt="peft")
    expected = merge_lora_official(unet.state_dict(), lora)
    merge_lora(unet, parse_lora_state_dict(lora))
    for key, value in unet.state_dict().items():
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=1e-6)


def test_both_formats_give_the_same_pairs_and_round_trip():
    unet = _unet()
    a = parse_lora_state_dict(make_lora_state(unet, fmt="peft"))
    b = parse_lora_state_dict(make_lora_state(unet, fmt="legacy"))
    assert a.keys() == b.keys() and all(torch.equal(a[k].up, b[k].up) for k in a)
    again = parse_lora_state_dict(lora_state_dict(a))
    assert all(torch.equal(again[k].down, a[k].down) for k in a)


def test_key_without_target_is_an_error():
    unet = _unet()
    lora = make_lora_state(unet)
    lora["unet.down_blocks.9.nothing.lora_A.weight"] = torch.zeros(4, 8)
    lora["unet.down_blocks.9.nothing.lora_B.weight"] = torch.zeros(8, 4)
    with pytest.raises(WeightsFormatError, match="find no Linear/Conv2d"):
        merge_lora(unet, parse_lora_state_dict(lora))


def test_half_pairs_unknown_keys_and_bad_shapes_are_errors():
    unet = _unet()
    lora = make_lora_state(unet)
    half = {k: v for k, v in lora.items() if "to_q.lora_B" not in k}
    with pytest.raises(WeightsFormatError, match="incomplete"):
        parse_lora_state_dict(half)
    with pytest.raises(WeightsFormatError, match="not LoRA"):
        parse_lora_state_dict({**lora, "unet.conv_in.alpha": torch.tensor(4.0)})
    key = next(k for k in lora if k.endswith("to_q.lora_A.weight"))
    bad = {**lora, key: torch.zeros(4, 7), key.replace("lora_A", "lora_B"): torch.zeros(lora[key.replace("lora_A", "lora_B")].shape)}
    with pytest.raises(WeightsFormatError, match="do not fit"):
        merge_lora(unet, parse_lora_state_dict(bad))
