"""osdface-mini: the packaged mini configs build and train a step through the paper's code paths, the
space-to-depth latent, the weights fallback order, and the bundled weights themselves."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import face_images
from test_cli import write_faces
from PIL import Image
from typer.testing import CliRunner

from osdface import bundled, loading
from osdface.errors import OSDFaceError, WeightsNotFoundError
from osdface.models.space_to_depth import SpaceToDepthAutoencoder, build_vae, vae_class
from osdface.models.vre import VisualRepresentationEmbedder
from osdface.pipeline import OSDFacePipeline
from osdface.training import stage2
from osdface.training.config import ConfigError
from osdface.training.stage1 import train_vre
from osdface.training.stage1_config import load_stage1_config
from osdface.training.stage2_config import load_stage2_config

MINI_SIZE = 128


# ----------------------------------------------------------------------------- the latent


def test_space_to_depth_is_exact_and_matches_a_loop():
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    ae = SpaceToDepthAutoencoder(factor=4)
    z = ae.encode(x).latent_dist.mode()
    assert z.shape == (2, 48, 4, 6)
    # independent reference: latent channel c·16 + i·4 + j at (y, x) is pixel (4y + i, 4x + j) of channel c
    ref = torch.empty_like(z)
    for c in range(3):
        for i in range(4):
            for j in range(4):
                ref[:, c * 16 + i * 4 + j] = x[:, c, i::4, j::4]
    assert torch.equal(z, ref)
    assert torch.equal(ae.decode(z).sample, x)
    post = ae.encode(x).latent_dist
    assert torch.equal(post.sample(torch.Generator().manual_seed(0)), z) and not post.std.any()
    with pytest.raises(ValueError, match="multiple of the latent factor 4"):
        ae.encode(torch.zeros(1, 3, 10, 12))


def test_space_to_depth_save_load_and_class_dispatch(tmp_path):
    SpaceToDepthAutoencoder(factor=2, scaling_factor=0.5).save_pretrained(tmp_path / "vae")
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["config.json"]
    cls = vae_class(tmp_path / "vae")
    assert cls is SpaceToDepthAutoencoder
    ae = cls.from_pretrained(tmp_path, subfolder="vae", torch_dtype=torch.bfloat16)
    assert ae.config.factor == 2 and ae.config.scaling_factor == 0.5 and ae.dtype == torch.bfloat16
    assert type(build_vae({"_class_name": "SpaceToDepthAutoencoder", "factor": 8})).__name__ == "SpaceToDepthAutoencoder"
    with pytest.raises(ValueError, match="unknown autoencoder class"):
        build_vae({"_class_name": "Nope"})


def test_cosine_schedule_factor():
    f = stage2._lr_factor(10, "cosine", 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert stage2._lr_factor(0, "constant", 5)(1000) == 1.0


# ----------------------------------------------------------------------------- mini configs


@pytest.fixture(scope="module")
def faces128(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces128")
    write_faces(root, 4, seed=11, size=MINI_SIZE)
    return root


def test_stage1_mini_config_trains_a_step(tmp_path, faces128):
    cfg = load_stage1_config("stage1_mini", [f"data.roots=[{faces128}]", "train.batch_size=2", "train.max_steps=1",
                                             f"train.output_dir={tmp_path / 'lq'}", "data.num_workers=0",
                                             "train.num_samples=2", "train.mixed_precision=no"], phase="lq")
    assert cfg.model.resolution == MINI_SIZE and cfg.loss.perceptual_weight == 0
    run_dir = train_vre(cfg)
    vre = VisualRepresentationEmbedder.from_pretrained(Path(run_dir) / "export" / "visual_embedder")
    tokens = vre(torch.zeros(1, 3, MINI_SIZE, MINI_SIZE))
    assert tokens.shape == (1, cfg.model.num_tokens, cfg.model.embed_dim)


def _mini_vre(folder: Path) -> Path:
    m = load_stage1_config("stage1_mini").model
    torch.manual_seed(0)
    VisualRepresentationEmbedder(ch=m.ch, ch_mult=m.ch_mult, num_res_blocks=m.num_res_blocks,
                                 attn_resolutions=m.attn_resolutions, resolution=m.resolution,
                                 z_channels=m.z_channels, num_codes=m.num_codes, embed_dim=m.embed_dim,
                                 num_tokens=m.num_tokens).save_pretrained(folder)
    return folder


def test_stage2_mini_config_trains_the_whole_unet_and_exports(tmp_path, faces128):
    vre = _mini_vre(tmp_path / "vre")
    cfg = load_stage2_config("stage2_mini", [
        f"model.vre={vre}", f"data.roots=[{faces128}]", f"data.val_roots=[{faces128}]", "data.num_workers=0",
        "train.batch_size=2", "train.max_steps=2", "train.validate_every=2", "train.checkpoint_every=2",
        "data.val_count=2", "data.val_grid=2", f"train.output_dir={tmp_path / 'run'}",
        "train.mixed_precision=no"])  # (accelerate's state is one per process: the other tests use "no")
    assert cfg.model.train_unet == "full" and cfg.model.sample_size == MINI_SIZE
    pipe, disc = stage2.build_models(cfg)
    assert disc is None and pipe.base_model is None
    params = stage2.trainable_generator_parameters(pipe, "full")
    assert len(params) == len(list(pipe.unet.parameters())) + len(list(pipe.adapter.parameters()))
    assert not any("lora_" in n for n, _ in pipe.unet.named_parameters())
    before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}

    result = stage2.train(cfg)
    changed = [n for n, p in result.pipe.unet.named_parameters() if not torch.equal(p.detach().float(), before[n])]
    assert len(changed) > len(before) // 2  # ordinary weights train, not a LoRA
    export = result.exports["osdface"]
    assert "release" not in result.exports  # a fully trained UNet has no release (LoRA) layout
    loaded = OSDFacePipeline.from_pretrained(export)
    assert type(loaded.vae).__name__ == "SpaceToDepthAutoencoder" and loaded.sample_size == MINI_SIZE
    for name, p in loaded.unet.state_dict().items():
        torch.testing.assert_close(p, result.pipe.unet.state_dict()[name].float().cpu())
    lq = torch.rand(2, 3, MINI_SIZE, MINI_SIZE) * 2 - 1
    out = loaded.restore_tensor(lq)
    assert out.shape == lq.shape and out.abs().max() <= 1


def test_mini_config_checks():
    with pytest.raises(ConfigError, match="go together"):
        load_stage2_config("stage2_mini", ["model.vae_config=null"])
    with pytest.raises(ConfigError, match="init_from"):
        load_stage2_config("stage2_mini", ["model.init_from=/somewhere"])


# ----------------------------------------------------------------------------- fallback order


@pytest.fixture
def home(tmp_path, monkeypatch, tiny_model_dir):
    """An empty $OSDFACE_HOME and a stand-in bundled model (the tiny test pipeline) under every bundled name."""
    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(bundled, "bundled_dir", lambda name: Path(tiny_model_dir))
    return tmp_path / "home"


def test_bundled_names_resolve_in_the_default_order(tmp_path, monkeypatch, tiny_model_dir):
    """"mini" is the first of DEFAULT_ORDER installed (mini256, then mini128); a named model is that one or
    a clear error; "auto" falls back to the default one."""
    import shutil

    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path / "home"))
    weights = tmp_path / "weights"
    monkeypatch.setattr(bundled, "bundled_dir", lambda name: weights / name)
    assert bundled.resolve_bundled("mini") is None
    with pytest.raises(WeightsNotFoundError, match="bundled mini model is missing"):
        loading.find_weights(model="mini")
    shutil.copytree(tiny_model_dir, weights / "mini128")
    assert loading.find_weights() == ("bundled", weights / "mini128")
    assert loading.find_weights(model="mini") == ("bundled", weights / "mini128")
    with pytest.raises(WeightsNotFoundError, match="bundled mini256 model is missing"):
        loading.find_weights(model="mini256")
    shutil.copytree(tiny_model_dir, weights / "mini256")
    assert loading.find_weights() == ("bundled", weights / "mini256")
    assert loading.find_weights(model="mini") == ("bundled", weights / "mini256")
    assert loading.find_weights(model="mini128") == ("bundled", weights / "mini128")
    assert bundled.resolve_bundled("mini512") is None
    with pytest.raises(OSDFaceError, match="takes no --weights"):
        loading.find_weights(str(weights / "mini128"), model="mini128")
    # the notice names the model in use, and the pipeline loads bundled names: told apart by a marked index
    assert "osdface-mini 2 model (256 px" in bundled.notice(weights / "mini256")
    assert "osdface-mini model (128 px" in bundled.notice(weights / "mini128")
    index = json.loads((weights / "mini128" / "model_index.json").read_text())
    small = {**index, "timestep": 301, "sample_size": index["sample_size"] // 2}  # "mini" pairs it: a smaller size
    (weights / "mini128" / "model_index.json").write_text(json.dumps(small))
    assert OSDFacePipeline.from_pretrained("mini128").timestep == 301
    assert OSDFacePipeline.from_pretrained("mini").timestep == OSDFacePipeline.from_pretrained("mini256").timestep == index["timestep"] != 301


def test_the_default_pairs_mini256_with_mini128_for_small_faces(tmp_path, monkeypatch, tiny_model_dir):
    """"mini" (and "auto" falling back to it) loads mini256 paired with mini128 for faces up to 141 px; a
    model named on its own, or a default without mini128 installed, comes alone."""
    import shutil

    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path / "home"))
    weights = tmp_path / "weights"
    monkeypatch.setattr(bundled, "bundled_dir", lambda name: weights / name)
    shutil.copytree(tiny_model_dir, weights / "mini256")
    assert OSDFacePipeline.from_pretrained("mini").small_faces is None  # mini128 not installed
    shutil.copytree(tiny_model_dir, weights / "mini128")
    index = json.loads((weights / "mini128" / "model_index.json").read_text())
    (weights / "mini128" / "model_index.json").write_text(json.dumps({**index, "sample_size": index["sample_size"] // 2}))
    pipe = OSDFacePipeline.from_pretrained("mini")
    small, up_to = pipe.small_faces
    assert (pipe.sample_size, small.sample_size, up_to) == (index["sample_size"], index["sample_size"] // 2, 141)
    assert OSDFacePipeline.from_pretrained("mini256").small_faces is None
    notes = []
    for model, paired in (("auto", True), ("mini", True), ("mini256", False), ("mini128", False)):
        loaded = loading.load_pipeline(model=model, notify=notes.append)
        assert (loaded.small_faces is not None) == paired, model
    assert "faces up to 141 px by osdface-mini, " in notes[0] and "faces up to" not in notes[2]
    # the pair moves together
    loaded = loading.load_pipeline(model="mini", dtype="bfloat16")
    assert loaded.small_faces[0].dtype == loaded.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="runs below"):
        pipe.with_small_faces(pipe, 100)


def test_fallback_order(home, tiny_model_dir, tiny_release):
    import shutil

    assert loading.find_weights() == ("bundled", Path(tiny_model_dir))
    with pytest.raises(WeightsNotFoundError, match="not found"):
        loading.find_weights(model="paper")
    shutil.copytree(tiny_release, home / "osdface-release")
    assert loading.find_weights() == ("release", home / "osdface-release")
    assert loading.find_weights(model="paper") == ("release", home / "osdface-release")
    shutil.copytree(tiny_model_dir, home / "osdface")
    assert loading.find_weights() == ("ours", home / "osdface")
    assert loading.find_weights(model="mini") == ("bundled", Path(tiny_model_dir))
    assert loading.find_weights(str(tiny_release)) == ("release", Path(tiny_release))
    with pytest.raises(WeightsNotFoundError):
        loading.find_weights(str(home / "nothing-here"))  # an explicit --weights never falls back
    with pytest.raises(OSDFaceError, match="takes no --weights"):
        loading.find_weights(str(tiny_release), model="mini")
    with pytest.raises(OSDFaceError, match="--model must be"):
        loading.find_weights(model="big")


def test_restore_cli_says_when_it_uses_the_bundled_model(home, tmp_path):
    from osdface.cli import app

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(face_images(1, size=32, seed=3)[0]).save(src / "a.png")
    result = CliRunner().invoke(app, ["restore", str(src), "--aligned", "--output", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "bundled osdface-mini 2 model" in result.output and "non-commercial" in result.output
    assert (tmp_path / "out" / "a.png").is_file()
    result = CliRunner().invoke(app, ["restore", str(src), "--aligned", "--model", "paper", "--output",
                                      str(tmp_path / "out2"), "-q"])
    assert result.exit_code != 0 and not (tmp_path / "out2" / "a.png").exists()


# ----------------------------------------------------------------------------- the shipped weights

INSTALLED = [name for name in bundled.MODELS if bundled.is_installed(bundled.bundled_dir(name))]
PRESET = {"mini128": "mini", "mini256": "mini256"}  # the training degradation of each
each_bundled = pytest.mark.parametrize("name", INSTALLED or [pytest.param("none", marks=pytest.mark.skip(
    reason="no bundled weights in this tree"))])


@each_bundled
def test_bundled_weights_load_with_every_key_and_are_deterministic(name):
    from safetensors.torch import load_file

    folder = bundled.bundled_dir(name)
    size_px = bundled.MODELS[name]["size"]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["sample_size"] == size_px and index["lora"] == "merged"
    assert (folder / "TERMS.md").read_text().count("non-commercial") >= 1
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 60e6  # issue 21
    pipe = OSDFacePipeline.from_pretrained(name)
    stored = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(stored) == set(pipe.unet.state_dict())
    for name, p in pipe.unet.state_dict().items():
        assert torch.equal(p, stored[name].float())
    lq = torch.from_numpy(np.stack(face_images(3, size=size_px, seed=5))).permute(0, 3, 1, 2).float() / 127.5 - 1
    a = pipe.restore_tensor(lq)
    b = torch.cat([pipe.restore_tensor(lq[i:i + 1]) for i in range(3)])
    assert torch.equal(a, pipe.restore_tensor(lq))
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)  # batch vs single: float noise only


def test_the_default_bundled_model_is_the_256_one_with_the_128_one_for_small_faces():
    """bundled.py's docstring: mini256 is the default, mini128 takes faces up to 1.1 × 128 px."""
    assert bundled.DEFAULT_ORDER == ("mini256", "mini128")
    assert bundled.SMALL_FACES == {"mini256": ("mini128", 141)}
    if "mini256" in INSTALLED:
        assert bundled.resolve_bundled("mini") == bundled.bundled_dir("mini256")
    if {"mini256", "mini128"} <= set(INSTALLED):
        assert bundled.small_faces_for(bundled.bundled_dir("mini256")) == (bundled.bundled_dir("mini128"), 141)


