"""Hostile input and bad flags (issue 10): one clear line per failure, the rest of the batch done, nothing
lost. One regression test per numbered defect, then a seeded fuzz run over generated hostile files."""

import io
import json
import os
import socket
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import face_images
from test_cli import run_cli, write_faces

from osdface import files, image_utils
from osdface.batch_files import restore_files


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a command loads a model (setup errors must come first)."""
    import osdface.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(osdface.loading, "load_pipeline", refuse)


def aligned(tmp_path, tiny_model_dir, *extra):
    return ["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q", *extra]


# 1. usage errors: one line, exit 2, in every command
@pytest.mark.parametrize("args", [
    ["restore", "x", "-o", "o", "--batch-size", "0"], ["restore", "x", "-o", "o", "--batch-size", "abc"],
    ["restore", "x", "-o", "o", "--upscale", "0"], ["restore", "x", "-o", "o", "--fidelity", "2"],
    ["restore", "x", "-o", "o", "--max-faces", "0"], ["restore", "x", "-o", "o", "--bogus"], ["restore", "x"],
    ["restore"], ["train", "--nope"], ["train-vre", "--nope"], ["evaluate", "--nope"], ["degrade", "x"],
    ["align", "x"], ["convert"], ["benchmark", "--batch-sizes", "x"],
])
def test_usage_errors_are_one_line_exit_2(args, capsys, no_model):
    code, err = run_cli(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


def test_a_file_name_starting_with_a_dash_is_usable_after_double_dash(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    (tmp_path / "in" / "face0.png").rename(tmp_path / "in" / "-face.png")
    code, err = run_cli(["restore", "--aligned", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q", "--",
                         tmp_path / "in" / "-face.png"], capsys)
    assert code == 0 and (tmp_path / "out" / "-face.png").is_file()


# 2. and 12. --aligned on very thin images; documented non-square sizes
def test_thin_and_non_square_sizes(tiny_pipe):
    s = tiny_pipe.sample_size
    for h, w in [(3000, 1), (1, 3000), (100, 12), (12, 100), (7, 5)]:
        out = tiny_pipe(np.zeros((h, w, 3), np.uint8), output_type="np").images[0]
        long_side = max(h, w)
        assert out.shape[:2] == (max(1, round(h * s / long_side)), max(1, round(w * s / long_side))), (h, w)


# 3. one bad image never fails the good ones in its batch
def test_a_failing_image_is_isolated_from_its_batch(tmp_path):
    paths = write_faces(tmp_path / "in", 4)

    def restore_batch(images, srcs):
        if any(p.name == "face2.png" for p in srcs):
            raise RuntimeError("cannot handle this one\nsecond line")
        return images

    report = restore_files([tmp_path / "in"], tmp_path / "out", restore_batch, batch_size=4, progress=False,
                           log=lambda _: None)
    assert sorted(p.name for p in report.done) == ["face0.png", "face1.png", "face3.png"]
    assert len(report.failed) == 1 and "face2.png" in report.failed[0] and "\n" not in report.failed[0]
    assert paths[2].is_file()


# 4. --format same on a file without an extension
def test_format_same_without_extension(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "in").mkdir()
    Image.fromarray(face_images(1)[0]).save(tmp_path / "noext", format="PNG")
    code, err = run_cli(["restore", "--aligned", tmp_path / "noext", "-o", tmp_path / "out", "--weights",
                         tiny_model_dir, "--format", "same", "-q"], capsys)
    assert code == 0 and (tmp_path / "out" / "noext.png").is_file() and "Traceback" not in err


# 5. setup errors: early, one line, no model loaded
@pytest.mark.parametrize("extra, env, message", [
    (["--device", "foo"], {}, "not a device name"), (["--device", "cuda:0"], {}, "no CUDA device"),
    (["--detector", "retinaface"], {}, "unknown; available"), ([], {"WORLD_SIZE": "abc"}, "must be integers"),
    (["--device", "CPU", "--model", "paper"], {"OSDFACE_HOME": "/nonexistent"}, "weights not found"),
])
def test_setup_errors_come_before_the_model(tmp_path, capsys, monkeypatch, no_model, extra, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_no_input_at_all_loads_no_model(tmp_path, capsys, no_model):  # (issue 19, item 11: exit 2, one line)
    code, err = run_cli(["restore", tmp_path / "missing.png", "-o", tmp_path / "out"], capsys)
    assert code == 2 and "missing.png: no such file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# 6. outputs follow the umask, not the temp file's 0600
def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text_atomic(tmp_path / "a.txt", "x")
        with files.atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755


# 7. --output equal to an input folder
def test_output_equal_to_input_folder_is_refused(tmp_path, capsys, no_model):
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "in"], capsys)
    assert code == 2 and "also an input folder" in err


# 8. an unwritable output is found before any work
def test_unwritable_output_is_found_first(tmp_path, capsys, no_model):
    write_faces(tmp_path / "in", 1)
    (tmp_path / "file").write_text("not a folder")
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "file"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "file" / "sub"], capsys)
    assert code == 2 and "cannot write there" in err


# 9. long file names
def test_long_file_names(tmp_path):
    stem = "f" * 240
    write_faces(tmp_path / "in", 1)
    (tmp_path / "in" / "face0.png").rename(tmp_path / "in" / f"{stem}.png")
    report = restore_files([tmp_path / "in"], tmp_path / "out", lambda images, _: images, progress=False,
                           log=lambda _: None)
    assert report.failed == [] and (tmp_path / "out" / f"{stem}.png").is_file()


# 10. temp files of a killed run are swept; live ones are not
def test_stale_temp_files_are_swept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    dead = out / f".osdface-{host}-999999999-abc.tmp"
    alive = out / f".osdface-{host}-{os.getpid()}-abc.tmp"
    other = out / ".osdface-00000000-1-abc.tmp"  # another host's
    for p in (dead, alive, other):
        p.write_text("partial")
    write_faces(tmp_path / "in", 1)
    restore_files([tmp_path / "in"], out, lambda images, _: images, progress=False, log=lambda _: None)
    assert not dead.exists() and alive.exists() and other.exists()


# 11. one pixel budget: --aligned inputs, upscaled outputs, an exact message
def test_pixel_budget(tmp_path, capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setattr(image_utils, "MAX_PHOTO_PIXELS", 1000)
    monkeypatch.setattr(image_utils.read_image, "__defaults__", (1000, None))  # (max_pixels, max_side)
    write_faces(tmp_path / "in", 1)  # 32×32 = 1,024 pixels
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 1 and "32×32 = 1,024 pixels is over the limit of 1,000" in err


def test_upscaled_output_budget(tmp_path, capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setattr(image_utils, "MAX_PHOTO_PIXELS", 2000)
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q",
                         "--upscale", "2"], capsys)
    assert code == 1 and "the output would be 4,096 pixels (×2), over the limit of 2,000" in err


# 12. smaller items
def test_grayscale_stays_grayscale_in_aligned_mode(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "in").mkdir()
    Image.fromarray(face_images(1)[0][..., 0]).save(tmp_path / "in" / "g.png")
    code, _ = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 0 and Image.open(tmp_path / "out" / "g.png").mode == "L"


def test_pipe_and_links_and_skipped_entries_are_named(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "scan.heic").write_bytes(b"ftypheic")
    (tmp_path / "in" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    code, err = run_cli(aligned(tmp_path, tiny_model_dir) + [tmp_path / "pipe.png", "--report",
                                                            tmp_path / "report.json"], capsys)
    assert code == 1
    assert "pipe.png: not a regular file" in err
    assert "sub: a subfolder" in err and "scan.heic: not an image extension" in err
    assert "dangling.png" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert any("pipe.png" in line for line in report["failed"]) and len(report["done"]) == 1
    assert "failed:" in err.split("restored 1,")[1]  # the summary lists the failed files


def test_non_interactive_progress_is_plain_lines(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 3)
    code, err = run_cli(["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "out", "--weights",
                         tiny_model_dir, "--batch-size", "2"], capsys)  # capsys: stderr is not a terminal
    assert code == 0 and "\r" not in err and "restore: 2/3 files" in err and "restore: 3/3 files" in err


def test_pil_warnings_name_the_file(tmp_path, capsys):
    import warnings

    path = tmp_path / "w.png"
    Image.fromarray(face_images(1)[0]).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Image.MAX_IMAGE_PIXELS, old = 600, Image.MAX_IMAGE_PIXELS  # 600 < 1,024 < 2×600: PIL warns
        try:
            image_utils.read_image(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old
    assert caught and all(str(path) in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- fuzz


def _hostile_files(folder: Path, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(good, bad) files: a few dozen generated hostile inputs next to valid faces."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good, bad = [], []
    faces = face_images(6, seed=seed)
    for i, face in enumerate(faces):  # valid in several modes and formats
        im = Image.fromarray(face)
        im = [im, im.convert("L"), im.convert("P"), im.convert("CMYK"), im.convert("RGBA"), im][i]
        fmt = ["PNG", "PNG", "PNG", "JPEG", "PNG", "WEBP"][i]
        path = folder / f"good{i}.{ {'PNG': 'png', 'JPEG': 'jpg', 'WEBP': 'webp'}[fmt] }"
        im.save(path, format=fmt)
        good.append(path)
    buf = io.BytesIO()
    Image.fromarray(faces[0]).save(buf, format="PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(faces[1]).save(buf, format="JPEG")
    jpg = buf.getvalue()
    for k in range(24):  # corrupt bytes: truncations, bit flips, random data, empty
        kind = k % 4
        data = [png[: rng.integers(8, len(png) // 2)], bytearray(jpg), rng.bytes(int(rng.integers(1, 400))), b""][kind]
        if kind == 1:
            for pos in rng.integers(2, 20, 6):  # flip bits inside the JPEG header: undecodable
                data[pos] ^= 0xFF
            data = bytes(data[:40])
        path = folder / f"bad{k:02d}.{['png', 'jpg', 'png', 'webp'][kind]}"
        path.write_bytes(data)
        bad.append(path)
    bomb = folder / "bomb.png"  # a valid 8×8 PNG whose header claims 60000×60000 pixels
    import struct
    import zlib

    small = io.BytesIO()
    Image.new("L", (8, 8)).save(small, format="PNG")
    data = bytearray(small.getvalue())
    data[16:24] = struct.pack(">II", 60000, 60000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    bad.append(bomb)
    return good, bad


def test_fuzz_no_traceback_every_bad_file_named_every_good_file_done(tmp_path, capsys, tiny_model_dir):
    good, bad = _hostile_files(tmp_path / "in")
    before = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--batch-size", "4", "--format", "same"), capsys)
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    for path in bad:
        assert sum(str(path) in line for line in errors) == 1, path
    for path in good:
        out = tmp_path / "out" / (path.stem + path.suffix)
        assert out.is_file(), path
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before  # inputs untouched
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no temp file left


# ----------------------------------------------------------------------------- training commands (13–15)


def test_too_few_images_fail_before_any_model_or_run_folder(tmp_path):
    from osdface.errors import DatasetError
    from osdface.training import stage2
    from osdface.training.stage1 import train_vre
    from osdface.training.stage1_config import load_stage1_config
    from osdface.training.stage2_config import load_stage2_config

    write_faces(tmp_path / "one", 1)
    cfg = load_stage2_config("stage2_tiny", [f"data.roots=[{tmp_path / 'one'}]", "model.vre=/nonexistent/vre",
                                             f"train.output_dir={tmp_path / 'run2'}"])
    with pytest.raises(DatasetError, match="1 images, fewer than one batch of 2"):
        stage2.train(cfg)  # the VRE path is bogus: the data check comes first
    assert not (tmp_path / "run2").exists()
    cfg1 = load_stage1_config("stage1_tiny", [f"data.roots=[{tmp_path / 'one'}]", f"train.output_dir={tmp_path / 'run1'}"])
    with pytest.raises(DatasetError, match="fewer than one batch"):
        train_vre(cfg1)
    assert not (tmp_path / "run1" / "config.yaml").exists()
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"x{i}.png").write_bytes(b"broken")
    cfg = load_stage2_config("stage2_tiny", [f"data.roots=[{tmp_path / 'bad'}]", "model.vre=/nonexistent/vre",
                                             f"train.output_dir={tmp_path / 'run3'}"])
    with pytest.raises(DatasetError, match="can be read"):
        stage2.train(cfg)


def test_relative_sd_model_is_recorded_absolute(tmp_path, monkeypatch, tiny_sd, tiny_model_dir):
    from osdface.training import stage2
    from osdface.training.stage2_config import load_stage2_config

    monkeypatch.chdir(Path(tiny_sd).parent)
    cfg = load_stage2_config("stage2_tiny", [f"model.sd_model={Path(tiny_sd).name}", f"model.vre={tiny_model_dir}",
                                             "losses.gan=0"])
    pipe, _ = stage2.build_models(cfg)
    assert pipe.base_model == str(Path(tiny_sd).resolve())


def test_stage1_held_out_grid_step0_print_config_and_resume_line(tmp_path, capsys, caplog):
    import logging

    from test_stage1_training import scalars

    from osdface.training.stage1 import train_vre
    from osdface.training.stage1_config import load_stage1_config

    write_faces(tmp_path / "train", 4, seed=1)
    write_faces(tmp_path / "val", 2, seed=2)
    overrides = [f"data.roots=[{tmp_path / 'train'}]", f"data.val_roots=[{tmp_path / 'val'}]", "train.max_steps=2",
                 "train.sample_every=2", "train.checkpoint_every=1", "train.num_samples=2",
                 f"train.output_dir={tmp_path / 'run'}"]
    run = train_vre(load_stage1_config("stage1_tiny", overrides, phase="lq"))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["samples-step-000000.png", "samples-step-000002.png"]
    assert len(scalars(run, "val/lq_l1")) == 2
    grid = np.asarray(Image.open(run / "samples" / "samples-step-000000.png"))
    val_faces = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "val").glob("*.png"))]
    diff = np.abs(grid[:32, 64:96].astype(int) - val_faces[0][..., :3].astype(int))
    assert diff.max() <= 1  # the HQ column shows held-out faces

    from typer.testing import CliRunner

    from osdface.cli import app

    result = CliRunner().invoke(app, ["train-vre", "--config", "stage1_tiny", "--print-config", "data.val_roots=[v]"])
    assert result.exit_code == 0 and "val_roots:\n  - v" in result.output
    with caplog.at_level(logging.INFO):
        code, err = run_cli(["train-vre", "--resume", "latest", "--output", run, "train.max_steps=3"], capsys)
    assert code == 0 and "resumed from" in caplog.text + err


def test_bad_values_inside_commands_are_one_line(tmp_path, capsys):
    write_faces(tmp_path / "hq", 1)
    for args, message in [(["degrade", tmp_path / "hq", "-o", tmp_path / "lq", "--preset", "nope"], "unknown; available"),
                          (["train", "--config", "stage2_mini", "foo.bar=1"], "unknown config key foo"),
                          (["train-vre", "--config", "stage1_mini", "--phase", "zz"], "phase must be one of")]:
        code, err = run_cli(args, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_dtype_auto_is_the_default(tmp_path, capsys, monkeypatch, tiny_model_dir):
    from osdface.hardware import auto_dtype

    monkeypatch.delenv("OSDFACE_DTYPE")
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    chosen, reason = auto_dtype(__import__("torch").device("cpu"))
    assert code == 0 and f"--dtype auto: {str(chosen).removeprefix('torch.')} on cpu ({reason})" in err
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--dtype", "float64"), capsys)
    assert code == 2 and "--dtype must be auto or one of" in err


# ----------------------------------------------------------------------------- issue 19: the other commands


def tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed): file → sha256, folder → "dir", link → its target."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# 1. data loss in degrade (the issue's own case), and align's manifest in its input folder
def test_degrade_into_its_input_is_refused_before_any_work(tmp_path, capsys):
    hq = tmp_path / "hq"
    hq.mkdir()
    Image.fromarray(face_images(1, size=200)[0][:, :150]).save(hq / "photo.png")  # a 150×200 photo
    before = tree(hq)
    for extra, message in [(["-o", tmp_path / "out", "--gt-dir", hq], "--gt-dir"),
                           (["-o", hq], "also an input folder"),
                           (["-o", tmp_path / "out", "--gt-dir", tmp_path / "out"], "is the --output folder")]:
        code, err = run_cli(["degrade", hq, *extra, "--size", "64", "-q"], capsys)
        assert code == 2 and message in one_error_line(err)
        assert tree(hq) == before and not (tmp_path / "out").exists()


def test_align_never_writes_its_manifest_into_an_input_or_over_someone_elses(tmp_path, capsys):
    write_faces(tmp_path / "photos", 2)
    before = tree(tmp_path / "photos")
    code, err = run_cli(["align", tmp_path / "photos", "-o", tmp_path / "photos", "-q"], capsys)
    assert code == 2 and "also an input folder" in one_error_line(err) and tree(tmp_path / "photos") == before
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text('{"mine": true}')
    code, err = run_cli(["align", tmp_path / "photos", "-o", tmp_path / "out", "-q"], capsys)
    assert code == 2 and "manifest.json that osdface align did not write" in one_error_line(err)
    assert (tmp_path / "out" / "manifest.json").read_text() == '{"mine": true}'
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["manifest.json"]


# 3. and 6. usage errors of align, degrade, evaluate and download: one line, exit 2, before any work
@pytest.mark.parametrize("case", [
    "align --size 100000", "align --detector foo", "align -o FILE", "align --detector-weights /nonexistent",
    "degrade --size 100000", "degrade HQ missing", "evaluate -o FILE", "evaluate --pred missing",
    "evaluate --pred empty", "evaluate --gt missing", "evaluate --gt empty", "evaluate --fid-ref missing",
    "download --home FILE", "download --home FILE/sub", "download --home /proc/x", "download --list --home FILE",
])
def test_bad_paths_and_flags_are_one_line_before_any_work(case, tmp_path, capsys, monkeypatch):
    import osdface.metrics.evaluate
    from osdface.face import align_folder

    def refuse(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(osdface.metrics.evaluate, "evaluate_folders", refuse)
    monkeypatch.setattr(align_folder, "create_detector", refuse)
    write_faces(tmp_path / "in", 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "FILE").write_text("a file")
    if case == "download --home /proc/x" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    out = tmp_path / "out"
    args = {
        "align --size 100000": ["align", tmp_path / "in", "-o", out, "--size", "100000"],
        "align --detector foo": ["align", tmp_path / "in", "-o", out, "--detector", "foo"],
        "align -o FILE": ["align", tmp_path / "in", "-o", tmp_path / "FILE"],
        "align --detector-weights /nonexistent": ["align", tmp_path / "in", "-o", out, "--detector-weights",
                                                  "/nonexistent"],
        "degrade --size 100000": ["degrade", tmp_path / "in", "-o", out, "--size", "100000"],
        "degrade HQ missing": ["degrade", tmp_path / "missing", "-o", out],
        "evaluate -o FILE": ["evaluate", "-p", tmp_path / "in", "-o", tmp_path / "FILE", "--metrics", "psnr"],
        "evaluate --pred missing": ["evaluate", "-p", tmp_path / "missing", "-o", out],
        "evaluate --pred empty": ["evaluate", "-p", tmp_path / "empty", "-o", out],
        "evaluate --gt missing": ["evaluate", "-p", tmp_path / "in", "--gt", tmp_path / "missing", "-o", out],
        "evaluate --gt empty": ["evaluate", "-p", tmp_path / "in", "--gt", tmp_path / "empty", "-o", out],
        "evaluate --fid-ref missing": ["evaluate", "-p", tmp_path / "in", "--fid-ref", tmp_path / "missing.npz",
                                       "-o", out],
        "download --home FILE": ["download", "--home", tmp_path / "FILE", "-q"],
        "download --home FILE/sub": ["download", "--home", tmp_path / "FILE" / "sub", "-q"],
        "download --home /proc/x": ["download", "--home", "/proc/x", "-q"],
        "download --list --home FILE": ["download", "--list", "--home", tmp_path / "FILE"],
    }[case]
    before = tree(tmp_path)
    code, err = run_cli(args, capsys)
    assert code == 2, err
    one_error_line(err)
    assert tree(tmp_path) == before  # nothing made, nothing written


# Also: for any pair of (input, output) folders, no command writes inside an input folder
RELATIONS = ["apart", "equal", "output inside input", "input inside output", "output is a link to input",
             "output inside a link to input", "input is a link to output"]
COMMANDS = ["align", "degrade -o", "degrade --gt-dir", "evaluate --pred", "evaluate --gt"]


def _folders(tmp_path: Path, relation: str) -> tuple[Path, Path, Path]:
    """(the real input folder, the input as given, the output as given) for one relation."""
    real = {"input inside output": tmp_path / "out" / "photos"}.get(relation, tmp_path / "photos")
    write_faces(real, 3, size=64)
    (tmp_path / "link").symlink_to(real if "link to input" in relation else tmp_path / "out",
                                   target_is_directory=True)
    given_in = tmp_path / "link" if relation == "input is a link to output" else real
    output = {"apart": tmp_path / "out", "equal": real, "output inside input": real / "sub",
              "input inside output": tmp_path / "out", "output is a link to input": tmp_path / "link",
              "output inside a link to input": tmp_path / "link" / "sub",
              "input is a link to output": tmp_path / "out"}[relation]
    if relation == "input is a link to output":
        real.rename(tmp_path / "out")
        real = tmp_path / "out"
    return real, given_in, output


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_writes_inside_an_input_folder(command, relation, tmp_path, capsys):
    real, given_in, output = _folders(tmp_path, relation)
    other = tmp_path / "other"
    write_faces(other, 3, size=64)
    args = {"align": ["align", given_in, "-o", output, "--size", "32"],
            "degrade -o": ["degrade", given_in, "-o", output, "--size", "32"],
            "degrade --gt-dir": ["degrade", given_in, "-o", tmp_path / "lq", "--gt-dir", output, "--size", "32"],
            "evaluate --pred": ["evaluate", "-p", given_in, "--gt", other, "-o", output, "--metrics", "psnr"],
            "evaluate --gt": ["evaluate", "-p", other, "--gt", given_in, "-o", output, "--metrics", "psnr"]}[command]
    before, before_other = tree(real), tree(other)
    code, err = run_cli([*args, "-q"], capsys)
    assert "Traceback" not in err
    assert tree(real) == before and tree(other) == before_other  # names, kinds, links and bytes
    writes_into_input = relation not in ("apart", "input inside output")
    if writes_into_input:
        assert code == 2 and "input folder" in one_error_line(err)
    else:
        assert code == 0, err


# Also: the seeded fuzz run over align, degrade and evaluate
def test_fuzz_align_degrade_evaluate(tmp_path, capsys):
    good, bad = _hostile_files(tmp_path / "in")
    before = tree(tmp_path / "in")
    runs = {"align": ["align", tmp_path / "in", "-o", tmp_path / "aligned", "--size", "32", "-q"],
            "degrade": ["degrade", tmp_path / "in", "-o", tmp_path / "lq", "--gt-dir", tmp_path / "gt", "--size", "32",
                        "-q"]}
    for name, args in runs.items():
        code, err = run_cli(args, capsys)
        assert code == 1 and "Traceback" not in err, name
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == len(bad), name
        for path in bad:
            assert sum(str(path) in line for line in errors) == 1, (name, path)
        assert tree(tmp_path / "in") == before, name
    assert sorted(p.stem for p in (tmp_path / "lq").glob("*.png")) == sorted(p.stem for p in good)
    assert json.loads((tmp_path / "aligned" / "manifest.json").read_text())["no_face"] == [str(p) for p in good]
    # evaluate: the hostile files as restored images, each paired with a good ground truth
    write_faces(tmp_path / "clean", 1)
    (tmp_path / "truth").mkdir()
    for path in good + bad:
        (tmp_path / "truth" / f"{path.stem}.png").write_bytes((tmp_path / "clean" / "face0.png").read_bytes())
    code, err = run_cli(["evaluate", "-p", tmp_path / "in", "--gt", tmp_path / "truth", "-o", tmp_path / "ev",
                         "--metrics", "psnr,ssim", "-q"], capsys)
    assert code == 0 and "Traceback" not in err
    means = json.loads((tmp_path / "ev" / "means_in.json").read_text())
    assert means["n_images"] == len(good)
    for path in bad:
        assert sum(str(path) in line for line in means["problems"]) == 1, path
    assert tree(tmp_path / "in") == before
    for folder in ("aligned", "lq", "gt", "ev"):
        assert not [p for p in (tmp_path / folder).rglob(".*")], folder  # no temp file left


# Debt: the up-front checks' one home (cli/checks.py); check_output_folder covers restore's own check
def test_shared_checks(tmp_path):
    from osdface.cli import checks
    from osdface.errors import OSDFaceError

    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("x")
    checks.check_output_folder(tmp_path / "new" / "out", [tmp_path / "in", tmp_path / "file"])
    assert (tmp_path / "new" / "out").is_dir() and not list((tmp_path / "new" / "out").iterdir())  # made, probe gone
    checks.check_output_folder(tmp_path / "later", create=False)
    assert not (tmp_path / "later").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for output, message in [(tmp_path / "file", "is a file, not a folder"), (tmp_path / "in", "also an input folder"),
                            (tmp_path / "in" / "a" / "b", "inside the input folder"),
                            (tmp_path / "file" / "sub", "cannot write there")]:
        for create in (True, False):
            with pytest.raises(OSDFaceError, match=message):
                checks.check_output_folder(output, [tmp_path / "in"], create=create)
    assert not (tmp_path / "in" / "a").exists()
    checks.check_new_file(tmp_path / "report.json", "--report")
    for path, message in [(tmp_path, "is a folder"), (tmp_path / "nowhere" / "r.json", "does not exist"),
                          (tmp_path / "file" / "r.json", "is not a folder")]:
        with pytest.raises(OSDFaceError, match=message):
            checks.check_new_file(path, "--report")
    assert checks.check_int_range(5, 0, 2**63 - 1, "--seed") == 5
    with pytest.raises(OSDFaceError, match="--seed 99999999999999999999999: must be between 0 and"):
        checks.check_int_range(99999999999999999999999, 0, 2**63 - 1, "--seed")
