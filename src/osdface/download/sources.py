"""The download catalog: targets, their files (with known checksums) and their ordered sources.

The packaged ``osdface/configs/download_sources.yaml`` is read first; ``$OSDFACE_HOME/download_sources.yaml``
(or ``.yml`` / ``.toml``) extends it: per target its sources are tried first (a packaged source of the same
name is replaced, ``disabled: true`` drops one, ``replace_sources: true`` drops all packaged ones), its
``files`` entries add or change checksums, and it may define new targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from .errors import DownloadConfigError

PACKAGED_NAME = "download_sources.yaml"
USER_NAMES = ("download_sources.yaml", "download_sources.yml", "download_sources.toml")
KINDS = ("hub", "modelscope", "url", "gdrive", "folder")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SOURCE_KEYS = {"name", "kind", "repo", "revision", "base", "urls", "folder_id", "file_ids", "path", "note",
                "disabled"}


@dataclass(frozen=True)
class FileSpec:
    path: str  # where it lands, relative to the target's folder (POSIX)
    remote: str  # its path at the source
    sha256: Optional[str] = None
    approx_size: Optional[int] = None


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    repo: Optional[str] = None
    revision: Optional[str] = None
    base: Optional[str] = None
    urls: dict = field(default_factory=dict)
    folder_id: Optional[str] = None
    file_ids: dict = field(default_factory=dict)
    path: Optional[str] = None
    note: Optional[str] = None

    def describe(self) -> str:
        if self.kind in ("hub", "modelscope"):
            rev = f"@{self.revision[:12]}" if self.revision else ""
            return f"{self.name} ({self.kind} {self.repo}{rev})"
        if self.kind == "gdrive":
            return f"{self.name} (Google Drive folder {self.folder_id})"
        if self.kind == "folder":
            return f"{self.name} (folder {self.path})"
        return f"{self.name} ({self.base or 'per-file URLs'})"

    @property
    def tag(self) -> str:
        """A file-name-safe form of the name (staging folders of partial downloads)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)


@dataclass(frozen=True)
class Target:
    name: str
    description: str = ""
    folder: Optional[str] = None  # relative to the home folder; None for a target made only of includes
    files: tuple = ()  # FileSpec, with the chosen variant applied
    variants: dict = field(default_factory=dict)  # name -> {path: FileSpec}
    sources: tuple = ()  # Source, in order
    includes: tuple = ()
    convert: bool = False
    check: Optional[str] = None
    manual: str = ""

    def with_variant(self, variant: Optional[str]) -> "Target":
        if not variant:
            return self
        if variant not in self.variants:
            have = ", ".join(sorted(self.variants)) or "none"
            raise DownloadConfigError(f"{self.name} has no variant {variant!r} (variants: {have})")
        swap = self.variants[variant]
        return replace(self, files=tuple(swap.get(f.path, f) for f in self.files))


# ----------------------------------------------------------------------------- reading


def _read_file(path: Path) -> dict:
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise DownloadConfigError(f"{path}: reading TOML needs Python ≥ 3.11; write it as YAML "
                                          f"({path.with_suffix('.yaml').name})") from None
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except DownloadConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any parse error becomes one line naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DownloadConfigError(f"{path}: cannot read it ({first})") from None
    if not isinstance(data, dict) or not isinstance(data.get("targets", {}), dict):
        raise DownloadConfigError(f"{path}: expected a mapping with a 'targets' mapping")
    return data


def user_sources_file(home: Path) -> Optional[Path]:
    for name in USER_NAMES:
        if (home / name).is_file():
            return home / name
    return None


def _file_spec(path: str, entry: Any, where: str) -> FileSpec:
    entry = {} if entry is None else entry
    if not isinstance(entry, dict):
        raise DownloadConfigError(f"{where}: file {path!r} must map to {{sha256: ..., remote: ...}}")
    sha = entry.get("sha256")
    if sha is not None and not _SHA256.match(str(sha).lower()):
        raise DownloadConfigError(f"{where}: file {path!r}: sha256 must be 64 hex digits or null, got {sha!r}")
    if path.startswith("/") or ".." in Path(path).parts:
        raise DownloadConfigError(f"{where}: file {path!r} must be a relative path inside the target folder")
    size = entry.get("approx_size")
    return FileSpec(path=path, remote=str(entry.get("remote", path)), sha256=str(sha).lower() if sha else None,
                    approx_size=int(size) if size else None)


