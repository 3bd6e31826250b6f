"""Stage-1 training: configs, an overfit run, exact resume after a crash, export into the pipeline, CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
import typer
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_ADAPTER, TINY_SIZE, face_images, write_release
from osdface.training import stage1
from osdface.training.checkpoint import CheckpointManager
from osdface.training.config import ConfigError, config_to_dict
from osdface.training.stage1 import load_autoencoder_weights, load_run_config, train_vre
from osdface.training.stage1_config import load_stage1_config

STEPS = 6  # assoc runs: GAN on from step 2, checkpoints every 2, keep 2


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    for i, im in enumerate(face_images(6, seed=11)):
        Image.fromarray(im).save(folder / f"face{i}.png")
    return folder


def tiny(faces: Path, out: Path, *overrides: str, phase: str = "assoc"):
    return load_run_config("stage1_tiny", [f"data.roots=[{faces}]", *overrides], phase=phase, output_dir=out)


def assoc_overrides():
    return [f"train.max_steps={STEPS}", "train.checkpoint_every=2", "train.sample_every=3", "loss.disc_start=2",
            "loss.assoc_start=1"]


@pytest.fixture(scope="module")
def assoc_run(faces, tmp_path_factory) -> Path:
    """An uninterrupted association-phase run (both branches, four optimizers, GAN from step 2)."""
    return train_vre(tiny(faces, tmp_path_factory.mktemp("runs") / "full", *assoc_overrides()))


def scalars(run: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs"))
    events.Reload()
    return [e.value for e in sorted(events.Scalars(tag), key=lambda e: e.step)]


def test_packaged_configs_and_overrides(faces):
    hq, lq, assoc = (load_stage1_config(f"stage1_{p}") for p in ("hq", "lq", "assoc"))
    assert (hq.phase, lq.phase, assoc.phase) == ("hq", "lq", "assoc") and assoc.branches() == ("hq", "lq")
    assert hq.model.ch_mult == (1, 2, 2, 2, 4, 8) and hq.model.embed_dim == 512 and hq.model.num_codes == 1024
    assert hq.train.max_epochs == 50 and lq.train.max_epochs == 10 and assoc.train.max_epochs == 10
    assert (hq.loss.disc_start, assoc.loss.disc_start, assoc.loss.assoc_temperature) == (30001, 11, 0.07)
    assert hq.optim.betas == (0.5, 0.9) and hq.model.beta_placement == "codebook" and hq.loss.disc_loss == "hinge"
    assert stage1.learning_rate(assoc, num_processes=8) == pytest.approx(1.44e-4)  # 8 × 4 × 4.5e-6
    cfg = load_stage1_config("stage1_tiny", ["optim.lr=null", "loss.disc_loss=vanilla"], phase="lq")
    assert cfg.phase == "lq" and cfg.optim.lr is None and cfg.loss.disc_loss == "vanilla"
    with pytest.raises(ConfigError, match="unknown config key loss.disc_strat"):
        load_stage1_config("stage1_tiny", ["loss.disc_strat=3"])
    with pytest.raises(ConfigError, match="resolution 30 is not divisible"):
        load_stage1_config("stage1_tiny", ["model.resolution=30"])
    with pytest.raises(ConfigError, match="packaged: stage1_assoc, stage1_hq, stage1_lq, stage1_mini, stage1_mini256, stage1_tiny"):
        load_stage1_config("stage1_nope")
    with pytest.raises(ConfigError, match="data.roots is empty"):
        train_vre(load_stage1_config("stage1_tiny", ["train.output_dir=unused"]))


def test_overfit_run_losses_finite_and_decreasing(tmp_path):
    (tmp_path / "three").mkdir()
    for i, im in enumerate(face_images(3, seed=12)):
        Image.fromarray(im).save(tmp_path / "three" / f"{i}.png")
    run = train_vre(tiny(tmp_path / "three", tmp_path / "hq", "train.max_steps=30", "train.batch_size=3",
                         "loss.disc_start=1000", "train.checkpoint_every=30", "train.sample_every=30", "optim.lr=2.0e-3",
                         "data.hflip=false", phase="hq"))
    l1, lp, vq = (scalars(run, f"hq/{k}") for k in ("l1", "lpips", "vq"))
    assert len(l1) == 30 and all(math.isfinite(v) for v in l1 + lp + vq)
    assert sum(l1[-5:]) / 5 < 0.7 * sum(l1[:5]) / 5
    assert sum(lp[-5:]) / 5 < sum(lp[:5]) / 5
    assert (run / "samples" / "samples-step-000030.png").is_file()
    assert (run / "export" / "vqgan_hq" / "config.json").is_file() and not (run / "export" / "associate_2.ckpt").exists()


def test_kill_and_resume_gives_the_uninterrupted_weights(faces, assoc_run, tmp_path, monkeypatch):
    # 1. A run that crashes during step 5 (after checkpoint-4 was written).
    real_step, calls = stage1._optimizer_step, []

    def crashing(step, *args, **kwargs):
        calls.append(step)
        if step == 4:
            raise KeyboardInterrupt("simulated crash")
        return real_step(step, *args, **kwargs)

    monkeypatch.setattr(stage1, "_optimizer_step", crashing)
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        train_vre(tiny(faces, out, *assoc_overrides()))
    monkeypatch.setattr(stage1, "_optimizer_step", real_step)
    assert [p.name for p in CheckpointManager(out / "checkpoints").checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    assert not (out / "export").exists()

    # 2. Resume from the run folder's latest checkpoint, with the stored config (no --config).
    cfg = load_run_config(output_dir=out, resume="latest")
    assert cfg == tiny(faces, out, *assoc_overrides())
    train_vre(cfg, resume="latest")

    # 3. Same weights, optimizer states and discriminator statistics as the uninterrupted run.
    full, resumed = assoc_run / "checkpoints" / f"checkpoint-{STEPS}", out / "checkpoints" / f"checkpoint-{STEPS}"
    for name in ("ae_hq", "ae_lq", "disc_hq", "disc_lq"):
        a, b = load_file(str(full / f"{name}.safetensors")), load_file(str(resumed / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0), f"{name}:{k}"
    opt_a, opt_b = (torch.load(p / "optimizers.pt", weights_only=True) for p in (full, resumed))
    assert torch.allclose(opt_a["ae_lq"]["state"][0]["exp_avg"], opt_b["ae_lq"]["state"][0]["exp_avg"], atol=1e-6)
    assert opt_a["disc_hq"]["state"][0]["step"] == opt_b["disc_hq"]["state"][0]["step"] == STEPS - 2
    assert scalars(assoc_run, "assoc/loss")[-1] == pytest.approx(scalars(out, "assoc/loss")[-1], abs=1e-5)
    assert (out / "export" / "associate_2.ckpt").is_file()


def test_every_checkpoint_stores_the_config(assoc_run, faces):
    kept = CheckpointManager(assoc_run / "checkpoints").checkpoints()
    assert [p.name for p in kept] == ["checkpoint-4", "checkpoint-6"]  # keep_last = 2
    expected = config_to_dict(tiny(faces, assoc_run, *assoc_overrides()))
    for ckpt in kept:
        state = json.loads((ckpt / "state.json").read_text())
        assert state["config"] == expected and state["step"] == int(ckpt.name.split("-")[1])
    assert scalars(assoc_run, "assoc/lambda")[:2] == [0.0, 1.0]  # λ_assoc 0 → 1 at assoc_start
    assert scalars(assoc_run, "hq/d_weight")[:2] == [0.0, 0.0] and scalars(assoc_run, "hq/d_weight")[2] > 0
    assert sorted(p.name for p in (assoc_run / "samples").iterdir()) == [
        "samples-step-000000.png", "samples-step-000003.png", "samples-step-000006.png"]  # step 0: the start
    grid = Image.open(assoc_run / "samples" / "samples-step-000006.png")
    assert grid.size == (4 * 32, 2 * 32)  # LQ | LQ rec | HQ rec | HQ, two faces


def test_export_loads_into_the_inference_pipeline(assoc_run, tiny_sd, tmp_path):
    from osdface.models.vqgan import VQAutoencoder
    from osdface.models.vre import VisualRepresentationEmbedder
    from osdface.pipeline import OSDFacePipeline

    export = assoc_run / "export"
    ours = VisualRepresentationEmbedder.from_pretrained(export / "visual_embedder")
    lq = VQAutoencoder.from_pretrained(export / "vqgan_lq")
    trained = load_file(str(assoc_run / "checkpoints" / f"checkpoint-{STEPS}" / "ae_lq.safetensors"))
    assert torch.equal(ours.quantize.embedding.weight, trained["quantize.embedding.weight"])
    assert torch.equal(lq.decoder.conv_out.weight, trained["decoder.conv_out.weight"])

    state = torch.load(export / "associate_2.ckpt", weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in state} == {"vqvae_LQ", "vqvae", "loss", "loss_LQ", "logit_scale"}
    assert len([k for k in state if k.startswith("vqvae_LQ.") and not k.startswith(("vqvae_LQ.decoder", "vqvae_LQ.post"))]) \
        == len(ours.state_dict())
    assert state["logit_scale"].item() == pytest.approx(math.log(1 / 0.07))

    release = write_release(tmp_path / "release", tiny_sd)  # adapter + LoRA of the tiny SD
    (release / "associate_2.ckpt").write_bytes((export / "associate_2.ckpt").read_bytes())
    pipe = OSDFacePipeline.from_official(release, tiny_sd, vre_config=lq.vre_config(num_tokens=8),
                                         adapter_config=TINY_ADAPTER, sample_size=TINY_SIZE)
    for k, v in ours.state_dict().items():
        assert torch.equal(pipe.vre.state_dict()[k], v), k
    x = torch.rand(1, 3, TINY_SIZE, TINY_SIZE) * 2 - 1
    assert torch.equal(pipe.vre(x), ours(x))
    restored = pipe(face_images(1)).images
    assert restored[0].size == (TINY_SIZE, TINY_SIZE)


def test_association_init_from_each_source_format(assoc_run):
    from osdface.models.vqgan import VQAutoencoder

    cfg = load_stage1_config(base=CheckpointManager.read_state(assoc_run / "checkpoints" / "checkpoint-6")["config"])
    export = assoc_run / "export"
    for branch in ("hq", "lq"):
        reference = VQAutoencoder.from_pretrained(export / f"vqgan_{branch}").state_dict()
        for source in (assoc_run, assoc_run / "checkpoints" / "checkpoint-6", export / f"vqgan_{branch}",
                       export / "associate_2.ckpt"):
            ae = stage1.build_autoencoder(cfg)
            load_autoencoder_weights(ae, source, branch)
            for k, v in ae.state_dict().items():
                if ".norm2." not in k or "attn" not in k:  # frozen, unused: not in training checkpoints
                    assert torch.equal(v, reference[k]), (source, k)


def test_cli_parses_flags_and_exports(assoc_run, faces, tmp_path, monkeypatch):
    from osdface.cli.train_vre import train_vre as command

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # a group, as in the real app
    runner = CliRunner()
    help_text = runner.invoke(app, ["train-vre", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--config", "--phase", "--output", "--resume", "--export"):
        assert flag in help_text

    seen = {}
    monkeypatch.setattr(stage1, "train_vre", lambda cfg, resume=None: seen.update(cfg=cfg, resume=resume) or Path("x"))
    result = runner.invoke(app, ["train-vre", "--config", "stage1_tiny", "--phase", "lq", "--output", str(tmp_path / "r"),
                                 f"data.roots=[{faces}]", "train.batch_size=3"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].phase == "lq" and seen["cfg"].train.batch_size == 3
    assert seen["cfg"].train.output_dir == str(tmp_path / "r") and seen["resume"] is None

    result = runner.invoke(app, ["train-vre", "--export", str(assoc_run), "--output", str(tmp_path / "vre")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vre" / "associate_2.ckpt").is_file() and (tmp_path / "vre" / "visual_embedder").is_dir()
    result = runner.invoke(app, ["train-vre", "--export", str(assoc_run), "--config", "stage1_tiny"])
    assert result.exit_code != 0 and "--export takes only --output" in str(result.exception)
