"""``osdface restore``: restore every face in photos (default) or aligned face crops (--aligned)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..batch_files import FORMATS
from ..files import write_text_atomic


def restore(
    inputs: Annotated[List[Path], typer.Argument(help="Image files and/or folders of images (png, jpg, webp, bmp, tif).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the restored images (created if needed).")],
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are aligned face crops (FFHQ-style): restore each as one face, no detection.")] = False,
    upscale: Annotated[float, typer.Option(min=0.1, max=8.0, help="Photo mode: output S× the input size; the background is resized with Lanczos-4, faces are restored at the model's size (512; 128 for mini).")] = 1.0,
    only_center_face: Annotated[bool, typer.Option("--only-center-face", help="Photo mode: restore only the face nearest the centre.")] = False,
    min_face_size: Annotated[float, typer.Option(min=0, help="Photo mode: ignore faces whose box is smaller than this many pixels (shorter side).")] = 20.0,
    max_faces: Annotated[Optional[int], typer.Option(min=1, help="Photo mode: restore at most this many faces per photo, the largest first.")] = None,
    fidelity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Blend each restored face with its input crop: 0 = the model's output (default), 1 = the input. OSDFace itself has no fidelity control; this is a pixel blend.")] = 0.0,
    detail_guard: Annotated[str, typer.Option(envvar="OSDFACE_DETAIL_GUARD", help="on | off. on: a face larger than the model's size keeps the input's finer detail (the model's change is added in its own band), and a face already sharper than the model is kept as it was (README: 'Never worse'). off: every face is the model's crop, upsampled (as the official code).")] = "on",
    identity_guard: Annotated[str, typer.Option(envvar="OSDFACE_IDENTITY_GUARD", help="DIST | auto | off. A restored face whose dlib descriptor moved further than DIST from its input is blended back toward the input until it is under DIST, or kept as it was. auto: the calibrated threshold for the model's size (0.70 for 128-px mini, 0.59 for the paper's 512 px); needs the 'identity' extra, else one note says the guard is off.")] = "auto",
    color_match: Annotated[bool, typer.Option("--color-match/--no-color-match", help="Photo mode: match each restored face's low-frequency colour to the original (AdaIN).")] = True,
    save_faces: Annotated[bool, typer.Option("--save-faces", help="Photo mode: also write cropped_faces/ and restored_faces/ (STEM_NN.png).")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Also write compare/STEM.png: input | output side by side.")] = False,
    sidecar: Annotated[bool, typer.Option("--sidecar/--no-sidecar", help="Photo mode: write STEM.json with every face's box, landmarks, score and affine; videos: NAME.json (e.g. clip.mp4.json) with every frame's faces and their track ids.")] = True,
    detector: Annotated[str, typer.Option(help="Photo mode: face detector name (mtcnn: weights from the facenet-pytorch package).")] = "mtcnn",
    detector_weights: Annotated[Optional[str], typer.Option(help="Photo mode: local weights for the detector (a folder or file, detector-specific).")] = None,
    sd_model: Annotated[Optional[str], typer.Option(help="SD 2.1-base: a local diffusers folder or a hub id. Default: $OSDFACE_HOME/stable-diffusion-2-1-base. Not needed for a merged osdface folder.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Our format (made by `osdface convert`) or the official release folder. Default: $OSDFACE_HOME/osdface, then $OSDFACE_HOME/osdface-release, then the bundled mini model.")] = None,
    model: Annotated[str, typer.Option(help="auto | paper | mini. auto: --weights or the paper's weights where installed, else the bundled osdface-mini (128 px, trained on UTKFace, non-commercial). paper: never fall back to mini. mini: the bundled model.")] = "auto",
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
    temporal_blend: Annotated[float, typer.Option(min=0.0, max=0.95, help="Video: blend each restored face with its track's previous one where they differ by less than 24 levels (weight up to B; 0: off, default). Settles texture flicker; a real change comes through at once.")] = 0.0,
    video_codec: Annotated[Optional[str], typer.Option(help="Video: FFmpeg encoder. Default by container: libx264 (CRF 17) for mp4/mov/mkv, libvpx-vp9 for webm, gif for gif.")] = None,
    video_option: Annotated[Optional[List[str]], typer.Option("--video-option", help="Video: encoder option KEY=VALUE, repeatable (e.g. crf=20, preset=slow).")] = None,
    video_segment: Annotated[int, typer.Option(min=1, help="Video: frames per resumable segment; an interrupted run resumes after the last finished one.")] = 120,
) -> None:
    """Restore faces in one diffusion step: every face of whole photos (default), or aligned crops.

    **Photos** (default): faces are detected (5 landmarks), aligned to the FFHQ template at the
    model's size (512; 128 for the bundled mini model), restored in batches across photos, and
    pasted back with a feathered mask and colour matching.
    The output has the input's size (times --upscale); grayscale stays grayscale, RGBA keeps its
    alpha, 16-bit inputs are written as 8-bit, EXIF orientation is applied. A photo with no face is
    copied through (upscaled if asked) and reported as a note, not a failure. Photos over 100 MP are
    refused with a clear error.

    **Aligned crops** (--aligned): square inputs are resized to the model's size S (512; 128 for
    mini) and come out S×S, as in the official code. Non-square inputs are edge-padded to a square,
    restored, and the padding is cropped off again: the output keeps the aspect ratio with long side S.

    **Videos** (mp4, mov, m4v, mkv, webm, gif): frames are streamed, faces tracked across frames,
    aligned with temporally smoothed landmarks, restored in batches across frames with a visual prompt
    smoothed along each track, and pasted back. The output (same file name and container) keeps the
    frame count, timestamps, frame rate, rotation metadata and audio (copied). An interrupted clip
    resumes at its last finished segment on a rerun.

    **Weights**: --weights, else $OSDFACE_HOME/osdface, else $OSDFACE_HOME/osdface-release, else the
    bundled osdface-mini model (a note says so; --model picks explicitly).

    Outputs keep the input's file name (with the --format suffix). Existing outputs are skipped
    unless --overwrite; input files are never written to. A file that cannot be read gets one error
    line and the rest goes on; the exit status is 1 when any input failed.

    Under `torchrun` or `accelerate launch` every process takes its share of the sorted inputs
    (by RANK and WORLD_SIZE): each file is restored exactly once.
    """
    from ..batch_files import BatchReport, restore_files, shard
    from ..errors import OSDFaceError
    from ..image_utils import check_upscaled, list_images, read_image, read_photo
    from ..loading import check_dtype_name, find_weights, load_pipeline, resolve_device

    # 1. Every flag, the weights' place, the inputs and the output folder are checked before any model loads.
    if posterior not in ("mode", "sample"):
        raise OSDFaceError(f"--posterior must be 'mode' or 'sample', got {posterior!r}")
    if fmt not in (*FORMATS, "same"):
        raise OSDFaceError(f"--format must be one of {', '.join(FORMATS)}, same; got {fmt!r}")
    check_dtype_name(dtype)
    resolve_device(device)
    shard()
    if not aligned:
        from ..face import DETECTORS

        if detector not in DETECTORS:
            raise OSDFaceError(f"--detector {detector!r}: unknown; available: {', '.join(sorted(DETECTORS))}")
    codec_options = _parse_video_options(video_option or [])
    from ..photos import make_no_harm

    no_harm, guard_notes = make_no_harm(detail_guard, identity_guard)
    for line in guard_notes:
        typer.echo(f"note: {line}", err=True)
    find_weights(str(weights) if weights else None, model)
    videos, image_inputs = split_videos(inputs)
    found, problems = list_images(image_inputs) if image_inputs else ([], [])
    if videos:
        from ..video.io import import_av

        import_av()  # PyAV missing: one line before any model loads
    if not found and not videos:
        for line in problems:
            typer.echo(f"error: {line}", err=True)
        typer.echo("error: no image to restore among the inputs", err=True)
        raise typer.Exit(1)
    check_output_folder(output, inputs)
    pipe = load_pipeline(str(weights) if weights else None, sd_model, device, dtype, model=model,
                         notify=lambda line: typer.echo(f"note: {line}", err=True))

    if aligned:
        from ..batch_files import RestoredFile
        from ..photos import compare_image, restore_aligned_faces

        def restore_batch(images, paths):
            out = restore_aligned_faces(pipe, images, fidelity=fidelity, batch_size=batch_size, posterior=posterior,
                                        seed=seed, no_harm=no_harm)  # grayscale stays grayscale, as in photo mode
            files = []
            for src, before, (after, verdict) in zip(paths, images, out):
                extras = {f"compare/{src.stem}.png": compare_image(before, after)} if compare else {}
                faces = [{"index": 0, **verdict.to_json()}] if verdict is not None else []
                if sidecar and faces:
                    extras[f"{src.stem}.json"] = {"input": str(src), "input_size_wh": [before.shape[1], before.shape[0]],
                                                  "aligned": True, "faces": faces}
                files.append(RestoredFile(after, extras, faces=faces))
            return files

        read = read_image  # (one pixel budget: read_image refuses what read_photo refuses)
    else:
        from ..photos import make_face_restorer

        restorer = make_face_restorer(pipe, detector=detector, detector_weights=detector_weights, upscale=upscale,
                                      only_center_face=only_center_face, min_face_size=min_face_size,
                                      max_faces=max_faces, color_match=color_match, fidelity=fidelity,
                                      batch_size=batch_size, posterior=posterior, seed=seed, no_harm=no_harm)

        def restore_batch(images, paths):
            results = restorer.restore_many(images, batch_size=batch_size)
            return [_photo_outputs(src, before, result, upscale, fmt, save_faces, compare, sidecar)
                    for src, before, result in zip(paths, images, results)]

        def read(path):  # the output (input × upscale²) has the same pixel budget as the input
            photo = read_photo(path)
            check_upscaled(path, photo.shape[0], photo.shape[1], upscale)
            return photo

    result = restore_files(image_inputs, output, restore_batch, batch_size=batch_size, overwrite=overwrite,
                           fmt=fmt, progress=not quiet, read=read) if image_inputs else BatchReport()
    result.notes[:0] = guard_notes
    if videos and aligned:
        for src in videos:
            result.failed.append(f"{src}: a video is restored in photo mode (faces detected and tracked); "
                                 "drop --aligned")
            typer.echo(f"error: {result.failed[-1]}", err=True)
    elif videos:
        from ..video.batch import restore_videos
        from ..video.restorer import Stabilisers, VideoFaceRestorer

        stabilisers = Stabilisers(landmark_smoothing, prompt_smoothing, bridge_gap=3 if landmark_smoothing else 0,
                                  output_blend=temporal_blend)
        settings = {"weights": str(weights), "model": model, "dtype": str(pipe.dtype), "stabilisers": str(stabilisers),
                    "options": [only_center_face, min_face_size, max_faces, fidelity, color_match, posterior, seed,
                                detector, detector_weights, detail_guard, identity_guard]}

        def make_video_restorer():
            return VideoFaceRestorer(pipe, restorer, stabilisers, batch_size=batch_size, fidelity=fidelity,
                                     posterior=posterior, seed=seed)

        ignored = [flag for flag, on in (("--save-faces", save_faces), ("--compare", compare),
                                          (f"--format {fmt}", fmt != "png")) if on]
        if ignored:
            result.notes.append(f"videos: {', '.join(ignored)} apply to photos; a video is written as one clip "
                                "in its own container")
            typer.echo(f"note: {result.notes[-1]}", err=True)
        restore_videos(videos, output, make_video_restorer, settings, report=result, codec=video_codec,
                       codec_options=codec_options, upscale=upscale, segment_frames=video_segment,
                       overwrite=overwrite, progress=not quiet, sidecar=sidecar)
    typer.echo(result.summary(), err=True)
    if report is not None:
        write_text_atomic(report, json.dumps(result.to_json(), indent=2) + "\n")
    if result.failed:
        raise typer.Exit(1)


def check_output_folder(output: Path, inputs) -> None:
    """Refuse, before any work, an --output that is a file, an input folder, or cannot be written."""
    from ..errors import OSDFaceError
    from ..files import atomic_write

    if output.exists() and not output.is_dir():
        raise OSDFaceError(f"--output {output}: is a file, not a folder; give a folder for the restored images")
    if any(Path(item).is_dir() and Path(item).resolve() == output.resolve() for item in inputs):
        raise OSDFaceError(f"--output {output}: is also an input folder; a rerun would take the outputs as inputs. "
                           "Choose another folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
        # a name of its own: the processes of a torchrun launch check the same folder at once
        probe = atomic_write(output / f".osdface-write-check-{uuid.uuid4().hex[:12]}", lambda f: f.write(b"ok"))
        probe.unlink()
    except OSError as err:
        raise OSDFaceError(f"--output {output}: cannot write there ({err.strerror or err})") from None


def _photo_outputs(src: Path, before, result, upscale: float, fmt: str, save_faces: bool, compare: bool,
                   sidecar: bool):
    """One photo's RestoredFile: the photo, its sidecar JSON, optional faces and comparison."""
    from ..batch_files import RestoredFile
    from ..photos import compare_image, face_records, no_face_note

    image = result.image
    note = None
    suffix = src.suffix.lower() if fmt == "same" else FORMATS[fmt]
    if image.ndim == 3 and image.shape[2] == 4 and suffix in (".jpg", ".jpeg", ".bmp"):
        image = image[..., :3]
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
        extras[f"compare/{src.stem}.png"] = compare_image(before, image)
    if not result.faces:
        note = no_face_note(upscale)
    faces = [{"index": i, **f.verdict.to_json()} for i, f in enumerate(result.faces) if f.verdict is not None]
    return RestoredFile(image, extras, note, faces)


def split_videos(inputs) -> tuple[list[Path], list[Path]]:
    """(video files, the other inputs). Folders give their videos; a folder stays among the other
    inputs when it holds images, or holds neither (so that its problem is reported)."""
    from ..image_utils import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    videos, others = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            entries = sorted(p for p in item.iterdir() if p.is_file())
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
