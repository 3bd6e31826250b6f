"""The web page's work (`osdface.ui.jobs`) and handlers (`osdface.ui.page`) with the tiny model, no browser.

The page's own tests need gradio (the ui extra); in CI (CI set) a missing gradio fails instead of skipping."""

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osdface.errors import OSDFaceError
from osdface.image_utils import read_photo
from osdface.photos import make_face_restorer
from osdface.ui.jobs import Limits, Options, RestoreService, Upload, describe_model, safe_stem, shown_name
from test_photos_cli import needs_mtcnn  # noqa: F401 (autouse: skips where MTCNN's weights are missing)

GROUP = Path(__file__).resolve().parents[1] / "examples" / "group.jpg"  # 860×580, several faces


def needs(module: str):
    """Import ``module``, or skip — except in CI, where the ui extra is installed and a skip would hide a gap."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture
def uploads(tmp_path):
    """An upload folder as the web server fills it, and a maker of uploads in it."""
    root = tmp_path / "uploads"
    root.mkdir()

    def make(name: str, data: bytes = b"", source: Path | None = None) -> Upload:
        folder = root / f"h{len(list(root.iterdir()))}"  # gradio: one hashed folder per upload
        folder.mkdir()
        path = folder / Path(name).name
        path.write_bytes(source.read_bytes() if source else data)
        return Upload(path, name)

    make.root = root
    return make


@pytest.fixture
def service(tiny_pipe, uploads):
    s = RestoreService(tiny_pipe, upload_root=uploads.root)
    yield s
    s.close()


@pytest.fixture(scope="module")
def group_faces(tiny_pipe):
    """The faces the CLI's restorer keeps in examples/group.jpg (the model does not change which)."""
    return make_face_restorer(tiny_pipe, upscale=2)(read_photo(GROUP)).faces


# ----------------------------------------------------------------------------- jobs


def test_photos_restored_bad_files_reported_zip_holds_all(service, uploads, group_faces, tmp_path):
    good = uploads("group.jpg", source=GROUP)
    corrupt = uploads("corrupt.jpg", b"this is not an image")
    empty = uploads("empty.png")
    truncated = uploads("cut.jpg", GROUP.read_bytes()[:3000])
    seen = []
    job = service.run([good, corrupt, empty, truncated], Options(upscale=2),
                      progress=lambda done, total, text: seen.append((done, total, text)))
    # the good photo: full size ×2, every face the restorer keeps, with its score
    assert [p.name for p in job.photos] == ["group.jpg"]
    photo = job.photos[0]
    assert photo.size == (1720, 1160) and Image.open(photo.download).size == (1720, 1160)
    assert photo.input_size == (860, 580) and Image.open(photo.download).format == "JPEG"  # same as the input
    assert len(group_faces) >= 3 and len(photo.faces) == len(group_faces)
    assert [f.score for f in photo.faces] == pytest.approx([f.score for f in group_faces])
    assert [f.caption for f in photo.faces] == [f"group.jpg #{k + 1} · score {f.score:.3f}"
                                                for k, f in enumerate(group_faces)]
    assert Image.open(photo.before).size == Image.open(photo.after).size == (1720, 1160)
    # each bad file: one line naming it (never the server's path) and the reason; the others done
    assert job.errors[0] == "corrupt.jpg: not an image file (format not recognised)"
    assert job.errors[1] == "empty.png: empty file (0 bytes)"
    assert job.errors[2].startswith("cut.jpg: cannot decode image")
    assert not any(str(tmp_path) in line for line in job.errors)
    summary = job.summary()
    assert "Restored 1 of 4 files" in summary and f"({len(group_faces)} faces)" in summary
    assert "- corrupt.jpg: not an image file" in summary
    # progress: one step per file, then the zip
    assert [(d, t) for d, t, _ in seen] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert "group.jpg (1 of 4)" in seen[0][2]
    # the zip: the photo and its faces, readable
    with zipfile.ZipFile(job.zip_path) as z:
        names = z.namelist()
        assert names[0] == "group.jpg"
        assert names[1:] == [f"faces/group_{k:02d}.png" for k in range(len(group_faces))]
        face = np.asarray(Image.open(z.open(names[1])))
        assert face.shape == (32, 32, 3)  # the tiny model's face size


