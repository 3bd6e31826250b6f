"""`osdface ui` in a real browser: the served page, driven by headless Chromium (Debian's) through Playwright.

The server is the real command with the bundled mini model (what a fresh install serves). The test uploads
examples/group.jpg and a corrupt file, restores, and checks what a person sees: the progress bar, the
restored photo's size, one gallery face per detected face with its score, the error line naming the bad
file, the downloads; that the page asks nothing of the internet; and that stopping the server removes
its files. Then, on the same server: an invalid field (its message beside it, no traceback), 22 files
(the limit told at upload, the Restore button in view, one progress line, whole captions), an example
click, and a cancel (the job's files removed, the next job runs); a video: a cancel between frames, then a
short clip's round trip (progress by frame, the player plays it, the download has every frame). Screenshots
of each state go to build/test-artefacts/ui_*.png ($OSDFACE_ARTEFACTS to change).

Needs the ui extra and playwright (pip install -e ".[dev,ui]") and Debian's chromium; in CI (CI set) a
missing one fails instead of skipping.
"""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from osdface.image_utils import read_photo
from osdface.photos import make_face_restorer
from test_ui import needs
from test_ui_video import make_clip

REPO = Path(__file__).resolve().parents[1]
GROUP = REPO / "examples" / "group.jpg"
ARTEFACTS = Path(os.environ.get("OSDFACE_ARTEFACTS", REPO / "build" / "test-artefacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (the README's Tests command does)")
    pytest.skip("no chromium: apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`osdface ui` on a free loopback port (bundled model), its own TMPDIR, shared by this module's tests;
    stopped with Ctrl-C's signal at the end, when its files must be gone and its log free of tracebacks."""
    needs("gradio")
    tmp_path = tmp_path_factory.mktemp("ui")
    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), OSDFACE_DTYPE="float32", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "osdface", "ui", "--port", str(port), "--device", "cpu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while not any(line.startswith("serving on ") for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("osdface ui did not start:\n" + "".join(lines))
        time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}/", tmp, lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "".join(lines)
    assert [p.name for p in tmp.iterdir()] == []  # uploads, gradio's cache and our results: all removed
    assert "Traceback" not in "".join(lines)


