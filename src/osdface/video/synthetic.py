"""Synthetic clips with known motion, for tests and ``benchmarks/bench_video.py``.

A still scene (e.g. ``face.synthetic.compose_group_photo``) is filmed by a virtual camera that pans
and zooms slowly: frame t is the scene warped by a known affine ``A_t`` (scene → frame pixels), then
degraded with fresh noise and JPEG compression each frame, as a cheap camera would. Because the motion
is known, a restored frame t + 1 can be warped back onto frame t and compared (``temporal_error``):
what is left is flicker, not motion.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..face.alignment import compose_affine, invert_affine


def camera_path(frames: int, size: tuple[int, int], scene_size: tuple[int, int], pan: float = 0.04,
                zoom: float = 1.06) -> list[np.ndarray]:
    """Affines (2, 3) scene → frame for a slow pan (``pan`` × the frame width, left to right) and zoom
    (from 1 to ``zoom``) about the scene centre; the frame (w, h) = ``size`` sees the scene's middle."""
    w, h = size
    sw, sh = scene_size
    base = min(w / sw, h / sh) * 1.05  # the scene slightly larger than the frame: no border in view
    out = []
    for t in range(frames):
        a = t / max(1, frames - 1)
        scale = base * (1 + (zoom - 1) * a)
        shift_x = -pan * w * a
        out.append(np.array([[scale, 0, w / 2 - scale * sw / 2 + shift_x],
                             [0, scale, h / 2 - scale * sh / 2]], dtype=np.float64))
    return out


def film(scene: np.ndarray, affines: Sequence[np.ndarray], size: tuple[int, int], noise: float = 6.0,
         jpeg_quality: int = 45, blur: float = 0.8, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(degraded frames, clean frames), HWC uint8 RGB of (w, h) = ``size``: each clean frame is the scene
    under its affine; the degraded one adds blur, Gaussian noise (std ``noise``) and JPEG, fresh per frame."""
    rng = np.random.default_rng(seed)
    clean, degraded = [], []
    for a in affines:
        frame = cv2.warpAffine(scene, a, size, flags=cv2.INTER_AREA if a[0, 0] < 1 else cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT_101)
        clean.append(frame)
        x = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), blur) if blur > 0 else frame.astype(np.float32)
        x = np.clip(x + rng.normal(0, noise, x.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        degraded.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return degraded, clean


def temporal_error(frames: Sequence[np.ndarray], affines: Sequence[np.ndarray],
                   regions: Sequence[np.ndarray] | None = None) -> float:
    """Mean absolute difference (0..255) between each frame t and frame t + 1 warped back onto frame t
    by the known motion ``A_t · A_{t+1}^-1``, over the pixels that frame t + 1 sees, within
    ``regions`` (scene-space boxes x1, y1, x2, y2, e.g. the faces) when given."""
    errors = []
    h, w = frames[0].shape[:2]
    for t in range(len(frames) - 1):
        back = compose_affine(affines[t], invert_affine(affines[t + 1]))  # frame t+1 → frame t pixels
        warped = cv2.warpAffine(frames[t + 1].astype(np.float32), back, (w, h), flags=cv2.INTER_LINEAR)
        seen = cv2.warpAffine(np.ones((h, w), np.float32), back, (w, h), flags=cv2.INTER_NEAREST) > 0.5
        if regions is not None:
            inside = np.zeros((h, w), bool)
            for x1, y1, x2, y2 in regions:
                corners = np.array([[x1, y1, 1], [x2, y2, 1]], np.float64) @ affines[t].T  # scene → frame t
                (fx1, fy1), (fx2, fy2) = corners.min(0), corners.max(0)
                inside[max(0, int(fy1)):max(0, int(np.ceil(fy2))), max(0, int(fx1)):max(0, int(np.ceil(fx2)))] = True
            seen &= inside
        seen = cv2.erode(seen.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # away from the border
        diff = np.abs(frames[t].astype(np.float32) - warped).mean(axis=2)
        errors.append(float(diff[seen].mean()) if seen.any() else 0.0)
    return float(np.mean(errors))


def write_clip(path, frames: Sequence[np.ndarray], rate: int = 25, audio: bool = False, rotation: int = 0,
               codec: str | None = None, timestamps: Sequence[int] | None = None) -> None:
    """Write HWC uint8 RGB ``frames`` (as stored, not turned) to a clip for tests and benchmarks: the
    container from the suffix, optionally a sine tone as audio (AAC, Opus for webm), a display
    rotation, and explicit timestamps in 1/``rate`` units (a variable frame rate when uneven)."""
    from fractions import Fraction

    from .io import CONTAINERS, DEFAULT_CODECS, import_av

    av = import_av()
    container = CONTAINERS[str(path)[str(path).rfind("."):].lower()]
    codec = codec or DEFAULT_CODECS[container]
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(codec, rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        video.codec_context.time_base = Fraction(1, rate)
        if rotation:
            video.set_display_rotation(rotation)
        if audio:
            sound = out.add_stream("libopus" if container == "webm" else "aac", rate=48000)
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = (timestamps[i] if timestamps is not None else i), Fraction(1, rate)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio:
            seconds = len(frames) / rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(48000 * seconds)) / 48000)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, 0
            for packet in sound.encode(chunk):
                out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
