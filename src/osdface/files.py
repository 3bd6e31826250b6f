"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``.

A crash or a full disk never leaves a half-written file under the final name, and an existing file
is only ever replaced by a complete new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


TEMP_PREFIX = ".osdface-"  # our temp files: .osdface-<host hash>-<pid>-<random>.tmp (short: any name fits)
TEMP_SUFFIX = ".tmp"


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix() -> str:
    return f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The result gets the permissions any new file gets here (0666 less the umask), not the temp file's
    0600. The temp name is short whatever ``path`` is called, and names this host and process, so a
    later ``sweep_stale_temp_files`` can remove what a killed run left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sweep_stale_temp_files(folder: PathLike) -> list[Path]:
    """Remove our temp files (and folders) in ``folder`` whose writing process, on this host, is gone
    (killed mid-write). Files of live processes and of other hosts are left alone. Returns what went."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    host = _host_tag()
    for item in folder.glob(f"{TEMP_PREFIX}*"):
        parts = item.name[len(TEMP_PREFIX):].split("-")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        removed.append(item)
    return removed


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


@contextlib.contextmanager
def atomic_folder(path: PathLike, replace: bool = True) -> Iterator[Path]:
    """Fill a hidden temporary folder next to ``path``; on success it replaces ``path`` (a previous
    folder there is removed only then), on any error it is deleted and ``path`` is left as it was.

    ``replace=False`` refuses an existing ``path`` up front (nothing is overwritten).
    """
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} already exists; choose a new folder (nothing was overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would stay on the final folder
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
