"""Align the faces of photos to the FFHQ template: the crops inference restores, as a training set.

``osdface align PHOTOS... --output DIR --size N`` detects every face (the restorer's detector and
selection rules), aligns it to the FFHQ 5-point template at N×N exactly as whole-photo restoration
does (``FaceRestorer``'s alignment), and writes ``DIR/STEM_KK.png`` (KK: the face's index in the
photo, largest first when ``max_faces`` cuts) plus ``DIR/manifest.json``::

    {"size": 128, "detector": "mtcnn", "faces": [{"file": "a_00.png", "source": "photos/a.jpg",
      "box": [...], "score": 0.99, "landmarks5": [[x, y], ...], "affine": [[...], [...]],
      "image_hw": [h, w], "outside": 0.12}, ...],
     "no_face": ["photos/b.jpg"], "failed": [{"source": "photos/c.jpg", "error": "..."}]}

``outside`` is the share of the crop that lies outside the photo, where alignment fills in a reflection
(``alignment.outside_fraction``); with ``image_hw`` and ``affine`` it tells, pixel by pixel, which part
(``alignment.inside_mask``), which training can leave out of its losses (stage 2's ``data.valid_mask``).

Re-runs skip photos whose crops exist (``overwrite=False``); photos aligned into the folder by earlier
runs keep their manifest entries (so a long list can be fed in parts, e.g. through ``xargs``). Every
write is atomic; inputs are never touched. A folder aligned at another size is refused.

Nothing is left unrecorded or replaced: the manifest is rewritten (atomically) as photos are done, at
most every ``MANIFEST_EVERY`` seconds and at the end, so a killed run leaves at most the crops of the
last second unlisted, and a rerun recognises them (a file under a crop's name that the manifest does not
list counts as ours only when it holds exactly that crop). A photo one of whose crop names is taken by
another file is not aligned: one failure line, and that file stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, OSDFaceError
from ..files import write_text_atomic
from ..image_utils import list_images, read_image, read_photo, write_image_atomic
from .alignment import estimate_affine, outside_fraction, warp_face
from .detection import FaceDetector, create_detector
from .restorer import FaceRestorer, split_channels

MANIFEST = "manifest.json"
MANIFEST_EVERY = 1.0  # seconds between the manifest's rewrites while a run goes on


@dataclass
class AlignSummary:
    """What ``align_folder`` did: face records, photos without a face, failures (one line each)."""

    faces: list[dict] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    photos: int = 0

    def __str__(self) -> str:
        return (f"{self.photos} photos: {len(self.faces)} faces aligned, {len(self.no_face)} without a face, "
                f"{len(self.failed)} failed" + (f", {self.skipped} already done" if self.skipped else ""))


def _select(detector: FaceDetector, options: dict):
    """The restorer's selection rules (min score/size, centre face, max faces) without a model."""
    return FaceRestorer(lambda crops: crops, detector=detector, **options).select


def align_photo(image: np.ndarray, detector: FaceDetector, size: int, **options) -> list[tuple[np.ndarray, dict]]:
    """(crop HWC uint8 RGB at size×size, record) for every selected face of one photo."""
    rgb, _, _ = split_channels(image)
    select = _select(detector, options)
    out = []
    for det in select(detector.detect(rgb), rgb.shape):
        affine = estimate_affine(det.landmarks5, face_size=size)
        crop = warp_face(rgb, affine, size)
        out.append((crop, {"box": [round(float(v), 2) for v in det.box], "score": round(det.score, 4),
                           "landmarks5": np.round(det.landmarks5, 2).tolist(),
                           "affine": np.round(affine, 6).tolist(), "image_hw": list(rgb.shape[:2]),
                           "outside": round(outside_fraction(affine, rgb.shape, size), 4)}))
    return out


