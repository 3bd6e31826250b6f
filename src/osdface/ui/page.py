"""The page of ``osdface ui``: a gradio front over ``jobs.RestoreService``. Imports gradio (the ``ui`` extra).

    demo = build_page(service, model_note)     # gr.Blocks; the handlers below are plain functions
    serve(pipe, model_note, upload_root, host="127.0.0.1", port=7860)     # what `osdface ui` runs

What a person sees: a compact drop zone for one or many photos (or aligned crops, by a mode switch) that
tells the file limit at upload, example photos one click restores, the options of ``osdface restore`` that
matter and the download format, each checked beside its field; a Restore and a Cancel button that stay in
view; one progress line; then a before/after slider per photo (a menu picks the photo) with its input and
output size, fixed-size face thumbnails captioned with photo, face number, score and the "never worse"
verdict, the downloads (the zip of everything first, then each photo) and one line per file that could not
be restored. A short video (mp4, mov, m4v, mkv, webm; ``Limits``: one a run, up to 60 s and 1280×720) can
be dropped with the photos: its limits are told at upload, the progress line counts its frames, and the
restored clip (H.264 mp4) plays on the page and is among the downloads. Served on loopback unless
``host`` says otherwise, with no share link unless asked, no telemetry, one queue with ``concurrency`` jobs
at a time, and every temporary file removed on exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: nothing phones home
import gradio as gr

from ..errors import OSDFaceError
from ..face.background import BACKGROUNDS, DEFAULT_BACKGROUND
from ..image_utils import IMAGE_EXTENSIONS
from .jobs import Cancelled, Limits, Options, RestoreService, Upload
from .videos import VIDEO_SUFFIXES, check_video, is_video_name

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"  # the repository's photos (absent from a wheel)
MODES = {"Photos: find every face": False, "Aligned face crops (one face each, no detection)": True}
FORMATS = {"Same as the input": "same", "PNG": "png", "JPEG": "jpeg", "WebP": "webp"}
# System fonts only: the default theme would make every visitor's browser fetch fonts from the internet.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#status {min-height: 2em} footer {display: none !important}
.gradio-container {overflow: clip !important}
#inputs {align-self: stretch} #examples-slot {flex-grow: 0 !important}  /* hidden would stop the sticky bar below from sticking */
#restore-bar {position: sticky; top: 0; bottom: 0; z-index: 100; padding: 8px 0; background: var(--body-background-fill)}
#faces .grid-wrap.fixed-height {min-height: 0; max-height: 640px}
#faces .grid-container {grid-template-columns: repeat(auto-fill, 178px); grid-template-rows: none; grid-auto-rows: auto}
#faces .gallery-item, #faces .thumbnail-item {height: auto; aspect-ratio: auto}
#faces .thumbnail-item {display: flex; flex-direction: column; overflow: visible}
#faces .thumbnail-lg > img {width: 176px; height: 176px; flex: none}
#faces .caption-label {position: static; max-width: none; white-space: normal; overflow: visible; text-overflow: clip;
                       border: none; border-radius: 0; line-height: 1.3; opacity: 1}
#faces .thumbnail-lg:hover .caption-label {opacity: 1}
"""  # the Restore button stays in view; faces are 176-px thumbnails with their whole caption below


# ----------------------------------------------------------------------------- handlers (no browser needed)


