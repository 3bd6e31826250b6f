"""A video on the web page: checked against the page's limits by probing, then restored through the same
``video.clip.restore_clip`` and restorer as ``osdface restore`` into an mp4 a browser plays. No gradio here.

    info = check_video(path, limits)                    # one OSDFaceError naming the limit and the reason
    video = restore_video(info, "clip.webm", folder / "clip.mp4", make_restorer, on_frame=..., cancel=event)
    video.download, video.frames, video.describe()

Whatever the input's container (mp4, m4v, mov, mkv, webm), the result is an mp4 with H.264 (CRF 17, 4:2:0
where both sides are even), which every current browser plays; the audio is copied when mp4 holds it
(AAC, MP3, Opus; not Vorbis, which is left out with a note). GIFs are not taken: ``osdface restore`` does them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import ImageReadError, OSDFaceError
from ..video.clip import restore_clip
from ..video.io import VideoInfo, probe

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")  # what the page takes
CONTAINER = "mp4"  # what it gives: H.264 in mp4, the one pair every current browser plays


def is_video_name(name: str) -> bool:
    return Path(str(name)).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoResult:
    name: str  # the upload's name, as shown
    download: Path  # the restored clip, mp4
    input_size: tuple[int, int]  # (width, height), upright
    size: tuple[int, int]  # of the result
    frames: int
    fps: float
    seconds: float
    faces: int = 0  # face-frames restored (a face in 10 frames counts 10)
    tracks: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. audio left out

    def describe(self) -> str:
        """One line: 'clip.webm: 320×240 → 640×480 px, 16 frames at 24 fps (0.7 s), H.264 mp4, 120 KB, 16
        face-frames in 1 track'."""
        from .jobs import _kilobytes

        fps = f"{self.fps:.3g}"
        return (f"{self.name}: {self.input_size[0]}×{self.input_size[1]} → {self.size[0]}×{self.size[1]} px, "
                f"{self.frames} frames at {fps} fps ({self.seconds:.1f} s), H.264 mp4, "
                f"{_kilobytes(self.download.stat().st_size)}, {self.faces} face-frame{'s' * (self.faces != 1)} in "
                f"{self.tracks} track{'s' * (self.tracks != 1)}")


def check_video(path: Path, limits) -> VideoInfo:
    """Probe ``path`` (an upload) and hold it to ``limits`` (``jobs.Limits``): readable, at most
    ``max_video_seconds`` long and ``max_video_pixels`` large (upright width × height). One OSDFaceError
    naming the limit and the reason, without the server's path."""
    path = Path(path)
    if not is_video_name(path.name):
        raise OSDFaceError(f"not a video the page takes ({', '.join(s[1:] for s in VIDEO_SUFFIXES)}); "
                           "use osdface restore for others")
    try:
        info = probe(path)
    except ImageReadError as err:  # VideoReadError: corrupt, truncated, no video stream, no frames
        raise OSDFaceError(str(err).replace(str(path), "").lstrip(": ")) from None
    width, height = info.upright_size
    if info.duration > limits.max_video_seconds:
        raise OSDFaceError(f"{info.duration:.1f} s long, over the page's limit of {limits.max_video_seconds:g} s "
                           "a video (cut it, or use osdface restore)")
    if width * height > limits.max_video_pixels:
        raise OSDFaceError(f"{width}×{height} px, over the page's limit of {limits.describe_video_size()} a video "
                           "(shrink it, or use osdface restore)")
    return info


def restore_video(info: VideoInfo, name: str, output: Path, make_restorer: Callable, upscale: float = 1.0,
                  on_frame: Optional[Callable[[int, int], None]] = None,
                  cancel: Optional[threading.Event] = None) -> VideoResult:
    """Restore ``info``'s clip into ``output`` (an .mp4), ``on_frame(done, total)`` after each frame;
    ``cancel`` stops it between two frames (``errors.Cancelled``, nothing left behind)."""
    result = restore_clip(info, output, make_restorer, {"page": True}, upscale=upscale, progress=False,
                          container=CONTAINER, on_frame=on_frame, cancel=cancel, log=lambda line: None)
    width, height = info.upright_size
    notes = list(result.notes)
    size = (max(1, round(width * upscale)), max(1, round(height * upscale)))
    if size[0] % 2 or size[1] % 2:
        notes.append(f"{size[0]}×{size[1]} px has an odd side: encoded 4:4:4, which some browsers do not play "
                     "(the download is whole)")
    return VideoResult(name, output, (width, height), size, result.frames, float(info.rate), info.duration,
                       result.faces, result.tracks, notes)
