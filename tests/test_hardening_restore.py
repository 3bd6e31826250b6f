"""Issue 19 for ``osdface restore`` (items 2, 4, 5, 8–11 and the plan step): every case a regression test.
Usage errors are one ``error:`` line, exit status 2, before the model loads (the ``no_model`` fixture
fails the test if it loads); nothing is left half-written. (align's part: tests/test_align_cli.py.)"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_SIZE, face_images
from test_cli import SRC, run_cli, write_faces
from test_hardening import one_error_line, tree

from osdface import batch_files


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a command loads a model (usage errors must come first)."""
    import osdface.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(osdface.loading, "load_pipeline", refuse)


@pytest.fixture
def needs_mtcnn():
    """Photo mode, videos and align detect faces (MTCNN's weights come with facenet-pytorch)."""
    from osdface.errors import WeightsNotFoundError
    from osdface.face import create_detector

    try:
        create_detector("mtcnn")
    except WeightsNotFoundError:
        pytest.skip("MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")


def aligned(tmp_path, tiny_model_dir, *extra):
    return ["restore", "--aligned", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q", *extra]


def small_clip(path: Path, frames: int = 3, size=(64, 48)) -> Path:
    """A few frames of noise (no face needed: these tests stop before any restoration)."""
    from osdface.video.synthetic import write_clip

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(frames)], rate=10)
    return path


# ----------------------------------------------------------------------------- 2. --report


@pytest.mark.parametrize("where, message", [("folder", "is a folder; give a file name"),
                                            ("missing parent", "does not exist"),
                                            ("inside the input", "inside the input folder")])
def test_report_path_is_checked_before_the_model(where, message, tmp_path, capsys, no_model):
    write_faces(tmp_path / "in", 1)
    report = {"folder": tmp_path, "missing parent": tmp_path / "nowhere" / "dir" / "r.json",
              "inside the input": tmp_path / "in" / "r.json"}[where]
    before = tree(tmp_path)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--report", report], capsys)
    assert code == 2 and message in one_error_line(err)
    assert tree(tmp_path) == before  # no folder made, no temp file anywhere (also not in /)
    assert not [p for p in Path("/").glob(".osdface-*")]


def test_report_path_that_is_a_sidecar_of_this_run_is_refused(tmp_path, capsys, no_model):
    """--report out/face0.json would be replaced by face0.png's sidecar (or replace it): refused up front;
    with --no-sidecar the name is free."""
    write_faces(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    before = tree(tmp_path)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--report", tmp_path / "out" / "face0.json"],
                        capsys)
    assert code == 2 and "sidecar goes" in one_error_line(err) and "face0.png" in one_error_line(err)
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- 4. flags that used to fail late


@pytest.mark.parametrize("extra, message", [
    (["--seed", "99999999999999999999999"], "--seed 99999999999999999999999: must be between 0 and"),
    (["--seed", "-1"], "must be between 0 and 18,446,744,073,709,551,615"),
    (["--detector-weights", "/nonexistent"], "--detector-weights /nonexistent: no such file or folder"),
    (["--min-face-size", "inf"], "--min-face-size inf: must be a finite number"),
    (["--min-face-size", "nan"], "--min-face-size"),
    (["--fidelity", "nan"], "Invalid value for '--fidelity'"),  # (typer's two bounds refuse nan)
    (["-o", "IN/sub"], "inside the input folder"),  # checks.check_output_folder now (the plan step)
])
def test_bad_flags_are_usage_errors_before_the_model(extra, message, tmp_path, capsys, no_model):
    write_faces(tmp_path / "in", 1)
    extra = [str(tmp_path / "in" / "sub") if e == "IN/sub" else e for e in extra]
    mode = [] if "--detector-weights" in extra else ["--aligned"]  # (photo mode would build the detector first)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", *mode, *extra], capsys)
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "in" / "sub").exists()


