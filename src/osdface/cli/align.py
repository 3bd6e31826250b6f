"""``osdface align``: detect and align every face of photos to the FFHQ template (a training set)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer


def align(
    inputs: Annotated[List[Path], typer.Argument(help="Photos and/or folders of photos.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the aligned crops (STEM_KK.png) and manifest.json.")],
    size: Annotated[int, typer.Option(min=16, max=2048, help="Side of the aligned crops in pixels (the model's sample_size: 512 for the paper's, 256 for mini256, 128 for mini128).")] = 512,
    only_center_face: Annotated[bool, typer.Option("--only-center-face", help="Keep only the face nearest each photo's centre.")] = False,
    min_face_size: Annotated[float, typer.Option(min=0, help="Ignore faces whose box is smaller than this many pixels (shorter side).")] = 20.0,
    max_faces: Annotated[Optional[int], typer.Option(min=1, help="At most this many faces per photo, the largest first.")] = None,
    detector: Annotated[str, typer.Option(help="Face detector name (mtcnn: weights from the facenet-pytorch package).")] = "mtcnn",
    detector_weights: Annotated[Optional[str], typer.Option(help="Local weights for the detector (a folder or file, detector-specific).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Align again photos whose crops exist (default: keep them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Align every face of PHOTOS to the FFHQ 5-point template at SIZE×SIZE, exactly as whole-photo
    restoration aligns them, and write OUTPUT/STEM_KK.png plus OUTPUT/manifest.json (box, score,
    landmarks and affine of each face; photos without a face; failures).

    Photos without a face are listed (a note, not a failure); an unreadable photo costs one error
    line and the rest goes on (exit status 1). OUTPUT may not be an input folder or lie inside one,
    and a manifest.json there that align did not write is never replaced.
    """
    from ..errors import OSDFaceError
    from ..face import DETECTORS
    from ..face.align_folder import align_folder
    from .checks import check_choice, check_output_folder

    # 1. Flags and paths, before any detector loads or anything is written.
    check_choice(detector, sorted(DETECTORS), "--detector")
    if detector_weights and not Path(detector_weights).exists():
        raise OSDFaceError(f"--detector-weights {detector_weights}: no such file or folder")
    check_output_folder(output, inputs, holds="the aligned crops", create=False)  # (made by align_folder)
    _check_manifest(output)

    summary = align_folder(inputs, output, size=size, detector=detector, detector_weights=detector_weights,
                           overwrite=overwrite, progress=not quiet, only_center_face=only_center_face,
                           min_face_size=min_face_size, max_faces=max_faces)
    for line in summary.failed:
        typer.echo(f"error: {line}", err=True)
    if summary.no_face:
        shown = ", ".join(summary.no_face[:5]) + (" …" if len(summary.no_face) > 5 else "")
        typer.echo(f"note: no face found in {len(summary.no_face)} photo(s): {shown} (listed in manifest.json)", err=True)
    typer.echo(str(summary), err=True)
    if summary.failed:
        raise typer.Exit(1)


def _check_manifest(output: Path) -> None:
    """Refuse an OUTPUT whose manifest.json was not written by ``osdface align`` (it would be replaced)."""
    import json

    from ..errors import OSDFaceError
    from ..face.align_folder import MANIFEST

    path = output / MANIFEST
    if not path.exists():
        return
    try:
        ours = json.loads(path.read_text()).get("template") == "ffhq-5point"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OSDFaceError(f"--output {output}: holds a {MANIFEST} that osdface align did not write; it is not "
                           "replaced. Choose another folder")
