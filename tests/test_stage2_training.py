"""Stage-2 training on tiny models (CPU, offline): what trains, step isolation, overfitting, exact
resume, export → inference pipeline, CLI."""

import json
from pathlib import Path

import pytest
import torch
import typer
from conftest import (
    TINY_ADAPTER,
    TINY_SIZE,
    TINY_UNET,
    TINY_VAE,
    TINY_VRE,
    face_images,
    randomize,
    write_release,
)
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from osdface.models.stable_diffusion import sd21_base_config
from osdface.pipeline import OSDFacePipeline
from osdface.training import stage2
from osdface.training.config import ConfigError
from osdface.training.stage2_config import load_run_config, load_stage2_config


@pytest.fixture(scope="module")
def tiny_sd_default_vae(tmp_path_factory) -> Path:
    """A tiny SD folder whose VAE keeps diffusers' initialisation (outputs mostly inside [-1, 1], so the
    clamp at the end of the recipe does not block the gradients) and a randomised UNet."""
    root = tmp_path_factory.mktemp("sd2")
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae")
    randomize(UNet2DConditionModel(**TINY_UNET), 2, std=0.03).save_pretrained(root / "unet")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sd21_base_config("scheduler")))
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_sd_default_vae) -> Path:
    return write_release(tmp_path_factory.mktemp("release2"), tiny_sd_default_vae)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i, image in enumerate(face_images(4, size=TINY_SIZE, seed=7)):
        Image.fromarray(image).save(root / f"face{i}.png")
    return root


@pytest.fixture(scope="module")
def make_cfg(tiny_sd_default_vae, release, faces):
    def make(output: Path, *overrides: str, vre=True):
        base = [f"model.sd_model={tiny_sd_default_vae}", f"data.roots=[{faces}]", f"train.output_dir={output}"]
        if vre:
            base.append(f"model.vre={release}")
        return load_stage2_config("stage2_tiny", [*base, *overrides])
    return make


def _batch(cfg):
    train_set, _ = stage2.build_datasets(cfg)
    train_set.set_epoch(0)
    items = [train_set[i] for i in range(2)]
    return torch.stack([it["lq"] for it in items]), torch.stack([it["hq"] for it in items])


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_only_lora_adapter_and_discriminator_receive_gradients(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path / "run")
    s = stage2.setup(cfg)
    pipe, disc = s.pipe, s.accelerator.unwrap_model(s.discriminator)
    assert {n for n, p in pipe.unet.named_parameters() if p.requires_grad} == {n for n, _ in pipe.unet.named_parameters() if "lora_" in n}
    assert all(p.requires_grad for p in pipe.adapter.parameters())
    assert not any(p.requires_grad for p in [*pipe.vae.parameters(), *pipe.vre.parameters(), *s.losses.parameters()])
    # keep the gradients: no optimizer steps, no zeroing
    for opt in (s.opt_g, s.opt_d):
        monkeypatch.setattr(opt, "step", lambda *a, **k: None)
        monkeypatch.setattr(opt, "zero_grad", lambda *a, **k: None)
    captured = []  # the discriminator's logits, to check the GAN terms against the softplus formulas
    d_forward = disc.forward
    monkeypatch.setattr(disc, "forward", lambda *a, **k: captured.append(d_forward(*a, **k)) or captured[-1])
    lq, hq = _batch(cfg)
    rng = stage2.step_generator(0, 0, 0)
    with s.accelerator.accumulate(s.generator, s.discriminator):
        terms, fakes = stage2.generator_step(s, lq, hq, rng)
    assert {"mse", "dists", "edge_dists", "ea_dists", "identity", "g_gan", "g_total"} <= set(terms)
    sp = torch.nn.functional.softplus
    torch.testing.assert_close(terms["g_gan"], sp(-captured[0]).mean())  # Eq. 15
    w = cfg.losses
    expected = w.mse * terms["mse"] + w.ea_dists * terms["ea_dists"] + w.identity * terms["identity"] + w.gan * terms["g_gan"]
    torch.testing.assert_close(terms["g_total"], expected)
    g_named = [(f"unet.{n}", p) for n, p in pipe.unet.named_parameters()] + [(f"adapter.{n}", p) for n, p in pipe.adapter.named_parameters()]
    with_grad = {n for n, p in g_named if p.grad is not None}
    assert with_grad == {n for n, p in g_named if "lora_" in n or n.startswith("adapter.")}
    assert any(p.grad.abs().sum() > 0 for n, p in g_named if "lora_B" in n)
    assert all(p.grad.abs().sum() > 0 for n, p in g_named if n.startswith("adapter."))
    assert all(p.grad is None for p in [*disc.parameters(), *pipe.vae.parameters(), *pipe.vre.parameters()])
    g_grads = {n: p.grad.clone() for n, p in g_named if p.grad is not None}
    # the D step adds gradients to the discriminator's LoRA and head only
    with s.accelerator.accumulate(s.generator, s.discriminator):
        d_terms = stage2.discriminator_step(s, hq, fakes["fake"], fakes["prompt"], rng)
    assert {"d_loss", "d_real", "d_fake"} <= set(d_terms)
    real_logits, fake_logits = captured[1].chunk(2)  # one forward on [real; fake]
    torch.testing.assert_close(d_terms["d_loss"], sp(fake_logits).mean() + sp(-real_logits).mean())  # Eq. 16
    d_with_grad = {n for n, p in disc.named_parameters() if p.grad is not None}
    assert d_with_grad == {n for n, _ in disc.named_parameters() if "lora_" in n or n.startswith("head.")}
    assert all(torch.equal(p.grad, g_grads[n]) for n, p in g_named if p.grad is not None)
    assert all(p.grad is None for p in [*pipe.vae.parameters(), *pipe.vre.parameters()])


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision included): start and end clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("options", [(), ("train.mixed_precision=bf16", "train.gradient_checkpointing=true")],
                         ids=["fp32", "bf16-checkpointing"])