def test_the_largest_seed_torch_takes_is_accepted(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--posterior", "sample", "--seed", str(2**64 - 1)), capsys)
    assert code == 0, err


@pytest.mark.parametrize("extra, message", [
    (["--video-codec", "nope"], "--video-codec nope: no such encoder"),
    (["--video-codec", "aac"], "--video-codec aac: an audio encoder, not a video one"),
    (["--video-codec", "mjpeg"], "--video-codec mjpeg: cannot encode mp4 with it"),  # (its pixel format)
    (["--video-option", "crf=abc"], "--video-option crf=abc: refused by libx264, the encoder for mp4"),
    (["--video-option", "preset=superslow"], "invalid preset 'superslow'"),
    (["--video-option", "nonsense=1"], "--video-option nonsense=1: libx264 has no such option"),
    (["--video-option", "crf"], "expected KEY=VALUE"),
    (["--aligned"], "drop --aligned"),
    (["--upscale", "4"], "the output would be 49,152 pixels (×4), over the limit of 20,000; lower --upscale"),
])
def test_bad_video_flags_are_usage_errors_before_the_model(extra, message, tmp_path, capsys, monkeypatch, no_model):
    from osdface import image_utils

    monkeypatch.setattr(image_utils, "MAX_PHOTO_PIXELS", 20_000)  # a 64×48 clip: 3,072 px; ×4: 49,152
    small_clip(tmp_path / "in" / "clip.mp4")
    before = tree(tmp_path)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", *extra], capsys)
    assert code == 2 and message in one_error_line(err), err
    assert "rerun to resume" not in err
    assert tree(tmp_path) == before  # no output folder, no .clip.mp4.osdface-partial/


def test_an_unreadable_clip_is_still_one_line_in_the_run(tmp_path, capsys, tiny_model_dir, needs_mtcnn):
    """A clip the plan cannot probe is not a usage error: the run names it and restores the rest."""
    small_clip(tmp_path / "in" / "good.mp4")
    (tmp_path / "in" / "bad.mp4").write_bytes(b"not a video at all" * 100)
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q"], capsys)
    assert code == 1 and sum("bad.mp4: not a readable video" in line for line in err.splitlines()
                             if line.startswith("error:")) == 1
    assert (tmp_path / "out" / "good.mp4").is_file()


# ----------------------------------------------------------------------------- 5. nothing written half


def _fail_on(monkeypatch, module, name, when, error):
    """``module.name`` raises ``error`` for the targets ``when(target)`` picks, else does its work."""
    original = getattr(module, name)

    def write(*args):
        target = next(Path(a) for a in args if isinstance(a, (str, Path)))
        if when(target):
            raise error
        return original(*args)

    monkeypatch.setattr(module, name, write)


def test_a_run_stopped_between_image_and_sidecar_is_repaired(tmp_path, capsys, monkeypatch, tiny_model_dir):
    write_faces(tmp_path / "in", 2)
    _fail_on(monkeypatch, batch_files, "write_text_atomic", lambda t: t.name == "face0.json", KeyboardInterrupt())
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 130 and "Traceback" not in err
    out = tmp_path / "out"
    assert (out / "face0.png").is_file() and not (out / "face0.json").exists()  # the image first, the sidecar last
    monkeypatch.undo()
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 0 and "restored 2, skipped 0" in err  # no sidecar: not done, so redone
    assert sorted(p.name for p in out.iterdir()) == ["face0.json", "face0.png", "face1.json", "face1.png"]
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 0 and "restored 0, skipped 2" in err


@pytest.mark.parametrize("failing", ["sidecar", "image", "compare"])
def test_a_full_disk_leaves_nothing_of_that_output(failing, tmp_path, capsys, monkeypatch, tiny_model_dir):
    write_faces(tmp_path / "in", 2)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if failing == "sidecar":
        _fail_on(monkeypatch, batch_files, "write_text_atomic", lambda t: t.name == "face0.json", full)
    else:
        where = {"image": lambda t: t.name == "face0.png" and t.parent.name == "out",
                 "compare": lambda t: t.parent.name == "compare" and t.name == "face0.png"}[failing]
        _fail_on(monkeypatch, batch_files, "write_image_atomic", where, full)
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--compare"), capsys)
    out = tmp_path / "out"
    assert code == 1 and "face0.png: cannot write output (No space left on device)" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "compare", "compare/face1.png", "face1.json", "face1.png"]  # face0: nothing at all; no temp file
    monkeypatch.undo()
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--compare"), capsys)
    assert code == 0 and "restored 1, skipped 1" in err and (out / "face0.json").is_file()
    assert (out / "compare" / "face0.png").is_file()


