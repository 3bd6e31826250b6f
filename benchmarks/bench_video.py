"""Temporal stability of video restoration: each stabiliser on and off, against the input's own flicker.

A still scene with two real faces (scikit-image's astronaut, composed by ``face.synthetic``) is filmed
by a virtual camera that pans and zooms slowly (``video.synthetic.camera_path``); every frame gets its
own blur, noise and JPEG (``film``). Because the motion is known, frame t + 1 can be warped back onto
frame t: the mean absolute difference left (0..255, inside the two faces' regions) is the **temporal
error**, i.e. flicker. It is measured for the degraded input, for the clean frames (the floor of the
measure: resampling alone), and for the restored clip under each set of stabilisers:

- none: raw detections per frame, each frame's own visual prompt, no gap bridging;
- landmarks: the line fit of landmarks over ± 3 frames (alignment and paste mask move with the track);
- prompt: the VRE features averaged along each track (momentum 0.7) before the nearest codes are taken;
- temporal filter: each face averaged with its track's faces in the frames ± 2, warped onto it by optical
  flow where they match, on the model's input and on its output (``video.temporal``);
- all: all of them, plus bridging of detector misses (the default of ``osdface restore``).

Also: how often the visual prompt changes (tokens entering or leaving a track's code set between
consecutive frames, of 77) and frames per second of the whole loop (detection, tracking, restoration,
paste-back; no encoding) with the bundled mini model.

Target (issue 13): the stabilised output's temporal error no higher than the input's, and lower than
without stabilisation.

With ``--clean CLIP`` (issue 20) a real clip is the clean source instead: it is shrunk (×0.25 and
×0.5), blurred, JPEG-compressed per frame and H.264-encoded at a low bitrate, and the input and each
restored version are measured against the clean frames (shrunk alike) inside the faces: the temporal
error mean |(out[t+1] − out[t]) − (clean[t+1] − clean[t])| and the PSNR (``benchmarks/results/video_real.md``).

Usage:
    python benchmarks/bench_video.py                       # ~2 min on 2 cores
    python benchmarks/bench_video.py --clean ../shared/data/video/talking_head.mp4 --frames 100   # ~8 min
    python benchmarks/bench_video.py --frames 96 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def make_scene():
    import skimage.data

    from osdface.face.synthetic import ASTRONAUT_LANDMARKS5, FacePlacement, compose_group_photo

    placements = [FacePlacement(230, 250, 200), FacePlacement(540, 260, 180, 6)]
    scene, _ = compose_group_photo(skimage.data.astronaut(), ASTRONAUT_LANDMARKS5, placements, 480, 760, seed=1)
    regions = [np.array([p.x - p.size * 0.32, p.y - p.size * 0.36, p.x + p.size * 0.32, p.y + p.size * 0.4])
               for p in placements]  # the faces (not hair and neck) in scene pixels
    return scene, regions


class PromptRecorder:
    """Wraps ``pipe.prompt_from_features`` to record each face's set of selected codes."""

    def __init__(self, pipe):
        self.pipe, self.sets = pipe, []
        self.original = pipe.prompt_from_features

    def __call__(self, features):
        from osdface.models.vre import nearest_codes, select_unique_codes

        quant = self.pipe.vre.quantize
        best, index = nearest_codes(features.float(), quant.embedding.weight.float())
        codes, valid = select_unique_codes(best, index, quant.num_codes, self.pipe.vre.config.num_tokens)
        self.sets.extend(set(c[v].tolist()) for c, v in zip(codes, valid))
        return self.original(features)


def run(pipe, face_restorer, stabilisers, frames) -> tuple[list[np.ndarray], float, float]:
    """(restored frames, seconds per frame, mean prompt changes per face and frame)."""
    from osdface.video import Frame, VideoFaceRestorer

    recorder = PromptRecorder(pipe)
    pipe.prompt_from_features = recorder
    try:
        restorer = VideoFaceRestorer(pipe, face_restorer, stabilisers, batch_size=8)
        start = time.perf_counter()
        out = list(restorer(Frame(i, i, f) for i, f in enumerate(frames)))
        seconds = (time.perf_counter() - start) / len(frames)
    finally:
        del pipe.prompt_from_features
    assert [r.index for r in out] == list(range(len(frames)))
    # faces come in frame order, track ids sorted per frame: pair each face with its track's previous one
    changes, last, k = [], {}, 0
    if len(recorder.sets) != sum(len(r.track_ids) for r in out):  # faces kept whole skip the model
        return [r.rgb for r in out], seconds, float("nan")
    for r in out:
        for tid in r.track_ids:
            codes = recorder.sets[k]
            k += 1
            if tid in last:
                changes.append(len(codes ^ last[tid]) / 2)
            last[tid] = codes
    return [r.rgb for r in out], seconds, float(np.mean(changes)) if changes else 0.0


