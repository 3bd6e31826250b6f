"""``$OSDFACE_HOME/manifest.json``: what was downloaded, from where, with its sha256 and size.

Written atomically after every target; read back to skip files that are already in place, by
``osdface download --verify`` (full re-hash) and by ``quick_check`` (sizes only, cheap enough for loads).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..errors import WeightsFormatError
from ..files import write_text_atomic
from .errors import DownloadError, VerifyError
from .fetch import Context, human, sha256_file

MANIFEST = "manifest.json"
VERSION = 1


def read_manifest(home: Path) -> dict:
    path = Path(home) / MANIFEST
    if not path.is_file():
        return {"version": VERSION, "files": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DownloadError(f"{path} cannot be read ({err}); move it away and run `osdface download` again to "
                            "check and record the files anew") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise DownloadError(f"{path} is not an osdface manifest (no 'files' mapping); move it away and run "
                            "`osdface download` again")
    return data


def record(home: Path, entries: dict[str, dict]) -> None:
    """Add or replace ``entries`` (key: path relative to ``home``) and write the manifest atomically."""
    data = read_manifest(home)
    data["version"] = VERSION
    data["files"].update(entries)
    data["files"] = dict(sorted(data["files"].items()))
    write_text_atomic(Path(home) / MANIFEST, json.dumps(data, indent=2) + "\n")


def entry(home: Path, path: Path, target: str, sha256: str, source: str, known: bool,
          remote: str) -> tuple[str, dict]:
    stat = path.stat()
    key = path.relative_to(home).as_posix()
    return key, {"target": target, "sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                 "source": source, "remote": remote, "sha256_from": "packaged manifest" if known else "download",
                 "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def unchanged_since_recorded(path: Path, rec: Optional[dict]) -> bool:
    """Size and modification time as recorded: the file was not touched since it was hashed."""
    if not rec or not path.is_file():
        return False
    stat = path.stat()
    return stat.st_size == rec.get("size") and stat.st_mtime_ns == rec.get("mtime_ns")


def verify(home: Path, folders: Optional[list[str]] = None, known: Optional[dict[str, str]] = None,
           ctx: Optional[Context] = None) -> list[str]:
    """Re-hash every recorded file (under ``folders`` when given) and compare with the recorded sha256 and
    the packaged one (``known``: path relative to home → sha256). Returns one line per file checked;
    raises VerifyError listing the files that are missing or differ."""
    home = Path(home)
    files = read_manifest(home)["files"]
    if folders is not None:
        files = {k: v for k, v in files.items() if any(k.startswith(f.rstrip("/") + "/") for f in folders)}
    if not files:
        where = f" for {', '.join(folders)}" if folders else ""
        raise VerifyError(f"nothing recorded in {home / MANIFEST}{where}: run `osdface download` first (files put "
                          "there by hand are checked and recorded by it too)")
    lines, bad = [], []
    for key, rec in files.items():
        path = home / key
        if not path.is_file():
            bad.append(f"{key} (missing)")
            continue
        digest = sha256_file(path, ctx, f"verify {key}")
        expected = (known or {}).get(key) or rec.get("sha256")
        if digest != rec.get("sha256") or digest != expected:
            bad.append(f"{key} (sha256 {digest[:16]}… ≠ {'packaged' if (known or {}).get(key) else 'recorded'} "
                       f"{str(expected)[:16]}…)")
        else:
            lines.append(f"ok {key} ({human(path.stat().st_size)}, sha256 {digest[:16]}…)")
    if bad:
        raise VerifyError(f"{len(bad)} of {len(files)} recorded files failed verification: {'; '.join(bad)}. Run "
                          "`osdface download` for their target to fetch them again")
    return lines


def quick_check(folder: Path, home: Optional[Path] = None) -> None:
    """Cheap check for loaders: every recorded file under ``folder`` exists with its recorded size.

    Raises WeightsFormatError naming the first file that differs (a truncated copy, a file swapped by
    hand); ``osdface download --verify`` does the full sha256 check.
    """
    folder = Path(folder).absolute()
    if home is None:
        from ..models.stable_diffusion import weights_home

        home = weights_home()
    home = Path(home).absolute()
    try:
        prefix = folder.relative_to(home).as_posix().rstrip("/") + "/"
    except ValueError:
        return  # not under the home folder: nothing recorded about it
    try:
        files = read_manifest(home)["files"]
    except DownloadError:
        return
    for key, rec in files.items():
        if not key.startswith(prefix):
            continue
        path = home / key
        if not path.is_file():
            raise WeightsFormatError(f"{path} is missing (recorded in {home / MANIFEST}); run `osdface download "
                                     f"{rec.get('target', '')}` again".replace("  ", " "))
        if path.stat().st_size != rec.get("size"):
            raise WeightsFormatError(f"{path} has {path.stat().st_size} bytes, {rec.get('size')} were downloaded: "
                                     f"run `osdface download --verify` (and `osdface download "
                                     f"{rec.get('target', '')}` to fetch it again)")