def test_orphan_sidecars_of_ours_are_swept_and_others_kept(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    ours = {"input": "in/gone.png", "input_size_wh": [32, 32], "upscale": 1.0, "faces": []}
    (out / "gone.json").write_text(json.dumps(ours))  # an older version's sidecar, its image never written
    (out / "notes.json").write_text('{"mine": true}')  # the user's, no image of that name either
    (out / "kept.json").write_text(json.dumps(ours))
    Image.new("RGB", (4, 4)).save(out / "kept.jpg")  # a sidecar with its image (another --format): kept
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["face0.json", "face0.png", "kept.jpg", "kept.json", "notes.json"]
    assert (out / "notes.json").read_text() == '{"mine": true}'


def test_a_json_file_osdface_did_not_write_is_never_replaced(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "face0.json").write_text('{"mine": true}')
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 1 and "face0.json is there and osdface did not write it; it is not replaced" in err
    assert (tmp_path / "out" / "face0.json").read_text() == '{"mine": true}'
    assert not (tmp_path / "out" / "face0.png").exists() and (tmp_path / "out" / "face1.json").is_file()


def test_a_clip_stopped_between_output_and_sidecar_is_repaired(tmp_path, capsys, monkeypatch, tiny_model_dir, needs_mtcnn):
    from osdface.video import clip

    small_clip(tmp_path / "in" / "c.mp4", frames=4)
    args = ["restore", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q"]
    _fail_on(monkeypatch, clip, "write_text_atomic", lambda t: t.name == "c.mp4.json", KeyboardInterrupt())
    code, err = run_cli(args, capsys)
    out = tmp_path / "out"
    assert code == 130 and (out / "c.mp4").is_file() and not (out / "c.mp4.json").exists()  # the clip first
    monkeypatch.undo()
    code, err = run_cli(args, capsys)
    assert code == 0 and "restored 1" in err and "resuming at frame 4" in err  # its segments were kept
    assert json.loads((out / "c.mp4.json").read_text())["frames"][3]["frame"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["c.mp4", "c.mp4.json"]  # the work folder is gone
    (out / "c.mp4").unlink()  # the clip deleted: its sidecar (ours) is an orphan, swept by the next run
    (out / "d.mp4.json").write_text('{"frames": "mine"}')
    code, err = run_cli(args + ["--no-sidecar"], capsys)
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["c.mp4", "d.mp4.json"]


# ----------------------------------------------------------------------------- 8. honest outputs


def test_photo_mode_keeps_gray_and_gray_with_alpha(tmp_path, capsys, tiny_model_dir, needs_mtcnn):
    face = face_images(1, size=48)[0]
    (tmp_path / "in").mkdir()
    gray = Image.fromarray(face).convert("L")
    gray.save(tmp_path / "in" / "l.png")
    gray.convert("1").save(tmp_path / "in" / "bits.png")
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(tmp_path / "in" / "deep.png")
    la = Image.merge("LA", (gray, Image.new("L", gray.size, 128)))
    la.save(tmp_path / "in" / "la.png")
    code, err = run_cli(["restore", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_model_dir, "-q"], capsys)
    assert code == 0, err
    modes = {p.name: Image.open(p).mode for p in (tmp_path / "out").glob("*.png")}
    assert modes == {"l.png": "L", "bits.png": "L", "deep.png": "L", "la.png": "LA"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "la.png"))[..., 1], np.full((48, 48), 128))
    code, err = run_cli(["restore", tmp_path / "in" / "la.png", "-o", tmp_path / "jpg", "--weights", tiny_model_dir,
                         "-q", "--format", "jpg", "--compare"], capsys)
    assert code == 0 and Image.open(tmp_path / "jpg" / "la.jpg").mode == "L" and "alpha channel dropped" in err


def test_unused_flags_get_a_note(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--sd-model", "/somewhere/sd21", "--video-codec", "libx264",
                                "--video-option", "crf=20", "--report", tmp_path / "r.json"), capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert f"note: --sd-model /somewhere/sd21: not used; {tiny_model_dir}, a merged osdface folder, holds its own" \
           " UNet and VAE" in notes
    assert "note: --video-codec, --video-option: no video among the inputs; not used" in notes
    assert len(json.loads((tmp_path / "r.json").read_text())["notes"]) == 2


def test_plan_step_holds_the_checked_run(tmp_path, tiny_model_dir, needs_mtcnn):
    from osdface.cli.restore import plan_restore

    write_faces(tmp_path / "in", 2)
    small_clip(tmp_path / "in" / "clip.mp4")
    plan = plan_restore(inputs=[tmp_path / "in"], output=tmp_path / "out", weights=tiny_model_dir, model="auto",
                        detail_guard="off", identity_guard="off", dtype="float32", device="cpu")
    assert plan.videos == [tmp_path / "in" / "clip.mp4"] and plan.image_inputs == [tmp_path / "in"]
    assert plan.video_infos[plan.videos[0]].upright_size == (64, 48) and plan.face_detector is not None
    assert plan.notes == [] and (tmp_path / "out").is_dir()  # the output folder is made last, when all passed


# ----------------------------------------------------------------------------- 9. folder entries passed over


def test_fifo_device_link_and_extension_only_names_get_a_note(tmp_path, capsys, tiny_model_dir):
    write_faces(tmp_path / "in", 1)
    os.mkfifo(tmp_path / "in" / "pipe.png")
    (tmp_path / "in" / "null.png").symlink_to("/dev/null")
    (tmp_path / "in" / ".png").write_bytes((tmp_path / "in" / "face0.png").read_bytes())
    code, err = run_cli(aligned(tmp_path, tiny_model_dir), capsys)
    assert code == 0 and "restored 1," in err and "3 notes" in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert f"note: {tmp_path / 'in' / 'pipe.png'}: not a regular file (a pipe, socket or device); skipped" in notes
    assert f"note: {tmp_path / 'in' / 'null.png'}: not a regular file (a pipe, socket or device, through a link); " \
           "skipped" in notes
    assert any(line.startswith(f"note: {tmp_path / 'in' / '.png'}: a hidden file named only an extension")
               for line in notes)


# ----------------------------------------------------------------------------- 10. memory


def test_a_100_mp_aligned_jpeg_is_decoded_reduced(tmp_path, tiny_model_dir):
    """A 10000×10000 --aligned JPEG: peak memory ≤ 1.5 GB (it was 5.4 GB), measured in a child process."""
    (tmp_path / "in").mkdir()
    ramp = Image.linear_gradient("L").resize((10000, 10000), Image.Resampling.BILINEAR)
    Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_90), ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
                ).save(tmp_path / "in" / "big.jpg", quality=90)
    del ramp
    command = [sys.executable, "-m", "osdface", "restore", "--aligned", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
               "--weights", str(tiny_model_dir), "-q"]
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(p.stderr)")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", measure, *command], check=False, capture_output=True, text=True, env=env,
                          timeout=300)
    code, peak_kb = map(int, proc.stdout.split("\n")[0].split())
    assert code == 0, proc.stdout
    assert peak_kb < 1.5 * 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    assert Image.open(tmp_path / "out" / "big.png").size == (TINY_SIZE, TINY_SIZE)  # (--detail-guard off here)
    assert json.loads((tmp_path / "out" / "big.json").read_text())["input_size_wh"] == [10000, 10000]