def restore_clicked(service: RestoreService, files, mode: str, upscale: float, fidelity: float, color_match: bool,
                    only_center_face: bool, min_face_size: float, max_faces, progress=None,
                    output_format: str = "Same as the input", quality: float = 90,
                    cancel: Optional[threading.Event] = None, background: str = DEFAULT_BACKGROUND):
    """The Restore button → (status, comparison pair, photo menu, the photo's sizes, faces gallery, downloads,
    state, video player, the video's line).

    ``files``: the paths where gradio stored the uploads (their base names are the users' file names).
    ``cancel``: set by the Cancel button (see ``RestoreService.run``). Never raises: every problem is a line in
    the status."""
    empty = (None, gr.Dropdown(choices=[], value=None), "", [], [], [], gr.Video(value=None, visible=False), "")
    problems = field_messages(upscale, fidelity, min_face_size, max_faces, service.limits.max_upscale)
    if problems:
        return ("**" + " ".join(problems.values()) + "**", *empty)
    try:
        # 1. The form → uploads and options
        uploads = [Upload(Path(f), Path(f).name) for f in (files or [])]
        options = Options(aligned=MODES.get(mode, False), upscale=float(upscale or 1), fidelity=float(fidelity or 0),
                          background=background or DEFAULT_BACKGROUND,
                          color_match=bool(color_match), only_center_face=bool(only_center_face),
                          min_face_size=float(min_face_size or 0), max_faces=int(max_faces) if max_faces else None,
                          output_format=FORMATS.get(output_format, output_format), quality=int(quality or 90))
        # 2. Restore, with the progress bar moved per photo
        def tick(done: int, total: int, text: str, unit: str = "photos") -> None:  # (a video: its frames)
            if progress is not None:
                progress((done, total), desc=text, unit=unit)

        job = service.run(uploads, options, progress=tick, cancel=cancel)
    except Cancelled as err:
        return (f"**Cancelled:** {err}.", *empty)
    except OSDFaceError as err:
        return (f"**{err}**", *empty)
    except Exception as err:  # never a traceback on the page; the server log has it
        log.exception("the restore handler failed")
        return (f"**Something went wrong:** {type(err).__name__}. The others' jobs are not affected; try again.",
                *empty)
    # 3. The job → what the page shows
    state = [[p.name, str(p.before), str(p.after), p.describe()] for p in job.photos]
    labels = [p.name for p in job.photos]
    faces = [(str(f.image), f.caption) for p in job.photos for f in p.faces]
    downloads = ([str(job.zip_path)] if job.zip_path else []) + [str(p.download) for p in job.photos]
    downloads += [str(v.download) for v in job.videos]
    comparison = (state[0][1], state[0][2]) if state else None
    menu = gr.Dropdown(choices=labels, value=labels[0] if labels else None)
    info = state[0][3] if state else ""
    video = job.videos[0] if job.videos else None  # (one a run: Limits.max_videos)
    player = gr.Video(value=str(video.download) if video else None, visible=video is not None)
    return (job.summary(), comparison, menu, info, faces, downloads, state, player,
            video.describe() if video else "")


def files_changed(files, max_files: int, limits: Optional[Limits] = None) -> str:
    """The note under the drop zone: how many files, and which are left out past the limit; with ``limits``,
    each video over the video limits (probed now) and the videos past one a run, named with the reason."""
    n = len(files or [])
    if n > max_files:
        lines = [f"**{n} files: the first {max_files} will be restored** (at most {max_files} a run); "
                 f"the other {n - max_files} are left out."]
    else:
        lines = [f"{n} file{'s' * (n != 1)} ready." if n else ""]
    videos = [Path(f) for f in (files or [])[:max_files] if is_video_name(f)]
    for k, video in enumerate(videos if limits is not None else []):
        if k >= limits.max_videos:
            lines.append(f"**{video.name}: {limits.max_videos} video a run: it will not be restored** "
                         "(restore it in a run of its own).")
            continue
        try:
            check_video(video, limits)
        except OSDFaceError as err:
            lines.append(f"**{video.name}: {err}: it will not be restored.**")
    return "\n\n".join(line for line in lines if line)


def field_messages(upscale, fidelity, min_face_size, max_faces, max_upscale: float) -> dict[str, str]:
    """The fields out of range → {field: the message shown beside it} (empty when all are fine).

    Keys: ``upscale``, ``fidelity``, ``min_face``, ``max_faces``; an empty number field means its default."""
    problems = {}
    if upscale is not None and not 1 <= float(upscale) <= max_upscale:
        problems["upscale"] = f"Upscale must be between 1 and {max_upscale:g} (got {float(upscale):g})."
    if fidelity is not None and not 0 <= float(fidelity) <= 1:
        problems["fidelity"] = f"Fidelity must be between 0 and 1 (got {float(fidelity):g})."
    if min_face_size is not None and float(min_face_size) < 0:
        problems["min_face"] = f"The smallest face must be 0 pixels or more (got {float(min_face_size):g})."
    if max_faces is not None and (float(max_faces) < 0 or float(max_faces) != int(max_faces)):
        problems["max_faces"] = f"Must be a whole number, 0 or more (0: all faces); got {float(max_faces):g}."
    return problems


def photo_picked(choice: Optional[str], state):
    """The photo menu → that photo's before/after pair and its sizes line (None, "" when it is not among the
    results)."""
    for name, before, after, info in state or []:
        if name == choice:
            return (before, after), info
    return None, ""


# ----------------------------------------------------------------------------- the page