def test_steps_change_only_their_own_weights(make_cfg, tmp_path, options, fresh_accelerate_state):
    cfg = make_cfg(tmp_path / "run", *options)
    s = stage2.setup(cfg)
    pipe, disc = s.pipe, s.accelerator.unwrap_model(s.discriminator)
    parts = {"vae": pipe.vae, "vre": pipe.vre, "unet": pipe.unet, "adapter": pipe.adapter, "disc": disc}
    lq, hq = _batch(cfg)
    rng = stage2.step_generator(0, 0, 0)
    before = {k: _snapshot(m) for k, m in parts.items()}
    with s.accelerator.accumulate(s.generator, s.discriminator):
        _, fakes = stage2.generator_step(s, lq, hq, rng)
    changed = {k: _changed(before[k], m) for k, m in parts.items()}
    assert not changed["vae"] and not changed["vre"] and not changed["disc"]  # bit-identical
    assert changed["unet"] and all("lora_" in k for k in changed["unet"])  # base UNet weights bit-identical
    assert changed["adapter"] == set(pipe.adapter.state_dict())
    before = {k: _snapshot(m) for k, m in parts.items()}
    with s.accelerator.accumulate(s.generator, s.discriminator):
        stage2.discriminator_step(s, hq, fakes["fake"], fakes["prompt"], rng)
    changed = {k: _changed(before[k], m) for k, m in parts.items()}
    assert not changed["vae"] and not changed["vre"] and not changed["unet"] and not changed["adapter"]
    assert changed["disc"] and all("lora_" in k or k.startswith("head.") for k in changed["disc"])


def test_fine_tuning_starts_from_the_release(make_cfg, release, tiny_sd_default_vae, tmp_path):
    cfg = make_cfg(tmp_path / "run", f"model.init_from={release}", "losses.gan=0", vre=False)
    s = stage2.setup(cfg)
    assert s.discriminator is None
    official = OSDFacePipeline.from_official(release, tiny_sd_default_vae, merge_lora=False, vre_config=TINY_VRE,
                                             adapter_config=TINY_ADAPTER, sample_size=TINY_SIZE)
    lq, _ = _batch(cfg)
    with torch.no_grad():
        ours = s.generator(lq)["image"]
    torch.testing.assert_close(ours, official.restore_tensor(lq), atol=1e-5, rtol=0)


STEPS = 30


@pytest.fixture(scope="module")
def trained(make_cfg, tmp_path_factory, faces):
    run = tmp_path_factory.mktemp("overfit") / "run"
    cfg = make_cfg(run, f"train.max_steps={STEPS}", "train.checkpoint_every=10", f"train.validate_every={STEPS}",
                   f"data.val_roots=[{faces}]", "data.val_count=4", "optim.lr_g=5.0e-3")
    return cfg, stage2.train(cfg)