def test_limits_files_bytes_pixels_and_upscaled_output(tiny_pipe, uploads):
    photo = uploads("group.jpg", source=GROUP)
    small = RestoreService(tiny_pipe, Limits(max_files=2, max_file_bytes=10_000, max_pixels=860 * 580 * 2),
                           upload_root=uploads.root)
    try:
        others = [uploads(f"more{k}.jpg", b"x") for k in range(7)]
        job = small.run([photo, *others], Options())  # the first 2 are tried, the rest named in a note
        assert len(job.errors) == 2 and job.errors[1] == "more0.jpg: not an image file (format not recognised)"
        assert job.notes == ["8 files uploaded, at most 2 a run: restored the first 2; not restored: more1.jpg, "
                             "more2.jpg, more3.jpg, more4.jpg, more5.jpg and 1 more"]
        assert "- note: 8 files uploaded, at most 2 a run" in job.summary()
        job = small.run([photo], Options())
        megabytes = f"{GROUP.stat().st_size / 2**20:.1f} MB is over the limit of {10_000 / 2**20:g} MB"
        assert job.errors == [f"group.jpg: {megabytes}"]
        roomy = RestoreService(tiny_pipe, Limits(max_pixels=860 * 580 * 2), upload_root=uploads.root)
        job = roomy.run([photo], Options(upscale=2))  # input fits, the ×2 output does not
        assert job.errors == ["group.jpg: the output would be 1,995,200 pixels (×2), over the limit of 997,600; "
                              "lower the upscale"]
        assert not job.photos and job.zip_path is None
        tight = RestoreService(tiny_pipe, Limits(max_pixels=100_000), upload_root=uploads.root)
        job = tight.run([photo], Options())  # the CLI's reader refuses before decoding
        assert job.errors == ["group.jpg: 860×580 = 498,800 pixels is over the limit of 100,000; downscale it first"]
        roomy.close()
        tight.close()
    finally:
        small.close()
    assert Limits().max_pixels == read_photo.__defaults__[0]  # the CLI's budget


@pytest.mark.parametrize("options, message", [
    (Options(upscale=0), "upscale must be above 0"), (Options(upscale=4.5), "at most 4"),
    (Options(fidelity=1.5), "fidelity must be between 0 and 1"),
    (Options(min_face_size=-1), "minimum face size"), (Options(max_faces=0), "maximum faces"),
])
def test_options_out_of_range_are_one_clear_error(service, uploads, options, message):
    with pytest.raises(OSDFaceError, match=message):
        service.run([uploads("group.jpg", source=GROUP)], options)


def test_nothing_uploaded_and_files_outside_the_upload_folder_are_refused(service, uploads, tmp_path):
    with pytest.raises(OSDFaceError, match="no file uploaded"):
        service.run([], Options())
    job = service.run([Upload(GROUP, "group.jpg"), Upload(Path("/etc/passwd"), "passwd")], Options())
    assert job.errors == ["group.jpg: not an uploaded file; refused", "passwd: not an uploaded file; refused"]
    escape = uploads("x.jpg", source=GROUP)
    job = service.run([Upload(escape.path.parent / ".." / ".." / "elsewhere.jpg", "elsewhere.jpg")], Options())
    assert job.errors == ["elsewhere.jpg: not an uploaded file; refused"]


