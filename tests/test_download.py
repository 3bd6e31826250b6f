"""``osdface download`` offline: a loopback HTTP server (started here) serves small fake weight files.

Covers a complete download, a download cut midway and resumed with a Range request (in one run and
across runs), a checksum mismatch, a dead source followed by the next one, a full disk, atomic
placement, the hub path from a pre-filled cache with HF_HUB_OFFLINE=1, Google Drive through a stand-in
gdown, the loaders' checks and the conversion of the paper's model. Nothing here touches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import sys
import threading
import types
from pathlib import Path

import pytest
import yaml

from conftest import TINY_ADAPTER, TINY_SIZE, TINY_VRE
from osdface.download import (DiskFullError, DownloadConfigError, DownloadError, VerifyError, download, quick_check,
                               verify)
from osdface.download import checks as download_checks
from osdface.download.sources import load_catalog
from osdface.errors import WeightsFormatError
from test_eval_cli import run_cli  # (code, stdout, stderr) through osdface.cli.main


# ----------------------------------------------------------------------------- the loopback server



class _QuietServer(http.server.ThreadingHTTPServer):
    """The test server; connections the tests cut on purpose are not printed as errors."""

    def handle_error(self, request, client_address):
        pass

class LoopbackServer:
    """Serves ``files`` (path → bytes) on 127.0.0.1 with Range support; ``cut[path] = (offset, times)``
    sends the body only up to byte ``offset`` and drops the connection (``times`` requests; -1: always)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, list] = {}
        self.log: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.serve(body=True)

            def do_HEAD(self):
                self.serve(body=False)

            def serve(self, body: bool):
                rng = self.headers.get("Range")
                server.log.append((self.command, self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(rng[len("bytes="):].split("-")[0]) if rng else 0
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                cut = server.cut.get(self.path)
                if cut and cut[1] != 0 and start < cut[0]:
                    cut[1] -= 1
                    self.wfile.write(data[start:cut[0]])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data[start:])

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def gets(self, path: str) -> list:
        return [entry for entry in self.log if entry[0] == "GET" and entry[1] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """The hosts' probe asks the loopback server for real; any other host counts as reachable without a
    packet sent (the tests that simulate no network say so themselves)."""
    from urllib.parse import urlsplit

    from osdface.download import fetch

    real = fetch._ask
    monkeypatch.setattr(fetch, "_ask", lambda url, timeout: real(url, timeout)
                        if urlsplit(url).hostname in ("127.0.0.1", "localhost") else None)


@pytest.fixture
def plenty_of_disk(monkeypatch):
    """The packaged targets' size estimates (GB) must not depend on the test machine's free space."""
    from osdface.download import fetch

    monkeypatch.setattr(fetch, "free_bytes", lambda folder: 1 << 50)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def blob(n: int, seed: int) -> bytes:
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


A, B = blob(300_000, 1), blob(120_000, 2)


def write_sources(home: Path, targets: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "download_sources.yaml").write_text(yaml.safe_dump({"version": 1, "targets": targets}))


def fake_target(*sources, sha_a: str | None = sha(A), approx: int | None = None) -> dict:
    return {"description": "test files", "folder": "fake", "check": "none",
            "manual": "copy a.bin and sub/b.bin into {folder}",
            "files": {"a.bin": {"sha256": sha_a, "approx_size": approx}, "sub/b.bin": {"sha256": None}},
            "sources": list(sources)}


def url_source(name: str, base: str) -> dict:
    return {"name": name, "kind": "url", "base": base}


def serve_fake(server: LoopbackServer, prefix: str = "/files/", a: bytes = A, b: bytes = B) -> str:
    server.files[prefix + "a.bin"] = a
    server.files[prefix + "sub/b.bin"] = b
    return server.url + prefix


def run(home: Path, what: str = "fake", **kw):
    notes: list[str] = []
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0.0)
    results = download(what, home=home, progress=False, notify=notes.append, **kw)
    return results, notes


# ----------------------------------------------------------------------------- plain URLs


def test_complete_download_is_recorded_skipped_next_time_and_verified(tmp_path, server):
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("good", serve_fake(server)))})
    results, notes = run(home)
    folder = home / "fake"
    assert (folder / "a.bin").read_bytes() == A and (folder / "sub" / "b.bin").read_bytes() == B
    assert sorted(results[0].fetched) == ["a.bin", "sub/b.bin"]
    assert not (folder / ".download").exists()  # staging area gone
    files = json.loads((home / "manifest.json").read_text())["files"]
    assert files["fake/a.bin"]["sha256"] == sha(A) and files["fake/a.bin"]["sha256_from"] == "packaged manifest"
    assert files["fake/sub/b.bin"]["sha256"] == sha(B) and files["fake/sub/b.bin"]["size"] == len(B)
    assert any("a.bin" in n and "from good" in n for n in notes)

    gets = len(server.log)
    results, _ = run(home)  # everything in place: nothing fetched
    assert len(server.log) == gets and results[0].fetched == [] and len(results[0].present) == 2

    assert len(verify("fake", home=home, progress=False)) == 2
    quick_check(folder, home)  # sizes as recorded: what a loader can afford to check
    data = bytearray(B)
    data[7] ^= 1
    (folder / "sub" / "b.bin").write_bytes(bytes(data))  # same size, one bit off
    with pytest.raises(VerifyError, match=r"fake/sub/b\.bin \(sha256"):
        verify(home=home, progress=False)
    (folder / "a.bin").write_bytes(A[:1000])  # truncated
    with pytest.raises(WeightsFormatError, match="a.bin has 1000 bytes"):
        quick_check(folder, home)