def test_overfits_a_few_faces_and_logs(trained):
    _, result = trained
    run = result.run_dir
    assert result.step == STEPS
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_mse = [r["train/mse"] for r in rows if "train/mse" in r]
    val = [r for r in rows if "val/mse" in r]
    assert len(train_mse) == STEPS and len(val) == 1
    assert val[0]["val/mse"] < 0.75 * train_mse[0], (train_mse[0], val[0])  # the restoration MSE falls clearly
    assert sum(train_mse[-5:]) < 0.8 * sum(train_mse[:5])
    for key in ("train/dists", "train/edge_dists", "train/identity", "train/g_gan", "train/d_loss", "val/psnr", "val/ssim"):
        assert any(key in r for r in rows), key
    assert (run / "samples" / f"val-step-{STEPS:06d}.png").is_file()
    assert list((run / "logs").glob("events.out.tfevents.*"))
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["checkpoint-20", "checkpoint-30"]
    ckpt = run / "checkpoints" / "checkpoint-30"
    assert sorted(p.name for p in ckpt.iterdir()) == ["discriminator.safetensors", "generator.safetensors",
                                                      "optimizers.pt", "rng-0.pt", "schedulers.pt", "state.json"]
    # only trainable weights: LoRA + adapter, discriminator LoRA + head
    assert all("lora_" in k or k.startswith("adapter.") for k in load_file(str(ckpt / "generator.safetensors")))
    assert all("lora_" in k or k.startswith("head.") for k in load_file(str(ckpt / "discriminator.safetensors")))
    assert json.loads((ckpt / "state.json").read_text())["config"]["optim"]["lr_g"] == 5.0e-3