def _source(entry: Any, where: str) -> Source:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise DownloadConfigError(f"{where}: every source needs a name (got {entry!r})")
    unknown = set(entry) - _SOURCE_KEYS
    if unknown:
        raise DownloadConfigError(f"{where}: source {entry['name']!r}: unknown keys {sorted(unknown)}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise DownloadConfigError(f"{where}: source {entry['name']!r}: kind must be one of {', '.join(KINDS)}, "
                                  f"got {kind!r}")
    needs = {"hub": ("repo",), "modelscope": ("repo",), "gdrive": ("folder_id",), "folder": ("path",)}
    missing = [k for k in needs.get(kind, ()) if not entry.get(k)]
    if kind == "url" and not (entry.get("base") or entry.get("urls")):
        missing.append("base or urls")
    if missing:
        raise DownloadConfigError(f"{where}: source {entry['name']!r} ({kind}) needs {', '.join(missing)}")
    return Source(name=str(entry["name"]), kind=kind, repo=entry.get("repo"),
                  revision=str(entry["revision"]) if entry.get("revision") else None, base=entry.get("base"),
                  urls=dict(entry.get("urls") or {}), folder_id=entry.get("folder_id"),
                  file_ids=dict(entry.get("file_ids") or {}),
                  path=str(Path(entry["path"]).expanduser()) if entry.get("path") else None, note=entry.get("note"))


def _merge_target(name: str, base: Optional[dict], user: dict, where: str) -> dict:
    """The user's entry over the packaged one (see the module docstring)."""
    if base is None:
        return dict(user)
    merged = {**base, **{k: v for k, v in user.items() if k not in ("files", "sources", "replace_sources")}}
    files = dict(base.get("files") or {})
    for path, entry in (user.get("files") or {}).items():
        files[path] = {**(files.get(path) or {}), **(entry or {})}
    merged["files"] = files
    user_sources = list(user.get("sources") or [])
    names = {s.get("name") for s in user_sources if isinstance(s, dict)}
    packaged = [] if user.get("replace_sources") else [s for s in base.get("sources") or []
                                                       if s.get("name") not in names]
    merged["sources"] = [s for s in user_sources if not (isinstance(s, dict) and s.get("disabled"))] + packaged
    return merged


def _build_target(name: str, raw: dict, where: str) -> Target:
    if not isinstance(raw, dict):
        raise DownloadConfigError(f"{where}: target {name!r} must be a mapping")
    includes = tuple(raw.get("includes") or ())
    files = tuple(_file_spec(p, e, f"{where}: {name}") for p, e in (raw.get("files") or {}).items())
    if not includes and not (raw.get("folder") and files):
        raise DownloadConfigError(f"{where}: target {name!r} needs a folder and files (or includes)")
    variants = {}
    for vname, entries in (raw.get("variants") or {}).items():
        variants[vname] = {p: _file_spec(p, e, f"{where}: {name} variant {vname}") for p, e in (entries or {}).items()}
    sources = tuple(_source(s, f"{where}: {name}") for s in raw.get("sources") or []
                    if not (isinstance(s, dict) and s.get("disabled")))
    if files and not sources:
        raise DownloadConfigError(f"{where}: target {name!r} has no sources")
    return Target(name=name, description=str(raw.get("description", "")), folder=raw.get("folder"), files=files,
                  variants=variants, sources=sources, includes=includes, convert=bool(raw.get("convert", False)),
                  check=raw.get("check"), manual=" ".join(str(raw.get("manual", "")).split()))