def align_folder(inputs: Sequence[str | Path], output: str | Path, size: int = 512, detector: str | FaceDetector = "mtcnn",
                 detector_weights: str | None = None, overwrite: bool = False, progress: bool = True,
                 **options) -> AlignSummary:
    """Align every face of ``inputs`` (files and folders) into ``output`` (see module docstring).

    ``options``: ``FaceRestorer`` selection keywords (``min_face_size``, ``max_faces``,
    ``only_center_face``, ``min_score``).
    """
    from tqdm.auto import tqdm

    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    output = Path(output)
    paths, problems = list_images(inputs)
    summary = AlignSummary(failed=list(problems), photos=len(paths))
    if isinstance(detector, str):
        name = detector
        detector = create_detector(detector, **({"weights": detector_weights} if detector_weights else {}))
    else:
        name = type(detector).__name__
    output.mkdir(parents=True, exist_ok=True)
    recorded, previous_size = _read_manifest(output)
    if recorded and previous_size != size and not overwrite:
        raise OSDFaceError(f"{output}: holds faces aligned at {previous_size} px, not {size}; choose another "
                         "--output (or --overwrite)")
    previous = {} if overwrite else recorded
    resolved_out = output.resolve()
    owners = {r["file"]: source for source, entry in recorded.items() for r in entry["faces"]}  # crop → photo (ours)
    # Photos of earlier runs that this run has not handled (yet): listed in every manifest written
    pending = {source: entry for source, entry in previous.items()
               if all((output / r["file"]).is_file() for r in entry["faces"])}
    written_at = [time.monotonic()]

    def write_manifest(final: bool = False) -> None:
        if not final and time.monotonic() - written_at[0] < MANIFEST_EVERY:
            return
        manifest = {"size": size, "detector": name, "template": "ffhq-5point",
                    "faces": [r for e in pending.values() for r in e["faces"]] + summary.faces,
                    "no_face": [source for source, e in pending.items() if e["no_face"]] + summary.no_face,
                    "failed": summary.failed}
        write_text_atomic(output / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        written_at[0] = time.monotonic()

    for path in tqdm(paths, desc="align", unit="photo", disable=not progress, dynamic_ncols=True):
        key = str(path)
        if key in pending:  # done by an earlier run, its crops all there
            entry = pending.pop(key)
            summary.faces.extend(entry["faces"])
            summary.no_face.extend([key] if entry["no_face"] else [])
            summary.skipped += 1
            continue
        pending.pop(key, None)
        if path.resolve().parent == resolved_out:
            summary.failed.append(f"{path}: is inside the output folder; not aligned (choose another --output)")
            continue
        try:
            faces = align_photo(read_photo(path), detector, size, **options)
        except ImageReadError as err:  # names the file already
            summary.failed.append(str(err))
            continue
        except (OSError, ValueError) as err:
            summary.failed.append(f"{path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
            continue
        stem = path.stem
        if any(owners.get(f"{stem}_{k:02d}.png", key) != key for k in range(len(faces))):
            stem = f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"  # another photo of that name is here
        names = [f"{stem}_{k:02d}.png" for k in range(len(faces))]
        foreign = [n for n, (crop, _) in zip(names, faces)
                   if n not in owners and (output / n).exists() and not _holds(output / n, crop)]
        if foreign:
            summary.failed.append(f"{path}: {output / foreign[0]} is there and osdface align did not write it; "
                                  "not replaced, the photo not aligned (move that file, or choose another --output)")
            continue
        if not faces:
            summary.no_face.append(key)
        for name_k, (crop, record) in zip(names, faces):
            write_image_atomic(crop, output / name_k)
            owners[name_k] = key
            summary.faces.append({"file": name_k, "source": key, **record})
        write_manifest()
    write_manifest(final=True)
    return summary


def _holds(path: Path, crop: np.ndarray) -> bool:
    """``path`` is an image holding exactly ``crop`` (a crop of ours that a killed run left unlisted)."""
    try:
        return np.array_equal(read_image(path), crop)
    except ImageReadError:
        return False


def _read_manifest(output: Path) -> tuple[dict[str, dict], int | None]:
    """({source: {"faces": [...], "no_face": bool}}, size) of an earlier run's manifest (empty if none)."""
    try:
        data = json.loads((output / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}, None
    by_source: dict[str, dict] = {}
    for record in data.get("faces", []):
        by_source.setdefault(record["source"], {"faces": [], "no_face": False})["faces"].append(record)
    for source in data.get("no_face", []):
        by_source[source] = {"faces": [], "no_face": True}
    return by_source, data.get("size")