def test_export_loads_into_the_inference_pipeline_and_reproduces_training_outputs(trained, tiny_sd_default_vae, tmp_path):
    cfg, result = trained
    lq, _ = _batch(cfg)
    with torch.no_grad():
        expected = result.pipe.generate(lq)["image"]  # the training-time recipe, trained weights
    ours = result.exports["osdface"]
    for merge in (False, True):
        pipe = OSDFacePipeline.from_pretrained(ours, merge_lora=merge)  # SD 2.1-base from the recorded base_model
        torch.testing.assert_close(pipe.restore_tensor(lq), expected, atol=1e-4, rtol=0)
        official = OSDFacePipeline.from_official(result.exports["release"], tiny_sd_default_vae, merge_lora=merge,
                                                 vre_config=TINY_VRE, adapter_config=TINY_ADAPTER, sample_size=TINY_SIZE)
        torch.testing.assert_close(official.restore_tensor(lq), expected, atol=1e-4, rtol=0)
    lora = load_file(str(result.exports["release"] / "pytorch_lora_weights.safetensors"))
    assert lora and all(k.startswith("unet.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in lora)
    adapter = torch.load(result.exports["release"] / "embedding_change_weights.pth", weights_only=True)
    assert set(adapter) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}
    info = json.loads((result.run_dir / "export" / "export.json").read_text())
    assert info["step"] == STEPS and info["vre_config"]["embed_dim"] == TINY_VRE["embed_dim"]
    # a checkpoint exported later gives the same weights; a merged export loads without SD 2.1-base
    written = stage2.export_checkpoint(result.run_dir, tmp_path / "again", lora="merged")
    again = load_file(str(written["release"] / "pytorch_lora_weights.safetensors"))
    assert set(again) == set(lora) and all(torch.equal(again[k], lora[k]) for k in lora)
    merged = OSDFacePipeline.from_pretrained(written["osdface"])
    torch.testing.assert_close(merged.restore_tensor(lq), expected, atol=1e-4, rtol=0)


def test_kill_and_resume_equals_an_uninterrupted_run(make_cfg, tmp_path, monkeypatch):
    overrides = ("train.max_steps=4", "train.checkpoint_every=2", "train.gradient_accumulation_steps=2",
                 "train.export=false", "train.keep_last=5", "discriminator.share_noise=false")
    straight = stage2.train(make_cfg(tmp_path / "straight", *overrides))
    assert straight.step == 4

    real_step = stage2.optimizer_step

    def crash_at_3(s, step, stream):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return real_step(s, step, stream)

    cfg = make_cfg(tmp_path / "crashed", *overrides)
    monkeypatch.setattr(stage2, "optimizer_step", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        stage2.train(cfg)
    monkeypatch.setattr(stage2, "optimizer_step", real_step)
    assert [p.name for p in sorted((tmp_path / "crashed" / "checkpoints").iterdir())] == ["checkpoint-2"]
    resumed_cfg, checkpoint = load_run_config(None, [], tmp_path / "crashed", "latest")  # the CLI's path
    assert checkpoint.name == "checkpoint-2" and resumed_cfg == cfg
    resumed = stage2.train(resumed_cfg, resume=checkpoint)
    assert resumed.step == 4

    a, b = tmp_path / "straight" / "checkpoints" / "checkpoint-4", tmp_path / "crashed" / "checkpoints" / "checkpoint-4"
    for name in ("generator.safetensors", "discriminator.safetensors"):
        sa, sb = load_file(str(a / name)), load_file(str(b / name))
        assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa), name
    oa, ob = (torch.load(p / "optimizers.pt", weights_only=True) for p in (a, b))
    assert oa["g"]["state"][0]["step"] == 4 and oa["d"]["state"][0]["step"] == 4  # 2 micro-batches per step
    for opt in ("g", "d"):
        for idx, st in oa[opt]["state"].items():
            assert all(torch.equal(st[k], ob[opt]["state"][idx][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    last = [json.loads(line) for d in ("straight", "crashed")
            for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    step4 = [r for r in last if r["step"] == 4 and "train/g_total" in r]
    assert len(step4) == 2 and all(step4[0][k] == step4[1][k] for k in step4[0] if k.startswith("train/"))


def test_configs_and_resume_resolution(tmp_path):
    default = load_stage2_config("stage2_default")
    assert default.model.lora_rank == 16 and default.model.timestep == 399 and default.optim.lr_g == 1e-4
    assert default.optim.lr_d == 1e-4 and default.train.batch_size == 2 and default.discriminator.head == "mlp"
    tiny = load_stage2_config("tiny", ["discriminator.head=conv", "losses.gan=0.02"])
    assert tiny.discriminator.head == "conv" and tiny.losses.gan == 0.02 and tiny.model.sample_size == TINY_SIZE
    with pytest.raises(ConfigError, match="unknown config key losses.gann"):
        load_stage2_config("tiny", ["losses.gann=1"])
    with pytest.raises(ConfigError, match="not one of"):
        load_stage2_config("tiny", ["discriminator.head=transformer"])
    with pytest.raises(ConfigError, match="val_lq and data.val_hq"):
        load_stage2_config("tiny", ["data.val_lq=a"])
    with pytest.raises(ConfigError, match="packaged"):
        load_stage2_config("stage2_nonexistent")
    with pytest.raises(ConfigError, match="give --config"):
        load_run_config(None, [], tmp_path, "latest")
    cfg, checkpoint = load_run_config("tiny", [], tmp_path / "new", "latest")  # nothing to resume: fresh
    assert checkpoint is None and cfg.train.output_dir == str(tmp_path / "new")


def _cli():
    from osdface.cli.train import train

    app = typer.Typer()
    app.command()(train)
    app.command("noop")(lambda: None)  # a group, as in osdface's app
    return app


def test_cli_help_print_config_and_export(trained, tmp_path):
    runner = CliRunner()
    app = _cli()
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--config", "--output", "--resume", "--export", "--export-lora", "--print-config", "overrides"):
        assert flag in result.output.lower(), flag
    result = runner.invoke(app, ["train", "--config", "stage2_tiny", "--print-config", "losses.identity=0.5",
                                 "--output", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert "identity: 0.5" in result.output and f"output_dir: {tmp_path / 'x'}" in result.output
    result = runner.invoke(app, ["train", "--export", "somewhere", "--config", "stage2_tiny"])
    assert result.exit_code != 0 and "--export takes only" in str(result.exception)
    _, run = trained
    result = runner.invoke(app, ["train", "--export", str(run.run_dir), "--output", str(tmp_path / "cli_export")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli_export" / "release" / "pytorch_lora_weights.safetensors").is_file()
    assert (tmp_path / "cli_export" / "osdface" / "model_index.json").is_file()
