"""Many clips: the video half of ``osdface restore`` (photos go through ``batch_files.restore_files``).

Same promises as for photos: each clip is done once (sharded by RANK / WORLD_SIZE), an output that
exists is skipped unless ``overwrite`` (an interrupted clip is resumed, see ``clip``), inputs are never
written to, and a bad clip costs one line in the report while the rest goes on.

``make_stabilisers`` and ``video_restorer_maker`` turn the video options of ``osdface restore`` into what
``restore_clip`` restores with; the web page builds its restorer through them too.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from ..batch_files import BatchReport, one_line, plan_outputs, shard
from ..errors import ImageReadError, OSDFaceError
from ..image_utils import check_upscaled
from .clip import clip_done, restore_clip, sweep_orphan_sidecar, work_folder
from .io import VideoInfo, probe
from .restorer import Stabilisers, VideoFaceRestorer


def make_stabilisers(landmark_smoothing: int = 3, prompt_smoothing: float = 0.7,
                     temporal_radius: int = 2) -> Stabilisers:
    """The stabilisers of ``--landmark-smoothing``, ``--prompt-smoothing`` and ``--temporal-radius`` (the
    defaults are the command's): missed detections are bridged only when landmarks are smoothed."""
    return Stabilisers(landmark_smoothing, prompt_smoothing, bridge_gap=3 if landmark_smoothing else 0,
                       temporal_radius=temporal_radius)


def video_restorer_maker(pipe, face_restorer, stabilisers: Stabilisers, batch_size: int = 4, fidelity: float = 0.0,
                         posterior: str = "mode", seed: int = 114, confirm_frames: int = 3,
                         detect_size: int = 640) -> Callable[[], VideoFaceRestorer]:
    """``make_restorer`` for ``restore_clip``: a fresh ``VideoFaceRestorer`` (empty per-track memories) per
    clip, its faces found, selected and pasted by ``face_restorer`` (``photos.make_face_restorer``); the
    keywords are the flags of ``osdface restore`` with its defaults (``detect_size`` 0: full size)."""
    return functools.partial(VideoFaceRestorer, pipe, face_restorer, stabilisers, batch_size=batch_size,
                             fidelity=fidelity, posterior=posterior, seed=seed, confirm_frames=confirm_frames,
                             detect_size=detect_size or None)


def restore_videos(videos: Sequence[Path], output_dir: Path, make_restorer: Callable[[], VideoFaceRestorer],
                   settings: dict, report: Optional[BatchReport] = None, codec: Optional[str] = None,
                   codec_options: Optional[dict] = None, upscale: float = 1.0, segment_frames: int = 120,
                   overwrite: bool = False, progress: bool = True, sidecar: bool = False,
                   log: Optional[Callable[[str], None]] = None,
                   probed: Optional[dict[Path, VideoInfo]] = None) -> BatchReport:
    """Restore every clip into ``output_dir``; results go into ``report`` (a new one if None).

    A clip is done when its output exists, and its sidecar too with ``sidecar`` (written last); a sidecar
    of ours left without its clip is removed. ``probed``: clips already probed (``probe``), by path."""
    report = report if report is not None else BatchReport()
    interactive = progress and sys.stderr.isatty()
    log = log or ((lambda msg: tqdm.write(msg, file=sys.stderr)) if interactive
                  else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    pairs, problems = plan_outputs(sorted(set(videos)), Path(output_dir), "keep")
    rank, world = shard()
    if rank == 0:
        report.failed.extend(problems)
        for line in problems:
            log(f"error: {line}")
    for src, dst in pairs[rank::world]:
        sweep_orphan_sidecar(dst)
        if clip_done(dst, sidecar) and not overwrite:
            shutil.rmtree(work_folder(dst), ignore_errors=True)  # (a run killed after the sidecar left it)
            report.skipped.append(dst)
            continue
        if overwrite:
            shutil.rmtree(work_folder(dst), ignore_errors=True)
        try:
            # 1. Probe: a clip that cannot be read whole is refused before any frame is restored
            info = (probed or {}).get(src) or probe(src)
            width, height = info.upright_size
            check_upscaled(src, height, width, upscale)  # frames have a photo's pixel budget
            if info.variable_rate:
                short, long = info.frame_durations
                report.notes.append(f"{src}: variable frame rate (frames last {short * 1000:.0f}–{long * 1000:.0f} "
                                    "ms); every frame keeps its timestamp")
                log(f"note: {report.notes[-1]}")
            # 2. Restore (resuming an interrupted earlier run), then join with the audio
            result = restore_clip(info, dst, make_restorer, settings, codec=codec, codec_options=codec_options,
                                  upscale=upscale, segment_frames=segment_frames, progress=progress,
                                  sidecar=sidecar, log=log)
        except ImageReadError as err:  # the input itself is bad (VideoReadError, budget): nothing to resume
            shutil.rmtree(work_folder(dst), ignore_errors=True)
            report.failed.append(str(err))
            log(f"error: {err}")
            continue
        except OSDFaceError as err:
            report.failed.append(f"{src}: {err}" if str(src) not in str(err) else str(err))
            log(f"error: {report.failed[-1]}")
            continue
        except (OSError, RuntimeError, ValueError) as err:  # finished segments stay: a rerun resumes
            report.failed.append(f"{src}: restoration failed ({type(err).__name__}: {one_line(err)}); "
                                 "rerun to resume")
            log(f"error: {report.failed[-1]}")
            continue
        report.done.append(dst)
        summary = f"{result.frames} frames, {result.faces} faces in {result.tracks} track(s)"
        if set(result.actions) - {"restored"}:
            summary += " (face-frames: " + ", ".join(f"{n} {a}" for a, n in sorted(result.actions.items())) + ")"
        report.notes.extend(f"{src}: {n}" for n in result.notes)
        for n in result.notes:
            log(f"note: {src}: {n}")
        log(f"{src}: {summary}" + (f" (resumed at frame {result.resumed_at})" if result.resumed_at else ""))
    return report
