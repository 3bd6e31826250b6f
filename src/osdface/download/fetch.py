"""Getting one file from one source into place: safe, resumable, verified.

Every transport writes into the target folder's staging area ``<folder>/.download/<source>/`` (so the
final rename stays on one file system), the sha256 is checked, and only then is the file moved to its
final name with ``os.replace``: a final name never holds a partial or unverified file, and a file that
was there is only replaced by a complete, verified new one. Partial plain-HTTP downloads stay in the
staging area as ``<name>.part`` and are resumed with a Range request by the next attempt or run.

Before a source is asked for a file, its host is asked once per run (one HEAD request, through the
proxies the environment names, all hosts at once, ``PROBE_TIMEOUT`` seconds): with no network every
source fails at once with one reason, instead of each transport retrying until it times out.

Transports: plain HTTP(S) and ModelScope through ``requests``; the Hugging Face hub through
``huggingface_hub.hf_hub_download`` (its cache, HF_ENDPOINT, HF_HUB_OFFLINE and tokens apply); Google
Drive through the optional ``gdown``; a local folder by copying.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional
from urllib.parse import quote

from .errors import ChecksumMismatch, DiskFullError, SourceFailed
from .sources import FileSpec, Source

STAGING = ".download"
CHUNK = 1 << 20
HTTP_CHUNK = 1 << 16  # what a dropped connection can cost: the last, incomplete chunk is not kept
DISK_MARGIN = 64 << 20  # left free besides what is downloaded
GDOWN_HINT = "pip install 'osdface[download]'"
PROBE_TIMEOUT = 5.0  # seconds a host has to answer before its sources count as unreachable
DRIVE_URL = "https://drive.google.com/"


@dataclass
class Context:
    """Settings shared by the transports of one ``download`` call."""

    progress: bool = True  # progress bars (sizes, speed)
    notify: Callable[[str], None] = lambda line: None
    retries: int = 3  # resumptions after a connection drops mid-file
    backoff: float = 1.0  # seconds × attempt before resuming
    timeout: tuple = (15.0, 60.0)  # connect, read (seconds)
    cache: dict = field(default_factory=dict)  # per-call memo (e.g. Drive folder listings)


def human(n: Optional[float]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _bar(ctx: Context, total: Optional[int], initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not ctx.progress, leave=False, dynamic_ncols=True, file=sys.stderr)


def free_bytes(folder: Path) -> int:
    """Free space on the file system that holds ``folder`` (or its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def ensure_space(folder: Path, needed: int, what: str) -> None:
    free = free_bytes(folder)
    if needed + DISK_MARGIN > free:
        raise DiskFullError(f"not enough free disk space for {what}: about {human(needed + DISK_MARGIN)} needed in "
                            f"{folder}, {human(free)} free; free some space (or choose another --home) and run "
                            "again (partial downloads are kept and resume)")


def _disk_full(err: OSError, dest: Path) -> DiskFullError:
    return DiskFullError(f"the disk filled up while writing {dest.name} into {dest.parent} ({err.strerror}); free "
                         "some space and run again: the partial download is kept and resumes")


def sha256_file(path: Path, ctx: Optional[Context] = None, desc: str = "") -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, _bar(ctx or Context(progress=False), size, 0, desc or f"sha256 {path.name}") as bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def staging_path(dest_root: Path, spec: FileSpec, source: Source, suffix: str = "") -> Path:
    return dest_root / STAGING / source.tag / (spec.path + suffix)


def place(tmp: Path, dest: Path, digest: str, spec: FileSpec, source: Source) -> str:
    """Move a complete ``tmp`` to ``dest`` if ``digest`` matches ``spec.sha256`` (when known); else delete it
    and raise ChecksumMismatch."""
    if spec.sha256 and digest != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ChecksumMismatch(f"checksum mismatch for {spec.path}: sha256 {digest[:16]}… ≠ expected "
                               f"{spec.sha256[:16]}… (the file was deleted)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    return digest


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:300] + "…" if len(text) > 300 else text) or type(err).__name__


# ----------------------------------------------------------------------------- can the host be reached?


