"""The work behind the web page: uploads in; restored photos, faces and one zip out. No gradio here.

    service = RestoreService(pipe)                      # the model, loaded once; a private temp folder
    job = service.run([Upload(path, "family.jpg")], Options(upscale=2), progress=print)
    job.photos[0].download, job.photos[0].faces[0].score, job.errors, job.zip_path
    job = service.run([Upload(clip, "clip.webm")], Options(), progress=print)    # progress by frame
    job.videos[0].download                              # an H.264 mp4 (``videos``), in the zip too
    service.close()                                     # removes every file it wrote

Safe for a shared machine: each run is checked against ``Limits`` (files per run, bytes per file, and
the CLI's pixel budget ``MAX_PHOTO_PIXELS`` for the input and for the upscaled output), reads only
files under ``upload_root`` (where the web server stored the uploads; never a path a user typed),
names its outputs itself (a safe form of the uploaded file's name), and writes only inside its own
temporary folder, whose finished jobs are removed after ``keep_seconds`` and all of it on ``close``.
A bad file costs one line in ``Job.errors`` (its name and the reason) while the others are restored.
A run may mix photos and one video (``Limits.max_videos``), each video probed against the video limits
before any frame is restored; ``cancel`` stops a photo run between photos and a video between frames.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from ..batch_files import one_line
from ..face.background import BACKGROUNDS, DEFAULT_BACKGROUND, VIDEO_BACKGROUND
from ..face.no_harm import MIN_FUSION_RATIO
from ..errors import Cancelled, ImageReadError, OSDFaceError
from ..files import atomic_write
from ..image_utils import MAX_PHOTO_PIXELS, check_upscaled, read_image, read_photo, write_image_atomic
from ..photos import make_face_restorer, no_face_note, restore_aligned_faces
from ..video.batch import make_stabilisers, video_restorer_maker
from .videos import VideoResult, check_video, is_video_name, restore_video

log = logging.getLogger(__name__)

Progress = Callable[..., None]  # (done, in all, what happens now[, unit]): files, or a video's frames ("frames")
PREVIEW_MAX_SIDE = 2048  # the before/after pair shown on the page; downloads are full size
ZIP_NAME = "osdface-restored.zip"
# The download formats: "same" keeps the input's (when Pillow writes it, else PNG); JPEG and WebP take a quality
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
SAME_AS_INPUT = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".webp": ".webp", ".bmp": ".bmp",
                 ".tif": ".tif", ".tiff": ".tif"}
FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".webp": "WebP", ".bmp": "BMP", ".tif": "TIFF"}


@dataclass(frozen=True)
class Limits:
    """What one run may ask of the machine."""

    max_files: int = 20
    max_file_bytes: int = 50 * 2**20
    max_pixels: int = MAX_PHOTO_PIXELS  # the CLI's budget: each input, and each output after --upscale
    max_upscale: float = 4.0
    max_videos: int = 1  # a run; more are each one line in the errors
    max_video_seconds: float = 60.0
    max_video_pixels: int = 1280 * 720  # upright width × height (720×1280 too)

    def describe(self) -> str:
        return (f"up to {self.max_files} files a run, {self.max_file_bytes / 2**20:g} MB and "
                f"{self.max_pixels / 1e6:g} megapixels each (output included), upscale up to ×{self.max_upscale:g}; "
                f"{self.max_videos} video a run, up to {self.max_video_seconds:g} s and {self.describe_video_size()}")

    def describe_video_size(self) -> str:
        """'1280×720 (921,600 pixels)' for the default; the pixel count alone otherwise."""
        if self.max_video_pixels == 1280 * 720:
            return f"1280×720 ({self.max_video_pixels:,} pixels)"
        return f"{self.max_video_pixels:,} pixels"


@dataclass(frozen=True)
class Options:
    """The options of ``osdface restore`` that matter to a person (same meanings, same defaults)."""

    aligned: bool = False  # inputs are aligned face crops: each is one face, no detection
    upscale: float = 1.0
    background: str = DEFAULT_BACKGROUND  # the rest of the photo at upscale > 1: "learned" or "lanczos"
    fidelity: float = 0.0
    color_match: bool = True
    only_center_face: bool = False
    min_face_size: float = 20.0
    max_faces: Optional[int] = None
    output_format: str = "same"  # "same" (as the input), "png", "jpeg" or "webp": the downloads; faces stay PNG
    quality: int = 90  # JPEG and WebP

    def check(self, limits: Limits) -> None:
        """One OSDFaceError naming the first option out of range."""
        if not 0 < self.upscale <= limits.max_upscale:
            raise OSDFaceError(f"upscale must be above 0 and at most {limits.max_upscale:g}; got {self.upscale:g}")
        if self.background not in BACKGROUNDS:
            raise OSDFaceError(f"background must be one of {', '.join(BACKGROUNDS)}; got {self.background!r}")
        if not 0 <= self.fidelity <= 1:
            raise OSDFaceError(f"fidelity must be between 0 and 1; got {self.fidelity:g}")
        if self.min_face_size < 0:
            raise OSDFaceError(f"minimum face size must be 0 or more pixels; got {self.min_face_size:g}")
        if self.max_faces is not None and self.max_faces < 1:
            raise OSDFaceError(f"maximum faces must be 1 or more (or empty for all); got {self.max_faces}")
        if self.output_format not in ("same", *FORMATS):
            raise OSDFaceError(f"output format must be same, png, jpeg or webp; got {self.output_format!r}")
        if not 1 <= self.quality <= 100:
            raise OSDFaceError(f"quality must be between 1 and 100; got {self.quality}")

    def suffix(self, upload_name: str) -> str:
        """The download's suffix for an upload of this name."""
        if self.output_format != "same":
            return FORMATS[self.output_format]
        return SAME_AS_INPUT.get(Path(str(upload_name)).suffix.lower(), ".png")