class Running:
    """The cancel event of each browser session's running job (gradio's cancel stops waiting for a job; this
    stops the job itself, between two photos)."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            self._events[session] = event = threading.Event()
        return event

    def finish(self, session: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]

    def cancel(self, session: str) -> bool:
        """Set the session's cancel event; False when it runs nothing."""
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()
        return event is not None


def example_photos(folder: Path = EXAMPLES) -> list[Path]:
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


def build_page(service: RestoreService, model_note: str, examples: Sequence[Path] = ()) -> gr.Blocks:
    """The page: inputs and options on the left, results on the right; ``examples``: photos one click restores."""
    running = Running()
    with gr.Blocks(title="OSDFace: restore faces", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# OSDFace: restore the faces in your photos\nOne diffusion step per face. "
                    "Drop photos (or a short video), press **Restore**, compare with the slider, download.")
        gr.Markdown(model_note, elem_id="model-note")
        state = gr.State([])
        with gr.Row():
            # 1. Inputs and the options of `osdface restore`
            with gr.Column(scale=2, elem_id="inputs"):  # as tall as the results (CSS): its sticky bar can follow
                files = gr.File(label="Photos (one or many) or a video", file_count="multiple",
                                file_types=[*IMAGE_EXTENSIONS, *VIDEO_SUFFIXES],
                                height=180, elem_id="photos")  # a long list scrolls inside those 180 px
                files_note = gr.Markdown(elem_id="files-note")
                examples_slot = gr.Column(elem_id="examples-slot")  # filled below, once the events exist
                note = service.aligned_note()  # what happens to the crops' sizes, said before they are dropped
                mode = gr.Radio(list(MODES), value=next(iter(MODES)), label="What are they?",
                                info=f"{note[0].upper()}{note[1:]}.", elem_id="mode")
                with gr.Accordion("Options", open=True):
                    upscale = gr.Slider(1, service.limits.max_upscale, value=1, step=0.5, label="Upscale (photos)",
                                        info="Output size × this; faces are restored, the rest is resized.",
                                        elem_id="upscale")
                    background = gr.Dropdown(list(BACKGROUNDS), value=DEFAULT_BACKGROUND, label="Background (upscale > 1)",
                                             info="Photos. learned: a small network, sharper; lanczos: a plain resize (video frames: lanczos).",
                                             elem_id="background")
                    fidelity = gr.Slider(0, 1, value=0, step=0.05, label="Fidelity",
                                         info="0 = the model's face, 1 = the input face (a pixel blend).",
                                         elem_id="fidelity")
                    color_match = gr.Checkbox(value=True, label="Match the colours of the original faces",
                                              elem_id="color-match")
                    only_center = gr.Checkbox(value=False, label="Only the face nearest the centre",
                                              elem_id="center-face")
                    with gr.Row():
                        output_format = gr.Radio(list(FORMATS), value=next(iter(FORMATS)), label="Download format",
                                                 info="Faces in the zip are PNG.", elem_id="format")
                        quality = gr.Slider(50, 100, value=90, step=1, label="Quality (JPEG, WebP)", elem_id="quality")
                    with gr.Row():
                        # no `minimum=`: gradio would refuse out-of-range values with bare "Error" badges and a
                        # logged traceback; the validator below says what is wrong beside the field instead
                        min_face = gr.Number(value=20, label="Smallest face (pixels)", elem_id="min-face")
                        max_faces = gr.Number(value=0, precision=0, label="At most this many faces",
                                              info="0: all of them", elem_id="max-faces")
                with gr.Row(elem_id="restore-bar"):  # sticky: in view however long the page
                    run = gr.Button("Restore", variant="primary", scale=3, elem_id="restore")
                    stop = gr.Button("Cancel", variant="stop", scale=1, elem_id="cancel")
                gr.Markdown(f"<small>Limits: {service.limits.describe()}. Jobs wait in one queue.</small>")
            # 2. Results: status, before/after, faces, downloads
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="status")
                video = gr.Video(label="Restored video (H.264 mp4)", visible=False, interactive=False, elem_id="video")
                video_info = gr.Markdown(elem_id="video-info")
                pick = gr.Dropdown(choices=[], label="Photo", elem_id="pick")
                compare = gr.ImageSlider(label="Before | after", type="filepath", format="png", interactive=False,
                                         elem_id="compare")
                info = gr.Markdown(elem_id="photo-info")
                faces = gr.Gallery(label="Restored faces: photo, face number, detection score, what was done",
                                   columns=6, height="auto", object_fit="contain",
                                   format="png", interactive=False, elem_id="faces")
                downloads = gr.File(label="Downloads: everything as a zip, then each photo and video",
                                    file_count="multiple",
                                    interactive=False, height=260, elem_id="downloads")

        # 3. Events: one queue (see serve), the progress bar on the results
        def on_restore(files, mode, upscale, fidelity, color_match, only_center, min_face, max_faces, output_format,
                       quality, background, request: gr.Request, progress=gr.Progress()):
            session = request.session_hash or ""
            cancel = running.start(session)
            try:
                return restore_clicked(service, files, mode, upscale, fidelity, color_match, only_center, min_face,
                                       max_faces, progress, output_format=output_format, quality=quality,
                                       cancel=cancel, background=background)
            finally:
                running.finish(session, cancel)

        def on_cancel(request: gr.Request):
            if running.cancel(request.session_hash or ""):
                return ("**Cancelled:** the running job stops after the photo it is on (a video: at the next "
                        "frame); its results are discarded.")
            return "Nothing to cancel (a job waiting in the queue is simply dropped)."

        def check_fields(files, mode, upscale, fidelity, color_match, only_center, min_face, max_faces, output_format,
                         quality, background):
            problems = field_messages(upscale, fidelity, min_face, max_faces, service.limits.max_upscale)
            named = [None, None, "upscale", "fidelity", None, None, "min_face", "max_faces", None, None, None]
            return [gr.validate(key not in problems, problems.get(key, "")) for key in named]

        inputs = [files, mode, upscale, fidelity, color_match, only_center, min_face, max_faces, output_format, quality,
                  background]
        outputs = [status, compare, pick, info, faces, downloads, state, video, video_info]
        jobs = [run.click(on_restore, inputs=inputs, outputs=outputs, api_name="restore", validator=check_fields,
                          show_progress_on=[status])]  # one progress line
        if examples:  # a click fills the drop zone and restores with the options as they are
            with examples_slot:
                shown = gr.Examples([[[str(p)]] for p in examples], inputs=[files], label="Examples: one click restores",
                                    example_labels=[p.name for p in examples], elem_id="examples")
            jobs.append(shown.load_input_event.then(on_restore, inputs=inputs, outputs=outputs, show_progress_on=[status],
                                                    api_visibility="private"))
        stop.click(on_cancel, outputs=status, cancels=jobs, queue=False, api_visibility="private")
        files.change(lambda f: files_changed(f, service.limits.max_files, service.limits), inputs=files,
                     outputs=files_note,
                     api_visibility="private", queue=False)
        pick.input(photo_picked, inputs=[pick, state], outputs=[compare, info], api_visibility="private")
    return demo


