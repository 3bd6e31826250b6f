"""Video: tracking, smoothing, the streaming restorer, and `osdface restore` on clips (PyAV, tiny model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from conftest import TINY_SIZE  # noqa: E402
from osdface.face import Detection, FaceRestorer  # noqa: E402
from osdface.face.synthetic import ASTRONAUT_LANDMARKS5, FacePlacement, compose_group_photo  # noqa: E402
from osdface.video import (FaceTracker, Frame, PromptSmoother, Stabilisers, VideoFaceRestorer,  # noqa: E402
                           local_line_fit, probe, smoothed)
from osdface.video.clip import work_folder  # noqa: E402
from osdface.video.synthetic import camera_path, film, temporal_error, write_clip  # noqa: E402
from test_cli import SRC, run_cli  # noqa: E402


def face_at(x: float, y: float, scale: float = 40.0, score: float = 0.99) -> Detection:
    """A face whose landmarks are the FFHQ-like pattern centred at (x, y), ``scale`` px eye-to-mouth."""
    pattern = np.array([[-0.35, -0.3], [0.35, -0.3], [0.0, 0.05], [-0.3, 0.4], [0.3, 0.4]]) * scale
    lm = pattern + [x, y]
    return Detection(box=[x - scale * 0.6, y - scale * 0.7, x + scale * 0.6, y + scale * 0.7], score=score,
                     landmarks5=lm)


class ScriptedDetector:
    """Gives the planned detections, one list per call (per frame), and records the frames' shapes."""

    def __init__(self, plan):
        self.plan, self.calls, self.shapes = list(plan), 0, []

    def detect(self, image):
        self.shapes.append(image.shape)
        self.calls += 1
        return self.plan[self.calls - 1] if self.calls <= len(self.plan) else []


@pytest.fixture(scope="module")
def scene():
    skimage = pytest.importorskip("skimage.data")
    photo, _ = compose_group_photo(skimage.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(150, 110, 170)],
                                   240, 320, seed=3)
    return photo


def clip_frames(scene, n: int, size=(192, 128), seed: int = 0):
    affines = camera_path(n, size, scene.shape[1::-1], pan=0.05, zoom=1.05)
    lq, _ = film(scene, affines, size, noise=4.0, jpeg_quality=70, seed=seed)
    return lq, affines


# ----------------------------------------------------------------------------- smoothing and tracking


def test_line_fit_is_weighted_least_squares():
    rng = np.random.default_rng(0)
    offsets = np.arange(-3, 4, dtype=np.float64)
    values = rng.normal(size=(7, 3)) + offsets[:, None] * [1.0, -2.0, 0.5]
    weights = np.exp(-0.5 * (offsets / 1.5) ** 2)
    ours = local_line_fit(offsets, values, weights)
    for d in range(3):  # numpy weights multiply residuals: sqrt of ours
        slope, intercept = np.polyfit(offsets, values[:, d], 1, w=np.sqrt(weights))
        assert ours[d] == pytest.approx(intercept, abs=1e-9)
    assert local_line_fit(np.zeros(1), values[:1], np.ones(1)) == pytest.approx(values[0])


def test_smoothing_follows_motion_without_lag_and_removes_jitter():
    rng = np.random.default_rng(1)
    truth = [face_at(50 + 3.0 * t, 60 + 1.0 * t) for t in range(30)]
    tracker = FaceTracker()
    for t, det in enumerate(truth):
        noisy = Detection(det.box, det.score, det.landmarks5 + rng.normal(0, 1.5, (5, 2)))
        tracker.update(t, [noisy])
    (track,) = tracker.tracks.values()
    raw = [np.abs(track.observations[t].landmarks5 - truth[t].landmarks5).mean() for t in range(30)]
    fit = [np.abs(smoothed(track, t, radius=3).landmarks5 - truth[t].landmarks5).mean() for t in range(30)]
    assert np.mean(fit) < 0.6 * np.mean(raw)
    assert np.mean(fit[:3] + fit[-3:]) < np.mean(raw)  # the ends (one-sided windows) do not lag behind

    clean = FaceTracker()
    for t, det in enumerate(truth):
        clean.update(t, [det])
    (track,) = clean.tracks.values()
    for t in (0, 15, 29):  # steady motion: the line fit is exact
        np.testing.assert_allclose(smoothed(track, t, radius=3).landmarks5, truth[t].landmarks5, atol=1e-9)


