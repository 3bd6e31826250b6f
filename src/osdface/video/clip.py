"""One clip in, one restored clip out: segments, resume after an interruption, atomic output.

The restored frames are encoded in segments of ``segment_frames`` frames, each written whole before
it counts, into a hidden work folder next to the output (``.NAME.osdface-partial/``, with a
``state.json`` naming the input file, its size and time, and the settings). A rerun with the same
input and settings keeps the finished segments and starts at the first missing frame; the stabilisers
are warmed up on the frames just before it (restored again, not written,
``VideoFaceRestorer.warmup_start``), so the resumed frames come out as in an uninterrupted run. When the last segment is done, the segments and the input's audio are joined into a
temporary file that is renamed to the output: an output file is always complete. GIFs are encoded in
one piece (no resume). With ``sidecar``, ``NAME.json`` (e.g. ``clip.mp4.json``) lists every frame's
faces: track id, box, five landmarks (as aligned, smoothed) and detection score, upright input pixels,
and ``"cut": true`` on a frame that starts a new shot (``cuts``);
it is written after the output, and the clip counts as done only when both exist (``clip_done``).

For a caller that shows progress and can stop the work (the web page): ``on_frame(done, total)`` after
each frame written, and ``cancel`` (a ``threading.Event`` or a callable) checked at every frame read and
written; once set, the open segment and the work folder are removed (no output, nothing left behind, no
resume) and ``errors.Cancelled`` is raised.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from ..errors import Cancelled, OSDFaceError
from ..files import write_text_atomic
from .io import Frame, VideoEncoder, VideoInfo, read_frames, remux
from .restorer import VideoFaceRestorer


@dataclass
class ClipResult:
    frames: int = 0
    faces: int = 0  # faces restored, summed over frames
    actions: dict = field(default_factory=dict)  # no-harm verdicts ("restored", "blended", "kept"), face-frames each
    tracks: int = 0
    resumed_at: int = 0  # first frame restored by this run (0: from the start)
    notes: list[str] = field(default_factory=list)


def work_folder(output: Path) -> Path:
    return output.parent / f".{output.name}.osdface-partial"


def _fingerprint(info: VideoInfo, settings: dict) -> dict:
    stat = info.path.stat()
    key = json.dumps(settings, sort_keys=True, default=str)
    return {"input": str(info.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "settings": hashlib.sha256(key.encode()).hexdigest()[:16]}


def _load_state(folder: Path, fingerprint: dict) -> list[dict]:
    """Finished segments of an earlier run with the same input and settings (else none, folder cleared)."""
    try:
        state = json.loads((folder / "state.json").read_text())
        if state.get("fingerprint") == fingerprint:
            segments = [s for s in state.get("segments", []) if (folder / s["file"]).is_file()]
            expected = 0
            for s in segments:  # contiguous from frame 0 only
                if s["start"] != expected:
                    break
                expected = s["end"]
            return [s for s in segments if s["end"] <= expected]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    return []


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def clip_done(output: Path, sidecar: bool) -> bool:
    """The clip's output is complete: the file, and its sidecar when one is asked for (written last)."""
    return output.is_file() and (not sidecar or sidecar_path(output).is_file())


SIDECAR_KEYS = {"input", "input_size_wh", "upscale", "rate", "time_base", "rotation", "frames"}


def sweep_orphan_sidecar(output: Path) -> bool:
    """Remove ``output``'s sidecar when the clip itself is missing and the sidecar is ours (its keys are the
    ones ``restore_clip`` writes): an older version wrote it first. A file we did not write stays."""
    path = sidecar_path(output)
    if output.exists() or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    ours = isinstance(data, dict) and set(data) == SIDECAR_KEYS
    if ours:
        path.unlink(missing_ok=True)
    return ours


def _frame_record(restored) -> dict:
    return {"frame": restored.index, "pts": restored.pts, **({"cut": True} if restored.cut else {}),
            "faces": [{"track": tid, "box_xyxy": np.round(f.box, 2).tolist(),
                       "landmarks5": np.round(f.landmarks5, 2).tolist(), "score": round(float(f.score), 4),
                       **(_verdict_fields(f.verdict) if f.verdict is not None else {})}
                      for tid, f in zip(restored.track_ids, restored.faces)]}


def _verdict_fields(verdict) -> dict:
    """The per-face verdict, kept short in a video's sidecar (one record per face and frame)."""
    record = verdict.to_json()
    return {k: record[k] for k in ("native_size", "model_size", "fusion", "model_weight", "identity", "action")}


