"""Video on real footage (issue 20): shot cuts end tracks and reset every stabiliser; a detection that
does not persist is not restored."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_SIZE

from osdface.face import Detection, FaceRestorer
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5, FacePlacement, compose_group_photo
from osdface.video import CutDetector, Frame, Stabilisers, VideoFaceRestorer
from osdface.video.synthetic import camera_path, film

skimage = pytest.importorskip("skimage.data")


def face_at(x: float, y: float, scale: float = 30.0, score: float = 0.99) -> Detection:
    pattern = np.array([[-0.35, -0.3], [0.35, -0.3], [0.0, 0.05], [-0.3, 0.4], [0.3, 0.4]]) * scale
    return Detection(box=[x - scale * 0.6, y - scale * 0.7, x + scale * 0.6, y + scale * 0.7], score=score,
                     landmarks5=pattern + [x, y])


class ScriptedDetector:
    def __init__(self, plan):
        self.plan, self.calls = list(plan), 0

    def detect(self, image):
        self.calls += 1
        return self.plan[self.calls - 1] if self.calls <= len(self.plan) else []


def two_scenes(n_a: int, n_b: int, size=(192, 128)):
    """Frames of two different scenes (the astronaut in a group photo; the coffee cup), each filmed by a
    slowly panning camera with fresh noise and JPEG per frame."""
    a, _ = compose_group_photo(skimage.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(150, 110, 170)],
                               240, 320, seed=3)
    b = skimage.coffee()
    out = []
    for scene, n, seed in ((a, n_a, 0), (b, n_b, 1)):
        frames, _ = film(scene, camera_path(n, size, scene.shape[1::-1]), size, noise=4.0, jpeg_quality=70, seed=seed)
        out.append(frames)
    return out


def run(pipe, frames, plan, first=0, batch_size=4, **kw):
    faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=TINY_SIZE, min_face_size=1)
    restorer = VideoFaceRestorer(pipe, faces, Stabilisers(), batch_size=batch_size, **kw)
    return list(restorer(Frame(first + i, first + i, f) for i, f in enumerate(frames)))


def test_cut_detector_finds_a_splice_and_not_motion():
    a, b = two_scenes(6, 6)
    detector = CutDetector()
    assert [detector(f) for f in a + b] == [False] * 6 + [True] + [False] * 5


def test_a_cut_ends_every_track_and_the_halves_come_out_as_if_run_alone(tiny_pipe):
    """Two scenes spliced at frame 7, a face at nearly the same place on both sides (the tracker alone
    would join them). With cut detection no track spans the splice, the sidecar's flag marks frame 7,
    and every frame equals running each half alone: the frames before the cut are finished at the cut
    (a short block of 3), and the second half is fed with its own frame numbers (7, 8, …), so its blocks
    of ``batch_size`` frames by frame number have the same make-up as in the whole run: equal to the bit,
    the output blend's and the prompt window's memories included."""
    a, b = two_scenes(7, 6)
    plan_a = [[face_at(90 + t, 60)] for t in range(7)]
    plan_b = [[face_at(98 + t, 62)] for t in range(6)]
    whole = run(tiny_pipe, a + b, plan_a + plan_b)
    assert [r.cut for r in whole] == [False] * 7 + [True] + [False] * 5
    before = {t for r in whole[:7] for t in r.track_ids}
    after = {t for r in whole[7:] for t in r.track_ids}
    assert len(before) == len(after) == 1 and not before & after
    halves = run(tiny_pipe, a, plan_a) + run(tiny_pipe, b, plan_b, first=7)
    for x, y in zip(whole, halves):
        assert x.index == y.index and len(x.track_ids) == len(y.track_ids) == 1
        assert np.array_equal(x.rgb, y.rgb), x.index
    joined = run(tiny_pipe, a + b, plan_a + plan_b, cuts=None)  # without: one track across the splice
    assert len({t for r in joined for t in r.track_ids}) == 1
    assert not np.array_equal(joined[7].rgb, whole[7].rgb)


def test_a_one_frame_false_face_is_not_restored(tiny_pipe):
    """A detection seen in one frame only (score 0.93, away from the real face) is left alone: the frames
    are those of a clip without it. With ``confirm_frames=1`` it would be restored."""
    frames, _ = two_scenes(10, 1)
    plan = [[face_at(70 + t, 60)] for t in range(10)]
    false = [list(p) for p in plan]
    false[5].append(face_at(160, 95, scale=24, score=0.93))
    clean = run(tiny_pipe, frames, plan)
    with_false = run(tiny_pipe, frames, false)
    for x, y in zip(clean, with_false):
        assert x.track_ids == y.track_ids and np.array_equal(x.rgb, y.rgb), x.index
    unconfirmed = run(tiny_pipe, frames, false, confirm_frames=1)
    assert len(unconfirmed[5].track_ids) == 2 and not np.array_equal(unconfirmed[5].rgb, clean[5].rgb)


def test_confirmation_looks_ahead_and_a_short_clip_keeps_its_faces(tiny_pipe):
    """A face from frame 3 on is restored from frame 3 (the look-ahead confirms it, nothing is delayed);
    a clip of 2 frames, shorter than ``confirm_frames``, restores a face seen in both."""
    frames, _ = two_scenes(8, 1)
    plan = [[] for _ in range(3)] + [[face_at(80, 60)] for _ in range(5)]
    out = run(tiny_pipe, frames, plan)
    assert [len(r.track_ids) for r in out] == [0, 0, 0, 1, 1, 1, 1, 1]
    out = run(tiny_pipe, frames[:2], plan[3:5])
    assert [len(r.track_ids) for r in out] == [1, 1]
    blinking = [[face_at(80, 60)] if t in (2, 6) else [] for t in range(8)]  # twice, 4 frames apart
    assert all(not r.track_ids for r in run(tiny_pipe, frames, blinking))


def test_the_sidecar_marks_the_cut(tmp_path, capsys, tiny_model_dir):
    import json

    from test_cli import run_cli

    from osdface.video.synthetic import write_clip

    a, b = two_scenes(5, 4)
    write_clip(tmp_path / "spliced.mp4", a + b, rate=10)
    code, err = run_cli(["restore", tmp_path / "spliced.mp4", "--output", tmp_path / "out", "--weights",
                         tiny_model_dir, "--quiet"], capsys)
    assert code == 0, err
    frames = json.loads((tmp_path / "out" / "spliced.mp4.json").read_text())["frames"]
    assert [f["frame"] for f in frames if f.get("cut")] == [5]


def test_detection_on_a_shrunk_copy_maps_back_to_the_frame(tiny_pipe):
    """A frame larger than ``detect_size`` is detected on a shrunk copy; boxes and landmarks come back in
    the frame's pixels (pixel centres at integers), as MTCNN's own ``max_side`` gives them."""

    class HalfSizeFace:
        def __init__(self):
            self.shapes = []

        def detect(self, image):
            self.shapes.append(image.shape)
            return [face_at(image.shape[1] / 2 - 0.25, image.shape[0] / 2 - 0.25, scale=20)]

    detector = HalfSizeFace()
    faces = FaceRestorer(lambda crops: crops, detector=detector, face_size=TINY_SIZE, min_face_size=1)
    restorer = VideoFaceRestorer(tiny_pipe, faces, detect_size=100)
    (det,) = restorer.detect(np.zeros((100, 200, 3), np.uint8))
    assert detector.shapes == [(50, 100, 3)]
    np.testing.assert_allclose(det.landmarks5, face_at(100.0, 50.0, scale=40).landmarks5)
    np.testing.assert_allclose(det.box, face_at(100.0, 50.0, scale=40).box)
    restorer.detect(np.zeros((100, 100, 3), np.uint8))  # not larger: as it is
    assert detector.shapes[-1] == (100, 100, 3)


def test_faces_the_rule_keeps_skip_the_model_and_come_out_the_same(tiny_pipe):
    """A face the "never worse" rule keeps whole (a sharp one: α = 0) is the input: the model is not run
    for it, with the temporal filter on or off, and it is not filtered: the frames are the input."""
    from osdface.face.no_harm import NoHarm

    photo = np.random.default_rng(0).integers(0, 255, (110, 150, 3), dtype=np.uint8)  # all detail: kept
    plan = [[face_at(60 + t, 55)] for t in range(6)]
    outs, calls = [], []
    for stab in (Stabilisers(), Stabilisers(temporal_radius=0)):
        faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=TINY_SIZE,
                             min_face_size=1, no_harm=NoHarm())
        count = {"n": 0}
        original = tiny_pipe.restore_tensor

        def counted(lq, count=count, original=original, **kw):
            count["n"] += len(lq)
            return original(lq, **kw)

        tiny_pipe.restore_tensor = counted
        try:
            outs.append(list(VideoFaceRestorer(tiny_pipe, faces, stab, batch_size=4)(
                Frame(i, i, photo) for i in range(6))))
        finally:
            del tiny_pipe.restore_tensor
        calls.append(count["n"])
    assert calls == [0, 0]
    for a, b in zip(*outs):
        assert [f.verdict.action for f in a.faces] == ["kept"] and np.array_equal(a.rgb, b.rgb)
        assert np.array_equal(a.rgb, photo)