def face_psnr(frames, clean, affines, regions) -> float:
    """PSNR (dB) of the frames against the clean ones, over the faces' regions of every frame."""
    errors = []
    for frame, truth, a in zip(frames, clean, affines):
        for x1, y1, x2, y2 in regions:
            (fx1, fy1), (fx2, fy2) = (np.array([[x1, y1, 1], [x2, y2, 1]]) @ a.T).astype(int)
            diff = frame[fy1:fy2, fx1:fx2].astype(np.float64) - truth[fy1:fy2, fx1:fx2]
            errors.append((diff ** 2).mean())
    return float(10 * np.log10(255.0 ** 2 / np.mean(errors)))


def prompt_sensitivity(pipe, face_restorer, frame) -> str:
    """How much the model's output depends on its visual prompt at all: the largest change (0..255) when
    the prompt of the first frame's faces is replaced by zeros. Where it is tiny, prompt flips cannot
    flicker and the prompt stabiliser shows only in the code changes."""
    from osdface.image_utils import to_batch

    with torch.inference_mode():
        lq = torch.cat(to_batch(face_restorer.prepare(frame).crops))
        prompt = pipe.visual_prompt(lq)
        change = (pipe.restore_tensor(lq, prompt_embeds=prompt) - pipe.restore_tensor(
            lq, prompt_embeds=torch.zeros_like(prompt))).abs().max().item() * 127.5
    return (f"Prompt sensitivity of this model: zeroing the visual prompt changes its output by at most "
            f"{change:.2f} of 255.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 320), metavar=("W", "H"))
    parser.add_argument("--noise", type=float, default=6.0)
    parser.add_argument("--jpeg", type=int, default=45)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--model", default="mini", help="the bundled model (mini: the default; a video uses one model)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "video.md")
    parser.add_argument("--strip", type=Path, default=ROOT / "docs" / "video_strip.png")
    parser.add_argument("--clean", type=Path, default=None,
                        help="a clean real clip (e.g. ../shared/data/video/talking_head.mp4): degrade it and "
                             "measure against it instead of the synthetic pan")
    parser.add_argument("--scales", type=float, nargs="+", default=(0.25, 0.5))
    parser.add_argument("--blur", type=float, default=0.8)
    parser.add_argument("--crf", type=int, default=38)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.clean is not None:
        args.jpeg = 25 if args.jpeg == 45 else args.jpeg
        if args.output == parser.get_default("output"):
            args.output = ROOT / "benchmarks" / "results" / "video_real.md"
        real_clip(args)
        return

    from osdface.hardware import cpu_description
    from osdface.loading import load_pipeline
    from osdface.photos import make_face_restorer
    from osdface.video.restorer import Stabilisers
    from osdface.video.synthetic import camera_path, film, temporal_error

    pipe = load_pipeline(None, None, "cpu", args.dtype, model=args.model, notify=lambda line: None)
    face_restorer = make_face_restorer(pipe, small_faces=False)  # a video: one model
    scene, regions = make_scene()
    size = tuple(args.size)
    affines = camera_path(args.frames, size, scene.shape[1::-1])
    lq, clean = film(scene, affines, size, noise=args.noise, jpeg_quality=args.jpeg)

    configs = {
        "none": Stabilisers.off(),
        "landmarks": Stabilisers(landmark_radius=3, prompt_momentum=0.0, bridge_gap=0, temporal_radius=0),
        "prompt": Stabilisers(landmark_radius=0, prompt_momentum=0.7, bridge_gap=0, temporal_radius=0),
        "temporal filter": Stabilisers(landmark_radius=0, prompt_momentum=0.0, bridge_gap=0, temporal_radius=2),
        "all but the temporal filter": Stabilisers(temporal_radius=0),
        "all (default)": Stabilisers(),
    }
    rows = [("input (degraded)", temporal_error(lq, affines, regions), temporal_error(lq, affines), None, None,
             face_psnr(lq, clean, affines, regions)),
            ("clean frames (floor)", temporal_error(clean, affines, regions), temporal_error(clean, affines), None,
             None, None)]
    run(pipe, face_restorer, Stabilisers(), lq[:8])  # warm-up (first calls allocate): not timed
    outputs = {}
    for name, stab in configs.items():
        restored, seconds, changes = run(pipe, face_restorer, stab, lq)
        outputs[name] = restored
        rows.append((f"restored, stabilisers: {name}", temporal_error(restored, affines, regions),
                     temporal_error(restored, affines), changes, 1 / seconds,
                     face_psnr(restored, clean, affines, regions)))
        print(f"{name}: face-region error {rows[-1][1]:.3f}, {changes:.2f} prompt codes changed per frame, "
              f"{1 / seconds:.2f} frames/s", flush=True)

    # Table
    lines = [f"Clip: {args.frames} frames of {size[0]}×{size[1]}, two faces, slow pan and zoom; per frame blur "
             f"σ 0.8, noise σ {args.noise:g}, JPEG q{args.jpeg}. Model: bundled {args.model} ({pipe.sample_size} px), {args.dtype}. "
             f"CPU: {cpu_description()}.", "",
             f"| | temporal error, faces (0..255) | whole frame | prompt codes changed / frame (of "
             f"{pipe.vre.config.num_tokens}) | frames/s | PSNR of the faces vs clean (dB) |",
             "|---|---|---|---|---|---|"]
    for name, faces, whole, changes, fps, quality in rows:
        lines.append(f"| {name} | {faces:.3f} | {whole:.3f} | {'' if changes is None else f'{changes:.2f}'} | "
                     f"{'' if fps is None else f'{fps:.2f}'} | {'' if quality is None else f'{quality:.2f}'} |")
    base, best = rows[2][1], rows[-1][1]  # none, all (default)
    lines += ["", f"Stabilised vs none: {best / base:.2f}×; stabilised vs input: {best / rows[0][1]:.2f}× "
              f"(target ≤ 1 for both).", "", prompt_sensitivity(pipe, face_restorer, lq[0])]
    table = "\n".join(lines)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# Video: temporal stability (benchmarks/bench_video.py)\n\n" + table + "\n")

    # Strip: the first face over 6 consecutive frames, rows input | none | all but the filter | all
    x1, y1, x2, y2 = regions[0]
    tiles = []
    for frames in (lq, outputs["none"], outputs["all but the temporal filter"], outputs["all (default)"]):
        row = []
        for t in range(args.frames // 2, args.frames // 2 + 6):
            box = np.array([[x1, y1, 1], [x2, y2, 1]]) @ affines[t].T
            (a, b), (c, d) = box.astype(int)
            row.append(cv2.resize(frames[t][b:d, a:c], (128, 144), interpolation=cv2.INTER_CUBIC))
        tiles.append(np.concatenate(row, axis=1))
    args.strip.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.strip), cv2.cvtColor(np.concatenate(tiles, axis=0), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output} and {args.strip}")