def load_catalog(home: Path) -> dict[str, Target]:
    """All targets: the packaged list extended by ``home``'s own file (if any)."""
    text = resources.files("osdface.configs").joinpath(PACKAGED_NAME).read_text(encoding="utf-8")
    import yaml

    packaged = (yaml.safe_load(text) or {}).get("targets", {})
    raw = {name: dict(entry) for name, entry in packaged.items()}
    user_file = user_sources_file(home)
    where = str(user_file) if user_file else PACKAGED_NAME
    if user_file:
        for name, entry in _read_file(user_file).get("targets", {}).items():
            if not isinstance(entry, dict):
                raise DownloadConfigError(f"{user_file}: target {name!r} must be a mapping")
            raw[name] = _merge_target(name, raw.get(name), entry, where)
    catalog = {name: _build_target(name, entry, where) for name, entry in raw.items()}
    for target in catalog.values():
        for inc in target.includes:
            if inc not in catalog or catalog[inc].includes:
                raise DownloadConfigError(f"{where}: target {target.name!r} includes {inc!r}, which is not a "
                                          "target with files")
    return catalog


def resolve(catalog: dict[str, Target], what: str, variant: Optional[str] = None) -> tuple[list[Target], bool]:
    """``what`` → (the targets with files to fetch, in order, variant applied; whether to convert after)."""
    if what not in catalog:
        raise DownloadConfigError(f"unknown download {what!r}; choose one of {', '.join(catalog)}")
    top = catalog[what]
    leaves = [catalog[n] for n in top.includes] if top.includes else [top]
    if variant and not any(variant in t.variants for t in leaves):
        raise DownloadConfigError(f"--variant {variant}: {what} has no such variant "
                                  f"(variants: {', '.join(sorted({v for t in leaves for v in t.variants})) or 'none'})")
    leaves = [t.with_variant(variant) if variant in t.variants else t for t in leaves]
    return leaves, top.convert


_SCHEMES = {"hf://": "hub", "hub://": "hub", "modelscope://": "modelscope", "gdrive://": "gdrive",
            "file://": "folder"}


def source_from_option(text: str) -> Optional[Source]:
    """``--source`` as an ad-hoc source (a URL, ``hf://org/repo[@rev]``, ``modelscope://org/repo[@rev]``,
    ``gdrive://FOLDER_ID``, a Drive folder link, ``file://DIR`` or an existing folder), or None for a name."""
    for prefix, kind in _SCHEMES.items():
        if text.startswith(prefix):
            rest = text[len(prefix):]
            if kind == "folder":
                return Source(name=text, kind="folder", path=str(Path(rest).expanduser()))
            rest = rest.strip("/")
            if kind == "gdrive":
                return Source(name=text, kind=kind, folder_id=rest)
            repo, _, rev = rest.partition("@")
            if repo.count("/") != 1:
                raise DownloadConfigError(f"--source {text}: expected {prefix}ORG/NAME[@REVISION]")
            return Source(name=text, kind=kind, repo=repo, revision=rev or None)
    drive = re.match(r"^https://drive\.google\.com/drive/(?:u/\d+/)?folders/([A-Za-z0-9_-]+)", text)
    if drive:
        return Source(name=text, kind="gdrive", folder_id=drive.group(1))
    if text.startswith(("http://", "https://")):
        return Source(name=text, kind="url", base=text if text.endswith("/") else text + "/")
    if Path(text).expanduser().is_dir():
        return Source(name=text, kind="folder", path=str(Path(text).expanduser()))
    return None


def choose_sources(leaves: list[Target], option: Optional[str], notify) -> list[Target]:
    """Apply ``--source``: a name keeps only that source in the targets that have it; a URL or folder is the
    only source of the (single) target."""
    if not option:
        return leaves
    adhoc = source_from_option(option)
    if adhoc is not None:
        if len(leaves) != 1:
            raise DownloadConfigError(f"--source {option}: a URL or folder serves one target; name one of "
                                      f"{', '.join(t.name for t in leaves)} instead of the group")
        return [replace(leaves[0], sources=(adhoc,))]
    out, found = [], False
    for target in leaves:
        chosen = tuple(s for s in target.sources if s.name == option)
        if chosen:
            found = True
            out.append(replace(target, sources=chosen))
        else:
            out.append(target)
    if not found:
        names = sorted({s.name for t in leaves for s in t.sources})
        raise DownloadConfigError(f"--source {option}: no such source (names: {', '.join(names)}; or give a URL, "
                                  "hf://ORG/NAME, modelscope://ORG/NAME, gdrive://ID or a folder)")
    for target, new in zip(leaves, out):
        if new is target:
            notify(f"{target.name} has no source {option!r}: its own list is used")
    return out
