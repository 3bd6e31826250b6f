"""Video speed at 720p with two faces, and where the time goes (issue 20, item 4).

The clip: the real talking head (``../shared/data/video/talking_head.mp4``, 512 × 512) twice, side by
side on a 1280 × 720 canvas, as an H.264 mp4. It goes through the very path of ``osdface restore
clip.mp4`` (``video.clip.restore_clip``: decode, detect, track, align, restore, paste, encode into
segments, join) with the bundled model, after start-up (the model loaded, one short clip run first).
Two cases:

- ``sharp``: the clip as it is; the default command keeps both 512-px faces whole (the "never worse"
  rule: they are sharper than the 128-px model), so no face goes through the model;
- ``blurred``: the talking heads shrunk to 64 px and enlarged back to 512 before they are placed (blurred
  at the model's 128 px too), so the rule restores them (α = 1, the model's change pasted at 512 px): both
  faces through the model.

Each step's time is measured by wrapping the functions that do it (``time.perf_counter``, summed per
frame): decode (frames out of PyAV), detect (the detector, on the shrunk copy), align (the crops and
their neighbours), filter (the temporal filter, input and output), model (VRE + UNet/VAE), paste
(``FaceRestorer.finish``, with the rule), encode (``VideoEncoder.write``), rest (tracking, cut detection,
joining, bookkeeping: the wall time not in the others).

Usage:
    python benchmarks/bench_video_speed.py                  # ~3 min on 2 cores
    python benchmarks/bench_video_speed.py --frames 96 --case sharp
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "video" / "talking_head.mp4"


def make_clip(path: Path, frames: int, blurred: bool) -> None:
    """Two copies of the talking head on a 1280 × 720 canvas (the second one mirrored), H.264 CRF 17."""
    import av

    with av.open(str(CLIP)) as c:
        heads = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0))]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "17", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for head in heads:
            if blurred:
                small = cv2.resize(head, (64, 64), interpolation=cv2.INTER_AREA)
                head = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)
            canvas = np.full((720, 1280, 3), 96, np.uint8)
            canvas[104:616, 64:576] = head
            canvas[104:616, 704:1216] = head[:, ::-1]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode(None))


class Timers:
    """Seconds per named step, from wrapped functions (a wrapped call inside another is not counted twice)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self._depth = 0

    def wrap(self, owner, name: str, step: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[step] += time.perf_counter() - start
                self._depth -= 1

        setattr(owner, name, timed)

    def wrap_iterator(self, owner, name: str, step: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            iterator = iter(original(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    timers.seconds[step] += time.perf_counter() - start
                yield item

        setattr(owner, name, timed)


def run_case(pipe, clip: Path, out_dir: Path, frames: int) -> tuple[float, dict[str, float], dict]:
    """(seconds per frame, seconds per frame by step, verdict counts) of ``osdface restore``'s video path."""
    from osdface.face import restorer as face_restorer_module
    from osdface.photos import make_face_restorer, make_no_harm
    from osdface.video import clip as clip_module
    from osdface.video import restorer as video_restorer_module
    from osdface.video import temporal
    from osdface.video.batch import make_stabilisers, video_restorer_maker
    from osdface.video.io import probe

    timers = Timers()
    no_harm, _ = make_no_harm()
    faces = make_face_restorer(pipe, no_harm=no_harm, small_faces=False)  # a video: one model
    make_restorer = video_restorer_maker(pipe, faces, make_stabilisers())
    patches = [(video_restorer_module.VideoFaceRestorer, "detect", "detect"),
               (face_restorer_module.FaceRestorer, "prepare", "align"),
               (video_restorer_module, "warp_face", "align"),
               (temporal.TemporalFilter, "__call__", "filter"),
               (type(pipe), "visual_features", "model"),
               (type(pipe), "restore_tensor", "model"),
               (face_restorer_module.FaceRestorer, "finish", "paste"),
               (clip_module.VideoEncoder, "write", "encode")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches] + \
            [(clip_module, "read_frames", clip_module.read_frames)]
    for owner, name, step in patches:
        timers.wrap(owner, name, step)
    timers.wrap_iterator(clip_module, "read_frames", "decode")
    try:
        info = probe(clip)
        start = time.perf_counter()
        result = clip_module.restore_clip(info, out_dir / clip.name, make_restorer, {}, progress=False,
                                          log=lambda line: None)
        wall = time.perf_counter() - start
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    split = {k: v / frames for k, v in timers.seconds.items()}
    split["rest"] = wall / frames - sum(split.values())
    return wall / frames, split, result.actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--case", choices=("sharp", "blurred", "both"), default="both")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "video_speed.md")
    args = parser.parse_args()

    import torch

    from osdface.hardware import cpu_description
    from osdface.loading import load_pipeline

    pipe = load_pipeline(None, None, "cpu", args.dtype, model="mini", notify=lambda line: None)
    steps = ("decode", "detect", "align", "filter", "model", "paste", "encode", "rest")
    header = (f"Clip: the talking head twice side by side on 1280×720, {args.frames} frames, through "
              f"`osdface restore`'s video path (decode → encode, segments joined), bundled mini "
              f"({pipe.sample_size} px: a video uses one model), "
              f"{args.dtype}, torch on {torch.get_num_threads()} threads, after start-up. CPU: {cpu_description()}.")
    lines = [header, "",
             "| faces | frames/s | " + " | ".join(steps) + " | verdicts (face-frames) |",
             "|---|---|" + "---|" * len(steps) + "---|"]
    cases = ("sharp", "blurred") if args.case == "both" else (args.case,)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in cases:
            clip = tmp / f"{case}.mp4"
            make_clip(clip, args.frames, blurred=case == "blurred")
            warm = tmp / f"warm-{case}.mp4"
            make_clip(warm, 8, blurred=case == "blurred")
            (tmp / "warm").mkdir(exist_ok=True)
            run_case(pipe, warm, tmp / "warm", 8)  # first calls allocate: not timed
            (tmp / case).mkdir()
            seconds, split, actions = run_case(pipe, clip, tmp / case, args.frames)
            label = {"sharp": "two sharp 512-px faces (kept by the rule)",
                     "blurred": "two blurred 512-px faces (restored)"}[case]
            lines.append(f"| {label} | {1 / seconds:.1f} | " + " | ".join(f"{1000 * split.get(s, 0):.0f} ms"
                                                                       for s in steps)
                         + f" | {', '.join(f'{k} {v}' for k, v in sorted(actions.items()))} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# Video speed at 720p (benchmarks/bench_video_speed.py)\n\n" + table + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