@each_bundled
def test_bundled_model_restores_a_degraded_face_better_than_its_input(name):
    """A face no one here trained on (scikit-image's astronaut, aligned as inference aligns it), degraded
    four ways: the shipped model must improve every one."""
    data = pytest.importorskip("skimage.data")
    from osdface.data.degradations import degrade, rng_for
    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo
    from osdface.metrics.full_reference import compute_psnr

    (hq, _), = align_photo(data.astronaut(), create_detector("mtcnn"), bundled.MODELS[name]["size"])
    lq = np.stack([degrade(hq, PRESET[name], rng_for(0, 0, i))[0] for i in range(4)])
    out = OSDFacePipeline.from_pretrained(name)(list(lq), output_type="np").images
    ref = np.stack([hq] * 4)
    gains = compute_psnr(out, ref) - compute_psnr(lq, ref)
    assert (gains > 0).all(), gains


@each_bundled
@pytest.mark.parametrize("mode", ["cast", "autocast"])
def test_bundled_model_in_bfloat16_stays_within_40_db_of_float32(mode, name):
    """What --dtype auto picks on CPUs with native bf16 (and GPUs): the outputs of a trained model must
    stay ≥ 40 dB PSNR from the float32 ones."""
    data = pytest.importorskip("skimage.data")
    from osdface.data.degradations import degrade, rng_for
    from osdface.face import create_detector
    from osdface.face.align_folder import align_photo
    from osdface.metrics.full_reference import compute_psnr

    (hq, _), = align_photo(data.astronaut(), create_detector("mtcnn"), bundled.MODELS[name]["size"])
    lq = [degrade(hq, PRESET[name], rng_for(3, 0, i))[0] for i in range(4)] + [hq]
    fp32 = OSDFacePipeline.from_pretrained(name)
    half = OSDFacePipeline.from_pretrained(name)
    half = half.to(dtype=torch.bfloat16) if mode == "cast" else half.autocast(torch.bfloat16)
    a = fp32(lq, output_type="pt").images
    b = half(lq, output_type="pt").images
    assert b.dtype == torch.float32 and half.vre.dtype == torch.float32  # the VRE never runs in half precision
    psnr = compute_psnr(b, a)
    assert psnr.min() >= 40, psnr


