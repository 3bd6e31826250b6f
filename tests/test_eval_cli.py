"""``osdface evaluate`` and ``osdface benchmark`` end to end (CPU, offline, tiny models)."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import typer
from conftest import TINY_ADAPTER, TINY_SIZE, TINY_VRE
from PIL import Image

from osdface import cli
from osdface.cli import benchmark as benchmark_cli
from osdface.cli import evaluate as evaluate_cli
from osdface.metrics import speed

# the paper's Table 1 columns, with our ID (dlib) after Deg. (a default metric with --gt)
PAPER_TABLE1 = ["Method", "LPIPS↓", "DISTS↓", "MUSIQ↑", "NIQE↓", "Deg.↓", "ID (dlib)↓", "LMD↓", "FID(FFHQ)↓",
                "FID(HQ)↓"]


@pytest.fixture(autouse=True)
def app_with_eval_commands(monkeypatch, tmp_path):
    """``osdface.cli.main`` with this module's commands registered (as cli/__init__.py will register them)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    for name in ("restore", "convert", "degrade"):
        app.command(name)(getattr(getattr(cli, name), name))
    app.command("evaluate")(evaluate_cli.evaluate)
    app.command("benchmark")(benchmark_cli.benchmark)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setenv("OSDFACE_HOME", str(tmp_path / "home"))  # no weights installed


def run_cli(args, capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["osdface", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def images(n: int, seed: int, size: int = 192) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.kron(rng.uniform(30, 220, (size // 16, size // 16, 3)), np.ones((16, 16, 1)))
                    + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def write(folder, ims, names):
    folder.mkdir(parents=True)
    for im, name in zip(ims, names):
        Image.fromarray(im).save(folder / name)


def table_header(md: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith("| Method"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_evaluate_cli_writes_csv_json_markdown(tmp_path, capsys):
    gt = images(3, seed=0)
    write(tmp_path / "gt", gt, ["a.png", "b.png", "c.png"])
    write(tmp_path / "ours", [gt[0], *images(2, seed=1)], ["a.png", "b.jpg", "c.png"])
    write(tmp_path / "other", images(3, seed=2) + images(1, seed=3), ["a.png", "b.png", "c.png", "lonely.png"])
    code, out, err = run_cli(["evaluate", "--pred", f"OSDFace={tmp_path / 'ours'}", "--pred", tmp_path / "other",
                              "--gt", tmp_path / "gt", "-o", tmp_path / "out", "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    md = (tmp_path / "out" / "table.md").read_text()
    assert table_header(md) == PAPER_TABLE1 and md in out
    rows = [line for line in md.splitlines() if line.startswith(("| OSDFace", "| other"))]
    assert len(rows) == 4 and "–[^" in rows[0]  # Table 1 and "Other metrics"; learned ones unavailable here
    assert rows[2].startswith("| OSDFace | ∞ | ") and "| PSNR↑ | SSIM↑ |" in md
    assert "pyiqa" in md and "resnet18_110.pth" in md and "alignment_WFLW_4HG.pth" in md
    with open(tmp_path / "out" / "per_image.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert [(r["method"], r["name"]) for r in records] == [("OSDFace", n) for n in "abc"] + [("other", n) for n in "abc"]
    assert records[0]["psnr"] == "inf" and float(records[0]["ssim"]) == pytest.approx(1.0)
    means = json.loads((tmp_path / "out" / "means_other.json").read_text())
    assert means["n_images"] == 3 and means["metrics"]["niqe"] > 0
    assert any("lonely.png" in p for p in means["problems"]) and "deg" in means["unavailable"]
    assert "unavailable: fid_hq:" in err and "lonely.png" in err


def test_evaluate_cli_real_world_table_and_errors(tmp_path, capsys):
    write(tmp_path / "wider_out", images(2, seed=4), ["1.png", "2.png"])
    code, out, err = run_cli(["evaluate", "-p", tmp_path / "wider_out", "-o", tmp_path / "o2", "--metrics",
                              "niqe,psnr", "--dataset", "wider", "-q"], capsys)
    assert code == 0, err
    assert "Wider-Test CLIPIQA↑" in out and "needs the ground truth" in out
    code, _, err = run_cli(["evaluate", "-p", tmp_path / "wider_out", "-o", tmp_path / "o3", "--metrics", "psnrr"],
                           capsys)
    assert code == 2 and "unknown psnrr" in err
    code, _, err = run_cli(["evaluate", "-p", tmp_path / "empty", "-o", tmp_path / "o4", "--metrics", "niqe", "-q"],
                           capsys)
    assert code == 2 and "--pred" in err and "no such folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o4").exists()  # nothing written (issue 19)


@pytest.fixture
def tiny_pipeline(tiny_release, tiny_sd):
    from osdface.pipeline import OSDFacePipeline

    return OSDFacePipeline.from_official(tiny_release, tiny_sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                         sample_size=TINY_SIZE)


def test_benchmark_pipeline_measures_table3_columns(tiny_pipeline):
    result = speed.benchmark_pipeline(tiny_pipeline, batch_sizes=(2, 1), repeats=1, warmup=0)
    assert sorted(result.seconds_per_face) == [1, 2] and all(s > 0 for s in result.seconds_per_face.values())
    assert result.size == TINY_SIZE and result.steps == 1 and result.macs > 0
    assert result.peak_memory > 0 and "ru_maxrss" in result.memory_kind
    assert sum(result.params.values()) == sum(p.numel() for m in tiny_pipeline.modules() for p in m.parameters())
    md = result.render_markdown()
    assert table_header(md) == ["Method", "Step", "Time (s)", "Param (M)", "MACs (G)", "Time (s), best batch",
                                "Best batch", "Peak mem. (GiB)"]
    assert "| OSDFace (paper, A6000) | 1 | 0.100 | 978.4 | 2,132 |" in md


def test_benchmark_cli_random_weights_fallback(tmp_path, capsys, monkeypatch, tiny_pipeline):
    monkeypatch.setattr(speed, "build_random_pipeline", lambda seed=0: tiny_pipeline)  # not the 1 B-param model
    code, out, err = run_cli(["benchmark", "--device", "cpu", "--batch-sizes", "1,2", "--repeats", "1",
                              "--warmup", "0", "-o", tmp_path / "t3.md"], capsys)
    assert code == 0, err
    assert "no installed weights" in err and "random weights (full-size architecture), no weights installed" in out
    assert table_header(out)[:5] == ["Method", "Step", "Time (s)", "Param (M)", "MACs (G)"]
    assert (tmp_path / "t3.md").read_text() in out
    code, out, _ = run_cli(["benchmark", "--random-weights", "--no-macs", "--batch-sizes", "1", "--repeats", "1",
                            "-q"], capsys)
    assert code == 0 and "not counted (--no-macs)" in out
    code, _, err = run_cli(["benchmark", "--weights", tmp_path / "nothing", "-q"], capsys)
    assert code == 2 and "OSDFace weights not found" in err
