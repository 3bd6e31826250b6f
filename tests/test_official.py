import os

import pytest
import torch

from conftest import TINY_ADAPTER, TINY_VRE
from osdface import official
from osdface.errors import WeightsFormatError, WeightsNotFoundError
from osdface.models.adapter import PromptAdapter
from osdface.models.vre import VisualRepresentationEmbedder
from osdface.safe_pickle import InertObject, safe_torch_load


def test_vre_loads_from_lightning_checkpoint_and_ignores_other_parts(tiny_release):
    vre = VisualRepresentationEmbedder(**TINY_VRE)
    state = official.read_vre_state_dict(tiny_release / official.VRE_FILE, vre.state_dict())
    raw = torch.load(tiny_release / official.VRE_FILE, weights_only=False)["state_dict"]
    assert set(state) == set(vre.state_dict())
    assert all(torch.equal(state[k], raw["vqvae_LQ." + k]) for k in state)


def test_lightning_extras_are_inert_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"vqvae_LQ.quant_conv.bias": torch.ones(2)}, "evil": Payload(),
                "hyper_parameters": {"x": 1}}, tmp_path / "c.ckpt")
    out = safe_torch_load(tmp_path / "c.ckpt")
    assert isinstance(out["evil"], InertObject) and not marker.exists()
    assert torch.equal(out["state_dict"]["vqvae_LQ.quant_conv.bias"], torch.ones(2))


def test_missing_and_unexpected_vre_keys_are_listed(tmp_path, tiny_release):
    vre = VisualRepresentationEmbedder(**TINY_VRE)
    ckpt = torch.load(tiny_release / official.VRE_FILE, weights_only=False)
    del ckpt["state_dict"]["vqvae_LQ.quant_conv.bias"]
    ckpt["state_dict"]["vqvae_LQ.encoder.extra.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsFormatError) as err:
        official.read_vre_state_dict(tmp_path / "bad.ckpt", vre.state_dict())
    assert "1 missing keys (quant_conv.bias)" in str(err.value)
    assert "1 unexpected keys (encoder.extra.weight)" in str(err.value)


def test_wrong_architecture_reports_shapes(tiny_release):
    vre = VisualRepresentationEmbedder(**{**TINY_VRE, "num_codes": 32})
    with pytest.raises(WeightsFormatError, match="wrong shapes.*quantize.embedding.weight"):
        official.read_vre_state_dict(tiny_release / official.VRE_FILE, vre.state_dict())


def test_adapter_strict_keys(tmp_path, tiny_release):
    adapter = PromptAdapter(**TINY_ADAPTER)
    state = official.read_adapter_state_dict(tiny_release / official.ADAPTER_FILE, adapter.state_dict())
    assert sorted(state) == ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]
    torch.save({k: v for k, v in state.items() if k != "conv2.bias"}, tmp_path / "a.pth")
    with pytest.raises(WeightsFormatError, match="missing keys \\(conv2.bias\\)"):
        official.read_adapter_state_dict(tmp_path / "a.pth", adapter.state_dict())


def test_missing_release_files_message(tmp_path):
    (tmp_path / official.VRE_FILE).write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="missing embedding_change_weights.pth, pytorch_lora_weights"):
        official.check_release_folder(tmp_path)


def test_written_release_layout_reads_back(tmp_path):
    vre, adapter = VisualRepresentationEmbedder(**TINY_VRE), PromptAdapter(**TINY_ADAPTER)
    official.write_vre_checkpoint(vre.state_dict(), tmp_path / official.VRE_FILE)
    official.write_adapter_weights(adapter.state_dict(), tmp_path / official.ADAPTER_FILE)
    back = official.read_vre_state_dict(tmp_path / official.VRE_FILE, vre.state_dict())
    assert all(torch.equal(back[k], v) for k, v in vre.state_dict().items())
    # the adapter file is a plain state_dict that weights_only=True reads
    plain = torch.load(tmp_path / official.ADAPTER_FILE, weights_only=True)
    assert all(torch.equal(plain[k], v) for k, v in adapter.state_dict().items())