def test_output_names_are_ours_unique_and_inside_the_job_folder(service, uploads, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(small)
    a = uploads("../../evil name`*.jpg", source=small)
    b = uploads("Evil Name.jpg", source=small)
    job = service.run([a, b, a], Options())
    downloads = [p.download for p in job.photos]
    assert [d.name for d in downloads] == ["evil_name.jpg", "Evil_Name_2.jpg", "evil_name_3.jpg"]  # as named
    assert all(d.parent.parent == service.work_root for d in downloads)
    assert [p.name for p in job.photos] == ["evil name__.jpg", "Evil Name.jpg", "evil name__ (2).jpg"]
    assert safe_stem("../../a b.PNG") == "a_b" and safe_stem("...") == "photo"
    assert shown_name("a\\b/c\n`d`.jpg") == "c__d_.jpg" and len(shown_name("x" * 300 + ".jpg")) == 77


@pytest.mark.parametrize("output_format, quality, name, fmt, line", [
    ("same", 90, "group.jpg", "JPEG", "JPEG (quality 90)"), ("png", 90, "group.png", "PNG", "PNG"),
    ("jpeg", 60, "group.jpg", "JPEG", "JPEG (quality 60)"), ("webp", 80, "group.webp", "WEBP", "WebP (quality 80)"),
])
def test_download_format_and_the_sizes_line(service, uploads, output_format, quality, name, fmt, line):
    job = service.run([uploads("group.jpg", source=GROUP)], Options(max_faces=1, output_format=output_format,
                                                                  quality=quality))
    photo = job.photos[0]
    assert photo.download.name == name and Image.open(photo.download).format == fmt
    assert Image.open(photo.download).size == (860, 580) and photo.faces[0].image.suffix == ".png"
    assert photo.describe().startswith(f"group.jpg: 860×580 → 860×580 px, {line}, ")
    assert photo.describe().endswith(" KB, 1 face")
    with zipfile.ZipFile(job.zip_path) as z:
        assert z.namelist() == [name, "faces/group_00.png"]
    png = service.run([uploads("flat.png", source=photo.faces[0].image)], Options())  # "same": a PNG stays PNG
    assert png.photos[0].download.suffix == ".png"
    with pytest.raises(OSDFaceError, match="output format must be"):
        service.run([uploads("group.jpg", source=GROUP)], Options(output_format="gif"))


def test_photo_without_face_is_copied_with_a_note(service, uploads):
    flat = uploads.root / "flat.png"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(flat)
    job = service.run([Upload(flat, "flat.png")], Options(upscale=2))
    assert job.photos[0].size == (160, 120) and job.photos[0].faces == []
    assert job.photos[0].note == "no face found; copied through (upscaled ×2)"
    assert "- note: flat.png: no face found" in job.summary()


def test_aligned_crops_square_nonsquare_and_gray(service, uploads):
    from conftest import face_images

    square, wide = face_images(2, size=64)
    for name, image in [("sq.png", square), ("wide.png", wide[:32]), ("gray.png", square[..., 0])]:
        Image.fromarray(image).save(uploads.root / name)
    job = service.run([Upload(uploads.root / n, n) for n in ("sq.png", "wide.png", "gray.png")],
                      Options(aligned=True, upscale=3))  # upscale does not apply to crops
    assert [p.size for p in job.photos] == [(32, 32), (32, 16), (32, 32)]  # the tiny model's size S = 32
    assert Image.open(job.photos[2].download).mode == "L"  # gray stays gray, as the CLI
    assert [len(p.faces) for p in job.photos] == [1, 1, 1] and job.photos[0].faces[0].caption == "sq.png · aligned crop"
    assert not job.errors
    assert job.photos[0].describe().startswith("sq.png: 64×64 → 32×32 px, PNG")  # the size change is said
    assert job.notes == ["aligned crops come out at the model's face size: 32×32 px for a square crop, "
                         "long side 32 px otherwise"]  # (no "never worse" rule in this service)


def test_aligned_note_follows_the_never_worse_rule(tiny_pipe):
    from osdface.face.no_harm import NoHarm

    s = RestoreService(tiny_pipe, no_harm=NoHarm())
    assert s.aligned_note() == ("aligned crops: the model works at 32 px; a square crop of 36 px or more keeps its "
                                "own size (the model's change is added to it, \"never worse\"), a smaller one comes "
                                "out 32×32 px, a non-square one with its long side 32 px")
    s.close()


def test_aligned_note_names_the_model_for_small_crops(tiny_pipe, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(tiny_pipe, "small_faces", (SimpleNamespace(sample_size=16), 20.0))
    s = RestoreService(tiny_pipe)
    assert s.aligned_note().endswith("long side 32 px otherwise; crops of up to 20 px go to the 16-px model and "
                                     "come out at its size the same way")
    s.close()


def test_temporary_files_pruned_and_removed(tiny_pipe, uploads):
    s = RestoreService(tiny_pipe, upload_root=uploads.root, keep_seconds=0)
    first = s.run([uploads("group.jpg", source=GROUP)], Options(max_faces=1))
    assert first.zip_path.is_file() and len(first.photos[0].faces) == 1  # (max faces applies)
    second = s.run([uploads("group.jpg", source=GROUP)], Options(max_faces=1))
    assert not first.zip_path.exists() and second.zip_path.is_file()  # the finished job went
    assert oct(s.work_root.stat().st_mode & 0o777) == "0o700"
    s.close()
    assert not s.work_root.exists()


def test_cancel_between_photos_discards_the_job_and_the_next_runs(service, uploads):
    import threading

    from osdface.ui.jobs import Cancelled

    photos = [uploads(f"p{k}.jpg", source=GROUP) for k in range(3)]
    cancel, seen = threading.Event(), []

    def tick(done, total, text):
        seen.append(done)
        if done == 1:
            cancel.set()  # as the Cancel button does, while the second photo is being restored

    with pytest.raises(Cancelled, match="cancelled after 2 of 3 files; the partial results were discarded"):
        service.run(photos, Options(max_faces=1), progress=tick, cancel=cancel)
    assert seen == [0, 1] and list(service.work_root.iterdir()) == []  # photo 3 never started; no files left
    job = service.run(photos[:1], Options(max_faces=1), cancel=threading.Event())
    assert len(job.photos) == 1 and job.zip_path.is_file()


def test_cancel_button_reaches_only_its_own_session():
    needs("gradio")
    from osdface.ui.page import Running

    running = Running()
    mine, other = running.start("a"), running.start("b")
    assert running.cancel("a") and mine.is_set() and not other.is_set()
    running.finish("a", mine)
    assert not running.cancel("a") and not running.cancel("nobody")


def test_model_note_says_which_model():
    mini128 = describe_model("bundled", 128, Path("x/mini128"))
    assert "bundled osdface-mini**" in mini128 and "non-commercial" in mini128
    assert "bundled osdface-mini 2**" in describe_model("bundled", 256, Path("x/mini256"))
    assert "bundled osdface-mini 2**" in describe_model("bundled", 256)  # the default
    small = type("Pipe", (), {"sample_size": 128})()
    assert "(256 px faces; photos' faces up to 141 px go to a 128-px model, videos use one model)" in describe_model(
        "bundled", 256, Path("x/mini256"), (small, 141))
    assert "osdface download" in describe_model("bundled", 128)
    assert describe_model("ours", 512) == "**Model: OSDFace** (512 px faces), the installed weights."


# ----------------------------------------------------------------------------- page handlers (gradio)


def test_restore_handler_fills_every_output(service, uploads, group_faces):
    needs("gradio")
    from osdface.ui.page import MODES, photo_picked, restore_clicked

    files = [str(uploads("group.jpg", source=GROUP).path), str(uploads("bad.jpg", b"nope").path)]
    status, comparison, menu, info, faces, downloads, state, player, video_line = restore_clicked(
        service, files, next(iter(MODES)), 1, 0, True, False, 20, 0, output_format="PNG")
    assert "Restored 1 of 2 files" in status and "- bad.jpg: not an image file" in status
    assert Image.open(comparison[1]).size == (860, 580)
    assert menu.choices == [("group.jpg", "group.jpg")] and menu.value == "group.jpg"
    assert len(faces) == len(group_faces) and faces[0][1] == f"group.jpg #1 · score {group_faces[0].score:.3f}"
    assert Path(downloads[0]).name == "osdface-restored.zip" and Path(downloads[1]).name == "group.png"
    assert info.startswith("group.jpg: 860×580 → 860×580 px, PNG, ")
    assert photo_picked("group.jpg", state) == (comparison, info) and photo_picked("other.jpg", state) == (None, "")
    assert not player.visible and video_line == ""  # no video: the player hidden


def test_restore_handler_never_raises(service, uploads, monkeypatch):
    needs("gradio")
    from osdface.ui.page import MODES, restore_clicked

    photo = [str(uploads("group.jpg", source=GROUP).path)]
    status, *rest = restore_clicked(service, None, next(iter(MODES)), 1, 0, True, False, 20, 0)
    assert status == "**no file uploaded: drop one or more photos first**" and rest[0] is None
    status, *_ = restore_clicked(service, photo, next(iter(MODES)), 9, 0, True, False, 20, -1)
    assert status == ("**Upscale must be between 1 and 4 (got 9). "
                      "Must be a whole number, 0 or more (0: all faces); got -1.**")

    def broken(*a, **k):
        raise RuntimeError("secret internals /srv/x")

    monkeypatch.setattr(service, "run", broken)
    status, *_ = restore_clicked(service, photo, next(iter(MODES)), 1, 0, True, False, 20, 0)
    assert status.startswith("**Something went wrong:** RuntimeError") and "/srv/x" not in status
    assert "Traceback" not in status


def test_files_note_tells_the_limit_at_upload():
    needs("gradio")
    from osdface.ui.page import files_changed

    assert files_changed(None, 20) == "" and files_changed(["a"], 20) == "1 file ready."
    assert files_changed(["a"] * 20, 20) == "20 files ready."
    assert files_changed(["a"] * 25, 20) == ("**25 files: the first 20 will be restored** (at most 20 a run); "
                                             "the other 5 are left out.")


def test_field_messages_name_each_field_out_of_range():
    needs("gradio")
    from osdface.ui.page import field_messages

    assert field_messages(1, 0, 20, 0, 4) == {} and field_messages(None, None, None, None, 4) == {}
    assert field_messages(5, -0.1, -3, 2.5, 4) == {
        "upscale": "Upscale must be between 1 and 4 (got 5).", "fidelity": "Fidelity must be between 0 and 1 (got -0.1).",
        "min_face": "The smallest face must be 0 pixels or more (got -3).",
        "max_faces": "Must be a whole number, 0 or more (0: all faces); got 2.5."}
    assert list(field_messages(1, 0, 20, -1, 4)) == ["max_faces"]


# ----------------------------------------------------------------------------- the command


def test_core_never_imports_gradio():
    code = ("import sys, osdface, osdface.cli, osdface.photos, osdface.ui, osdface.ui.jobs; "
            "sys.exit('gradio' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


def test_ui_without_gradio_is_one_line_and_leaves_nothing(tmp_path):
    code = "import sys; sys.modules['gradio'] = None; from osdface.cli import main; sys.argv = ['osdface', 'ui']; main()"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: osdface ui needs the ui extra")
    assert done.stderr.strip().endswith("pip install 'osdface[ui]'") and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # the upload folder it made is gone


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "error: --device 'tpu': not a device name"),
    (["--weights", "/no/such/folder"], "error: OSDFace weights not found in /no/such/folder"),
    (["--dtype", "float8"], "error: --dtype must be auto or one of"),
])
def test_ui_bad_flags_are_one_line_before_any_model_loads(args, message, capsys, monkeypatch, tmp_path):
    needs("gradio")
    from test_cli import run_cli

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr("osdface.loading.load_pipeline", lambda *a, **k: pytest.fail("the model loaded"))
    code, err = run_cli(["ui", *args], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(message), err
    assert list(tmp_path.iterdir()) == [] and "GRADIO_TEMP_DIR" not in os.environ