# ----------------------------------------------------------------------------- a real clip against its clean source


def degrade_clip(clean: list[np.ndarray], scale: float, blur: float, jpeg: int, crf: int) -> tuple[list, list]:
    """(degraded frames, clean reference) at ``scale`` × the clean size: the clean frames shrunk (area),
    blurred (σ ``blur``), JPEG q``jpeg`` each, then the clip H.264-encoded at CRF ``crf`` and decoded."""
    import tempfile

    import av

    h, w = clean[0].shape[:2]
    size = (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2)
    reference = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clean]
    frames = []
    for f in reference:
        x = cv2.GaussianBlur(f, (0, 0), blur) if blur > 0 else f
        _, buf = cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        frames.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lq.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": str(crf)})
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            for f in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(stream.encode(None))
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, reference


def face_masks(detector, reference: list[np.ndarray]) -> list[np.ndarray]:
    """Per frame, a mask of the faces' boxes found by the detector on the clean reference frames."""
    masks = []
    for f in reference:
        mask = np.zeros(f.shape[:2], bool)
        for d in detector.detect(f):
            x1, y1, x2, y2 = np.round(d.box).astype(int)
            mask[max(0, y1):y2, max(0, x1):x2] = True
        masks.append(mask)
    return masks


def error_vs_clean(frames, clean, masks) -> tuple[float, float]:
    """(temporal error: mean |(out[t+1] − out[t]) − (clean[t+1] − clean[t])| inside the faces of frame t,
    0..255; PSNR of the faces against the clean frames, dB)."""
    errors, squared = [], []
    for t in range(len(frames)):
        m = masks[t]
        if not m.any():
            continue
        squared.append(((frames[t][m].astype(np.float64) - clean[t][m]) ** 2).mean())
        if t + 1 < len(frames):
            d_out = frames[t + 1][m].astype(np.float32) - frames[t][m]
            d_clean = clean[t + 1][m].astype(np.float32) - clean[t][m]
            errors.append(np.abs(d_out - d_clean).mean())
    return float(np.mean(errors)), float(10 * np.log10(255.0 ** 2 / np.mean(squared)))