def test_tracks_keep_identities_through_a_crossing():
    tracker = FaceTracker()
    ids_a, ids_b = [], []
    for t in range(24):  # a walks right, b walks left; they meet at t = 12 where b is hidden for 3 frames
        a, b = face_at(20 + 8 * t, 80), face_at(212 - 8 * t, 90)
        hidden = 11 <= t <= 13
        ids = tracker.update(t, [a] if hidden else [b, a])
        ids_a.append(ids[-1])
        if not hidden:
            ids_b.append(ids[0])
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]
    # the hidden frames are bridged by the line through the sightings either side
    track_b = tracker.tracks[ids_b[0]]
    bridged = smoothed(track_b, 12, radius=3, max_gap=3)
    assert bridged is not None
    np.testing.assert_allclose(bridged.landmarks5, face_at(212 - 8 * 12, 90).landmarks5, atol=1e-6)
    assert smoothed(track_b, 12, radius=3, max_gap=1) is None


def test_prompt_smoother_is_a_windowed_average_per_track():
    import torch

    smoother = PromptSmoother(0.75, window=3)
    frames = [torch.full((2, 2, 2), float(v)) for v in (1, 2, 4, 8)]
    b0 = torch.full((2, 2, 2), 5.0)
    assert torch.equal(smoother(0, frames[0]), frames[0])
    assert torch.equal(smoother(1, b0), b0)  # tracks do not mix
    torch.testing.assert_close(smoother(0, frames[1]), (2 + 0.75 * 1) / 1.75 * torch.ones(2, 2, 2))
    torch.testing.assert_close(smoother(0, frames[2]), (4 + 0.75 * 2 + 0.5625 * 1) / 2.3125 * torch.ones(2, 2, 2))
    # finite memory: the oldest frame leaves the window
    torch.testing.assert_close(smoother(0, frames[3]), (8 + 0.75 * 4 + 0.5625 * 2) / 2.3125 * torch.ones(2, 2, 2))
    smoother.keep_only([1])
    assert torch.equal(smoother(0, frames[0]), frames[0])  # a forgotten track starts afresh
    assert torch.equal(PromptSmoother(0.0)(0, frames[1]), frames[1])  # off


class CropPatternPipe:
    """Stands for the model where only alignment matters: it darkens a fixed stripe pattern into the
    aligned crop, so a crop that jitters makes the pattern jitter in the frame (its prompt: pooled pixels)."""

    sample_size, device = TINY_SIZE, "cpu"

    def __init__(self):
        import torch

        x = torch.linspace(0, 6.28 * 3, TINY_SIZE)
        self.pattern = 0.4 * torch.sin(x)[None, None, None, :].expand(1, 3, TINY_SIZE, TINY_SIZE)

    def visual_features(self, lq):
        return lq.reshape(lq.shape[0], 3, 4, 8, 4, 8).mean((3, 5))

    def prompt_from_features(self, features):
        return features

    def restore_tensor(self, lq, generator=None, posterior="mode", prompt_embeds=None):
        return (0.6 * lq + self.pattern).clamp(-1, 1)


def test_stabilisers_reduce_the_flicker_of_a_jittered_track():
    """A still face whose detections jitter: without smoothing the crop, the paste mask and so the
    output move every frame; the line fit of landmarks makes the output steadier."""
    skimage = pytest.importorskip("skimage.data")
    photo, (lm,) = compose_group_photo(skimage.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(64, 64, 90)],
                                       128, 128, seed=0)
    rng = np.random.default_rng(0)
    n = 16
    plan = [[Detection([20, 20, 108, 108], 0.99, lm + rng.normal(0, 2.0, (5, 2)))] for _ in range(n)]
    frames = [Frame(i, i, photo) for i in range(n)]
    errors = {}
    for name, stab in (("none", Stabilisers.off()), ("all", Stabilisers())):
        faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=TINY_SIZE,
                             min_face_size=1, color_match=False)
        out = list(VideoFaceRestorer(CropPatternPipe(), faces, stab, batch_size=5)(frames))
        assert [r.index for r in out] == list(range(n)) and all(r.track_ids == [out[0].track_ids[0]] for r in out)
        identity = [np.eye(3)[:2]] * n  # the camera does not move
        errors[name] = temporal_error([r.rgb for r in out], identity, [np.array([20, 20, 108, 108])])
    assert errors["all"] < 0.6 * errors["none"], errors


