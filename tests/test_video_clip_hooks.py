"""`restore_clip`'s hooks for the web page: progress by frame, a cancel checked every frame (nothing left
behind), and an output container other than the input's (tiny model, MTCNN, PyAV)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

av = pytest.importorskip("av")

from osdface.errors import Cancelled  # noqa: E402
from osdface.photos import make_face_restorer  # noqa: E402
from osdface.video.batch import make_stabilisers, video_restorer_maker  # noqa: E402
from osdface.video.clip import restore_clip, work_folder  # noqa: E402
from osdface.video.io import probe  # noqa: E402
from osdface.video.synthetic import write_clip  # noqa: E402
from test_photos_cli import needs_mtcnn  # noqa: E402,F401 (autouse: skips where MTCNN's weights are missing)
from test_video import clip_frames, decode, scene  # noqa: E402,F401 (scene: a fixture)


@pytest.fixture(scope="module")
def make_restorer(tiny_pipe):
    return video_restorer_maker(tiny_pipe, make_face_restorer(tiny_pipe), make_stabilisers())


@pytest.fixture
def clip(tmp_path, scene):  # noqa: F811
    src = tmp_path / "in" / "walk.mp4"
    src.parent.mkdir()
    write_clip(src, clip_frames(scene, 10, size=(160, 112))[0], rate=24, audio=True)
    return probe(src)


def test_progress_by_frame_and_the_same_clip_as_without_hooks(tmp_path, clip, make_restorer):
    seen = []
    plain = restore_clip(clip, tmp_path / "plain" / "walk.mp4", make_restorer, {}, progress=False, segment_frames=4)
    hooked = restore_clip(clip, tmp_path / "hooked" / "walk.mp4", make_restorer, {}, progress=False,
                          segment_frames=4, on_frame=lambda done, total: seen.append((done, total)),
                          cancel=threading.Event())
    assert seen == [(k, 10) for k in range(1, 11)]
    assert (hooked.frames, hooked.faces) == (plain.frames, plain.faces) == (10, 10)
    a, b = decode(tmp_path / "plain" / "walk.mp4")[0], decode(tmp_path / "hooked" / "walk.mp4")[0]
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(a, b))


@pytest.mark.parametrize("when", ["written", "read"])
def test_cancel_stops_between_frames_and_leaves_nothing(tmp_path, clip, make_restorer, when):
    """Cancelled after a finished segment (written frames) or at the 3rd frame read (before any is written):
    Cancelled, no output, no work folder (its finished segments go too), nothing else in the folder."""
    out = tmp_path / "out" / "walk.mp4"
    out.parent.mkdir()
    seen, reads = [], {"n": 0}
    if when == "written":
        cancel = threading.Event()

        def on_frame(done, total):
            seen.append(done)
            if done == 6:  # as the page's Cancel button does, from another thread
                cancel.set()
    else:
        def cancel():
            reads["n"] += 1
            return reads["n"] >= 3

        on_frame = seen.append
    with pytest.raises(Cancelled, match=r"walk\.mp4: cancelled at frame \d+ of 10"):
        restore_clip(clip, out, make_restorer, {}, progress=False, segment_frames=4, on_frame=on_frame,
                     cancel=cancel)
    assert seen == ([1, 2, 3, 4, 5, 6] if when == "written" else [])
    assert not out.exists() and not work_folder(out).exists() and list(out.parent.iterdir()) == []


def test_webm_in_mp4_out_with_its_audio(tmp_path, scene, make_restorer):  # noqa: F811
    """The page's choice: whatever the input's container, an H.264 mp4 (Opus audio copied into it)."""
    src = tmp_path / "talk.webm"
    write_clip(src, clip_frames(scene, 6, size=(160, 112))[0], rate=12, audio=True)
    out = tmp_path / "talk.mp4"
    result = restore_clip(probe(src), out, make_restorer, {}, progress=False, container="mp4")
    assert result.frames == 6 and result.notes == []
    with av.open(str(out)) as c:
        assert c.format.name.startswith("mov,mp4") and c.streams.video[0].codec_context.name == "h264"
        assert [s.codec_context.name for s in c.streams.audio] == ["opus"]
        assert sum(1 for _ in c.decode(video=0)) == 6