def test_cut_midway_resumes_with_a_range_request(tmp_path, server):
    home = tmp_path / "home"
    base = serve_fake(server)
    write_sources(home, {"fake": fake_target(url_source("good", base))})
    # 1. within one run: the connection drops once, the download resumes where it stopped
    server.cut["/files/a.bin"] = [100_000, 1]
    _, notes = run(home, retries=2)
    assert (home / "fake" / "a.bin").read_bytes() == A
    first, second = server.gets("/files/a.bin")
    assert first[2] is None and 0 < int(second[2][len("bytes="):-1]) <= 100_000  # only the rest was asked for
    assert any("connection lost" in n and "resuming" in n for n in notes)

    # 2. across runs ("killed"): the first run gives up, the partial file stays, the next run resumes it
    home2 = tmp_path / "home2"
    write_sources(home2, {"fake": fake_target(url_source("good", base))})
    server.cut["/files/a.bin"] = [150_000, -1]
    with pytest.raises(DownloadError, match="run again to resume"):
        run(home2)
    assert not (home2 / "fake" / "a.bin").exists()
    part = home2 / "fake" / ".download" / "good" / "a.bin.part"
    kept = part.stat().st_size
    assert 0 < kept <= 150_000 and part.read_bytes() == A[:kept]
    del server.cut["/files/a.bin"]
    _, notes = run(home2)
    assert (home2 / "fake" / "a.bin").read_bytes() == A
    assert server.gets("/files/a.bin")[-1][2] == f"bytes={kept}-"
    assert any("resuming from" in n for n in notes)
    assert not part.exists()


def test_corrupted_file_is_caught_by_its_checksum(tmp_path, server):
    home = tmp_path / "home"
    bad = serve_fake(server, "/bad/", a=blob(len(A), 99))
    good = serve_fake(server)
    write_sources(home, {"fake": fake_target(url_source("bad", bad), url_source("good", good))})
    _, notes = run(home)
    assert (home / "fake" / "a.bin").read_bytes() == A
    assert any("bad failed (checksum mismatch for a.bin" in n and "trying good next" in n for n in notes)

    home2 = tmp_path / "home2"
    write_sources(home2, {"fake": fake_target(url_source("bad", bad))})
    with pytest.raises(DownloadError, match="checksum mismatch for a.bin"):
        run(home2)
    assert not (home2 / "fake" / "a.bin").exists()
    assert not list((home2 / "fake").rglob("a.bin*"))  # the corrupt partial file is deleted too