def test_temporal_filter_settles_fresh_noise_and_leaves_the_rest_of_the_frame_alone():
    """A still face with fresh noise each frame, restored by a stand-in model: with the temporal filter
    (input crop, restored crop, and the face's region of the composite) the face flickers less than
    without it; outside the face's paste region every frame is the input frame, untouched."""
    skimage = pytest.importorskip("skimage.data")
    photo, (lm,) = compose_group_photo(skimage.astronaut(), ASTRONAUT_LANDMARKS5, [FacePlacement(80, 64, 80)],
                                       128, 176, seed=0)
    rng = np.random.default_rng(0)
    n = 12
    frames = [np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8) for _ in range(n)]
    plan = [[Detection([40, 24, 120, 104], 0.99, lm)] for _ in range(n)]
    outs = {}
    for radius in (0, 2):
        faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=TINY_SIZE,
                             min_face_size=1)
        stab = Stabilisers(temporal_radius=radius)
        outs[radius] = [r.rgb for r in VideoFaceRestorer(CropPatternPipe(), faces, stab, batch_size=4)(
            Frame(i, i, f) for i, f in enumerate(frames))]
    identity = [np.eye(3)[:2]] * n
    face_box = [np.array([50, 34, 110, 94])]
    assert temporal_error(outs[2], identity, face_box) < 0.7 * temporal_error(outs[0], identity, face_box)
    pasted = np.zeros(photo.shape[:2], bool)  # where the paste without the filter changed any frame
    for out, f in zip(outs[0], frames):
        pasted |= (out != f).any(axis=2)
    outside = ~cv2.dilate(pasted.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert 0.2 < outside.mean() < 0.9  # the face's region is a part of the frame
    for out, f in zip(outs[2], frames):  # the filter works inside it only
        assert np.array_equal(out[outside], f[outside])


def test_video_restorer_batches_across_frames_like_one_by_one(tiny_pipe):
    """Faces of several frames go through the model together: same faces as batch size 1 (to the rounding
    of the last bit), and so the same frames (colour matching can carry a 1-level difference of a
    face to a neighbouring level at a pixel or two: compared on the mean)."""
    plan = [[face_at(40 + t, 50, 30), face_at(100, 60 - t, 28)] for t in range(6)]
    photo = np.random.default_rng(0).integers(0, 255, (110, 150, 3), dtype=np.uint8)
    outs = []
    for batch in (1, 5):
        faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector(plan), face_size=TINY_SIZE,
                             min_face_size=1)
        outs.append(list(VideoFaceRestorer(tiny_pipe, faces, batch_size=batch)(Frame(i, i, photo) for i in range(6))))
    for a, b in zip(*outs):
        assert a.track_ids == b.track_ids and len(a.faces) == 2
        for fa, fb in zip(a.faces, b.faces):
            assert np.abs(fa.restored.astype(int) - fb.restored.astype(int)).max() <= 1
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 0.01


# ----------------------------------------------------------------------------- files and the CLI


