"""Video files through PyAV (FFmpeg inside its wheel; no system ffmpeg): probe, decode, encode, remux.

Frames are handed out **upright** (the container's display rotation applied, a lossless quarter turn)
as HWC uint8 RGB with their presentation timestamps; the encoder turns them back and the output keeps
the same rotation metadata, timestamps (so a variable frame rate stays as it was) and frame rate.

Restored video is encoded in segments (video only); ``remux`` joins the segments and copies the
input's audio streams packet for packet, so the audio is never re-encoded. GIF has no audio and its
muxer cannot be fed pre-encoded packets again: it is encoded in one piece.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import OSDFaceError, VideoReadError
from ..image_utils import VIDEO_EXTENSIONS

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}
DEFAULT_CODECS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9", "gif": "gif"}
# Quality first (the faces are the point), no B-frames so that segments join with monotonic timestamps.
DEFAULT_OPTIONS = {"libx264": {"crf": "17", "preset": "medium", "bf": "0"},
                   "libvpx-vp9": {"crf": "28", "b": "0", "row-mt": "1"},
                   "gif": {}}


def import_av():
    """PyAV, or one line saying how to get it."""
    try:
        import av
    except ImportError:
        raise OSDFaceError("video needs PyAV (FFmpeg in a wheel): pip install 'osdface[video]'") from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter; errors reach us as exceptions
    return av


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoInfo:
    """What ``probe`` learns of a video before any frame is restored."""

    path: Path
    width: int  # as stored, before the display rotation
    height: int
    rate: Fraction  # average frame rate
    time_base: Fraction
    frames: Optional[int]  # the container's frame count; None when it does not say (mkv, webm)
    rotation: int  # display rotation, degrees counter-clockwise: 0, 90, 180 or 270
    codec: str
    audio_codecs: list[str] = field(default_factory=list)
    frame_durations: tuple[float, float] = (0.0, 0.0)  # shortest and longest, seconds (from the packets)
    duration: float = 0.0  # seconds, first frame's start to last frame's end (from the packets; 0: unknown)

    @property
    def variable_rate(self) -> bool:
        short, long = self.frame_durations
        return long > 1.5 * short > 0

    @property
    def container(self) -> str:
        return CONTAINERS[self.path.suffix.lower()]

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(": '")[0][:200]  # FFmpeg errors end with the path again


def probe(path: Path) -> VideoInfo:
    """Read ``path``'s packets once (no decoding but the first frame): its size, rate, rotation, audio,
    real frame count and frame rhythm. A file that cannot give a frame is refused in one line, and so is
    one holding fewer frames than its index declares (cut short)."""
    av = import_av()
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: holds no video stream"
                                     + (" (audio only)" if container.streams.audio else " (no frames at all)"))
            stream = container.streams.video[0]
            first, stamps = None, []
            for packet in container.demux(stream):  # the last one is empty: it flushes the decoder
                if packet.size and packet.pts is not None:
                    stamps.append(packet.pts)
                if first is None:
                    first = next(iter(packet.decode()), None)
            if first is None:
                raise VideoReadError(f"{path}: holds no video frames")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoReadError(f"{path}: has no frame rate")
            declared = stream.frames or None
            info = VideoInfo(path, stream.codec_context.width, stream.codec_context.height, Fraction(rate),
                             Fraction(stream.time_base), declared, round((first.rotation or 0) / 90) % 4 * 90,
                             stream.codec_context.name, [a.codec_context.name for a in container.streams.audio])
    except VideoReadError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(f"{path}: not a readable video ({_reason(err)})") from None
    if declared and len(stamps) < declared:  # the container's index promises more than the file holds
        raise VideoReadError(f"{path}: truncated: {len(stamps)} of the {declared} frames it declares are in the file")
    if stamps:
        info.frames = len(stamps)  # what decoding will give, less any frames an edit list trims (phone edits)
        stamps.sort()
        steps = [float((b - a) * info.time_base) for a, b in zip(stamps, stamps[1:]) if b > a]
        if steps:
            info.frame_durations = (min(steps), max(steps))
        last = steps[-1] if steps else float(1 / rate)  # the last frame lasts as the one before it
        info.duration = float((stamps[-1] - stamps[0]) * info.time_base) + last
    return info


@dataclass
class Frame:
    """One decoded frame: its index, presentation timestamp (in the stream's time base), upright RGB."""

    index: int
    pts: int
    rgb: np.ndarray


def read_frames(info: VideoInfo) -> Iterator[Frame]:
    """Decode every frame, one at a time (the clip is never held in memory), upright.

    Missing timestamps are filled from the frame rate. A decoding error raises VideoReadError (a file
    cut short is refused by ``probe``; frames an edit list trims are not decoded, as players skip them).
    """
    av = import_av()
    step = max(1, round(1 / (info.rate * info.time_base))) if info.rate else 1
    index, last_pts = 0, None
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + step)
                if last_pts is not None and pts <= last_pts:  # repeated / out-of-order stamps: keep them increasing
                    pts = last_pts + 1
                last_pts = pts
                rgb = frame.to_ndarray(format="rgb24")
                yield Frame(index, pts, np.ascontiguousarray(np.rot90(rgb, info.rotation // 90)))
                index += 1
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(f"{info.path}: corrupt video data at frame {index} ({_reason(err)})") from None


class VideoEncoder:
    """Encode upright RGB frames (with their input timestamps) into one video-only file.

    ``codec`` / ``options``: FFmpeg encoder name and its options (defaults by container: H.264 CRF 17 for
    mp4/mov/mkv, VP9 for webm, GIF). ``container``: the output's (``CONTAINERS`` values; default the
    input's). The frames are turned back by ``rotation`` before encoding and the stream carries the same
    display rotation, as the input did.
    """

    def __init__(self, path: Path, info: VideoInfo, size: tuple[int, int], codec: Optional[str] = None,
                 options: Optional[dict[str, str]] = None, container: Optional[str] = None):
        av = import_av()
        self.info = info
        container_format = container or info.container
        self.codec = codec or DEFAULT_CODECS[container_format]
        opts = dict(DEFAULT_OPTIONS.get(self.codec, {}))
        opts.update(options or {})
        self.container = av.open(str(path), "w", format=container_format)
        width, height = size if info.rotation in (0, 180) else size[::-1]  # stored orientation
        try:
            self.stream = _add_video_stream(av, self.container, self.codec, opts, info.rate, info.time_base,
                                            (width, height))
        except (av.error.FFmpegError, ValueError, TypeError) as err:
            self.container.close()
            raise OSDFaceError(f"--video-codec {self.codec}: cannot encode {container_format} with it "
                               f"({_reason(err)})") from None
        if info.rotation:
            self.stream.set_display_rotation(info.rotation)
        self.av = av

    def write(self, rgb: np.ndarray, pts: int) -> None:
        stored = np.ascontiguousarray(np.rot90(rgb, -(self.info.rotation // 90)))
        frame = self.av.VideoFrame.from_ndarray(stored, format="rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        self.container.close()


def _add_video_stream(av, container, codec: str, options: dict, rate, time_base, size: tuple[int, int]):
    """A video stream of ``codec`` (with ``options``) in ``container``, ``size`` = (width, height) as stored,
    in the pixel format we encode: rgb8 for GIF, else 4:2:0 (4:4:4 when a side is odd)."""
    stream = container.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height = size
    if codec == "gif":
        stream.pix_fmt = "rgb8"
    elif size[0] % 2 or size[1] % 2:
        stream.pix_fmt = "yuv444p"  # 4:2:0 needs even sides
    else:
        stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = time_base
    return stream


def check_encoder(container_format: str, codec: Optional[str], options: Optional[dict[str, str]],
                  size: tuple[int, int] = (64, 64)) -> None:
    """Refuse, before any work, an encoder ``VideoEncoder`` could not use: one that does not exist or is
    not a video encoder, one ``container_format`` cannot hold, an option it does not take or a value it
    refuses. One black frame of ``size`` (width, height) is encoded in memory, as the real stream would be
    set up. OSDFaceError naming the flag."""
    import io

    av = import_av()
    default = codec is None
    codec = codec or DEFAULT_CODECS[container_format]
    flag = f"--video-codec {codec}"
    try:
        kind = av.Codec(codec, "w").type
    except Exception:  # noqa: BLE001 (PyAV's UnknownCodecError and friends)
        raise OSDFaceError(f"{flag}: no such encoder in this FFmpeg (PyAV {av.__version__})") from None
    if kind != "video":
        raise OSDFaceError(f"{flag}: an {kind} encoder, not a video one")
    given = dict(options or {})
    options = {**DEFAULT_OPTIONS.get(codec, {}), **given}
    container = av.open(io.BytesIO(), "w", format=container_format)
    try:
        try:
            with _stderr_captured() as said:  # some encoders (x264) print their complaint straight to fd 2
                stream = _add_video_stream(av, container, codec, dict(options), Fraction(24), Fraction(1, 24), size)
                stream.codec_context.open()
        except (av.error.FFmpegError, ValueError, TypeError) as err:
            why = (" ".join(said[0].split()) if said and said[0].strip() else _reason(err))[:200]
            option_flags = " ".join(f"--video-option {k}={v}" for k, v in given.items())
            if not given:
                raise OSDFaceError(f"{flag}: cannot encode {container_format} with it ({why})") from None
            if default:
                raise OSDFaceError(f"{option_flags}: refused by {codec}, the encoder for {container_format} ({why})") from None
            raise OSDFaceError(f"{flag} {option_flags}: cannot encode {container_format} ({why})") from None
        unknown = sorted(stream.codec_context.options)  # what the encoder left unused
        if unknown:
            raise OSDFaceError(f"--video-option {', '.join(f'{k}={options[k]}' for k in unknown)}: {codec} has no "
                               f"such option")
        try:
            frame = av.VideoFrame.from_ndarray(np.zeros((size[1], size[0], 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = 0, Fraction(1, 24)
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        except (av.error.FFmpegError, ValueError) as err:
            raise OSDFaceError(f"{flag}: cannot encode a {size[0]}×{size[1]} frame ({_reason(err)})") from None
    finally:
        try:
            container.close()
        except (av.error.FFmpegError, ValueError):
            pass


@contextlib.contextmanager
def _stderr_captured():
    """What C code writes to file descriptor 2 meanwhile, in a list (filled on exit), instead of the terminal."""
    import os
    import sys
    import tempfile

    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.append(sink.read().decode("utf-8", "replace"))


def _packet_time(packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * packet.time_base)


def remux(segments: list[Path], source: VideoInfo, output: Path, container: Optional[str] = None) -> list[str]:
    """Join the encoded ``segments`` (in order) with the audio streams of ``source`` into ``output`` (in
    ``container``, default the source's), packets interleaved by time, nothing re-encoded. Returns notes (an
    audio stream the container refuses is left out and named)."""
    av = import_av()
    notes: list[str] = []
    container = container or source.container
    inputs = [av.open(str(s)) for s in segments]
    src = av.open(str(source.path))
    try:
        with av.open(str(output), "w", format=container) as out:
            video = out.add_stream_from_template(inputs[0].streams.video[0])
            video.codec_context.framerate = source.rate
            if source.rotation:
                video.set_display_rotation(source.rotation)
            audio = {}
            for stream in src.streams.audio:
                try:
                    audio[stream.index] = out.add_stream_from_template(stream)
                except (av.error.FFmpegError, ValueError) as err:
                    notes.append(f"audio stream {stream.index} ({stream.codec_context.name}) left out: "
                                 f"{container} cannot hold it ({_reason(err)})")

            def video_packets():
                for c in inputs:
                    yield from (p for p in c.demux(c.streams.video[0]) if p.size)

            def audio_packets():
                if audio:
                    yield from (p for p in src.demux(*[s for s in src.streams.audio if s.index in audio]) if p.size)

            v_iter, a_iter = video_packets(), audio_packets()
            v, a = next(v_iter, None), next(a_iter, None)
            while v is not None or a is not None:
                if a is None or (v is not None and _packet_time(v) <= _packet_time(a)):
                    v.stream = video
                    out.mux(v)
                    v = next(v_iter, None)
                else:
                    a.stream = audio[a.stream.index]
                    out.mux(a)
                    a = next(a_iter, None)
    finally:
        for c in inputs:
            c.close()
        src.close()
    return notes
