"""The up-front checks the commands share. Each refuses a bad path or value with one OSDFaceError (one
``error:`` line, exit status 2) before any work, so that a refused command has changed nothing.

The rule they enforce: no command writes into its inputs. An output folder may not be an input folder
or lie inside one (also not through a symbolic link); it may hold one (``-o out`` for ``out/photos``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from ..errors import OSDFaceError


def check_int_range(value: int, low: int, high: int, flag: str) -> int:
    """``value`` within [low, high] (for values typer cannot bound itself, e.g. one a library caps)."""
    if not low <= value <= high:
        raise OSDFaceError(f"{flag} {value}: must be between {low:,} and {high:,}")
    return value


def check_choice(value: str, choices: Iterable[str], flag: str) -> str:
    choices = list(choices)
    if value not in choices:
        raise OSDFaceError(f"{flag} {value!r}: unknown; available: {', '.join(choices)}")
    return value


def check_input_folder(folder: Path, flag: str) -> list[Path]:
    """A folder of images: it exists, is a folder and holds at least one image (one level). Returns them."""
    from ..image_utils import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.exists():
        raise OSDFaceError(f"{flag} {folder}: no such folder" + (" (a link to nothing)" if folder.is_symlink() else ""))
    if not folder.is_dir():
        raise OSDFaceError(f"{flag} {folder}: not a folder; give a folder of images")
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    except OSError as err:
        raise OSDFaceError(f"{flag} {folder}: cannot be read ({err.strerror or err})") from None
    if not found:
        raise OSDFaceError(f"{flag} {folder}: holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def check_not_a_file(path: Path, flag: str, holds: str = "the outputs") -> None:
    if path.exists() and not path.is_dir():
        raise OSDFaceError(f"{flag} {path}: is a file, not a folder; give a folder for {holds}")


def check_output_folder(output: Path, inputs: Iterable = (), flag: str = "--output", holds: str = "the outputs",
                        *, create: bool = True) -> None:
    """Refuse an output folder that is a file, is an input folder or lies inside one (``inputs``: files and
    folders; links are followed), or cannot be written. ``create``: make the folder (and check it with a
    file written and removed); otherwise only its nearest existing parent is checked and nothing is left.
    """
    output = Path(output)
    check_not_a_file(output, flag, holds)
    where = output.resolve()
    for item in map(Path, inputs):
        if not item.is_dir():
            continue
        folder = item.resolve()
        if where == folder:
            raise OSDFaceError(f"{flag} {output}: is also an input folder ({item}); no command writes into its "
                               "inputs. Choose another folder")
        if folder in where.parents:
            raise OSDFaceError(f"{flag} {output}: is inside the input folder {item}; no command writes into its "
                               "inputs. Choose a folder outside it")
    try:
        if create:
            output.mkdir(parents=True, exist_ok=True)
            probe_in = output
        else:
            probe_in = next(p for p in [output, *output.absolute().parents] if p.exists())
            if not probe_in.is_dir():
                raise NotADirectoryError(20, "Not a directory")
        _write_probe(probe_in)
    except OSError as err:
        raise OSDFaceError(f"{flag} {output}: cannot write there ({err.strerror or err})") from None


def _write_probe(folder: Path) -> None:
    from ..files import atomic_write

    # a name of its own: the processes of a torchrun launch check the same folder at once
    probe = atomic_write(folder / f".osdface-write-check-{uuid.uuid4().hex[:12]}", lambda f: f.write(b"ok"))
    probe.unlink()


def check_distinct_folders(first: Path, first_flag: str, second: Path, second_flag: str, why: str) -> None:
    """Two output folders that must not be one (also not through a link)."""
    if Path(first).resolve() == Path(second).resolve():
        raise OSDFaceError(f"{second_flag} {second}: is the {first_flag} folder; {why}. Choose two folders")


def check_new_file(path: Path, flag: str, inputs: Iterable = ()) -> None:
    """A file output (a report, a table): not a folder, its folder exists (nothing is created for it), and it
    is no input file and lies in no input folder (``inputs``; links followed)."""
    path = Path(path)
    if path.is_dir():
        raise OSDFaceError(f"{flag} {path}: is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise OSDFaceError(f"{flag} {path}: its folder {parent} {what}")
    where = parent.resolve() / path.name
    for item in map(Path, inputs):
        target = item.resolve()
        if where == target or (item.is_dir() and target in where.parents):
            raise OSDFaceError(f"{flag} {path}: " + ("is an input file" if where == target else
                                                     f"is inside the input folder {item}")
                               + "; no command writes into its inputs. Choose another place")