def test_page_restores_group_photo_and_reports_a_corrupt_file(server, tmp_path, tiny_pipe):
    sync_api = needs("playwright.sync_api")
    url, _, _ = server
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is no JPEG at all")
    # the faces `osdface restore` keeps in the example, best first (the model does not change which)
    expected = [f.score for f in make_face_restorer(tiny_pipe)(read_photo(GROUP)).faces]
    assert len(expected) >= 3
    offsite: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((url, "data:", "blob:"))
                       else (offsite.append(route.request.url), route.abort()))
            # 1. The page, with the bundled model named on it
            page.goto(url)
            page.wait_for_selector("#restore", timeout=60_000)
            assert "bundled osdface-mini" in page.inner_text("#model-note")
            mode = page.inner_text("#mode")  # (detail guard off; the default pairs mini256 with mini128)
            assert "come out at the model's face size: 256×256 px" in mode and "up to 141 px go to the 128-px" in mode
            # 2. Upload the example and a corrupt file, upscale ×2, Restore
            page.set_input_files("#photos input[type=file]", [str(GROUP), str(corrupt)])
            page.wait_for_function("['group.jpg', 'corrupt.jpg'].every(n => document.querySelector('#photos')"
                                   ".innerText.replace(/\\s+/g, '').includes(n))")  # (stem and suffix: two lines)
            page.fill("#upscale input[type=number]", "2")
            page.press("#upscale input[type=number]", "Enter")
            page.click("#restore")
            # 3. The progress bar names the file being restored, then the result arrives
            page.wait_for_function("Array.from(document.querySelectorAll('.progress-level-inner'))"
                                   ".some(e => e.innerText.includes('restoring group.jpg (1 of 2)'))", timeout=60_000)
            page.wait_for_function("document.querySelector('#status').innerText.includes('Restored')", timeout=120_000)
            status = page.inner_text("#status")
            assert "Restored 1 of 2 files" in status and f"({len(expected)} faces)" in status
            assert "corrupt.jpg: not an image file (format not recognised)" in status
            # 4. Before/after at the result's size; one gallery face per detected face, with its score
            page.wait_for_function("Array.from(document.querySelectorAll('#compare img'))"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length == 2")
            sizes = page.eval_on_selector_all("#compare img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            assert sizes == [[1720, 1160], [1720, 1160]]
            assert "group.jpg: 860×580 → 1720×1160 px, JPEG (quality 90)" in page.inner_text("#photo-info")
            page.wait_for_function(f"document.querySelectorAll('#faces img').length == {len(expected)}")
            captions = page.inner_text("#faces")
            for k, score in enumerate(expected):
                assert f"group.jpg #{k + 1} · score {score:.3f}" in captions
            # 5. Downloads: the zip (photo + faces) and the photo at full size, a JPEG as the input was
            links = page.eval_on_selector_all("#downloads a", "els => els.map(e => [e.download, e.href])")
            assert [name for name, _ in links] == ["osdface-restored.zip", "group.jpg"]
            photo = Image.open(io.BytesIO(page.request.get(links[1][1]).body()))
            assert photo.size == (1720, 1160) and photo.format == "JPEG"
            names = zipfile.ZipFile(io.BytesIO(page.request.get(links[0][1]).body())).namelist()
            assert names == ["group.jpg"] + [f"faces/group_{k:02d}.png" for k in range(len(expected))]
            # 6. The artefact (the README's screenshot)
            artefact(page, "ui_page.png")
        finally:
            browser.close()
    assert offsite == []  # no font, script or telemetry from the internet


@pytest.fixture
def page(server):
    """A fresh page of the shared server in headless Chromium; requests off the server are refused."""
    sync_api = needs("playwright.sync_api")
    url = server[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith((url, "data:", "blob:"))
                      else route.abort())
            tab.goto(url)
            tab.wait_for_selector("#restore", timeout=60_000)
            yield tab
        finally:
            browser.close()


def artefact(page, name: str) -> None:
    """The whole page, through a viewport as tall as it (so the sticky Restore bar sits where it belongs)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": page.evaluate("document.body.scrollHeight")})
    time.sleep(0.3)
    page.screenshot(path=str(ARTEFACTS / name), full_page=True)
    page.set_viewport_size(size)


def test_invalid_field_is_one_message_beside_it_and_no_traceback(server, page):
    _, _, lines = server
    page.set_input_files("#photos input[type=file]", [str(GROUP)])
    page.fill("#max-faces input", "-1")
    page.press("#max-faces input", "Tab")
    page.click("#restore")
    # the reason beside the field, and it stays there (not a toast that fades)
    page.wait_for_function("document.querySelector('#max-faces').innerText.includes('Must be a whole number')",
                           timeout=30_000)
    time.sleep(12)
    assert "0 or more (0: all faces); got -1" in page.inner_text("#max-faces")
    assert "Error" not in page.inner_text("#status") and "Restored" not in page.inner_text("#status")
    assert page.locator("text=Must be a whole number").count() == 1  # one message, not one per output
    artefact(page, "ui_invalid_field.png")
    # corrected, the same page restores
    page.fill("#max-faces input", "1")
    page.press("#max-faces input", "Tab")
    page.click("#restore")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored 1 of 1 file')",
                           timeout=120_000)
    assert "Must be a whole number" not in page.inner_text("#max-faces")
    assert "Traceback" not in "".join(lines)



IN_VIEW = ("(() => { const r = document.querySelector('#restore').getBoundingClientRect(); "
           "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight })()")


def test_twenty_two_files_compact_list_restore_in_view_whole_captions(server, page, tmp_path):
    small = Image.open(GROUP).resize((430, 290))
    paths = [tmp_path / f"family-holiday-{k + 1:02d}.jpg" for k in range(22)]
    for path in paths:
        small.save(path, quality=92)
    # 1. At upload: the limit is told, the list stays compact, the button in view
    page.set_input_files("#photos input[type=file]", [str(p) for p in paths])
    page.wait_for_function("document.querySelector('#files-note').innerText.includes("
                           "'22 files: the first 20 will be restored')", timeout=60_000)
    assert page.locator("#photos").bounding_box()["height"] < 400
    assert page.evaluate(IN_VIEW)
    page.fill("#max-faces input", "1")
    page.press("#max-faces input", "Tab")
    page.click("#restore")
    # 2. One progress line while it runs
    lines = page.wait_for_function(
        "(() => { const n = [...document.querySelectorAll('.progress-level-inner')]"
        ".filter(e => e.innerText.includes('restoring')).length; return n > 0 ? n : false })()", timeout=60_000)
    assert lines.json_value() == 1
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored')", timeout=240_000)
    status = page.inner_text("#status")
    assert "Restored 20 of 20 files" in status and "22 files uploaded, at most 20 a run: restored the first 20" in status
    assert "family-holiday-21.jpg, family-holiday-22.jpg" in status
    page.wait_for_function("document.querySelectorAll('#faces img').length == 20")
    # 3. Fixed-size thumbnails, each caption whole (photo, face, score, what was done)
    sizes = page.eval_on_selector_all("#faces .thumbnail-item img", "els => els.map(e => [e.clientWidth, e.clientHeight])")
    assert sizes == [[176, 176]] * 20
    captions = page.eval_on_selector_all("#faces .caption-label", "els => els.map(e => [e.innerText, "
                                         "e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1])")
    assert len(captions) == 20 and all(whole for _, whole in captions), captions
    for k, (text, _) in enumerate(captions):
        assert text.startswith(f"family-holiday-{k + 1:02d}.jpg #1 · score ") and "-px model · " in text
    # 4. The Restore button in view at the top and at the bottom of the page
    assert page.evaluate(IN_VIEW)
    page.screenshot(path=str(ARTEFACTS / "ui_20_files_top.png"))
    page.evaluate("window.scrollTo({top: document.body.scrollHeight, behavior: 'instant'})")
    time.sleep(1)
    assert page.evaluate(IN_VIEW)
    page.screenshot(path=str(ARTEFACTS / "ui_20_files_bottom.png"))
    artefact(page, "ui_20_files.png")


def test_an_example_click_shows_a_result(server, page):
    page.click("#examples button:has-text('group.jpg')")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored 1 of 1 file')",
                           timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#faces img').length >= 3")
    assert "group.jpg" in page.inner_text("#photos").replace("\n", "")  # (stem and suffix: two lines)
    assert page.inner_text("#photo-info").startswith("group.jpg: 860×580 → 860×580 px, JPEG")
    artefact(page, "ui_example.png")


def test_cancel_stops_the_job_discards_its_files_and_the_queue_moves_on(server, page, tmp_path):
    _, tmp, lines = server
    jobs = lambda: sorted(tmp.glob("osdface-ui-*/job-*"))  # noqa: E731 (the service's job folders)
    before = jobs()
    paths = [tmp_path / f"long-{k + 1:02d}.jpg" for k in range(20)]
    for path in paths:
        shutil.copy(GROUP, path)
    page.set_input_files("#photos input[type=file]", [str(p) for p in paths])
    page.wait_for_function("document.querySelector('#files-note').innerText.includes('20 files ready')")
    page.click("#restore")
    page.wait_for_function("Array.from(document.querySelectorAll('.progress-level-inner'))"
                           ".some(e => e.innerText.includes('(2 of 20)'))", timeout=60_000)
    page.click("#cancel")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Cancelled')", timeout=10_000)
    artefact(page, "ui_cancelled.png")
    deadline = time.monotonic() + 30  # the job stops after the photo it is on, and removes its folder
    while jobs() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs() == before
    assert "Restored" not in page.inner_text("#status")
    # the queue moves on: the next job runs
    page.goto(server[0])  # (a fresh drop zone)
    page.wait_for_selector("#restore", timeout=60_000)
    page.set_input_files("#photos input[type=file]", [str(paths[0])])
    page.wait_for_function("document.querySelector('#files-note').innerText.includes('1 file ready')")
    page.click("#restore")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored 1 of 1 file')",
                           timeout=120_000)
    assert "Traceback" not in "".join(lines)


def test_video_cancel_between_frames_then_a_round_trip(server, page, tmp_path):
    """A 96-frame clip cancelled in its first half (its files removed, the page idle again), then a 12-frame
    clip restored: progress by frame, the player plays an H.264 mp4 of the input's size, and the download
    (and the zip) hold every frame."""
    av = needs("av")
    _, tmp, lines = server
    jobs = lambda: sorted(tmp.glob("osdface-ui-*/job-*"))  # noqa: E731 (the service's job folders)
    before = jobs()
    progress = ("Array.from(document.querySelectorAll('.progress-level-inner'))"
                ".some(e => e.innerText.includes('{}'))")
    # 1. A longer clip: cancelled between two frames
    long = make_clip(tmp_path / "long.mp4", frames=96)
    page.set_input_files("#photos input[type=file]", [str(long)])
    page.wait_for_function("document.querySelector('#files-note').innerText.includes('1 file ready')")
    page.click("#restore")
    # (frames come out in bursts, a block at a time, and the temporal filter holds the last few of each
    #  back: the line may skip any given count, so any count in the first half will do)
    page.wait_for_function("Array.from(document.querySelectorAll('.progress-level-inner')).some(e => { "
                           "const m = e.innerText.match(/long[.]mp4: frame ([0-9]+)[/]([0-9]+)/); "
                           "return m !== null && +m[1] > 0 && 2 * +m[1] < +m[2]; })", timeout=60_000)
    page.click("#cancel")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Cancelled')", timeout=10_000)
    artefact(page, "ui_video_cancelled.png")
    deadline = time.monotonic() + 30  # the job stops at the next frame and removes its folder
    while jobs() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert jobs() == before, "the cancelled job's folder stayed; the server's last lines:\n" + "".join(lines[-40:])
    page.wait_for_function("document.querySelectorAll('.progress-level-inner').length == 0", timeout=10_000)
    assert "Restored" not in page.inner_text("#status") and not page.is_visible("#video")
    # 2. A short clip: the next job runs, with progress by frame
    short = make_clip(tmp_path / "clip.mp4", frames=12, size=(240, 160))
    page.goto(server[0])  # (a fresh drop zone)
    page.wait_for_selector("#restore", timeout=60_000)
    page.set_input_files("#photos input[type=file]", [str(short)])
    page.wait_for_function("document.querySelector('#files-note').innerText.includes('1 file ready')")
    page.click("#restore")
    page.wait_for_function(progress.format("clip.mp4: frame "), timeout=60_000)
    page.screenshot(path=str(ARTEFACTS / "ui_video_progress.png"))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Restored 1 of 1 file')",
                           timeout=120_000)
    assert "12 frames of clip.mp4" in page.inner_text("#status")
    # 3. The player has the clip (decoded by the browser: H.264 in mp4), the line says what it is
    page.wait_for_function("(() => { const v = document.querySelector('#video video'); "
                           "return v && v.readyState >= 1 && v.videoWidth == 240 && v.videoHeight == 160 })()",
                           timeout=30_000)
    assert page.inner_text("#video-info").startswith("clip.mp4: 240×160 → 240×160 px, 12 frames at 12 fps")
    # 4. The downloads: the zip and the clip, every frame
    links = page.eval_on_selector_all("#downloads a", "els => els.map(e => [e.download, e.href])")
    assert [name for name, _ in links] == ["osdface-restored.zip", "clip.mp4"]
    (tmp_path / "got.mp4").write_bytes(page.request.get(links[1][1]).body())
    with av.open(str(tmp_path / "got.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and sum(1 for _ in c.decode(video=0)) == 12
    assert zipfile.ZipFile(io.BytesIO(page.request.get(links[0][1]).body())).namelist() == ["clip.mp4"]
    artefact(page, "ui_video.png")
    assert "Traceback" not in "".join(lines)