def restore_clip(info: VideoInfo, output: Path, make_restorer: Callable[[], VideoFaceRestorer], settings: dict,
                 codec: Optional[str] = None, codec_options: Optional[dict] = None, upscale: float = 1.0,
                 segment_frames: int = 120, progress: bool = True, sidecar: bool = False,
                 log: Callable[[str], None] = print, container: Optional[str] = None,
                 on_frame: Optional[Callable[[int, int], None]] = None,
                 cancel: Optional[threading.Event | Callable[[], bool]] = None) -> ClipResult:
    """Restore ``info``'s clip into ``output``, resuming an interrupted earlier run.

    ``container``: the output's (``io.CONTAINERS`` values; default the input's). ``on_frame(done, total)``:
    frames written so far (resumed ones included) and the clip's frame count (0 when unknown), after each
    frame. ``cancel``: checked at every frame; once set, ``Cancelled`` is raised with nothing left behind."""
    result = ClipResult()
    width, height = info.upright_size
    size = (max(1, round(width * upscale)), max(1, round(height * upscale)))
    one_piece = (container or info.container) == "gif"
    folder = work_folder(output)
    fingerprint = _fingerprint(info, {**settings, "codec": codec, "codec_options": codec_options,
                                      "upscale": upscale, "segment_frames": segment_frames,
                                      **({"container": container} if container else {})})
    stop = cancel.is_set if isinstance(cancel, threading.Event) else cancel

    def check_cancel(at: int) -> None:
        if stop is not None and stop():
            raise Cancelled(f"{info.path.name}: cancelled at frame {at} of {info.frames or '?'}")
    done = [] if one_piece else _load_state(folder, fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    resume_at = done[-1]["end"] if done else 0
    result.resumed_at = resume_at
    if resume_at:
        log(f"note: {info.path}: resuming at frame {resume_at} ({len(done)} finished segment(s) kept)")

    def save_state():
        write_text_atomic(folder / "state.json", json.dumps({"fingerprint": fingerprint, "segments": done}, indent=1))

    save_state()
    restorer = make_restorer()
    warm_from = restorer.warmup_start(resume_at)
    frames = _frames_from(info, warm_from, check_cancel)
    interactive = progress and sys.stderr.isatty()
    bar = tqdm(total=info.frames, initial=resume_at, desc=info.path.name, unit="frame", disable=not interactive)
    suffix = output.suffix
    encoder, seg_start, seg_path, last = None, 0, None, -1
    records: list[dict] = []  # the open segment's frames, for the sidecar

    def close_segment():
        encoder.close()
        final = seg_path.with_name(seg_path.name[:-len(".part")])
        write_text_atomic(final.with_suffix(".json"), json.dumps(records))  # before the segment counts
        seg_path.replace(final)
        done.append({"file": final.name, "start": seg_start, "end": last + 1})
        save_state()
        records.clear()
    track_ids: set[int] = set()
    try:
        for restored in restorer(frames):
            if restored.index < resume_at:
                continue  # warm-up frame
            # 1. Open a segment (or the one-piece file) at the first frame of each segment
            if encoder is None:
                seg_start = restored.index
                seg_path = folder / f"segment_{seg_start:08d}{suffix}.part"
                encoder = VideoEncoder(seg_path, info, size, codec, codec_options, container)
            encoder.write(restored.rgb, restored.pts)
            records.append(_frame_record(restored))
            last = restored.index
            result.frames += 1
            result.faces += len(restored.track_ids)
            for face in restored.faces:
                if face.verdict is not None:
                    result.actions[face.verdict.action] = result.actions.get(face.verdict.action, 0) + 1
            track_ids.update(restored.track_ids)
            bar.update(1)
            if on_frame is not None:
                on_frame(restored.index + 1, info.frames or 0)
            check_cancel(restored.index + 1)
            if progress and not interactive and result.frames % 50 == 0:
                log(f"{info.path.name}: {restored.index + 1}/{info.frames or '?'} frames")
            # 2. Close a full segment: it counts once it is renamed and listed in the state
            if not one_piece and restored.index + 1 - seg_start >= segment_frames:
                close_segment()
                encoder = None
        if encoder is not None:
            close_segment()
            encoder = None
        check_cancel(last + 1)  # (before the join: a cancel after the last frame leaves nothing either)
    except BaseException as err:
        if encoder is not None:
            encoder.abort()
            Path(seg_path).unlink(missing_ok=True)
        bar.close()
        if isinstance(err, Cancelled):  # no resume: the finished segments go too
            shutil.rmtree(folder, ignore_errors=True)
        raise
    bar.close()
    if not done:
        shutil.rmtree(folder, ignore_errors=True)
        raise OSDFaceError(f"{info.path}: no frame was restored")
    # 3. Join the segments with the input's audio into a temporary file, then rename it to the output
    segments = [folder / s["file"] for s in done]
    frames = [r for seg in segments if seg.with_suffix(".json").is_file()
              for r in json.loads(seg.with_suffix(".json").read_text())] if sidecar else []
    if one_piece:
        segments[0].replace(output)  # same folder: an atomic rename
    else:
        result.notes.extend(_join(segments, info, output, container))
    # 4. The sidecar last: with --sidecar the clip is done when both exist (a rerun redoes one without it;
    #    the work folder is removed only after it, so that rerun resumes at the end)
    if sidecar:
        width, height = info.upright_size
        write_text_atomic(sidecar_path(output), json.dumps(
            {"input": str(info.path), "input_size_wh": [width, height], "upscale": upscale,
             "rate": str(info.rate), "time_base": str(info.time_base), "rotation": info.rotation,
             "frames": frames}, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    result.tracks = len(track_ids)
    return result


def _frames_from(info: VideoInfo, start: int, check_cancel: Callable[[int], None]) -> Iterator[Frame]:
    """The clip's frames from ``start`` on, ``check_cancel`` called before each is handed out."""
    source = read_frames(info)
    try:
        for frame in source:
            if frame.index >= start:
                check_cancel(frame.index)
                yield frame
    finally:
        source.close()  # the file is closed at once, also when stopped early


def _join(segments: list[Path], info: VideoInfo, output: Path, container: Optional[str] = None) -> list[str]:
    """Remux into a temp file next to ``output`` (in ``container``, default the input's) and rename it;
    audio that cannot be copied is left out with a note rather than losing the restored video."""
    tmp = output.parent / f".{output.name}.osdface-joining{output.suffix}"
    try:
        try:
            notes = remux(segments, info, tmp, container)
        except Exception as err:  # noqa: BLE001 (a container refusing the audio: keep the video)
            if not info.audio_codecs:
                raise
            notes = [f"audio not copied ({type(err).__name__}: {' '.join(str(err).split())[:160]}); video only"]
            video_only = VideoInfo(**{**info.__dict__, "path": segments[0], "audio_codecs": []})  # no audio in it
            remux(segments, video_only, tmp, container)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return notes