def serve(pipe, model_note: str, upload_root: Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          concurrency: int = 1, queue_size: int = 16, limits: Limits = Limits(),
          detector_weights: Optional[str] = None, no_harm=None) -> None:
    """Serve the page until Ctrl-C / SIGTERM, then remove every result file.

    ``upload_root``: gradio's upload and cache folder (``GRADIO_TEMP_DIR``, which gradio reads when it is
    imported: the caller makes it, sets it before importing this module, and removes it afterwards)."""
    # 1. Our results in a private folder; uploads are read only from gradio's
    service = RestoreService(pipe, limits, upload_root=upload_root, detector_weights=detector_weights,
                             no_harm=no_harm)
    for stop in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job starts with it ignored
        signal.signal(stop, _interrupt)
    try:
        # 2. The page, one bounded queue (REST routes cannot skip it), and the server
        examples = example_photos()
        demo = build_page(service, model_note, examples)
        demo.queue(max_size=queue_size, default_concurrency_limit=concurrency, api_open=False)
        try:
            demo.launch(server_name=host, server_port=port, share=share, max_file_size=limits.max_file_bytes,
                        show_error=False, ssr_mode=False, run_history=False, mcp_server=False, theme=THEME, css=CSS,
                        prevent_thread_lock=True, quiet=True,
                        allowed_paths=[str(p) for p in examples])  # the example photos, by name
        except OSError:
            raise OSDFaceError(f"--port {port}: cannot serve on {host}:{port} (in use or not allowed); "
                               "choose another port") from None
        print(f"serving on {demo.local_url} (Ctrl-C stops it and removes every uploaded and restored file)", flush=True)
        # 3. Until interrupted
        demo.block_thread()
        demo.close(verbose=False)
    finally:
        service.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