def test_dead_sources_are_reported_and_the_next_one_is_tried(tmp_path, server):
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("dead", closed_port_url()),
                                             url_source("gone", server.url + "/nothing/"),
                                             url_source("good", serve_fake(server)))})
    _, notes = run(home)
    assert (home / "fake" / "a.bin").read_bytes() == A
    assert any(n.startswith("fake: dead failed (cannot connect to 127.0.0.1") and "trying gone next" in n
               for n in notes)
    assert any("gone failed" in n and "HTTP 404" in n and "trying good next" in n for n in notes)
    assert len(server.gets("/nothing/a.bin")) == 1  # a 404 is not retried


def test_when_every_source_fails_one_error_line_names_them_and_the_manual_steps(tmp_path, server, capsys):
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("dead", closed_port_url()),
                                             url_source("gone", server.url + "/nothing/"))})
    code, _, err = run_cli(["download", "fake", "--home", home, "-q"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: fake: could not download a.bin, sub/b.bin")
    assert "dead (http://127.0.0.1" in err and "gone (" in err and "HTTP 404" in err
    assert f"Manual steps: copy a.bin and sub/b.bin into {home / 'fake'}" in err


def test_full_disk_is_refused_before_starting_and_when_the_server_announces_the_size(tmp_path, server, monkeypatch):
    home = tmp_path / "home"
    base = serve_fake(server)
    write_sources(home, {"fake": fake_target(url_source("good", base), approx=len(A))})
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(DiskFullError, match="not enough free disk space for fake"):
        run(home)
    assert server.log == []  # nothing was asked for
    write_sources(home, {"fake": fake_target(url_source("good", base), approx=None)})
    with pytest.raises(DiskFullError, match="not enough free disk space for a.bin"):
        run(home)  # no estimate: the Content-Length of the answer is checked before writing
    assert not (home / "fake" / "a.bin").exists()


def test_files_land_atomically_and_a_bad_old_file_is_only_replaced_by_a_verified_one(tmp_path, server):
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("good", serve_fake(server)))})
    folder = home / "fake"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"an old, wrong copy")
    server.cut["/files/a.bin"] = [50_000, -1]
    with pytest.raises(DownloadError):
        run(home)
    assert (folder / "a.bin").read_bytes() == b"an old, wrong copy"  # untouched by the failed download
    assert sorted(p.name for p in folder.iterdir()) == [".download", "a.bin", "sub"]
    assert (folder / "sub" / "b.bin").read_bytes() == B  # complete files are placed as they come
    del server.cut["/files/a.bin"]
    _, notes = run(home)
    assert (folder / "a.bin").read_bytes() == A
    assert any("does not match its sha256" in n for n in notes)


# ----------------------------------------------------------------------------- the catalog and the CLI


def test_user_file_extends_the_packaged_sources(tmp_path):
    home = tmp_path / "home"
    write_sources(home, {"sd21-base": {"sources": [{"name": "mine", "kind": "url", "base": "http://127.0.0.1:9/"},
                                                   {"name": "modelscope", "disabled": True}],
                                       "files": {"unet/config.json": {"sha256": "ab" * 32}}}})
    target = load_catalog(home)["sd21-base"]
    names = [s.name for s in target.sources]
    assert names[0] == "mine" and "hf-sd2-community" in names and "modelscope" not in names
    assert {f.path: f.sha256 for f in target.files}["unet/config.json"] == "ab" * 32
    assert target.with_variant("fp16").files[2].remote == "unet/diffusion_pytorch_model.fp16.safetensors"
    (home / "download_sources.yaml").unlink()
    (home / "download_sources.toml").write_text('[targets.release]\nreplace_sources = true\n'
                                                '[[targets.release.sources]]\nname = "lab"\nkind = "folder"\n'
                                                'path = "/srv/osdface"\n')
    assert [s.name for s in load_catalog(home)["release"].sources] == ["lab"]
    write_sources(home, {"release": {"files": {"associate_2.ckpt": {"sha256": "not-hex"}}}})
    (home / "download_sources.toml").unlink()
    with pytest.raises(DownloadConfigError, match="sha256 must be 64 hex digits"):
        load_catalog(home)
    with pytest.raises(DownloadConfigError, match="unknown download 'nope'"):
        download("nope", home=tmp_path / "empty")