@dataclass
class Upload:
    """One uploaded file: where the web server stored it, and its name as the user's browser gave it."""

    path: Path
    name: str


@dataclass
class FaceResult:
    image: Path  # the restored face as pasted (colour-matched), PNG
    score: float  # detection score (1.0 for an aligned crop: no detection)
    caption: str
    verdict: Optional[dict] = None  # what the "never worse" rule did (``FaceVerdict.to_json``)


@dataclass
class PhotoResult:
    name: str  # the upload's name, as shown
    download: Path  # the restored photo, full size, in the chosen format
    before: Path  # the before/after pair for the comparison (same size, at most PREVIEW_MAX_SIDE)
    after: Path
    size: tuple[int, int]  # (width, height) of the restored photo
    faces: list[FaceResult] = field(default_factory=list)
    note: Optional[str] = None  # e.g. "no face found"
    input_size: tuple[int, int] = (0, 0)  # (width, height) of the upload
    quality: Optional[int] = None  # of a JPEG or WebP download

    def describe(self) -> str:
        """One line: 'group.jpg: 860×580 → 1720×1160 px, JPEG (quality 90), 312 KB, 4 faces'."""
        fmt = FORMAT_NAMES.get(self.download.suffix, self.download.suffix)
        fmt += f" (quality {self.quality})" if self.quality is not None else ""
        faces = len(self.faces)
        return (f"{self.name}: {self.input_size[0]}×{self.input_size[1]} → {self.size[0]}×{self.size[1]} px, {fmt}, "
                f"{_kilobytes(self.download.stat().st_size)}, {faces} face{'s' * (faces != 1)}")