def test_bundled_and_pipeline_do_not_import_each_other():
    import ast

    import osdface.bundled
    import osdface.training.package_mini as package_mini

    tree = ast.parse(Path(osdface.bundled.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(m.endswith("pipeline") for m in imported), imported  # pipeline imports bundled, not back
    assert callable(package_mini.package)


def test_package_writes_a_loadable_folder_with_the_models_terms_and_training_record(tmp_path, tiny_model_dir):
    """package_mini: the UNet stored in float16 (and loaded back as float32: the same weights rounded), the
    VRE and adapter exact, the named model's terms, the run configs, their last validation and the lists."""
    from safetensors.torch import load_file

    from osdface.training.package_mini import package

    run = tmp_path / "stage2"
    run.mkdir()
    (run / "config.yaml").write_text("train: {max_steps: 3}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "val/psnr": 21.5}\n{"step": 3, "loss": 0.4}\n')
    listing = tmp_path / "hires_val.txt"
    listing.write_text("ffhq512/00250.jpg\n")
    dest = package(tiny_model_dir, tmp_path / "mini256", runs=[run], data_lists=[listing], name="mini256")
    terms = (dest / "TERMS.md").read_text()
    assert "osdface-mini 2" in terms and "FFHQ" in terms and "CC BY" in terms and "non-commercial" in terms
    stored = load_file(str(dest / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    source, packed = OSDFacePipeline.from_pretrained(tiny_model_dir), OSDFacePipeline.from_pretrained(dest)
    for name, p in source.unet.state_dict().items():
        assert torch.equal(packed.unet.state_dict()[name], p.half().float())
    for a, b in ((source.vre, packed.vre), (source.adapter, packed.adapter)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert json.loads((dest / "training" / "runs.json").read_text()) == {"stage2": {"step": 2, "val/psnr": 21.5}}
    assert (dest / "training" / "stage2.yaml").is_file() and (dest / "training" / "hires_val.txt").is_file()
    with pytest.raises(ValueError, match="name must be"):
        package(tiny_model_dir, tmp_path / "other", name="mini512")
    assert not (tmp_path / "other").exists()