def test_list_shows_targets_and_sources_in_order(tmp_path, capsys):
    code, out, _ = run_cli(["download", "--list", "--home", tmp_path], capsys)
    assert code == 0
    assert "paper:" in out and "= sd21-base + release, then converted" in out
    assert out.index("hf-stabilityai") < out.index("hf-sd2-community") < out.index("modelscope")
    assert "Google Drive folder 1Nci6KufB8t2Uj-6tobrw3S7kkfQUTLHV" in out


# ----------------------------------------------------------------------------- hub, Drive, checks, conversion


def fill_hub_cache(cache: Path, repo: str, revision: str, files: dict[str, bytes]) -> None:
    """What huggingface_hub leaves in its cache after a download (files in place of the blob links)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    for path, data in files.items():
        target = folder / "snapshots" / revision / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def sd_files(sd_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(sd_dir).as_posix(): p.read_bytes() for p in sd_dir.rglob("*") if p.is_file()}


def test_hub_offline_from_a_prefilled_cache(tmp_path, tiny_sd, monkeypatch, plenty_of_disk):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = load_catalog(tmp_path / "home")
    community = next(s for s in catalog["sd21-base"].sources if s.name == "hf-sd2-community")
    fill_hub_cache(cache, community.repo, community.revision, sd_files(tiny_sd))
    home = tmp_path / "home"
    results, notes = run(home, "sd21-base")
    folder = home / "stable-diffusion-2-1-base"
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/config.json", "scheduler/scheduler_config.json"):
        assert (folder / part).read_bytes() == (tiny_sd / part).read_bytes()
    assert not (folder / "text_encoder").exists()
    assert any("hf-stabilityai failed" in n and "HF_HUB_OFFLINE=1" in n and "trying hf-sd2-community next" in n
               for n in notes)
    assert "unet" in results[0].checked and "scheduler" in results[0].checked  # the loaders' check ran
    recorded = json.loads((home / "manifest.json").read_text())["files"]
    assert recorded["stable-diffusion-2-1-base/unet/config.json"]["source"].startswith("hf-sd2-community (hub ")


def test_fp16_variant_lands_under_the_plain_names_and_a_wrong_model_fails_the_check(tmp_path, tiny_sd, server,
                                                                                   plenty_of_disk):
    import torch
    from safetensors.torch import load_file, save

    files = sd_files(tiny_sd)
    for part in ("unet", "vae"):
        half = {k: v.half() for k, v in load_file(str(tiny_sd / part / "diffusion_pytorch_model.safetensors")).items()}
        files[f"{part}/diffusion_pytorch_model.fp16.safetensors"] = save(half)
    for path, data in files.items():
        server.files["/sd/" + path] = data
    home = tmp_path / "home"
    results, _ = run(home, "sd21-base", source=server.url + "/sd/", variant="fp16")
    unet = load_file(str(home / "stable-diffusion-2-1-base" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert next(iter(unet.values())).dtype == torch.float16
    assert ("GET", "/sd/unet/diffusion_pytorch_model.safetensors", None) not in server.log

    vae_weights = files["vae/diffusion_pytorch_model.safetensors"]
    server.files["/sd/unet/diffusion_pytorch_model.safetensors"] = vae_weights  # the wrong model's weights
    with pytest.raises(DownloadError, match="fail the loader check: .*not the weights of this unet"):
        run(tmp_path / "home2", "sd21-base", source=server.url + "/sd/")


def test_release_check_and_conversion_of_the_papers_model(tmp_path, tiny_sd, tiny_release, server, monkeypatch,
                                                         plenty_of_disk):
    from osdface.loading import find_weights
    from osdface.pipeline import OSDFacePipeline

    for name in ("associate_2.ckpt", "embedding_change_weights.pth", "pytorch_lora_weights.safetensors"):
        server.files["/release/" + name] = (tiny_release / name).read_bytes()
    home = tmp_path / "home"
    write_sources(home, {"sd21-base": {"replace_sources": True,
                                       "sources": [{"name": "lab-copy", "kind": "folder", "path": str(tiny_sd)}]},
                         "release": {"replace_sources": True,
                                     "sources": [url_source("mirror", server.url + "/release/")]}})
    # the release's architecture at toy size (the packaged check and from_official use the paper's)
    monkeypatch.setitem(download_checks.CHECKS, "release", functools.partial(
        download_checks.check_release, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER))
    original = OSDFacePipeline.from_official.__func__
    monkeypatch.setattr(OSDFacePipeline, "from_official", classmethod(
        lambda cls, r, sd, **kw: original(cls, r, sd, vre_config=TINY_VRE, adapter_config=TINY_ADAPTER,
                                          sample_size=TINY_SIZE, **kw)))
    results, notes = run(home, "paper")
    assert [r.target for r in results] == ["sd21-base", "release"]
    assert "LoRA" in results[1].checked
    assert (home / "osdface" / "model_index.json").is_file()
    monkeypatch.setenv("OSDFACE_HOME", str(home))
    assert find_weights() == ("ours", home / "osdface")

    # garbage where the VRE checkpoint should be: downloaded, but the loader check refuses it
    server.files["/release/associate_2.ckpt"] = b"<html>quota exceeded</html>"
    write_sources(tmp_path / "home2", {"release": {"replace_sources": True,
                                                   "sources": [url_source("mirror", server.url + "/release/")]}})
    with pytest.raises(DownloadError, match="fail the loader check"):
        run(tmp_path / "home2", "release", convert=False)
    assert not (tmp_path / "home2" / "manifest.json").exists()  # nothing declared done


def test_google_drive_needs_gdown_reports_the_quota_and_uses_it_when_present(tmp_path, server, monkeypatch):
    drive = {"name": "drive", "kind": "gdrive", "folder_id": "FOLDER"}
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(drive, url_source("good", serve_fake(server)))})
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    _, notes = run(home)
    assert any("drive failed" in n and "pip install 'osdface[download]'" in n and "trying good next" in n
               for n in notes)

    listing = [types.SimpleNamespace(id="ID-A", path="pretrained/a.bin", local_path=""),
               types.SimpleNamespace(id="ID-B", path="pretrained/b.bin", local_path="")]

    def quota(**kw):
        raise RuntimeError("Failed to retrieve file url: Too many users have viewed or downloaded this file "
                           "recently. Please try accessing the file again later.")

    fake = types.SimpleNamespace(download_folder=lambda **kw: listing, download=quota)
    monkeypatch.setitem(sys.modules, "gdown", fake)
    home2 = tmp_path / "home2"
    write_sources(home2, {"fake": fake_target(drive)})
    with pytest.raises(DownloadError, match="Google Drive download quota exceeded for a.bin"):
        run(home2)

    def deliver(id, output, quiet, resume):
        Path(output).write_bytes({"ID-A": A, "ID-B": B}[id])
        return output

    fake.download = deliver
    run(home2)
    assert (home2 / "fake" / "a.bin").read_bytes() == A and (home2 / "fake" / "sub" / "b.bin").read_bytes() == B


def test_verify_cli_and_nothing_recorded(tmp_path, server, capsys):
    home = tmp_path / "home"
    code, _, err = run_cli(["download", "--verify", "--home", home], capsys)
    assert code == 2 and "nothing recorded" in err
    write_sources(home, {"fake": fake_target(url_source("good", serve_fake(server)))})
    code, _, err = run_cli(["download", "fake", "--home", home, "-q"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["download", "--verify", "--home", home], capsys)
    assert code == 0 and "every recorded file matches" in err and "ok fake/a.bin" in err
    os.remove(home / "fake" / "a.bin")
    code, _, err = run_cli(["download", "fake", "--verify", "--home", home], capsys)
    assert code == 2 and "fake/a.bin (missing)" in err


def test_one_download_per_home_at_a_time(tmp_path, server):
    import fcntl

    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("good", serve_fake(server)))})
    theirs = home / "fake" / ".download" / "good"
    theirs.mkdir(parents=True)  # the other download's staging folder, empty for now
    with open(home / ".download.lock", "a") as held:  # another process's `osdface download`, as the OS sees it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match="another `osdface download` is running"):
            run(home)
        assert theirs.is_dir() and (home / ".download.lock").exists()  # not ours to tidy
        fcntl.flock(held, fcntl.LOCK_UN)
    run(home)
    assert (home / "fake" / "a.bin").read_bytes() == A
    assert not (home / ".download.lock").exists() and not (home / "fake" / ".download").exists()


# ----------------------------------------------------------------------------- no network (issue 19, item 7)


def test_offline_fails_fast_one_line_per_source_and_leaves_nothing(tmp_path, capsys, monkeypatch, plenty_of_disk):
    """The packaged sd21-base sources (three hub repositories, two ModelScope ones) with every host down: the
    hub client is never left to retry, each source costs one line, and the run leaves no folder or lock."""
    from huggingface_hub import constants

    dead = closed_port_url().rstrip("/")
    monkeypatch.setattr(constants, "ENDPOINT", dead)  # what HF_ENDPOINT sets
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MODELSCOPE_DOMAIN", dead)
    home = tmp_path / "home"
    import time

    start = time.monotonic()
    code, _, err = run_cli(["download", "sd21-base", "--home", home], capsys)
    assert time.monotonic() - start < 10
    assert code == 2 and "Traceback" not in err and "Retry" not in err
    lines = err.strip().splitlines()
    failed = [line for line in lines if line.startswith("note: sd21-base: ") and " failed (" in line]
    assert len(failed) == 5 and len({line.split(" failed")[0] for line in failed}) == 5  # one per source
    assert sum(line.startswith("error: ") for line in lines) == 1 and lines[-1].startswith("error: sd21-base: ")
    assert "Connection refused" in lines[-1] and "not in the local Hugging Face cache" in lines[-1]
    assert not home.exists()  # made by this run, left empty: removed (staging folders and the lock too)

    home.mkdir()
    (home / "mine.txt").write_text("kept")
    code, _, err = run_cli(["download", "sd21-base", "--home", home, "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in home.rglob("*")) == ["mine.txt"]  # no .download/<source>/, no lock


def test_a_host_that_never_answers_costs_one_wait(tmp_path, monkeypatch):
    """A black-holed network (a name lookup or connection that hangs): every host is asked once, all at
    once, and waited for PROBE_TIMEOUT seconds at most."""
    import time

    from osdface.download import fetch

    monkeypatch.setattr(fetch, "PROBE_TIMEOUT", 0.3)
    asked = []

    def hang(url, timeout):
        asked.append(url)
        time.sleep(30)

    monkeypatch.setattr(fetch, "_ask", hang)
    home = tmp_path / "home"
    write_sources(home, {"fake": fake_target(url_source("a", "http://mirror-a.invalid/x/"),
                                             url_source("a2", "http://mirror-a.invalid/y/"),
                                             url_source("b", "http://mirror-b.invalid/"))})
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"mirror-a.invalid \(offline, or the host is down: no answer within"):
        run(home)
    assert time.monotonic() - start < 2.5
    assert sorted(asked) == ["http://mirror-a.invalid/", "http://mirror-b.invalid/"]
    assert sorted(p.name for p in home.iterdir()) == ["download_sources.yaml"]  # no fake/, no lock


def test_a_hub_that_fails_on_its_own_is_not_asked_again(tmp_path, monkeypatch, plenty_of_disk):
    """The probe got through (e.g. to a proxy) but the hub client could not reach the hub: the next hub
    sources only look into the local cache, and the client's retry lines are not shown."""
    import logging

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def download(repo, filename, **kw):
        calls.append((repo, kw["local_files_only"], logging.getLogger("huggingface_hub").getEffectiveLevel()))
        raise LocalEntryNotFoundError("cannot reach the hub and no cached file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    home = tmp_path / "home"
    hub = [{"name": f"hub{i}", "kind": "hub", "repo": f"org/repo{i}"} for i in range(3)]
    write_sources(home, {"fake": fake_target(*hub)})
    with pytest.raises(DownloadError, match="hub0 .*: cannot reach"):
        run(home)
    assert [c[:2] for c in calls] == [("org/repo0", False), ("org/repo1", True), ("org/repo2", True)]
    assert all(level >= logging.ERROR for *_, level in calls)
