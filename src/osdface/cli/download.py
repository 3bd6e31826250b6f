"""``osdface download``: fetch the paper's weights (and the detector's, the metrics') into $OSDFACE_HOME."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def download(
    what: Annotated[Optional[str], typer.Argument(help="paper (default: SD 2.1-base + release, converted) | sd21-base | release | detector | metrics, or a target of $OSDFACE_HOME/download_sources.yaml. With --verify: default all recorded files.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Use only this source: a name from --list, or a URL, hf://ORG/NAME[@REV], modelscope://ORG/NAME[@REV], gdrive://FOLDER_ID, a Drive folder link or a local folder.")] = None,
    home: Annotated[Optional[Path], typer.Option(help="Weights folder. Default: $OSDFACE_HOME, else ~/.cache/osdface.")] = None,
    convert: Annotated[bool, typer.Option("--convert/--no-convert", help="Convert the paper's model to our format ($OSDFACE_HOME/osdface) after the download.")] = True,
    variant: Annotated[Optional[str], typer.Option(help="A file variant, e.g. fp16 for SD 2.1-base (half the download; stored under the usual names).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Download nothing: re-hash the recorded files (of WHAT, if given) against manifest.json.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="Show the targets, their files and their sources in order, then exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notes: errors only.")] = False,
) -> None:
    """Download weights into $OSDFACE_HOME: only the files inference needs, from an ordered list of sources.

    Each file is resumable, checked against its sha256 (the packaged one, or the one recorded in
    $OSDFACE_HOME/manifest.json), placed atomically, and the loaders' key/shape check runs before the
    target is declared done. A failed source is reported and the next one tried; when none works, one
    error names every source and the manual steps (exit status 2).
    """
    from ..download import download as run_download
    from ..download import load_catalog, verify as run_verify
    from ..download.run import home_folder
    from .checks import check_not_a_file, check_output_folder

    def note(line: str) -> None:
        if not quiet:
            typer.echo(f"note: {line}", err=True)

    # --home: a folder (or one that can be made); it is only read by --list and --verify
    flag = "--home" if home else "weights folder ($OSDFACE_HOME)"
    if list_ or verify:
        check_not_a_file(home_folder(home), flag, holds="the weights")
    else:
        check_output_folder(home_folder(home), flag=flag, holds="the weights", create=False)
    if list_:
        _print_catalog(load_catalog(home_folder(home)), home_folder(home))
        return
    if verify:
        for line in run_verify(what, home=home, progress=not quiet and sys.stderr.isatty()):
            note(line)
        typer.echo("verify: every recorded file matches its sha256", err=True)
        return
    what = what or "paper"
    results = run_download(what, home=home, source=source, variant=variant, convert=convert,
                           progress=not quiet and sys.stderr.isatty(), notify=note)
    fetched = sum(len(r.fetched) for r in results)
    note(f"download {what}: done ({fetched} file(s) fetched, {sum(len(r.present) for r in results)} already "
         "in place)")


def _print_catalog(catalog, home: Path) -> None:
    for target in catalog.values():
        where = str(home / target.folder) if target.folder else ""
        typer.echo(f"{target.name}: {target.description.replace('{folder}', where)}")
        if target.includes:
            typer.echo(f"  = {' + '.join(target.includes)}" + (", then converted" if target.convert else ""))
            continue
        typer.echo(f"  into {where}")
        for spec in target.files:
            typer.echo(f"  file {spec.path}" + (f"  sha256 {spec.sha256}" if spec.sha256 else ""))
        for name, files in target.variants.items():
            typer.echo(f"  variant {name}: " + ", ".join(f"{p} ← {f.remote}" for p, f in files.items()))
        for n, source in enumerate(target.sources, 1):
            typer.echo(f"  source {n}. {source.describe()}")
            for path, url in source.urls.items():
                typer.echo(f"       {path}: {url}")