def _ask(url: str, timeout: float) -> Optional[str]:
    """None when the server of ``url`` answers at all (any HTTP status), else why it does not."""
    import requests

    try:
        requests.head(url, timeout=timeout, allow_redirects=False, headers={"User-Agent": _user_agent()})
    except requests.RequestException as err:
        return _connect_reason(err)
    return None


class _Probe:
    """One host asked in the background; ``reason()`` waits for the answer (at most ``PROBE_TIMEOUT``
    seconds after the start, a name lookup that hangs included)."""

    def __init__(self, url: str, reason: Optional[str] = None, asked: bool = True):
        self._reason = reason
        self._done = threading.Event()
        self._deadline = time.monotonic() + PROBE_TIMEOUT + 0.5
        if not asked:
            self._done.set()
            return
        threading.Thread(target=self._run, args=(url,), daemon=True, name=f"osdface-probe {_host(url)}").start()

    def _run(self, url: str) -> None:
        try:
            self._reason = _ask(url, PROBE_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - whatever stops the request is the reason
            self._reason = _first_line(err)
        self._done.set()

    def reason(self) -> Optional[str]:
        if self._done.wait(max(0.0, self._deadline - time.monotonic())):
            return self._reason
        return f"no answer within {PROBE_TIMEOUT:.0f} s"


def _root(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def start_probe(url: str, ctx: Context) -> _Probe:
    """Ask the host of ``url`` once per ``download`` call (later calls return the same probe)."""
    key = ("probe", _root(url))
    if key not in ctx.cache:
        ctx.cache[key] = _Probe(_root(url))
    return ctx.cache[key]


def unreachable(url: str, ctx: Context) -> Optional[str]:
    """Why the host of ``url`` cannot be reached, or None."""
    return start_probe(url, ctx).reason()


def mark_unreachable(url: str, ctx: Context, reason: str) -> None:
    """The host failed on its own (e.g. behind a proxy the probe reached): its other sources are not asked."""
    ctx.cache[("probe", _root(url))] = _Probe(_root(url), reason, asked=False)


def probe_urls(source: Source, specs: list[FileSpec]) -> list[str]:
    """The hosts (as URLs) that ``source`` would ask for ``specs``; none for a folder or an offline hub."""
    if source.kind in ("url", "modelscope"):
        urls = []
        for spec in specs:
            try:
                urls.append(url_for(source, spec))
            except SourceFailed:
                continue
        return urls
    if source.kind == "hub":
        from huggingface_hub import constants

        return [] if _hub_offline(constants) else [constants.ENDPOINT + "/"]
    if source.kind == "gdrive":
        return [DRIVE_URL]
    return []


def _hub_offline(constants) -> bool:
    return constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE


# ----------------------------------------------------------------------------- plain HTTP (and ModelScope)


def modelscope_url(source: Source, remote: str) -> str:
    domain = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn").rstrip("/")
    if not domain.startswith(("http://", "https://")):
        domain = "https://" + domain
    return f"{domain}/models/{source.repo}/resolve/{quote(source.revision or 'master')}/{quote(remote)}"


def url_for(source: Source, spec: FileSpec) -> str:
    for key in (spec.path, spec.remote):
        if key in source.urls:
            return source.urls[key]
    if source.kind == "modelscope":
        return modelscope_url(source, spec.remote)
    if source.base:
        return source.base.rstrip("/") + "/" + quote(spec.remote)
    raise SourceFailed(f"it lists no URL for {spec.path}")


class _Incomplete(Exception):
    pass


def fetch_http(source: Source, spec: FileSpec, dest_root: Path, ctx: Context) -> str:
    """GET with resume: the bytes already in ``<name>.part`` are kept and the rest asked for (Range)."""
    import requests

    url = url_for(source, spec)
    reason = unreachable(url, ctx)
    if reason:
        raise SourceFailed(f"cannot connect to {_host(url)} (offline, or the host is down: {reason})",
                           whole_source=True)
    dest = dest_root / spec.path
    part = staging_path(dest_root, spec, source, ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    offset = 0
    if part.exists():
        offset = part.stat().st_size
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if offset:
            ctx.notify(f"{spec.path}: resuming from {human(offset)} ({part})")
    attempts = 0
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    with requests.Session() as session:
        while True:
            got_response = False
            try:
                req_headers = dict(headers, **({"Range": f"bytes={offset}-"} if offset else {}))
                with session.get(url, headers=req_headers, stream=True, timeout=ctx.timeout) as r:
                    got_response = True
                    if r.status_code == 416 and offset:
                        if r.headers.get("Content-Range", "") == f"bytes */{offset}":
                            break  # the partial file is already complete
                        part.unlink(missing_ok=True)  # not a prefix the server knows: start over
                        h, offset = hashlib.sha256(), 0
                        attempts += 1
                        if attempts > ctx.retries:
                            raise SourceFailed(f"{url} refuses to resume (HTTP 416)")
                        continue
                    if r.status_code in (404, 410):
                        raise SourceFailed(f"{url}: HTTP {r.status_code} (gone)")
                    if r.status_code >= 400:
                        raise SourceFailed(f"{url}: HTTP {r.status_code} {r.reason}")
                    if offset and (r.status_code != 206 or not _range_starts_at(r, offset)):
                        part.unlink(missing_ok=True)  # the server sends the whole file: start over
                        h, offset = hashlib.sha256(), 0
                    length = r.headers.get("Content-Length")
                    total = offset + int(length) if length and length.isdigit() else None
                    if total is not None:
                        ensure_space(dest_root, total - offset, spec.path)
                    start, t0 = offset, time.monotonic()
                    with open(part, "ab") as f, _bar(ctx, total, offset, spec.path) as bar:
                        for chunk in r.iter_content(HTTP_CHUNK):
                            f.write(chunk)
                            h.update(chunk)
                            offset += len(chunk)
                            bar.update(len(chunk))
                        f.flush()
                        os.fsync(f.fileno())
                    if total is not None and offset != total:
                        raise _Incomplete(f"got {offset} of {total} bytes")
                    seconds = max(time.monotonic() - t0, 1e-6)
                    ctx.notify(f"{spec.path}: {human(offset)} from {source.name} "
                               f"({human((offset - start) / seconds)}/s)")
                    break
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                    _Incomplete) as err:  # cut mid-file
                attempts = _retry_or_fail(attempts, ctx, spec, offset, part, _first_line(err))
            except (requests.ConnectionError, requests.Timeout) as err:
                if not got_response:
                    raise SourceFailed(f"cannot connect to {_host(url)} (offline, or the host is down: "
                                       f"{_connect_reason(err)})", whole_source=True) from None
                attempts = _retry_or_fail(attempts, ctx, spec, offset, part, _first_line(err))
            except requests.RequestException as err:  # bad URL, redirect loop, ...
                raise SourceFailed(f"{url}: {_first_line(err)}") from None
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise _disk_full(err, dest) from None
                raise
    return place(part, dest, h.hexdigest(), spec, source)


def _retry_or_fail(attempts: int, ctx: Context, spec: FileSpec, offset: int, part: Path, reason: str) -> int:
    attempts += 1
    if attempts > ctx.retries:
        raise SourceFailed(f"the connection dropped at {human(offset)} of {spec.path} ({reason}); run again to "
                           f"resume from {part}")
    ctx.notify(f"{spec.path}: connection lost at {human(offset)} ({reason}); resuming ({attempts}/{ctx.retries})")
    time.sleep(ctx.backoff * attempts)
    return attempts


def _range_starts_at(response, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _connect_reason(err: BaseException) -> str:
    """The OS's words from a requests/urllib3 connection error ("[Errno 111] Connection refused")."""
    import re

    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(err))
    return found.group(0).strip() if found else _first_line(err)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def _user_agent() -> str:
    from .. import __version__

    return f"osdface/{__version__}"


# ----------------------------------------------------------------------------- copies (hub cache, local folder)


def copy_verified(src: Path, spec: FileSpec, dest_root: Path, source: Source, ctx: Context) -> str:
    """Hard-link (same file system) or copy ``src`` into the staging area, hash it, then place it."""
    dest = dest_root / spec.path
    tmp = staging_path(dest_root, spec, source, ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)
    real = Path(os.path.realpath(src))
    try:
        os.link(real, tmp)  # no copy, no extra space (the HF cache and the home on one file system)
        linked = True
    except OSError as link_err:
        if link_err.errno == errno.ENOSPC:
            raise _disk_full(link_err, dest) from None
        linked = False
    if linked:
        digest = sha256_file(tmp, ctx, f"sha256 {spec.path}")
    else:
        size = real.stat().st_size
        ensure_space(dest_root, size, spec.path)
        h = hashlib.sha256()
        try:
            with open(real, "rb") as fin, open(tmp, "wb") as fout, _bar(ctx, size, 0, spec.path) as bar:
                _copy(fin, fout, h, bar)
                fout.flush()
                os.fsync(fout.fileno())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if err.errno == errno.ENOSPC:
                raise _disk_full(err, dest) from None
            raise
        digest = h.hexdigest()
    return place(tmp, dest, digest, spec, source)


def _copy(fin: BinaryIO, fout: BinaryIO, h, bar) -> None:
    while chunk := fin.read(CHUNK):
        fout.write(chunk)
        h.update(chunk)
        bar.update(len(chunk))


def fetch_folder(source: Source, spec: FileSpec, dest_root: Path, ctx: Context) -> str:
    folder = Path(source.path)
    if not folder.is_dir():
        raise SourceFailed(f"no such folder {folder}", whole_source=True)
    src = folder / spec.remote
    if not src.is_file():
        raise SourceFailed(f"{src} does not exist")
    return copy_verified(src, spec, dest_root, source, ctx)


# ----------------------------------------------------------------------------- Hugging Face hub


def fetch_hub(source: Source, spec: FileSpec, dest_root: Path, ctx: Context) -> str:
    import functools
    import inspect

    from huggingface_hub import constants, hf_hub_download
    from tqdm.auto import tqdm

    try:
        from huggingface_hub import errors
    except ImportError:  # huggingface_hub < 0.24 kept them in utils
        from huggingface_hub import utils as errors

    offline = _hub_offline(constants)
    endpoint = constants.ENDPOINT
    # Unreachable: only the hub cache is looked at (the client would retry for half a minute, line after line).
    down = None if offline else unreachable(endpoint + "/", ctx)
    kwargs = {"revision": source.revision, "local_files_only": bool(down)}
    parameters = inspect.signature(hf_hub_download).parameters
    if "tqdm_class" in parameters:  # bars even when the CLI silences the hub's
        kwargs["tqdm_class"] = tqdm if ctx.progress else functools.partial(tqdm, disable=True)
    if "endpoint" in parameters:
        kwargs["endpoint"] = endpoint
    where = f"{source.repo}@{(source.revision or 'main')[:12]}"
    hub_log = logging.getLogger("huggingface_hub")  # its retry lines: our one line per source says it all
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        cached = hf_hub_download(source.repo, spec.remote, **kwargs)
    except errors.GatedRepoError:
        raise SourceFailed(f"{source.repo} is gated: accept its terms on the hub and log in (`hf auth login` or "
                           "HF_TOKEN)", whole_source=True) from None
    except errors.RepositoryNotFoundError:
        raise SourceFailed(f"repository {source.repo} not found on {constants.ENDPOINT} (removed, renamed or "
                           "private)", whole_source=True) from None
    except errors.RevisionNotFoundError:
        raise SourceFailed(f"revision {source.revision} not found in {source.repo}", whole_source=True) from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        if offline:
            raise SourceFailed(f"{spec.remote} of {where} is not in the local Hugging Face cache "
                               f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 forbids downloading") from None
        if not down:
            mark_unreachable(endpoint + "/", ctx, "offline?")
        raise SourceFailed(f"cannot reach {endpoint} ({down or 'offline?'}) and {spec.remote} of {where} is not "
                           "in the local Hugging Face cache", whole_source=True) from None
    except errors.EntryNotFoundError:
        raise SourceFailed(f"{spec.remote} not found in {where}") from None
    except errors.HfHubHTTPError as err:
        raise SourceFailed(f"{where}: {_first_line(err)}") from None
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(f"the disk filled up while the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                                f"received {spec.remote}; free some space and run again") from None
        raise SourceFailed(f"{where}: {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - transport errors of the hub client (httpx) and the like
        raise SourceFailed(f"{where}: {type(err).__name__}: {_first_line(err)}", whole_source=True) from None
    finally:
        hub_log.setLevel(level)
    return copy_verified(Path(cached), spec, dest_root, source, ctx)


# ----------------------------------------------------------------------------- Google Drive (gdown, optional)


def _gdown():
    try:
        import gdown
    except ImportError:
        raise SourceFailed(f"Google Drive downloads need the optional gdown package: {GDOWN_HINT}",
                           whole_source=True) from None
    return gdown


def _drive_error(err: BaseException, what: str, folder_id: str) -> SourceFailed:
    text = _first_line(err)
    if "too many users" in text.lower() or "quota" in text.lower():
        return SourceFailed(f"Google Drive download quota exceeded for {what} (too many downloads in the last "
                            f"24 h); try again later, or download it in a browser from "
                            f"https://drive.google.com/drive/folders/{folder_id}")
    return SourceFailed(f"Google Drive refused {what}: {text}")


def _drive_file_ids(gdown, source: Source, dest_root: Path, ctx: Context) -> dict[str, str]:
    key = ("gdrive", source.folder_id)
    if key not in ctx.cache:
        try:
            entries = gdown.download_folder(id=source.folder_id, output=str(dest_root / STAGING / source.tag) + "/",
                                            quiet=True, skip_download=True)
        except TypeError:
            raise SourceFailed(f"gdown {getattr(gdown, '__version__', '?')} is too old (listing a folder needs "
                               f"gdown ≥ 5): {GDOWN_HINT}", whole_source=True) from None
        except Exception as err:  # noqa: BLE001 - gdown raises plain exceptions for Drive's answers
            raise SourceFailed(f"cannot list Google Drive folder {source.folder_id}: {_first_line(err)}",
                               whole_source=True) from None
        if not entries:
            raise SourceFailed(f"cannot list Google Drive folder {source.folder_id} (offline, the link's sharing "
                               "changed, or Drive refused)", whole_source=True)
        ids = {}
        for entry in entries:
            path = str(entry.path).replace(os.sep, "/")
            ids.setdefault(path, entry.id)
            ids.setdefault(path.rsplit("/", 1)[-1], entry.id)
        ctx.cache[key] = ids
    return ctx.cache[key]


def fetch_gdrive(source: Source, spec: FileSpec, dest_root: Path, ctx: Context) -> str:
    gdown = _gdown()
    reason = unreachable(DRIVE_URL, ctx)
    if reason:
        raise SourceFailed(f"cannot connect to {_host(DRIVE_URL)} (offline, or the host is down: {reason})",
                           whole_source=True)
    file_id = source.file_ids.get(spec.path) or source.file_ids.get(spec.remote)
    if not file_id:
        ids = _drive_file_ids(gdown, source, dest_root, ctx)
        file_id = ids.get(spec.remote) or ids.get(spec.remote.rsplit("/", 1)[-1])
        if not file_id:
            raise SourceFailed(f"Google Drive folder {source.folder_id} has no {spec.remote}")
    out = staging_path(dest_root, spec, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        try:  # gdown keeps its own partial file next to `out` and resumes it (resume=True)
            result = gdown.download(id=file_id, output=str(out), quiet=not ctx.progress, resume=True)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise _disk_full(err, dest_root / spec.path) from None
            raise _drive_error(err, spec.remote, source.folder_id) from None
        except Exception as err:  # noqa: BLE001 - FileURLRetrievalError and friends
            raise _drive_error(err, spec.remote, source.folder_id) from None
        if not result or not out.is_file():
            raise SourceFailed(f"Google Drive did not deliver {spec.remote} (quota, permission or network); try "
                               f"again later or use a browser: https://drive.google.com/drive/folders/{source.folder_id}")
    digest = sha256_file(out, ctx, f"sha256 {spec.path}")
    return place(out, dest_root / spec.path, digest, spec, source)


FETCHERS = {"url": fetch_http, "modelscope": fetch_http, "hub": fetch_hub, "gdrive": fetch_gdrive,
            "folder": fetch_folder}


def clear_staging(dest_root: Path) -> None:
    """Remove the staging area once every file of the target is in place."""
    shutil.rmtree(dest_root / STAGING, ignore_errors=True)
