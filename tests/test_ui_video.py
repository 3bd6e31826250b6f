"""A video on the web page (`osdface.ui.videos`, `RestoreService`, the handlers), tiny model, no browser: the
limits told in one line, progress by frame, an H.264 mp4 in the player and the zip, a cancel between frames."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pytest

from osdface.errors import Cancelled
from osdface.image_utils import read_photo
from osdface.ui.jobs import Limits, Options, RestoreService
from test_photos_cli import needs_mtcnn  # noqa: F401 (autouse: skips where MTCNN's weights are missing)
from test_ui import GROUP, needs, uploads  # noqa: F401 (uploads: a fixture)


def make_clip(path: Path, frames: int = 12, size=(240, 160), rate: int = 12, audio: bool = False) -> Path:
    """A short clip of examples/group.jpg filmed by a slowly panning camera (fresh noise and JPEG each frame)."""
    from osdface.video.synthetic import camera_path, film, write_clip

    scene = read_photo(GROUP)
    lq, _ = film(scene, camera_path(frames, size, scene.shape[1::-1], pan=0.05, zoom=1.05), size, noise=3.0,
                 jpeg_quality=80, seed=0)
    write_clip(path, lq, rate=rate, audio=audio)
    return path


@pytest.fixture
def service(tiny_pipe, uploads):  # noqa: F811
    needs("av")
    s = RestoreService(tiny_pipe, upload_root=uploads.root)
    yield s
    s.close()


def video_upload(uploads, tmp_path, name: str, **kw):  # noqa: F811
    return uploads(name, source=make_clip(tmp_path / name, **kw))


def decoded(path: Path) -> tuple[str, int, list[str]]:
    av = needs("av")
    with av.open(str(path)) as c:
        return (c.streams.video[0].codec_context.name, sum(1 for _ in c.decode(video=0)),
                [s.codec_context.name for s in c.streams.audio])


def test_a_photo_and_a_video_in_one_run(service, uploads, tmp_path):  # noqa: F811
    """A webm with audio comes back an H.264 mp4 with every frame and its audio; progress by frame; in the zip."""
    seen = []
    job = service.run([uploads("group.jpg", source=GROUP), video_upload(uploads, tmp_path, "clip.webm", audio=True)],
                      Options(max_faces=1), progress=lambda *args: seen.append(args))
    assert job.errors == [] and len(job.photos) == 1 and len(job.videos) == 1
    video = job.videos[0]
    assert video.download.name == "clip.mp4" and decoded(video.download) == ("h264", 12, ["opus"])
    frames = [args for args in seen if args[-1] == "frames"]
    assert frames == [(k, 12, f"clip.webm: frame {k}/12", "frames") for k in range(1, 13)]
    assert video.faces >= 12 and video.tracks >= 1  # the group's largest face, every frame (max faces 1)
    assert video.describe().startswith("clip.webm: 240×160 → 240×160 px, 12 frames at 12 fps (1.0 s), H.264 mp4, ")
    assert zipfile.ZipFile(job.zip_path).namelist() == ["group.jpg", "faces/group_00.png", "clip.mp4"]
    assert job.summary().startswith("**Restored 2 of 2 files** (1 face, 12 frames of clip.webm) in ")
    assert not list(video.download.parent.glob(".*"))  # no work folder left


def test_video_limits_are_one_line_each_and_nothing_is_restored(tiny_pipe, uploads, tmp_path):  # noqa: F811
    needs("av")
    short = Limits(max_video_seconds=0.5, max_video_pixels=200 * 100)
    s = RestoreService(tiny_pipe, limits=short, upload_root=uploads.root)
    try:
        clip = video_upload(uploads, tmp_path, "clip.mp4")
        bad = uploads("bad.mov", b"not a video at all")
        job = s.run([clip, bad], Options())
        assert job.errors == ["clip.mp4: 1.0 s long, over the page's limit of 0.5 s a video (cut it, or use osdface "
                              "restore)",
                              "bad.mov: 1 video a run (clip.mp4 is restored in this one); restore it in a run of its own"]
        job = s.run([bad], Options())
        assert len(job.errors) == 1 and job.errors[0].startswith("bad.mov: not a readable video (")
        wide = RestoreService(tiny_pipe, limits=Limits(max_video_pixels=200 * 100), upload_root=uploads.root)
        job = wide.run([clip], Options())
        wide.close()
        assert job.errors == ["clip.mp4: 240×160 px, over the page's limit of 20,000 pixels a video (shrink it, or use "
                              "osdface restore)"]
        job = s.run([clip], Options(aligned=True))
        assert job.errors == ['clip.mp4: a video is restored in photo mode (faces detected and tracked); choose '
                              '"Photos" to restore it']
        assert job.zip_path is None and job.videos == []
    finally:
        s.close()
    assert "1 video a run, up to 60 s and 1280×720 (921,600 pixels)" in Limits().describe()


def test_cancel_stops_a_video_between_frames_and_the_next_job_runs(service, uploads, tmp_path):  # noqa: F811
    clip = video_upload(uploads, tmp_path, "clip.mp4")
    cancel, seen = threading.Event(), []

    def tick(done, total, text, unit="photos"):
        if unit == "frames":
            seen.append(done)
            if done == 3:
                cancel.set()  # as the Cancel button does, while frame 4 is on its way

    with pytest.raises(Cancelled, match=r"^clip\.mp4: cancelled at frame 3 of 12 \(file 1 of 1\); the partial "
                                        r"results were discarded$"):
        service.run([clip], Options(), progress=tick, cancel=cancel)
    assert seen == [1, 2, 3] and list(service.work_root.iterdir()) == []  # the job's folder, segments and all
    job = service.run([video_upload(uploads, tmp_path, "short.mp4", frames=4)], Options(), cancel=threading.Event())
    assert len(job.videos) == 1 and job.videos[0].frames == 4


def test_a_cancel_whose_progress_callback_raises_still_leaves_nothing(service, uploads, tmp_path):  # noqa: F811
    """A cancel followed by a BaseException in the worker before the next frame's cancel check (here from
    the progress callback): the job still removes its folder and ends Cancelled, and the next job runs."""
    import asyncio

    clip = video_upload(uploads, tmp_path, "clip.mp4")
    cancel = threading.Event()

    def tick(done, total, text, unit="photos"):
        if unit == "frames" and done == 2:
            cancel.set()
            raise asyncio.CancelledError()

    with pytest.raises(Cancelled, match=r"^cancelled \(CancelledError on the way\); the partial results were "
                                        r"discarded$"):
        service.run([clip], Options(), progress=tick, cancel=cancel)
    assert list(service.work_root.iterdir()) == []
    job = service.run([video_upload(uploads, tmp_path, "short.mp4", frames=4)], Options(), cancel=threading.Event())
    assert len(job.videos) == 1 and job.videos[0].frames == 4


def test_handler_shows_the_video_and_offers_it(service, uploads, tmp_path):  # noqa: F811
    needs("gradio")
    from osdface.ui.page import MODES, restore_clicked

    clip = video_upload(uploads, tmp_path, "clip.mov", frames=4)
    status, comparison, menu, info, faces, downloads, state, player, line = restore_clicked(
        service, [str(clip.path)], next(iter(MODES)), 1, 0, True, False, 20, 0)
    assert "Restored 1 of 1 file" in status and comparison is None and faces == [] and state == []
    assert player.visible and player.value["path"].endswith("clip.mp4")
    assert [Path(d).name for d in downloads] == ["osdface-restored.zip", "clip.mp4"]
    assert line.startswith("clip.mov: 240×160 → 240×160 px, 4 frames at 12 fps (0.3 s), H.264 mp4, ")
    status, *rest = restore_clicked(service, [str(uploads("bad.jpg", b"nope").path)], next(iter(MODES)), 1, 0, True,
                                    False, 20, 0)
    assert not rest[-2].visible and rest[-1] == ""  # no video: the player hidden


def test_files_note_names_each_video_over_the_limits_at_upload(uploads, tmp_path):  # noqa: F811
    needs("gradio")
    needs("av")
    from osdface.ui.page import files_changed

    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    assert files_changed([str(clip)], 20, Limits()) == "1 file ready."
    note = files_changed([str(clip), str(clip), str(GROUP)], 20, Limits(max_video_seconds=0.2))
    assert note.split("\n\n") == [
        "3 files ready.",
        "**clip.mp4: 0.3 s long, over the page's limit of 0.2 s a video (cut it, or use osdface restore): it will "
        "not be restored.**",
        "**clip.mp4: 1 video a run: it will not be restored** (restore it in a run of its own)."]