@dataclass
class Job:
    photos: list[PhotoResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each: "<name>: <reason>"
    zip_path: Optional[Path] = None
    seconds: float = 0.0

    notes: list[str] = field(default_factory=list)  # about the run as a whole (e.g. files beyond the limit)
    videos: list[VideoResult] = field(default_factory=list)

    def summary(self) -> str:
        """Markdown: what was restored, then each note and each problem on its own line."""
        faces = sum(len(p.faces) for p in self.photos)
        done = len(self.photos) + len(self.videos)
        tried = done + len(self.errors)
        what = f"{faces} face{'s' * (faces != 1)}" if self.photos or not self.videos else ""
        what += ", " * bool(what and self.videos) + ", ".join(f"{v.frames} frames of {v.name}" for v in self.videos)
        lines = [(f"**Restored {done} of {tried} file{'s' * (tried != 1)}** ({what}) in {self.seconds:.1f} s.")]
        lines += [f"- note: {line}" for line in self.notes]
        lines += [f"- note: {p.name}: {p.note}" for p in self.photos if p.note]
        lines += [f"- note: {v.name}: {note}" for v in self.videos for note in v.notes]
        if self.errors:
            lines += ["", "**Could not restore:**"] + [f"- {line}" for line in self.errors]
        return "\n".join(lines)


def too_many_note(uploads: Sequence[Upload], max_files: int) -> str:
    """The note for a run of more than ``max_files`` uploads: which ones are left out."""
    rest = [shown_name(u.name) for u in uploads[max_files:]]
    named = ", ".join(rest[:5]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
    return (f"{len(uploads)} files uploaded, at most {max_files} a run: restored the first {max_files}; "
            f"not restored: {named}")


def _kilobytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{max(1, round(n / 1024))} KB"


def shown_name(name: str) -> str:
    """A file name safe to show in Markdown and in a log: one line, no markup characters, ≤ 80 characters."""
    name = Path(str(name).replace("\\", "/")).name or "file"
    name = re.sub(r"[\x00-\x1f\x7f`*_\[\]<>|#]", "_", name)
    return name if len(name) <= 80 else name[:38] + "…" + name[-38:]


def safe_stem(name: str) -> str:
    """The stem used for output files: letters, digits, ``-`` and ``.`` only (never a path)."""
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", Path(str(name).replace("\\", "/")).stem).strip("._")
    return stem[:60] or "photo"


class RestoreService:
    """Restores uploads with one loaded pipeline; safe to call from several threads at once."""

    def __init__(self, pipe, limits: Limits = Limits(), upload_root: Optional[Path] = None,
                 keep_seconds: float = 600.0, detector_weights: Optional[str] = None, no_harm=None):
        self.pipe = pipe
        self.no_harm = no_harm  # the CLI's per-face "never worse" rule (``photos.make_no_harm``); None: off
        self.limits = limits
        self.upload_root = Path(upload_root).resolve() if upload_root is not None else None
        self.keep_seconds = keep_seconds
        self.detector_weights = detector_weights
        self.work_root = Path(tempfile.mkdtemp(prefix="osdface-ui-"))  # mode 0700: this user's only
        self._active: set[Path] = set()
        self._lock = threading.Lock()

    def run(self, uploads: Sequence[Upload], options: Options, progress: Optional[Progress] = None,
            cancel: Optional[threading.Event] = None) -> Job:
        """Restore every upload; a file that fails is one line in ``Job.errors`` and the rest goes on.

        ``cancel``: checked before each photo, at each frame of a video and before the zip; once set, the job's
        files are removed and ``Cancelled`` is raised (a photo being restored is finished first)."""
        start = time.perf_counter()
        progress = progress or (lambda *args: None)
        # 1. The run as a whole: options in range, not too many files
        options.check(self.limits)
        if not uploads:
            raise OSDFaceError("no file uploaded: drop one or more photos first")
        notes = [self.aligned_note()] if options.aligned else []
        if len(uploads) > self.limits.max_files:  # the first ones are restored, the rest named in a note
            notes.append(too_many_note(uploads, self.limits.max_files))
            uploads = uploads[:self.limits.max_files]
        # 2. A private folder for this job (finished jobs older than keep_seconds go first)
        self.prune()
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        with self._lock:
            self._active.add(folder)
        try:
            restore = self._restore_fn(options)
            job, used, names = Job(notes=notes), set(), set()
            videos = [u for u in uploads if is_video_name(u.name)]
            # 3. Each file: checked, read, restored, written; its failure is one line
            for i, upload in enumerate(uploads):
                _check_cancel(cancel, folder, i, len(uploads))
                root, ext = os.path.splitext(shown_name(upload.name))
                name = _unique(root + ext, names, lambda n, root=root, ext=ext: f"{root} ({n}){ext}")
                progress(i, len(uploads), f"restoring {name} ({i + 1} of {len(uploads)})")
                try:
                    if upload in videos:
                        job.videos.append(self._restore_video(upload, name, options, folder, used, videos,
                                                              progress, cancel))
                    else:
                        job.photos.append(self._restore_one(upload, name, options, restore, folder, used))
                except Cancelled as err:  # (between two frames of a video)
                    shutil.rmtree(folder, ignore_errors=True)
                    raise Cancelled(f"{err} (file {i + 1} of {len(uploads)}); the partial results were "
                                    "discarded") from None
                except OSDFaceError as err:
                    job.errors.append(f"{name}: {err}")
                except Exception as err:  # a model or paste failure costs this file only
                    log.exception("restoring %s failed", name)
                    job.errors.append(f"{name}: restoration failed ({type(err).__name__}: {one_line(err)})")
            # 4. All results (and their faces) in one zip
            _check_cancel(cancel, folder, len(uploads), len(uploads))
            if job.photos or job.videos:
                progress(len(uploads), len(uploads), "packing the zip")
                job.zip_path = write_zip(job.photos, folder / ZIP_NAME, job.videos)
            job.seconds = time.perf_counter() - start
            return job
        except BaseException as err:
            if isinstance(err, Cancelled) or cancel is None or not cancel.is_set():
                raise
            # Cancelled, but stopped by a BaseException before the next cancel check (an Exception costs only
            # its file and reaches the check): nothing is left behind either way
            shutil.rmtree(folder, ignore_errors=True)
            raise Cancelled(f"cancelled ({type(err).__name__} on the way); the partial results were "
                            "discarded") from None
        finally:
            with self._lock:
                self._active.discard(folder)

    def aligned_note(self) -> str:
        """What happens to aligned crops' sizes with this service's "never worse" rule (and the pipeline's
        model for small faces, ``OSDFacePipeline.small_faces``)."""
        size = self.pipe.sample_size
        small = ""
        if self.pipe.small_faces is not None:
            other, up_to = self.pipe.small_faces
            small = (f"; crops of up to {up_to:g} px go to the {other.sample_size}-px model and come out at its "
                     "size the same way")
        if self.no_harm is None or not self.no_harm.enabled:
            return (f"aligned crops come out at the model's face size: {size}×{size} px for a square crop, "
                    f"long side {size} px otherwise{small}")
        return (f"aligned crops: the model works at {size} px; a square crop of {math.ceil(MIN_FUSION_RATIO * size)} "
                f"px or more keeps its own size (the model's change is added to it, \"never worse\"), a smaller one "
                f"comes out {size}×{size} px, a non-square one with its long side {size} px{small}")

    def prune(self) -> None:
        """Remove finished job folders older than ``keep_seconds`` (the page has copied what it shows)."""
        now = time.time()
        with self._lock:
            active = set(self._active)
        for folder in self.work_root.glob("job-*"):
            if folder not in active and now - folder.stat().st_mtime > self.keep_seconds:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Remove every file this service wrote."""
        shutil.rmtree(self.work_root, ignore_errors=True)

    # ------------------------------------------------------------------ one file

    def _face_restorer(self, options: Options, video: bool = False):
        """The CLI's face restorer (``photos.make_face_restorer``) with the page's options: photos and videos
        (a video's frames are enlarged by Lanczos, as the CLI's default: the network costs seconds a frame)."""
        return make_face_restorer(self.pipe, detector_weights=self.detector_weights, upscale=options.upscale,
                                  only_center_face=options.only_center_face, min_face_size=options.min_face_size,
                                  max_faces=options.max_faces, color_match=options.color_match,
                                  fidelity=options.fidelity, no_harm=self.no_harm,
                                  background=VIDEO_BACKGROUND if video else options.background,
                                  small_faces=not video)

    def _restore_fn(self, options: Options) -> Callable[[np.ndarray], tuple[np.ndarray, list]]:
        """image → (restored image, [(face image, score, verdict or None)]) for the chosen mode."""
        if options.aligned:
            def aligned(image):
                restored, verdict = restore_aligned_faces(self.pipe, [image], fidelity=options.fidelity,
                                                          no_harm=self.no_harm)[0]
                return restored, [(restored, 1.0, verdict)]
            return aligned
        restorer = self._face_restorer(options)

        def photo(image):
            result = restorer(image)
            return result.image, [(f.pasted if f.pasted is not None else f.restored, f.score, f.verdict)
                                  for f in result.faces]
        return photo

    def _check_upload(self, upload: Upload) -> Path:
        """The upload's path: only files the web server stored, within the byte limit."""
        path = Path(upload.path)
        if self.upload_root is not None and not path.resolve().is_relative_to(self.upload_root):
            raise OSDFaceError("not an uploaded file; refused")
        size = path.stat().st_size if path.is_file() else 0
        if size > self.limits.max_file_bytes:
            raise OSDFaceError(f"{size / 2**20:.1f} MB is over the limit of {self.limits.max_file_bytes / 2**20:g} MB")
        return path

    def _restore_video(self, upload: Upload, name: str, options: Options, folder: Path, used: set[str],
                       videos: list[Upload], progress: Progress, cancel: Optional[threading.Event]) -> VideoResult:
        """One video: checked (one a run; aligned mode refuses it; probed against the limits), restored by the
        CLI's video restorer with the run's options, progress by frame, into ``folder`` as an mp4."""
        # 1. Which video, in which mode, within which limits
        if videos.index(upload) >= self.limits.max_videos:
            first = shown_name(videos[0].name)
            raise OSDFaceError(f"{self.limits.max_videos} video a run ({first} is restored in this one); "
                               "restore it in a run of its own")
        if options.aligned:
            raise OSDFaceError("a video is restored in photo mode (faces detected and tracked); choose "
                               "\"Photos\" to restore it")
        info = check_video(self._check_upload(upload), self.limits)
        width, height = info.upright_size
        check_upscaled(name, height, width, options.upscale, self.limits.max_pixels, option="the upscale")
        # 2. The CLI's video restorer (its default stabilisers), frame by frame into the job's folder
        stem = safe_stem(upload.name)
        stem = _unique(stem, used, lambda n: f"{stem}_{n}")
        make_restorer = video_restorer_maker(self.pipe, self._face_restorer(options, video=True), make_stabilisers(),
                                             fidelity=options.fidelity)

        def on_frame(done: int, total: int) -> None:
            progress(done, total, f"{name}: frame {done}/{total or '?'}", "frames")

        return restore_video(info, name, folder / "videos" / f"{stem}.mp4", make_restorer, options.upscale,
                             on_frame=on_frame, cancel=cancel)

    def _restore_one(self, upload: Upload, name: str, options: Options, restore, folder: Path,
                     used: set[str]) -> PhotoResult:
        # 1. Only files the web server stored, within the byte limit
        path = self._check_upload(upload)
        # 2. Read with the CLI's readers and pixel budget; errors name the upload, not the server's path
        try:
            read = read_image if options.aligned else read_photo
            before = read(path, max_pixels=self.limits.max_pixels)
            if not options.aligned:  # the output has the input's pixel budget
                check_upscaled(path, before.shape[0], before.shape[1], options.upscale, self.limits.max_pixels,
                               option="the upscale")
        except ImageReadError as err:
            raise OSDFaceError(str(err).replace(str(path), "").lstrip(": ")) from None
        # 3. Restore
        after, faces = restore(before)
        # 4. Write the full result, the comparison pair and the faces under names of our own
        stem = safe_stem(upload.name)
        stem = _unique(stem, used, lambda n: f"{stem}_{n}")
        download = folder / f"{stem}{options.suffix(upload.name)}"
        lossy = download.suffix in (".jpg", ".webp")
        if download.suffix == ".jpg" and after.ndim == 3 and after.shape[2] == 4:
            after = after[..., :3]  # JPEG has no alpha
        write_image_atomic(after, download, quality=options.quality)
        before_preview, after_preview = comparison_pair(before, after)
        write_image_atomic(before_preview, folder / "compare" / f"{stem}_before.png")
        write_image_atomic(after_preview, folder / "compare" / f"{stem}_after.png")
        face_results = []
        for k, (face, score, verdict) in enumerate(faces):
            face_path = folder / "faces" / f"{stem}_{k:02d}.png"
            write_image_atomic(face, face_path)
            caption = f"{name} #{k + 1} · score {score:.3f}" if not options.aligned else f"{name} · aligned crop"
            if verdict is not None:  # e.g. "… · 644-px face, 128-px model · kept: already sharper than the model"
                caption += f" · {verdict.caption()}"
            face_results.append(FaceResult(face_path, float(score), caption,
                                           verdict.to_json() if verdict is not None else None))
        note = None if faces else no_face_note(options.upscale)
        return PhotoResult(name, download, folder / "compare" / f"{stem}_before.png",
                           folder / "compare" / f"{stem}_after.png", (after.shape[1], after.shape[0]),
                           face_results, note, (before.shape[1], before.shape[0]),
                           options.quality if lossy else None)


def _check_cancel(cancel: Optional[threading.Event], folder: Path, done: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        shutil.rmtree(folder, ignore_errors=True)
        raise Cancelled(f"cancelled after {done} of {total} file{'s' * (total != 1)}; the partial results were discarded")


def comparison_pair(before: np.ndarray, after: np.ndarray,
                    max_side: int = PREVIEW_MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The input at the output's size (Lanczos-4) and the output, both shrunk to ``max_side`` if larger."""
    h, w = after.shape[:2]
    if before.shape[:2] != (h, w):
        before = cv2.resize(before, (w, h), interpolation=cv2.INTER_LANCZOS4)
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        before, after = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (before, after))
    return before, after


def write_zip(photos: Sequence[PhotoResult], path: Path, videos: Sequence[VideoResult] = ()) -> Path:
    """One zip (atomically written): each restored photo, and its faces under ``faces/``, then each video."""
    def fill(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs, mp4: already compressed
            for photo in photos:
                z.write(photo.download, photo.download.name)
                for face in photo.faces:
                    z.write(face.image, f"faces/{face.image.name}")
            for video in videos:
                z.write(video.download, video.download.name)
    return atomic_write(path, fill)


def _unique(name: str, used: set[str], numbered: Callable[[int], str]) -> str:
    """``name``, else ``numbered(2)``, ``numbered(3)``, ...: the first not in ``used`` yet (case-blind)."""
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = numbered(n)
    used.add(candidate.lower())
    return candidate


def describe_model(kind: str, face_size: int, folder=None, small_faces=None) -> str:
    """The page's line about the model in use (``kind`` and ``folder`` as ``loading.find_weights`` says;
    ``small_faces``: the pipeline's ``small_faces`` pair, or None)."""
    if kind == "bundled":
        from ..bundled import model_info

        info = model_info(folder)
        small = ""
        if small_faces is not None:
            small = (f"; photos' faces up to {small_faces[1]:g} px go to a {small_faces[0].sample_size}-px model, "
                     "videos use one model")
        return (f"**Model: the bundled {info['title']}** ({face_size} px faces{small}), which works out of the box. It "
                f"was trained by osdface on {info['data']}: non-commercial research use only. For the paper's model (512 px faces) run `osdface download` "
                "and start `osdface ui` again.")
    return f"**Model: OSDFace** ({face_size} px faces), the installed weights."
