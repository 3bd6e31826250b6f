import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import TINY_ADAPTER, TINY_SIZE, TINY_VRE, face_images
from osdface.cli import main
from osdface.pipeline import OSDFacePipeline

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(args, capsys) -> tuple[int, str]:
    old = sys.argv
    sys.argv = ["osdface", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def write_faces(folder: Path, n: int, seed: int = 0, size: int = TINY_SIZE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(face_images(n, size=size, seed=seed)):
        paths.append(folder / f"face{i}.png")
        Image.fromarray(im).save(paths[-1])
    return paths


def test_restore_folder_with_our_format(tmp_path, capsys, tiny_model_dir, tiny_pipe):
    inputs = write_faces(tmp_path / "in", 3)
    code, err = run_cli(["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir,
                         "--batch-size", 2, "--device", "cpu", "-q"], capsys)
    assert code == 0 and "restored 3, skipped 0" in err
    expected = tiny_pipe([np.asarray(Image.open(p)) for p in inputs], output_type="np").images
    for p, exp in zip(inputs, expected):
        got = np.asarray(Image.open(tmp_path / "out" / p.name))
        assert got.shape == (TINY_SIZE, TINY_SIZE, 3)
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1


def test_restore_from_official_release_folder(tmp_path, capsys, tiny_release, tiny_sd, monkeypatch):
    # the CLI builds the release's full-size VRE; patch in the tiny architecture for this test
    original = OSDFacePipeline.from_official.__func__
    monkeypatch.setattr(OSDFacePipeline, "from_official", classmethod(
        lambda cls, r, sd, **kw: original(cls, r, sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                          sample_size=TINY_SIZE, **kw)))
    write_faces(tmp_path / "in", 2)
    code, err = run_cli(["restore", "--aligned", tmp_path / "in" / "face1.png", "-o", tmp_path / "out", "--weights",
                         tiny_release, "--sd-model", tiny_sd, "-q"], capsys)
    assert code == 0 and (tmp_path / "out" / "face1.png").is_file() and not (tmp_path / "out" / "face0.png").exists()


def test_missing_weights_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "OSDFACE_HOME": str(tmp_path / "empty"), "PYTHONPATH": SRC}
    write_faces(tmp_path / "in", 1)
    proc = subprocess.run([sys.executable, "-m", "osdface", "restore", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "--model", "paper"], capture_output=True, text=True, env=env,
                          timeout=300)  # (without --model paper the bundled mini model would restore)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: OSDFace weights not found")
    assert "associate_2.ckpt" in lines[0] and "stable-diffusion-2-1-base" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_bad_files_get_one_line_each_and_the_rest_goes_on(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 2)
    good = (tmp_path / "in" / "face0.png").read_bytes()
    (tmp_path / "in" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    (tmp_path / "in" / "notes.png").write_text("not an image")
    code, err = run_cli(["restore", "--aligned", tmp_path / "in", tmp_path / "missing.png", "-o", tmp_path / "out",
                         "--weights", tiny_model_dir, "-q"], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    assert any("truncated.png" in e for e in errors) and any("empty.jpg: empty file" in e for e in errors)
    assert any("notes.png: not an image" in e for e in errors) and any("missing.png: no such" in e for e in errors)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face0.json", "face0.png", "face1.json", "face1.png"]
    assert "restored 2, skipped 0 (already present), failed 4" in err


def test_existing_outputs_skipped_unless_overwrite(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 2)
    (tmp_path / "out").mkdir()
    sentinel = tmp_path / "out" / "face0.png"
    Image.new("RGB", (5, 5), (1, 2, 3)).save(sentinel)
    # an output is done with its sidecar (written last; issue 19, item 5): the pair is kept
    (tmp_path / "out" / "face0.json").write_text(json.dumps({"input": "x", "input_size_wh": [5, 5], "faces": []}))
    before = sentinel.read_bytes()
    args = ["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q"]
    code, err = run_cli(args, capsys)
    assert code == 0 and "restored 1, skipped 1" in err and sentinel.read_bytes() == before
    code, err = run_cli(args + ["--overwrite"], capsys)
    assert code == 0 and "restored 2, skipped 0" in err and Image.open(sentinel).size == (TINY_SIZE, TINY_SIZE)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_inputs_are_never_overwritten_and_name_clashes_reported(tmp_path, capsys, tiny_model_dir):
    inputs = write_faces(tmp_path / "in", 2)
    Image.fromarray(face_images(1)[0]).save(tmp_path / "in" / "face0.jpg")
    before = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    code, err = run_cli(["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "in", "--format", "same",
                         "--overwrite", "--weights", tiny_model_dir, "-q"], capsys)
    assert code == 2 and "also an input folder" in err  # refused before any work
    named = sorted((tmp_path / "in").iterdir())  # the same files named one by one: refused file by file
    code, err = run_cli(["restore", "--aligned", *named, "-o", tmp_path / "in", "--format", "same",
                         "--overwrite", "--weights", tiny_model_dir, "-q"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (the summary repeats them)
    assert code == 1 and sum("would overwrite an input file" in line for line in errors) == 3
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before
    code, err = run_cli(["restore", "--aligned", *inputs, tmp_path / "in" / "face0.jpg", "-o", tmp_path / "out",
                         "--weights", tiny_model_dir, "-q"], capsys)
    assert code == 1 and "output name face0.png is already used by" in err


def test_convert_round_trip_gives_identical_outputs(tmp_path, capsys, tiny_release, tiny_sd, tiny_pipe, monkeypatch):
    original = OSDFacePipeline.from_official.__func__
    monkeypatch.setattr(OSDFacePipeline, "from_official", classmethod(
        lambda cls, r, sd, **kw: original(cls, r, sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                          sample_size=TINY_SIZE, **kw)))
    for layout in ("merged", "separate"):
        code, err = run_cli(["convert", tiny_release, "--sd-model", tiny_sd, "-o", tmp_path / layout,
                             "--lora", layout], capsys)
        assert code == 0, err
        loaded = OSDFacePipeline.from_pretrained(tmp_path / layout, sd_model=tiny_sd)
        images = face_images(2, seed=7)
        a = loaded(images, output_type="np").images
        b = tiny_pipe(images, output_type="np").images
        assert np.array_equal(a, b)
    code, err = run_cli(["convert", tiny_release, "--sd-model", tiny_sd, "-o", tmp_path / "merged"], capsys)
    assert code == 2 and "already exists" in err


def test_sharding_under_torchrun_two_processes(tmp_path, tiny_model_dir):
    write_faces(tmp_path / "in", 5)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "osdface", "restore", "--aligned", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights",
           str(tiny_model_dir), "--device", "cpu", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = sorted(int(line.split("restored ")[1].split(",")[0]) for line in proc.stderr.splitlines()
                    if "restored " in line)
    assert counts == [2, 3]  # every file once, none twice
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"face{i}.png" for i in range(5)]


def test_output_folder_check_is_safe_when_processes_check_at_once(tmp_path):
    """The processes of a torchrun launch probe one output folder together: none may see the other's probe
    vanish (it used to fail one rank now and then with "cannot write there")."""
    import threading

    from osdface.cli.restore import check_output_folder

    errors = []

    def probe_often():
        for _ in range(200):
            try:
                check_output_folder(tmp_path / "out", [])
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    threads = [threading.Thread(target=probe_often) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and list((tmp_path / "out").iterdir()) == []


def test_degrade_writes_lq_set_with_manifest(tmp_path, capsys):
    import json

    write_faces(tmp_path / "hq", 3)
    (tmp_path / "hq" / "broken.png").write_bytes(b"\x89PNG garbage")
    code, err = run_cli(["degrade", tmp_path / "hq", "-o", tmp_path / "lq", "--preset", "codeformer",
                         "--size", 32, "--gt-dir", tmp_path / "gt", "-q"], capsys)
    assert code == 1 and "broken.png" in err and "3 written" in err
    manifest = json.loads((tmp_path / "lq" / "manifest.json").read_text())
    assert manifest["preset"] == "codeformer" and len(manifest["images"]) == 3
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == ["face0.png", "face1.png", "face2.png"]
