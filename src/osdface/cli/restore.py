"""``osdface restore``: restore every face in photos (default) or aligned face crops (--aligned).

Two steps. ``plan_restore`` checks every flag and path and learns what it can without a model (the
inputs, the videos' sizes, the encoder, the detector, the guards) into a ``RestorePlan``: a refusal is
one OSDFaceError (one ``error:`` line, exit status 2) with no model loaded and nothing written. Then
``run_restore`` restores what the plan holds with the loaded pipeline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ..batch_files import FORMATS
from ..files import write_text_atomic
from .checks import check_output_folder

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes 0 … 2⁶⁴ − 1 (a negative seed wraps around)


def restore(
    inputs: Annotated[List[Path], typer.Argument(help="Image files and/or folders of images (png, jpg, webp, bmp, tif).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the restored images (created if needed).")],
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are aligned face crops (FFHQ-style): restore each as one face, no detection.")] = False,
    upscale: Annotated[float, typer.Option(min=0.1, max=8.0, help="Photo mode: output S× the input size; the background is upscaled by --background, faces are restored at the model's size (512; mini: 256, faces up to 141 px at 128).")] = 1.0,
    background: Annotated[Optional[str], typer.Option(help="learned | lanczos. How --upscale > 1 enlarges everything outside the faces. learned: a small ×2 network shipped in the package (+1.1 to +1.3 dB over Lanczos-4 at ×2 on held-out photos; about 0.8 s per output megapixel on 2 CPU cores; run again for larger factors); lanczos: cv2 Lanczos-4. Default: learned for photos, lanczos for video frames (the network would cost ~3 s a 720p frame at ×2 on 2 CPU cores).")] = None,
    only_center_face: Annotated[bool, typer.Option("--only-center-face", help="Photo mode: restore only the face nearest the centre.")] = False,
    min_face_size: Annotated[float, typer.Option(min=0, help="Photo mode: ignore faces whose box is smaller than this many pixels (shorter side).")] = 20.0,
    max_faces: Annotated[Optional[int], typer.Option(min=1, help="Photo mode: restore at most this many faces per photo, the largest first.")] = None,
    fidelity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Blend each restored face with its input crop: 0 = the model's output (default), 1 = the input. OSDFace itself has no fidelity control; this is a pixel blend.")] = 0.0,
    detail_guard: Annotated[str, typer.Option(envvar="OSDFACE_DETAIL_GUARD", help="on | off. on: a face larger than the model's size keeps the input's finer detail (the model's change is added in its own band), and a face already sharper than the model (at the model's size: sharp, noisy or blocky) is kept as it was (README: 'Never worse'). off: every face is the model's crop, upsampled (as the official code).")] = "on",
    identity_guard: Annotated[str, typer.Option(envvar="OSDFACE_IDENTITY_GUARD", help="DIST | auto | off. A restored face whose dlib descriptor moved further than DIST from its input is blended back toward the input until it is under DIST, or kept as it was. auto: the calibrated threshold for the model's size (0.70 at 128 px, 0.59 at the paper's 512 px, log-linear between); needs the 'identity' extra, else one note says the guard is off.")] = "auto",
    color_match: Annotated[bool, typer.Option("--color-match/--no-color-match", help="Photo mode: match each restored face's low-frequency colour to the original (AdaIN).")] = True,
    save_faces: Annotated[bool, typer.Option("--save-faces", help="Photo mode: also write cropped_faces/ and restored_faces/ (STEM_NN.png).")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Also write compare/STEM.png: input | output side by side.")] = False,
    sidecar: Annotated[bool, typer.Option("--sidecar/--no-sidecar", help="Photo mode: write STEM.json with every face's box, landmarks, score and affine; videos: NAME.json (e.g. clip.mp4.json) with every frame's faces and their track ids.")] = True,
    detector: Annotated[str, typer.Option(help="Photo mode: face detector name (mtcnn: weights from the facenet-pytorch package).")] = "mtcnn",
    detector_weights: Annotated[Optional[str], typer.Option(help="Photo mode: local weights for the detector (a folder or file, detector-specific).")] = None,
    sd_model: Annotated[Optional[str], typer.Option(help="SD 2.1-base: a local diffusers folder or a hub id. Default: $OSDFACE_HOME/stable-diffusion-2-1-base. Not needed for a merged osdface folder.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Our format (made by `osdface convert`) or the official release folder. Default: $OSDFACE_HOME/osdface, then $OSDFACE_HOME/osdface-release, then the bundled mini model.")] = None,
    model: Annotated[str, typer.Option(help="auto | paper | mini | mini256 | mini128. auto: --weights or the paper's weights where installed, else the bundled mini. paper: never fall back to a bundled model. mini: the default bundled model (mini256: osdface-mini 2, 256 px; photos' faces up to 141 px go to mini128: osdface-mini, 128 px). mini256, mini128: that bundled model alone (both non-commercial).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Faces per forward pass (photo mode: faces of several photos are batched together).")] = 4,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps. auto picks CUDA (LOCAL_RANK's GPU under torchrun/accelerate), then MPS, then CPU.")] = "auto",
    dtype: Annotated[str, typer.Option(envvar="OSDFACE_DTYPE", help="auto | float32 | float16 | bfloat16. auto: bfloat16 on CPUs with AMX-BF16/AVX512-BF16 and CUDA sm80+, float16 on older GPUs and MPS, float32 elsewhere (the choice is printed). The VRE, adapter and x0 always stay float32/float64.")] = "auto",
    posterior: Annotated[str, typer.Option(help="VAE posterior: 'mode' (deterministic, default) or 'sample' (as the official code, seeded by --seed).")] = "mode",
    seed: Annotated[int, typer.Option(help="Seed of --posterior sample; each face gets its own generator, so results do not depend on batching or sharding.")] = 114,
    fmt: Annotated[str, typer.Option("--format", help=f"Photo output format (videos keep their container): {' | '.join(FORMATS)} | same (the input's; PNG for a file without an image extension). RGBA inputs keep alpha in png/webp.")] = "png",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist (default: skip them).")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write what happened as JSON: done, skipped, failed (file: reason), notes.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    landmark_smoothing: Annotated[int, typer.Option(min=0, max=30, help="Video: a face's landmarks are fitted by a line over this many frames each side (0: each frame's own detection).")] = 3,
    prompt_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help="Video: a face track's visual prompt comes from its last 8 frames' VRE features, the one k frames old weighted M^k (0: each frame its own prompt).")] = 0.7,
    temporal_radius: Annotated[int, typer.Option(min=0, max=8, help="Video: each restored face is averaged with its track's faces in the frames ± R, warped onto it by optical flow where they match (its input crop and its output; 0: off). Settles flicker; a real change comes through.")] = 2,
    confirm_frames: Annotated[int, typer.Option(min=1, max=30, help="Video: a face is restored only where its track was seen (score ≥ 0.8) in N frames around it (1: every detection). A one-frame false detection is left alone.")] = 3,
    detect_size: Annotated[int, typer.Option(min=0, max=8192, help="Video: detect faces on a copy whose long side is at most PX (0: full size). At 640 a face under ~40 px in a 720p frame is not found.")] = 640,
    video_codec: Annotated[Optional[str], typer.Option(help="Video: FFmpeg encoder. Default by container: libx264 (CRF 17) for mp4/mov/mkv, libvpx-vp9 for webm, gif for gif.")] = None,
    video_option: Annotated[Optional[List[str]], typer.Option("--video-option", help="Video: encoder option KEY=VALUE, repeatable (e.g. crf=20, preset=slow).")] = None,
    video_segment: Annotated[int, typer.Option(min=1, help="Video: frames per resumable segment; an interrupted run resumes after the last finished one.")] = 120,
) -> None:
    """Restore faces in one diffusion step: every face of whole photos (default), or aligned crops.

    **Photos** (default): faces are detected (5 landmarks), aligned to the FFHQ template at the
    model's size (512; 128 for the bundled mini model, 256 for mini256), restored in batches across photos, and
    pasted back with a feathered mask and colour matching.
    The output has the input's size (times --upscale); grayscale stays grayscale (gray with alpha
    too), RGBA keeps its alpha, 16-bit inputs are written as 8-bit, EXIF orientation is applied. A
    photo with no face is copied through (upscaled if asked) and reported as a note, not a failure.
    Photos over 100 MP are refused with a clear error.

    **Aligned crops** (--aligned): square inputs are resized to the model's size S (512; 128 for
    mini, 256 for mini256) and come out S×S, as in the official code (under --detail-guard on, a square crop larger than
    1.1·S keeps its size, at most 1024 px: a larger one is decoded reduced to 1024, with a note).
    Non-square inputs are edge-padded to a square, restored, and the padding is cropped off again: the
    output keeps the aspect ratio with long side S.

    **Videos** (mp4, mov, m4v, mkv, webm, gif): frames are streamed, faces tracked across frames,
    aligned with temporally smoothed landmarks, restored in batches across frames with a visual prompt
    smoothed along each track, and pasted back. The output (same file name and container) keeps the
    frame count, timestamps, frame rate, rotation metadata and audio (copied). An interrupted clip
    resumes at its last finished segment on a rerun.

    **Weights**: --weights, else $OSDFACE_HOME/osdface, else $OSDFACE_HOME/osdface-release, else the
    bundled mini model (a note says so; --model picks explicitly).

    Every flag and path is checked before the model loads: a problem there (or no usable input at
    all) is one error line and exit status 2. Outputs keep the input's file name (with the --format
    suffix). Existing outputs are skipped unless --overwrite; nothing is written into an input folder.
    The sidecar is written after its image, and an output counts as done only with it. A file that
    cannot be read gets one error line and the rest goes on; the exit status is 1 when any input failed.

    Under `torchrun` or `accelerate launch` every process takes its share of the sorted inputs
    (by RANK and WORLD_SIZE): each file is restored exactly once.
    """
    flags = dict(locals())  # every parameter above, as given
    from ..loading import load_pipeline

    # 1. Every flag and path, before any model loads (RestorePlan); its notes come first
    plan = plan_restore(**flags)
    for line in plan.notes:
        typer.echo(f"note: {line}", err=True)
    # 2. The model, then the run
    pipe = load_pipeline(str(weights) if weights else None, sd_model, device, dtype, model=model,
                         notify=lambda line: typer.echo(f"note: {line}", err=True))
    result = run_restore(plan, pipe)
    typer.echo(result.summary(), err=True)
    if report is not None:
        write_text_atomic(report, json.dumps(result.to_json(), indent=2) + "\n")
    if result.failed:
        raise typer.Exit(1)


@dataclass
class RestorePlan:
    """The flags of ``osdface restore`` (named as its parameters), checked, and what ``plan_restore``
    learnt from them without a model."""

    inputs: list[Path]
    output: Path
    aligned: bool = False
    upscale: float = 1.0
    background: Optional[str] = None  # None: learned for photos, lanczos for videos
    only_center_face: bool = False
    min_face_size: float = 20.0
    max_faces: Optional[int] = None
    fidelity: float = 0.0
    detail_guard: str = "on"
    identity_guard: str = "auto"
    color_match: bool = True
    save_faces: bool = False
    compare: bool = False
    sidecar: bool = True
    detector: str = "mtcnn"
    detector_weights: Optional[str] = None
    sd_model: Optional[str] = None
    weights: Optional[Path] = None
    model: str = "auto"
    batch_size: int = 4
    device: str = "auto"
    dtype: str = "auto"
    posterior: str = "mode"
    seed: int = 114
    fmt: str = "png"
    overwrite: bool = False
    report: Optional[Path] = None
    quiet: bool = False
    landmark_smoothing: int = 3
    prompt_smoothing: float = 0.7
    temporal_radius: int = 2
    confirm_frames: int = 3
    detect_size: int = 640
    video_codec: Optional[str] = None
    video_option: Optional[List[str]] = None
    video_segment: int = 120
    # learnt by plan_restore
    videos: list[Path] = field(default_factory=list)  # video files among the inputs (folders searched)
    image_inputs: list[Path] = field(default_factory=list)  # the other inputs: image files and folders
    video_infos: dict = field(default_factory=dict)  # path → VideoInfo (a clip that cannot be probed fails in the run)
    codec_options: dict = field(default_factory=dict)  # --video-option as a dict
    no_harm: Any = None  # the per-face rule (face.no_harm.NoHarm) of --detail-guard / --identity-guard
    face_detector: Any = None  # photo mode: the detector, built (its weights read) before the model
    notes: list[str] = field(default_factory=list)  # told before the run and kept in the report


def plan_restore(**flags) -> RestorePlan:
    """Check every flag and path of ``osdface restore`` (the same keywords) before any model loads, and
    learn what the run needs. Each problem is one OSDFaceError; the output folder is made last, only
    when everything else passed, and nothing else is written."""
    from ..batch_files import shard
    from ..errors import OSDFaceError
    from ..face.background import check_background
    from ..image_utils import list_images
    from ..loading import check_dtype_name, find_weights, resolve_device
    from ..photos import make_detector, make_no_harm
    from .checks import check_choice, check_int_range, check_new_file

    plan = RestorePlan(**flags)
    plan.inputs, plan.output = [Path(p) for p in plan.inputs], Path(plan.output)
    # 1. Values typer cannot bound
    check_choice(plan.posterior, ("mode", "sample"), "--posterior")
    check_choice(plan.fmt, (*FORMATS, "same"), "--format")
    if plan.background is not None:
        check_background(plan.background)
    check_int_range(plan.seed, 0, SEED_MAX, "--seed")
    for flag, value in (("--upscale", plan.upscale), ("--min-face-size", plan.min_face_size),
                        ("--fidelity", plan.fidelity), ("--prompt-smoothing", plan.prompt_smoothing)):
        if not math.isfinite(value):  # (typer refuses them where a flag has both bounds; not for --min-face-size)
            raise OSDFaceError(f"{flag} {value}: must be a finite number")
    check_dtype_name(plan.dtype)
    resolve_device(plan.device)
    shard()
    plan.codec_options = _parse_video_options(plan.video_option or [])
    # 2. The guards and the weights' place
    plan.no_harm, guard_notes = make_no_harm(plan.detail_guard, plan.identity_guard)
    plan.notes.extend(guard_notes)
    kind, folder = find_weights(str(plan.weights) if plan.weights else None, plan.model)
    if plan.sd_model and _holds_its_own_sd(kind, folder):
        plan.notes.append(f"--sd-model {plan.sd_model}: not used; "
                          + ("the bundled mini model" if kind == "bundled" else f"{folder}, a merged osdface folder,")
                          + " holds its own UNet and VAE")
    # 3. The inputs: one usable at least; videos probed (size × --upscale) and their encoder tried
    plan.videos, plan.image_inputs = split_videos(plan.inputs)
    found, problems = list_images(plan.image_inputs) if plan.image_inputs else ([], [])
    if not found and not plan.videos:
        raise OSDFaceError(_nothing_to_restore(problems))
    if plan.videos:
        if plan.aligned:
            more = f" (and {len(plan.videos) - 1} more)" if len(plan.videos) > 1 else ""
            raise OSDFaceError(f"{plan.videos[0]}{more}: a video is restored in photo mode (faces detected and "
                               "tracked); drop --aligned, or restore the videos in a run of their own")
        _check_videos(plan)
    elif plan.video_codec or plan.video_option:
        given = [flag for flag, on in (("--video-codec", plan.video_codec), ("--video-option", plan.video_option)) if on]
        plan.notes.append(f"{', '.join(given)}: no video among the inputs; not used")
    if not plan.aligned:  # the detector and its weights, before the model (photos and videos)
        from ..face import DETECTORS

        check_choice(plan.detector, sorted(DETECTORS), "--detector")
        plan.face_detector = make_detector(plan.detector, plan.detector_weights)
    # 4. What is written: --report (its folder exists; not a folder; not in an input), then the output folder
    if plan.report is not None:
        check_new_file(plan.report, "--report", plan.inputs)
        if plan.sidecar:  # nor one of the sidecars this run writes (photos: NAME.json; videos: clip.mp4.json)
            sidecars = {(plan.output / f"{src.stem}.json").resolve(): src for src in found}
            sidecars.update({(plan.output / f"{v.name}.json").resolve(): v for v in plan.videos})
            if plan.report.resolve() in sidecars:
                raise OSDFaceError(f"--report {plan.report}: that is where {sidecars[plan.report.resolve()]}'s "
                                   "sidecar goes; choose another name (or --no-sidecar)")
    check_output_folder(plan.output, plan.inputs, holds="the restored images")
    return plan


def run_restore(plan: RestorePlan, pipe):
    """Restore what ``plan`` holds with ``pipe``: the images (photos or --aligned crops), then the videos.
    Returns the BatchReport (the plan's notes first)."""
    from ..batch_files import BatchReport, restore_files

    restore_batch, read = (_aligned_steps if plan.aligned else _photo_steps)(plan, pipe)
    sidecar_of = (lambda src: plan.output / f"{src.stem}.json") if plan.sidecar else None
    result = restore_files(plan.image_inputs, plan.output, restore_batch, batch_size=plan.batch_size,
                           overwrite=plan.overwrite, fmt=plan.fmt, progress=not plan.quiet, read=read,
                           sidecar_of=sidecar_of) if plan.image_inputs else BatchReport()
    result.notes[:0] = plan.notes
    if plan.videos:
        _restore_videos(plan, pipe, result)
    return result


def _aligned_steps(p: RestorePlan, pipe):
    """(restore_batch, read) for --aligned crops. A crop larger than the detail rule's largest working
    size (1024 px) is decoded reduced to it: under --detail-guard on a square crop keeps its size up to
    there (so its output is capped, with a note); otherwise the output has the model's size anyway."""
    from PIL import Image

    from ..batch_files import RestoredFile
    from ..image_utils import read_image
    from ..photos import compare_image, restore_aligned_faces

    max_side = p.no_harm.max_work_size
    original: dict[Path, tuple[int, int]] = {}  # input → its (width, height), when decoded reduced

    def read(path):  # (one pixel budget: read_image refuses what read_photo refuses)
        image = read_image(path, max_side=max_side)
        if max(image.shape[:2]) == max_side:
            with Image.open(path) as im:  # the header only
                w, h = im.size[::-1] if im.getexif().get(0x0112) in (5, 6, 7, 8) else im.size  # EXIF quarter turns
            if max(w, h) > max_side:
                original[path] = (w, h)
        return image

    def restore_batch(images, paths):
        out = restore_aligned_faces(pipe, images, fidelity=p.fidelity, batch_size=p.batch_size, posterior=p.posterior,
                                    seed=p.seed, no_harm=p.no_harm)  # grayscale stays grayscale, as in photo mode
        files = []
        for src, before, (after, verdict) in zip(paths, images, out):
            extras = {f"compare/{src.stem}.png": compare_image(before, after)} if p.compare else {}
            faces = [{"index": 0, **verdict.to_json()}] if verdict is not None else []
            size_wh = original.get(src, (before.shape[1], before.shape[0]))
            note = None
            if src in original and after.shape[:2] == before.shape[:2]:
                note = (f"a {size_wh[0]}×{size_wh[1]} crop: restored at {after.shape[1]}×{after.shape[0]} (aligned "
                        f"crops keep their size up to {max_side} px; a larger one is decoded reduced)")
            if p.sidecar:  # every crop gets one (its presence marks the output done)
                reduced = {"decoded_size_wh": [before.shape[1], before.shape[0]]} if src in original else {}
                extras[f"{src.stem}.json"] = {"input": str(src), "input_size_wh": list(size_wh), **reduced,
                                              "aligned": True, "faces": faces}
            files.append(RestoredFile(after, extras, note, faces=faces))
        return files

    return restore_batch, read


def _photo_steps(p: RestorePlan, pipe):
    """(restore_batch, read) for whole photos: every face detected, restored, pasted back."""
    from ..face.background import background_for
    from ..image_utils import check_upscaled, read_photo_and_mode

    restorer = _face_restorer(p, pipe, background_for(p.background, video=False))
    gray_alpha: set[Path] = set()  # inputs in gray with alpha (LA): written back as LA

    def read(path):  # the output (input × upscale²) has the same pixel budget as the input
        photo, mode = read_photo_and_mode(path)
        check_upscaled(path, photo.shape[0], photo.shape[1], p.upscale)
        if mode in ("LA", "La"):
            gray_alpha.add(path)
        return photo

    def restore_batch(images, paths):
        results = restorer.restore_many(images, batch_size=p.batch_size)
        return [_photo_outputs(src, before, result, p.upscale, p.fmt, p.save_faces, p.compare, p.sidecar,
                               gray_alpha=src in gray_alpha)
                for src, before, result in zip(paths, images, results)]

    return restore_batch, read


def _face_restorer(p: RestorePlan, pipe, background: str, video: bool = False):
    from ..photos import make_face_restorer

    return make_face_restorer(pipe, detector=p.face_detector, upscale=p.upscale, only_center_face=p.only_center_face,
                              min_face_size=p.min_face_size, max_faces=p.max_faces, color_match=p.color_match,
                              fidelity=p.fidelity, batch_size=p.batch_size, posterior=p.posterior, seed=p.seed,
                              no_harm=p.no_harm, background=background, small_faces=not video)


def _restore_videos(p: RestorePlan, pipe, result) -> None:
    from ..face.background import background_for
    from ..video.batch import make_stabilisers, restore_videos, video_restorer_maker

    stabilisers = make_stabilisers(p.landmark_smoothing, p.prompt_smoothing, p.temporal_radius)
    background = background_for(p.background, video=True)
    settings = {"weights": str(p.weights), "model": p.model, "dtype": str(pipe.dtype), "stabilisers": str(stabilisers),
                "confirm_frames": p.confirm_frames, "detect_size": p.detect_size,
                "options": [p.only_center_face, p.min_face_size, p.max_faces, p.fidelity, p.color_match, p.posterior,
                            p.seed, p.detector, p.detector_weights, p.detail_guard, p.identity_guard,
                            background]}
    make_video_restorer = video_restorer_maker(pipe, _face_restorer(p, pipe, background, video=True), stabilisers,
                                               batch_size=p.batch_size, fidelity=p.fidelity, posterior=p.posterior,
                                               seed=p.seed, confirm_frames=p.confirm_frames, detect_size=p.detect_size)

    ignored = [flag for flag, on in (("--save-faces", p.save_faces), ("--compare", p.compare),
                                      (f"--format {p.fmt}", p.fmt != "png")) if on]
    if ignored:
        result.notes.append(f"videos: {', '.join(ignored)} apply to photos; a video is written as one clip "
                            "in its own container")
        typer.echo(f"note: {result.notes[-1]}", err=True)
    restore_videos(p.videos, p.output, make_video_restorer, settings, report=result, codec=p.video_codec,
                   codec_options=p.codec_options, upscale=p.upscale, segment_frames=p.video_segment,
                   overwrite=p.overwrite, progress=not p.quiet, sidecar=p.sidecar, probed=p.video_infos)


def _check_videos(plan: RestorePlan) -> None:
    """Each clip probed once: its output (size × --upscale) within the pixel budget, and the encoder
    (--video-codec, --video-option) tried on one frame of that size in the clip's container. A clip that
    cannot be probed is left to the run, which names it in one line and goes on."""
    from ..errors import VideoReadError
    from ..image_utils import check_upscaled
    from ..video.io import CONTAINERS, check_encoder, import_av, probe

    import_av()  # PyAV missing: one line
    encoders = set()
    for video in plan.videos:
        try:
            info = probe(video)
        except VideoReadError:
            encoders.add((CONTAINERS[video.suffix.lower()], (64, 64)))
            continue
        plan.video_infos[video] = info
        width, height = info.upright_size
        out_h, out_w = check_upscaled(video, height, width, plan.upscale)  # frames have a photo's pixel budget
        encoders.add((info.container, (out_w, out_h) if info.rotation in (0, 180) else (out_h, out_w)))  # as stored
    for container, size in sorted(encoders):
        check_encoder(container, plan.video_codec, plan.codec_options, size)


def _holds_its_own_sd(kind: str, folder: Path) -> bool:
    """The weights at ``folder`` (``find_weights``) carry their UNet and VAE (merged): --sd-model is not read."""
    if kind == "release":
        return False
    try:
        return json.loads((Path(folder) / "model_index.json").read_text()).get("lora") == "merged"
    except (OSError, ValueError, AttributeError):
        return False


def _nothing_to_restore(problems: list[str]) -> str:
    """One line for a run without any usable input (each input's problem, the first three)."""
    if len(problems) == 1:
        return f"{problems[0]} (nothing to restore)"
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return f"nothing to restore: {shown}" if problems else "no image or video to restore among the inputs"


def _photo_outputs(src: Path, before, result, upscale: float, fmt: str, save_faces: bool, compare: bool,
                   sidecar: bool, gray_alpha: bool = False):
    """One photo's RestoredFile: the photo (in the input's layout: with ``gray_alpha``, an LA input, it
    comes back LA), its sidecar JSON, optional faces and comparison."""
    from ..batch_files import RestoredFile
    from ..photos import compare_image, face_records, no_face_note

    image = result.image
    note = None
    suffix = src.suffix.lower() if fmt == "same" else FORMATS[fmt]
    if gray_alpha and image.ndim == 3 and image.shape[2] == 4:  # (the restorer gives gray as equal channels)
        image = image[..., [0, 3]]
    if image.ndim == 3 and image.shape[2] in (2, 4) and suffix in (".jpg", ".jpeg", ".bmp"):
        image = image[..., 0] if image.shape[2] == 2 else image[..., :3]
        note = f"alpha channel dropped: {suffix} has none (use --format png to keep it)"
    extras: dict = {}
    if sidecar:
        h, w = before.shape[:2]
        extras[f"{src.stem}.json"] = {"input": str(src), "input_size_wh": [w, h], "upscale": upscale,
                                      "faces": face_records(result)}
    if save_faces:
        for i, face in enumerate(result.faces):
            extras[f"cropped_faces/{src.stem}_{i:02d}.png"] = face.cropped
            extras[f"restored_faces/{src.stem}_{i:02d}.png"] = face.restored
    if compare:
        extras[f"compare/{src.stem}.png"] = compare_image(before, result.image)
    if not result.faces:
        note = no_face_note(upscale) + (f"; {note}" if note else "")
    faces = [{"index": i, **f.verdict.to_json()} for i, f in enumerate(result.faces) if f.verdict is not None]
    return RestoredFile(image, extras, note, faces)


def split_videos(inputs) -> tuple[list[Path], list[Path]]:
    """(video files, the other inputs). Folders give their videos; a folder stays among the other
    inputs when it holds images, or holds neither (so that its problem is reported)."""
    from ..image_utils import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    videos, others = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            try:
                entries = sorted(p for p in item.iterdir() if p.is_file())
            except OSError:  # unreadable: list_images names it
                others.append(item)
                continue
            found = [p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS]
            videos.extend(found)
            if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries) or not found:
                others.append(item)
        elif item.suffix.lower() in VIDEO_EXTENSIONS and item.is_file():
            videos.append(item)
        else:
            others.append(item)
    return videos, others


def _parse_video_options(items: List[str]) -> dict:
    from ..errors import OSDFaceError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OSDFaceError(f"--video-option {item!r}: expected KEY=VALUE (e.g. crf=20)")
        options[key.strip()] = value.strip()
    return options