def real_clip(args) -> None:
    """The temporal error and PSNR against the clean source (issue 20): ``--clean`` degraded at two strengths."""
    import av

    from osdface.hardware import cpu_description
    from osdface.loading import load_pipeline
    from osdface.photos import make_face_restorer, make_no_harm
    from osdface.video.restorer import Stabilisers

    with av.open(str(args.clean)) as c:
        clean = [f.to_ndarray(format="rgb24") for _, f in zip(range(args.frames), c.decode(video=0))]
    pipe = load_pipeline(None, None, "cpu", args.dtype, model=args.model, notify=lambda line: None)
    no_harm, _ = make_no_harm()  # the default command's "never worse" rule
    default = make_face_restorer(pipe, no_harm=no_harm, small_faces=False)  # a video: one model
    model = make_face_restorer(pipe, small_faces=False)  # every face restored (both guards off): the model's own output
    configs = {
        "default command (stabilisers on, \"never worse\" rule on)": (default, Stabilisers()),
        "rule off, stabilisers: none": (model, Stabilisers.off()),
        "rule off, stabilisers: landmarks": (model, Stabilisers(landmark_radius=3, prompt_momentum=0.0, bridge_gap=0, temporal_radius=0)),
        "rule off, stabilisers: prompt": (model, Stabilisers(landmark_radius=0, prompt_momentum=0.7, bridge_gap=0, temporal_radius=0)),
        "rule off, stabilisers: temporal filter": (model, Stabilisers(0, 0.0, 0, temporal_radius=2)),
        "rule off, stabilisers: all but the temporal filter": (model, Stabilisers(temporal_radius=0)),
        "rule off, stabilisers: all (default)": (model, Stabilisers()),
    }
    lines = [(f"Clip: the first {len(clean)} frames of {args.clean.name} ({clean[0].shape[1]}×{clean[0].shape[0]}, "
              f"one face) as the clean source, shrunk, blurred σ {args.blur:g}, JPEG q{args.jpeg} per frame, then "
              f"H.264 CRF {args.crf}; measured against the clean frames shrunk alike, inside the face boxes "
              f"(detector on the clean frames). Model: bundled {args.model} ({pipe.sample_size} px), {args.dtype}. "
              f"CPU: {cpu_description()}."), "",
             "| strength | | temporal error vs clean (0..255) | × input | PSNR of the faces vs clean (dB) |",
             "|---|---|---|---|---|"]
    for scale in args.scales:
        lq, reference = degrade_clip(clean, scale, args.blur, args.jpeg, args.crf)
        masks = face_masks(model.detector, reference)
        sizes = [d.width for d in model.detector.detect(reference[0])]
        label = f"×{scale:g} ({lq[0].shape[1]}×{lq[0].shape[0]}, face ≈ {max(sizes, default=0):.0f} px)"
        base, base_psnr = error_vs_clean(lq, reference, masks)
        lines.append(f"| {label} | input (degraded) | {base:.3f} | 1.00 | {base_psnr:.2f} |")
        print(lines[-1], flush=True)
        for name, (restorer, stab) in configs.items():
            restored, seconds, _ = run(pipe, restorer, stab, lq)
            err, psnr = error_vs_clean(restored, reference, masks)
            lines.append(f"| {label} | {name} | {err:.3f} | {err / base:.3f} | {psnr:.2f} |")
            print(lines[-1], f"({1 / seconds:.1f} frames/s)", flush=True)
    table = "\n".join(lines)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# Video: temporal error against the clean clip (benchmarks/bench_video.py --clean)\n\n"
                           + table + "\n")


if __name__ == "__main__":
    main()
