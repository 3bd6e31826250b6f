import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from conftest import TINY_ADAPTER, TINY_SIZE, TINY_VRE, face_images, write_release
from official_reference import merge_lora_official, restore_official
from osdface.errors import WeightsNotFoundError
from osdface.models.lora import LORA_WEIGHT_NAME
from osdface.pipeline import OSDFacePipeline


def _official_components(release, sd):
    """The parts as the official code would hold them: UNet merged by the official rule."""
    from safetensors.torch import load_file

    from osdface import official
    from osdface.models.adapter import PromptAdapter
    from osdface.models.vre import VisualRepresentationEmbedder

    vre = VisualRepresentationEmbedder(**TINY_VRE)
    raw = torch.load(release / "associate_2.ckpt", weights_only=False)["state_dict"]
    vre.load_state_dict({k[9:]: v for k, v in raw.items() if k.startswith("vqvae_LQ.")
                         and not k.startswith(("vqvae_LQ.decoder", "vqvae_LQ.post_quant_conv"))})
    adapter = PromptAdapter(**TINY_ADAPTER)
    adapter.load_state_dict(torch.load(release / official.ADAPTER_FILE, weights_only=True))
    unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    unet.load_state_dict(merge_lora_official(unet.state_dict(), load_file(str(release / LORA_WEIGHT_NAME))))
    vae = AutoencoderKL.from_pretrained(sd / "vae")
    return [m.eval() for m in (vre, adapter, vae, unet)]


def test_matches_official_procedure(tiny_pipe, tiny_release, tiny_sd):
    vre, adapter, vae, unet = _official_components(tiny_release, tiny_sd)
    images = face_images(3, size=48)  # square, resized to the model size as the official code does
    ours = tiny_pipe(images, batch_size=3, output_type="pt").images * 0.5 + 0.5
    for i, im in enumerate(images):
        x01 = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
        ref = restore_official(x01, vre, adapter, vae, unet, tiny_pipe.alphas_cumprod, TINY_SIZE,
                               TINY_VRE["resolution"], TINY_VRE["num_tokens"])
        torch.testing.assert_close(ours[i:i + 1], ref, atol=1e-4, rtol=0)  # fp noise; a token change is ~0.6
    assert (ours.std(dim=(2, 3)) > 0.01).all()  # not a constant image


def test_batch_equals_singles_and_is_deterministic(tiny_pipe):
    images = face_images(4)
    batched = tiny_pipe(images, batch_size=4, output_type="pt").images
    singles = torch.cat([tiny_pipe(im, output_type="pt").images for im in images])
    torch.testing.assert_close(batched, singles, atol=1e-4, rtol=0)  # BLAS kernels differ by batch size
    again = tiny_pipe(images, batch_size=3, output_type="pt").images
    torch.testing.assert_close(batched, again, atol=1e-4, rtol=0)
    assert not torch.allclose(batched[0], batched[1])


def test_input_types_output_types_range_and_shape(tiny_pipe):
    arr = face_images(1)[0]
    pil = tiny_pipe(Image.fromarray(arr)).images
    assert isinstance(pil, list) and pil[0].size == (TINY_SIZE, TINY_SIZE) and pil[0].mode == "RGB"
    np_out = tiny_pipe([arr, arr], output_type="np").images
    assert np_out.shape == (2, TINY_SIZE, TINY_SIZE, 3) and np_out.dtype == np.uint8
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1
    pt = tiny_pipe(t, output_type="pt").images
    assert pt.shape == (1, 3, TINY_SIZE, TINY_SIZE) and pt.min() >= -1 and pt.max() <= 1
    assert np.abs(np.asarray(pil[0]).astype(int) - np_out[0].astype(int)).max() <= 1  # batch 1 vs 2: fp noise
    # truncation as torchvision's ToPILImage: floor(255·x)
    expected = torch.floor((pt[0].permute(1, 2, 0) * 0.5 + 0.5) * 255).to(torch.uint8).numpy()
    assert np.abs(expected.astype(int) - np_out[0].astype(int)).max() <= 1


def test_non_square_keeps_aspect_with_long_side_the_model_size(tiny_pipe):
    wide = np.concatenate([face_images(1)[0], face_images(1, seed=5)[0][:, :16]], axis=1)  # 32×48
    out = tiny_pipe(wide).images[0]
    # padded to 48² (8 rows above and below), run at 32², cropped back to 32·32/48 = 21.3 → 21 rows
    assert out.size == (TINY_SIZE, round(32 * TINY_SIZE / 48))