def test_aligned_crops_larger_than_the_working_size_are_capped_with_a_note(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "in").mkdir()
    Image.fromarray(face_images(1, size=64)[0]).resize((1500, 1500)).save(tmp_path / "in" / "big.jpg", quality=95)
    Image.fromarray(face_images(1, size=64)[0]).save(tmp_path / "in" / "small.png")
    code, err = run_cli(aligned(tmp_path, tiny_model_dir, "--detail-guard", "on"), capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "big.png").size == (1024, 1024)  # under the guard: its size, capped
    assert Image.open(tmp_path / "out" / "small.png").size == (64, 64)  # its own size (> 1.1·32)
    assert "big.jpg: a 1500×1500 crop: restored at 1024×1024" in err and "small.png: a" not in err
    sidecar = json.loads((tmp_path / "out" / "big.json").read_text())
    assert sidecar["input_size_wh"] == [1500, 1500] and sidecar["decoded_size_wh"] == [1024, 1024]


# ----------------------------------------------------------------------------- 11. no usable input


@pytest.mark.parametrize("inputs, message", [
    (["missing.png"], "missing.png: no such file or folder (nothing to restore)"),
    (["a.png", "b.png", "empty"], "nothing to restore: "),
])
def test_no_usable_input_is_one_line_before_the_model(inputs, message, tmp_path, capsys, no_model):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["restore", *[tmp_path / i for i in inputs], "-o", tmp_path / "out"], capsys)
    assert code == 2 and message in one_error_line(err) and not (tmp_path / "out").exists()