def decode(path: Path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.rotation, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
        return frames, v.average_rate, [s.codec_context.name for s in c.streams.audio]


def test_clip_keeps_frames_rate_size_audio_and_restores_faces(tmp_path, capsys, tiny_model_dir, scene):
    lq, _ = clip_frames(scene, 10)
    src = tmp_path / "in" / "walk.mp4"
    src.parent.mkdir()
    write_clip(src, lq, rate=24, audio=True)
    code, err = run_cli(["restore", src, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet",
                         "--report", tmp_path / "report.json"], capsys)
    assert code == 0, err
    out = tmp_path / "out" / "walk.mp4"
    frames, rate, audio = decode(out)
    before, before_rate, before_audio = decode(src)
    assert len(frames) == 10 and rate == before_rate == 24 and audio == before_audio == ["aac"]
    assert [f[0] for f in frames] == [f[0] for f in before]
    assert frames[0][2].shape == before[0][2].shape
    assert "10 frames, 10 faces in 1 track(s)" in err
    changed = np.abs(frames[5][2].astype(int) - before[5][2].astype(int)).mean(axis=2) > 12
    ys, xs = np.nonzero(changed)  # the tiny model changes the face, the background stays
    assert changed.mean() > 0.01 and 20 < xs.mean() < 120
    assert json.loads((tmp_path / "report.json").read_text())["done"] == [str(out)]
    sidecar = json.loads((tmp_path / "out" / "walk.mp4.json").read_text())  # every frame's faces, by track
    assert [f["frame"] for f in sidecar["frames"]] == list(range(10)) and sidecar["input_size_wh"] == [192, 128]
    assert {face["track"] for f in sidecar["frames"] for face in f["faces"]} == {0}
    x1, y1, x2, y2 = sidecar["frames"][5]["faces"][0]["box_xyxy"]
    assert x1 < xs.mean() < x2 and y1 < ys.mean() < y2  # the changed pixels lie in the recorded face
    assert not work_folder(out).exists() and not list((tmp_path / "out").glob(".*"))
    code, err = run_cli(["restore", src, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet"],
                        capsys)
    assert code == 0 and "skipped 1" in err  # an existing output is kept


@pytest.mark.parametrize("suffix", [".webm", ".gif", ".mkv"])
def test_other_containers(tmp_path, capsys, tiny_model_dir, scene, suffix):
    lq, _ = clip_frames(scene, 6, size=(160, 112))
    src = tmp_path / f"clip{suffix}"
    write_clip(src, lq, rate=10, audio=suffix != ".gif")
    code, err = run_cli(["restore", src, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet"],
                        capsys)
    assert code == 0, err
    frames, rate, audio = decode(tmp_path / "out" / src.name)
    assert len(frames) == 6 and rate == 10 and audio == decode(src)[2]


def test_rotated_clip_is_restored_upright_and_keeps_its_rotation(tmp_path, capsys, tiny_model_dir, scene,
                                                                  monkeypatch):
    lq, _ = clip_frames(scene, 5)
    stored = [np.ascontiguousarray(np.rot90(f, -1)) for f in lq]  # a phone held sideways: stored turned
    src = tmp_path / "phone.mov"
    write_clip(src, stored, rate=30, rotation=90)
    info = probe(src)
    assert info.rotation == 90 and info.upright_size == (192, 128)
    seen = []
    from osdface.face import mtcnn

    original = mtcnn.MTCNNDetector.detect
    monkeypatch.setattr(mtcnn.MTCNNDetector, "detect", lambda self, im: seen.append(im.shape) or original(self, im))
    code, err = run_cli(["restore", src, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet"],
                        capsys)
    assert code == 0, err
    assert set(seen) == {(128, 192, 3)} and "5 faces" in err  # detected upright, so found
    frames, _, _ = decode(tmp_path / "out" / "phone.mov")
    assert len(frames) == 5 and frames[0][1] == 90 and frames[0][2].shape == stored[0].shape


def test_variable_frame_rate_keeps_every_timestamp(tmp_path, capsys, tiny_model_dir, scene):
    lq, _ = clip_frames(scene, 6)
    src = tmp_path / "vfr.mkv"
    write_clip(src, lq, rate=30, timestamps=[0, 1, 2, 5, 6, 10])
    code, err = run_cli(["restore", src, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet"],
                        capsys)
    assert code == 0, err
    assert "variable frame rate" in err
    assert [f[0] for f in decode(tmp_path / "out" / "vfr.mkv")[0]] == [f[0] for f in decode(src)[0]]


def test_bad_videos_one_line_each_and_the_rest_goes_on(tmp_path, capsys, tiny_model_dir, scene):
    folder = tmp_path / "in"
    folder.mkdir()
    lq, _ = clip_frames(scene, 4)
    write_clip(folder / "good.mp4", lq, rate=10)
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))  # fixed: random bytes can parse
    whole = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index at the end: unreadable
    with av.open(str(folder / "faststart.mp4"), "w", options={"movflags": "faststart"}) as out:  # index first
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 192, 128, "yuv420p"
        for frame in clip_frames(scene, 12)[0]:
            for p in v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    whole = (folder / "faststart.mp4").read_bytes()
    (folder / "faststart.mp4").write_bytes(whole[: len(whole) * 2 // 3])  # its frames cut short
    with av.open(str(folder / "sound.mkv"), "w") as out:  # audio only
        s = out.add_stream("aac", rate=48000)
        s.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, 0
        for p in [*s.encode(chunk), *s.encode(None)]:
            out.mux(p)
    with av.open(str(folder / "empty.mp4"), "w") as out:  # a video stream without frames
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    code, err = run_cli(["restore", folder, "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet"],
                        capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    for name, reason in (("garbage.mp4", "not a readable video"), ("truncated.mp4", ""),
                         ("faststart.mp4", "truncated:"),
                         ("sound.mkv", "no video stream (audio only)"), ("empty.mp4", "no frames")):
        assert sum(name in line for line in lines) == 1, (name, err)
        assert reason in next(line for line in lines if name in line)
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4", "good.mp4.json"]  # nothing half-written


def test_aligned_mode_refuses_videos_in_one_line(tmp_path, capsys, tiny_model_dir, scene):
    write_clip(tmp_path / "a.mp4", clip_frames(scene, 2)[0])
    code, err = run_cli(["restore", tmp_path / "a.mp4", "--aligned", "--output", tmp_path / "out", "--weights",
                         tiny_model_dir, "--quiet"], capsys)
    assert code == 2 and "drop --aligned" in err and len(err.strip().splitlines()) == 1  # before the model (issue 19)
    assert not (tmp_path / "out").exists()


def test_resume_after_a_kill(tmp_path, tiny_model_dir, scene):
    """Kill a run after its first segments; the rerun keeps them, restores the rest, and the result has
    every frame and equals an uninterrupted run."""
    lq, _ = clip_frames(scene, 40, size=(160, 112))
    src = tmp_path / "long.mp4"
    write_clip(src, lq, rate=25, audio=True)
    args = [sys.executable, "-m", "osdface", "restore", str(src), "--weights", str(tiny_model_dir), "--quiet",
            "--video-segment", "8"]
    env = {**os.environ, "PYTHONPATH": SRC, "OSDFACE_DTYPE": "float32"}
    out = tmp_path / "out"
    proc = subprocess.Popen([*args, "--output", str(out)], env=env, stderr=subprocess.PIPE, text=True)
    partial = work_folder(out / "long.mp4")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        state = partial / "state.json"
        if state.is_file() and len(json.loads(state.read_text())["segments"]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "long.mp4").exists()  # nothing half-written
    rerun = subprocess.run([*args, "--output", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming at frame" in rerun.stderr
    resumed_at = int(rerun.stderr.split("resuming at frame ")[1].split()[0])
    assert 16 <= resumed_at < 40
    whole = subprocess.run([*args, "--output", str(tmp_path / "whole")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, rate_a, audio_a = decode(out / "long.mp4")
    b, rate_b, audio_b = decode(tmp_path / "whole" / "long.mp4")
    assert len(a) == len(b) == 40 and rate_a == rate_b and audio_a == audio_b == ["aac"]
    frames = json.loads((out / "long.mp4.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == list(range(40))  # the kept segments' records too
    diffs = [np.abs(x[2].astype(int) - y[2].astype(int)).mean() for x, y in zip(a, b)]
    assert max(diffs) == 0, diffs  # finite-memory stabilisers, block-aligned warm-up: the very same frames
    assert not partial.exists()


def test_probe_reads_rate_count_and_audio(tmp_path, scene):
    lq, _ = clip_frames(scene, 7)
    write_clip(tmp_path / "x.webm", lq, rate=12, audio=True)
    info = probe(tmp_path / "x.webm")
    assert (info.frames, info.rate, info.audio_codecs, info.rotation) == (7, Fraction(12), ["opus"], 0)
    assert not info.variable_rate


def test_photo_only_flags_on_a_video_get_a_note(tmp_path, capsys, tiny_model_dir, scene):
    write_clip(tmp_path / "a.mp4", clip_frames(scene, 2)[0])
    code, err = run_cli(["restore", tmp_path / "a.mp4", "--save-faces", "--format", "jpg", "--output",
                         tmp_path / "out", "--weights", tiny_model_dir, "--quiet"], capsys)
    assert code == 0, err
    assert "note: videos: --save-faces, --format jpg apply to photos" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "a.mp4.json"]


def test_ctrl_c_is_one_line_and_the_rerun_resumes(tmp_path, capsys, tiny_model_dir, scene, monkeypatch):
    """Ctrl-C in the middle of a clip: no traceback, exit 130, finished segments kept; the rerun resumes."""
    from osdface.video import clip

    lq, _ = clip_frames(scene, 12)
    write_clip(tmp_path / "c.mp4", lq)
    original = clip.VideoEncoder.write
    calls = {"n": 0}

    def write_then_interrupt(self, rgb, pts):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, rgb, pts)

    monkeypatch.setattr(clip.VideoEncoder, "write", write_then_interrupt)
    args = ["restore", tmp_path / "c.mp4", "--output", tmp_path / "out", "--weights", tiny_model_dir, "--quiet",
            "--video-segment", "4"]
    code, err = run_cli(args, capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "c.mp4").exists()
    monkeypatch.setattr(clip.VideoEncoder, "write", original)
    code, err = run_cli(args, capsys)
    assert code == 0 and "resuming at frame 4" in err
    assert len(decode(tmp_path / "out" / "c.mp4")[0]) == 12


def test_temporal_filter_matches_a_plain_loop_when_nothing_moves():
    """With the flow fixed at zero, the filter is its formula: per pixel, the crop and its neighbours
    weighted by max(0, 1 − d/gate), d the channel-mean distance averaged over 5 × 5 (reflected borders)."""
    from osdface.video.temporal import TemporalFilter

    rng = np.random.default_rng(0)
    crop = rng.integers(90, 110, (9, 10, 3), dtype=np.uint8)
    others = [np.clip(crop.astype(int) + rng.integers(-30, 31, crop.shape), 0, 255).astype(np.uint8)
              for _ in range(2)]
    f = TemporalFilter(gate=24.0)
    f.flow = lambda gray, other: np.zeros(gray.shape + (2,), np.float32)
    out = f(crop, others)

    def reflect(i, n):  # OpenCV's default border: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    h, w = crop.shape[:2]
    expected = np.zeros(crop.shape)
    for y in range(h):
        for x in range(w):
            total, weight = crop[y, x].astype(float), 1.0
            for o in others:
                d = np.mean([np.abs(o[reflect(y + dy, h), reflect(x + dx, w)].astype(float)
                                    - crop[reflect(y + dy, h), reflect(x + dx, w)]).mean()
                             for dy in range(-2, 3) for dx in range(-2, 3)])
                wk = max(0.0, 1 - d / 24.0)
                total, weight = total + wk * o[y, x], weight + wk
            expected[y, x] = total / weight
    assert np.abs(out.astype(float) - expected).max() <= 0.5 + 1e-3  # rounding only
    assert np.array_equal(f(crop, []), crop) and np.array_equal(f(crop, [crop, crop]), crop)


def test_temporal_filter_follows_motion_and_lets_a_real_change_through():
    """A textured face patch moving 2 px a frame with fresh noise each frame: the filter (flow-compensated)
    brings the middle frame closer to the clean one, where a plain mean of the frames blurs the motion;
    a region that changed for real (a new object) is the middle frame's own."""
    from osdface.video.temporal import TemporalFilter

    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (96, 120, 3)).astype(np.float32), (0, 0), 2.0)
    texture = (texture - texture.mean()) * 4 + 128
    clean = [np.clip(texture[16:80, 8 + 2 * t:72 + 2 * t], 0, 255).astype(np.uint8) for t in range(5)]
    noisy = [np.clip(c + rng.normal(0, 8, c.shape), 0, 255).astype(np.uint8) for c in clean]
    middle, others = noisy[2], noisy[:2] + noisy[3:]
    out = TemporalFilter(gate=32.0)(middle, others)

    def err(a):
        return np.abs(a[8:-8, 8:-8].astype(float) - clean[2][8:-8, 8:-8]).mean()

    plain = np.mean([n.astype(float) for n in noisy], axis=0)
    assert err(out) < 0.8 * err(middle) and err(out) < 0.8 * err(plain)
    changed = middle.copy()
    changed[20:40, 20:40] = 0  # a dark square: no neighbour has it
    out = TemporalFilter(gate=32.0)(changed, others)
    assert np.abs(out[24:36, 24:36].astype(int) - changed[24:36, 24:36]).max() <= 1


def test_a_video_is_restored_by_one_model():
    """A face restorer that routes small faces to a second model is refused: tracks, the prompt's smoothing
    and the temporal filter work at one face size."""
    from osdface.face.restorer import SmallFaces

    faces = FaceRestorer(lambda crops: crops, detector=ScriptedDetector([]), face_size=TINY_SIZE,
                         small=SmallFaces(lambda crops: crops, 16, 40))
    with pytest.raises(ValueError, match="one model"):
        VideoFaceRestorer(CropPatternPipe(), faces)