def test_float64_close_to_float32(tiny_pipe, tiny_release, tiny_sd):
    images = face_images(2)
    ref = tiny_pipe(images, output_type="pt").images
    pipe64 = OSDFacePipeline.from_official(tiny_release, tiny_sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                           sample_size=TINY_SIZE).to(dtype=torch.float64)
    assert pipe64.dtype == torch.float64
    torch.testing.assert_close(pipe64(images, output_type="pt").images, ref, atol=1e-3, rtol=0)


def test_posterior_sample_is_seeded_per_image(tiny_pipe):
    images = face_images(3)
    gens = lambda: [torch.Generator().manual_seed(114) for _ in images]  # noqa: E731
    a = tiny_pipe(images, posterior="sample", generator=gens(), batch_size=3, output_type="pt").images
    b = torch.cat([tiny_pipe(im, posterior="sample", generator=[torch.Generator().manual_seed(114)],
                             output_type="pt").images for im in images])
    mode = tiny_pipe(images, output_type="pt").images
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert (a - mode).abs().max() > 1e-3


@pytest.mark.parametrize("layout", ["merged", "separate"])
def test_save_and_load_round_trip(tmp_path, tiny_pipe, tiny_sd, layout):
    images = face_images(2)
    ref = tiny_pipe(images, output_type="pt").images
    folder = tiny_pipe.save_pretrained(tmp_path / "model", lora=layout)
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert not any(name.endswith((".pth", ".ckpt", ".bin", ".pt")) for name in files)  # safetensors + JSON only
    assert (folder / "unet").is_dir() == (layout == "merged") and (folder / "lora").is_dir() == (layout != "merged")
    loaded = OSDFacePipeline.from_pretrained(folder, sd_model=tiny_sd)
    torch.testing.assert_close(loaded(images, output_type="pt").images, ref, atol=1e-5, rtol=0)
    with pytest.raises(FileExistsError):
        tiny_pipe.save_pretrained(folder)


def test_unmerged_lora_pipeline_matches_merged_and_can_be_merged(tmp_path, tiny_pipe, tiny_release, tiny_sd):
    images = face_images(2)
    ref = tiny_pipe(images, output_type="pt").images
    unmerged = OSDFacePipeline.from_official(tiny_release, tiny_sd, merge_lora=False, vre_config=TINY_VRE,
                                             adapter_config=TINY_ADAPTER, sample_size=TINY_SIZE)
    torch.testing.assert_close(unmerged(images, output_type="pt").images, ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="not merged"):
        unmerged.save_pretrained(tmp_path / "m")
    unmerged.merge_lora().save_pretrained(tmp_path / "m")
    loaded = OSDFacePipeline.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded(images, output_type="pt").images, ref, atol=1e-4, rtol=0)


def test_legacy_lora_release_gives_the_same_model(tmp_path, tiny_pipe, tiny_sd):
    legacy = write_release(tmp_path / "legacy", tiny_sd, lora_format="legacy")
    pipe = OSDFacePipeline.from_official(legacy, tiny_sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                         sample_size=TINY_SIZE)
    images = face_images(1)
    torch.testing.assert_close(pipe(images, output_type="pt").images, tiny_pipe(images, output_type="pt").images,
                               atol=1e-6, rtol=0)


def test_missing_sd_model_is_one_clear_error(tmp_path, tiny_release):
    with pytest.raises(WeightsNotFoundError, match="Stable Diffusion 2.1-base not found.*no such folder"):
        OSDFacePipeline.from_official(tiny_release, tmp_path / "nowhere", vre_config=TINY_VRE,
                                      adapter_config=TINY_ADAPTER)
    with pytest.raises(WeightsNotFoundError, match="Stable Diffusion 2.1-base not found"):
        OSDFacePipeline.from_official(tiny_release, "someone/not-a-local-model", vre_config=TINY_VRE,
                                      adapter_config=TINY_ADAPTER)


def test_alphas_at_399_match_the_spec(tiny_pipe):
    a = tiny_pipe.alphas_cumprod[399]
    assert abs(float(a) - 0.4260861) < 1e-6
    assert abs(1 / float(a) ** 0.5 - 1.5319737) < 1e-5


def test_channels_last_layout_gives_the_same_output(tiny_pipe):
    from osdface.loading import use_fast_layout

    images = face_images(2)
    ref = tiny_pipe(images, output_type="pt").images
    use_fast_layout(tiny_pipe, "channels_last")
    assert tiny_pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    out = tiny_pipe(images, output_type="pt").images
    use_fast_layout(tiny_pipe, "nchw")
    assert tiny_pipe.vae.decoder.conv_in.weight.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
