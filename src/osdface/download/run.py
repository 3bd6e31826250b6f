"""``osdface download``: plan, fetch (source after source), check, record, convert."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .checks import CONVERTED_SIZE, convert_paper, run_check
from .errors import DownloadError, SourceFailed
from .fetch import (FETCHERS, STAGING, Context, clear_staging, ensure_space, human, probe_urls, sha256_file,
                    start_probe)
from .manifest import entry, read_manifest, record, unchanged_since_recorded
from .manifest import verify as verify_manifest
from .sources import FileSpec, Target, choose_sources, load_catalog, resolve


LOCK_FILE = ".download.lock"


@dataclass
class TargetResult:
    target: str
    folder: Path
    fetched: list = field(default_factory=list)  # paths (relative to the folder) downloaded now
    present: list = field(default_factory=list)  # already there and matching
    checked: str = ""


def home_folder(home: Optional[str | Path] = None) -> Path:
    if home:
        return Path(home).expanduser()
    from ..models.stable_diffusion import weights_home

    return weights_home()


def download(what: str = "paper", *, home: Optional[str | Path] = None, source: Optional[str] = None,
             variant: Optional[str] = None, convert: bool = True, progress: bool = True,
             notify: Callable[[str], None] = lambda line: None, retries: int = 3,
             backoff: float = 1.0) -> list[TargetResult]:
    """Fetch ``what`` (a target of the catalog: paper, sd21-base, release, detector, metrics, or one of
    ``$OSDFACE_HOME/download_sources.yaml``) into ``home``; check it with its loader; record every file's
    sha256 in ``home/manifest.json``; convert the paper's model unless ``convert=False``.

    Failures are one DownloadError (an OSDFaceError) naming every source tried and the manual steps.
    """
    home = home_folder(home)
    catalog = load_catalog(home)
    leaves, wants_convert = resolve(catalog, what, variant)
    leaves = choose_sources(leaves, source, notify)
    ctx = Context(progress=progress, notify=notify, retries=retries, backoff=backoff)
    made = [p for p in [home, *(home / t.folder for t in leaves)] if not p.exists()]  # folders this run makes
    try:
        with _home_lock(home):
            try:
                return _download(what, home, leaves, wants_convert and convert, ctx)
            except BaseException:
                _tidy(home, leaves, made)  # (under the lock: no other download is using these folders)
                raise
    except BaseException:
        if home in made:
            _remove_if_empty(home)  # (its lock file is gone by now)
        raise


@contextlib.contextmanager
def _home_lock(home: Path):
    """One ``osdface download`` per home folder at a time (they would write the same partial files). The
    lock file goes when the download ends (removed while still held: a waiting lock sees it gone)."""
    from filelock import FileLock, Timeout

    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(home / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DownloadError(f"another `osdface download` is running on {home} (lock: {home / LOCK_FILE}); wait "
                            "for it to finish, then run this again") from None
    try:
        yield
    finally:
        (home / LOCK_FILE).unlink(missing_ok=True)
        lock.release()


def _tidy(home: Path, leaves: list[Target], made: list[Path]) -> None:
    """After a failed download: empty staging folders (``.download/<source>/...``) go, and so do the folders
    this run made and left empty. Partial files stay (the next run resumes them), and so do their folders."""
    for target in leaves:
        staging = home / target.folder / STAGING
        if staging.is_dir():
            for folder in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _remove_if_empty(folder)
            _remove_if_empty(staging)
    for folder in sorted(made, key=lambda p: -len(p.parts)):
        _remove_if_empty(folder)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or gone): kept
        folder.rmdir()


def _download(what: str, home: Path, leaves: list[Target], convert: bool, ctx: Context) -> list[TargetResult]:
    known = read_manifest(home)["files"]

    plans = [_missing_files(t, home, known, ctx) for t in leaves]  # (missing, present) per target
    needed = sum(f.approx_size or 0 for missing, _ in plans for f in missing)
    needed -= sum(_staged_bytes(home / t.folder) for t, (missing, _) in zip(leaves, plans) if missing)
    if convert and not (home / "osdface" / "model_index.json").is_file():
        needed += CONVERTED_SIZE
    if needed > 0:
        ensure_space(home, needed, f"{what} ({human(needed)})")
    for target, (missing, _) in zip(leaves, plans):  # every host asked at once, in the background
        for source in target.sources if missing else []:
            for url in probe_urls(source, missing):
                start_probe(url, ctx)

    results = []
    for target, (missing, present) in zip(leaves, plans):
        results.append(_fetch_target(target, home, missing, present, ctx))
    if convert:
        convert_paper(home, ctx.notify)
    return results


def _missing_files(target: Target, home: Path, known: dict, ctx: Context) -> tuple[list, list]:
    """(files to fetch, files already in place and matching). A file found without a record (put there by
    hand) is accepted unless a packaged sha256 says otherwise; it is recorded after the check."""
    folder = home / target.folder
    missing, present = [], []
    for spec in target.files:
        path = folder / spec.path
        if not path.is_file():
            missing.append(spec)
            continue
        rec = known.get(path.relative_to(home).as_posix())
        if rec and rec.get("remote", spec.remote) != spec.remote:  # another variant (fp16 ↔ fp32)
            ctx.notify(f"{target.name}: {spec.path} holds {rec['remote']}; fetching {spec.remote} in its place")
            missing.append(spec)
            continue
        if unchanged_since_recorded(path, rec) and (not spec.sha256 or rec.get("sha256") == spec.sha256):
            present.append((spec, rec["sha256"], rec.get("source", "?"), True))
            continue
        digest = sha256_file(path, ctx, f"sha256 {spec.path}")
        expected = spec.sha256 or (rec or {}).get("sha256")
        if expected and digest != expected:
            ctx.notify(f"{target.name}: {spec.path} does not match its sha256 ({digest[:12]}… ≠ {expected[:12]}…): "
                       "downloading it again (the old file stays until the new one is verified)")
            missing.append(spec)
        else:
            if rec is None:
                ctx.notify(f"{target.name}: {spec.path} is already there (not downloaded by osdface): checking "
                           "and recording it")
            present.append((spec, digest, (rec or {}).get("source", "found in place"), False))
    return missing, present


def _staged_bytes(folder: Path) -> int:
    staging = folder / STAGING
    return sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.is_dir() else 0


def _fetch_target(target: Target, home: Path, missing: list[FileSpec], present: list, ctx: Context) -> TargetResult:
    folder = home / target.folder
    result = TargetResult(target.name, folder, present=[p[0].path for p in present])
    got: dict[str, tuple[FileSpec, str, str]] = {spec.path: (spec, sha, src) for spec, sha, src, _ in present}
    if not missing and all(recorded for *_, recorded in present):
        result.checked = "checked and recorded before"  # nothing new: no need to load it all again
        return result
    if missing:
        ctx.notify(f"{target.name}: {len(missing)} file(s) to fetch into {folder}")
    failures: list[str] = []
    remaining = list(missing)
    sources = list(target.sources)
    for i, source in enumerate(sources):
        if not remaining:
            break
        fetch = FETCHERS[source.kind]
        still, reasons = [], {}  # reason with the file name taken out -> [(reason, file)]
        for n, spec in enumerate(remaining):
            try:
                digest = fetch(source, spec, folder, ctx)
            except SourceFailed as err:
                key = err.reason.replace(spec.remote, "<file>").replace(spec.path, "<file>")
                reasons.setdefault(key, []).append((err.reason, spec.path))
                still.append(spec)
                if err.whole_source:
                    still.extend(remaining[n + 1:])
                    break
                continue
            got[spec.path] = (spec, digest, source.describe())
            result.fetched.append(spec.path)
        remaining = still
        if reasons:
            reason = "; ".join(items[0][0] + (f" (likewise {', '.join(p for _, p in items[1:])})" if items[1:] else "")
                               for items in reasons.values())
            failures.append(f"{source.describe()}: {reason}")
            after = (f"trying {sources[i + 1].name} next for {len(remaining)} file(s)" if i + 1 < len(sources)
                     else "no sources left")
            ctx.notify(f"{target.name}: {source.name} failed ({reason}); {after}")
    if remaining:
        names = ", ".join(s.path for s in remaining)
        manual = target.manual.replace("{folder}", str(folder)).replace("{home}", str(home))
        raise DownloadError(f"{target.name}: could not download {names}. Sources tried: {' | '.join(failures)}. "
                            f"Manual steps: {manual or f'put the files into {folder}'}")
    result.checked = run_check(target.check, target.name, folder, home)
    entries = dict(entry(home, folder / spec.path, target.name, digest, src, bool(spec.sha256), spec.remote)
                   for spec, digest, src in got.values())
    record(home, entries)
    clear_staging(folder)
    ctx.notify(f"{target.name}: {len(got)} file(s) in {folder} ({result.checked}); sha256 recorded in "
               f"{home / 'manifest.json'}")
    return result


def verify(what: Optional[str] = None, *, home: Optional[str | Path] = None, progress: bool = True) -> list[str]:
    """Re-hash the recorded files (of ``what`` when given) against manifest.json and the packaged sums."""
    home = home_folder(home)
    catalog = load_catalog(home)
    folders, known = None, {}
    targets = resolve(catalog, what)[0] if what else [t for t in catalog.values() if t.folder]
    for target in targets:
        for variant_name in [None, *target.variants]:
            for spec in target.with_variant(variant_name).files:
                if spec.sha256:
                    known.setdefault(f"{target.folder}/{spec.path}", set()).add(spec.sha256)
    if what:
        folders = [t.folder for t in targets]
    records = read_manifest(home)["files"]
    exact = {}  # fp32 and fp16 land on one path: the packaged sum of the variant that was recorded
    for key, sums in known.items():
        recorded = records.get(key, {}).get("sha256")
        exact[key] = recorded if recorded in sums else min(sums)
    return verify_manifest(home, folders, exact, Context(progress=progress))

