"""Whole-photo face restoration: detect, align, restore (batched), paste back.

``FaceRestorer`` wraps any face restoration function that works on aligned square crops::

    restorer = FaceRestorer(restore_fn, detector=create_detector("mtcnn"), face_size=512, upscale=2)
    result = restorer(photo)          # photo: HWC uint8 RGB (or gray HW / HW1, or RGBA HW4)
    result.image, result.faces        # output photo in the input's layout; one FaceRecord per face

``restore_fn(crops: list[HWC uint8 RGB, face_size square]) -> list of the same`` is called once per
photo with all its faces, or once per batch of faces across photos with ``restore_many``.

``small=SmallFaces(restore_fn, size, up_to)`` routes faces by size to a second model: a face whose native
size (its aligned side in input pixels) is at most ``up_to`` is aligned at ``size`` and restored by that
model; the others at ``face_size`` as before. Each face then goes through the rest (colour, the no-harm
rule, the paste) at its own crop's size.

The restorer keeps no per-photo state: calls are independent (and thread-safe if the detector and
restore_fn are).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from .alignment import affine_scale, compose_affine, estimate_affine, resize_affine, warp_face
from .color import METHODS as COLOR_METHODS
from .color import match_color
from .detection import Detection, FaceDetector, create_detector
from .no_harm import FaceVerdict, NoHarm, band_change, detail, mix
from .paste import MASK_SHAPES, face_mask, inside_mask, paste_change, paste_face, paste_faces

RestoreFn = Callable[[list[np.ndarray]], Sequence[np.ndarray]]
BackgroundUpsampler = Callable[[np.ndarray, float], np.ndarray]  # (HWC uint8 RGB, upscale) -> upscaled


@dataclass(frozen=True)
class SmallFaces:
    """A second model for small faces: faces of native size ≤ ``up_to`` px are aligned at ``size`` and
    restored by ``restore_fn`` (same contract as ``FaceRestorer``'s)."""

    restore_fn: RestoreFn
    size: int
    up_to: float

    def __post_init__(self) -> None:
        if not callable(self.restore_fn):
            raise TypeError("SmallFaces.restore_fn must be callable: list of aligned crops -> list of restored crops")
        if int(self.size) != self.size or self.size < 16:
            raise ValueError(f"SmallFaces.size must be an integer >= 16; got {self.size}")
        if not self.up_to > 0:
            raise ValueError(f"SmallFaces.up_to must be > 0; got {self.up_to}")


@dataclass
class FaceRecord:
    """One restored face. ``box`` (4,) and ``landmarks5`` (5, 2) are in input-photo pixels;
    ``affine`` (2, 3) maps input-photo pixels to crop pixels; crops are HWC uint8 RGB."""

    box: np.ndarray
    landmarks5: np.ndarray
    score: float
    affine: np.ndarray
    cropped: np.ndarray
    restored: np.ndarray
    pasted: np.ndarray | None = None  # ``restored`` after colour matching (and the no-harm rule's α), at S
    verdict: FaceVerdict | None = None  # what the no-harm rule did to this face (None: rule off)


@dataclass
class RestoreResult:
    """The output photo (input's layout, upscaled) and the faces restored in it (best score first)."""

    image: np.ndarray
    faces: list[FaceRecord] = field(default_factory=list)


@dataclass
class PreparedPhoto:
    """Everything about one photo before its faces are restored (``FaceRestorer.prepare``)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    layout: str  # "rgb", "rgba", "gray2d" or "gray1"
    is_gray: bool
    detections: list[Detection]
    affines: list[np.ndarray]
    crops: list[np.ndarray]


def split_channels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Any accepted photo layout → (HWC uint8 RGB, alpha HW or None, layout name)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"photo must be a numpy array (HWC uint8 RGB); got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"photo must be uint8 (0..255); got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2), None, "gray2d"
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2), None, "gray1"
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image), None, "rgb"
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(image[..., 3]), "rgba"
    raise ValueError(f"photo must be HW, HWx1, HWx3 (RGB) or HWx4 (RGBA); got shape {image.shape}")


def is_grayscale(rgb: np.ndarray) -> bool:
    """True if all three channels are equal."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def lanczos_upsampler(image: np.ndarray, upscale: float) -> np.ndarray:
    """Default background upsampler: cv2 Lanczos-4 resize by ``upscale`` (HWC uint8 in and out)."""
    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * upscale), round(h * upscale)), interpolation=cv2.INTER_LANCZOS4)


class FaceRestorer:
    """Restore every face in a photo with ``restore_fn`` and paste it back seamlessly.

    ``detector``: a FaceDetector or a registered name (default "mtcnn");
    ``face_size``: side of the aligned crops given to ``restore_fn``;
    ``upscale``: output size factor (background by ``background_upsampler``, default Lanczos-4);
    ``only_center_face``: restore only the face nearest the photo centre;
    ``min_face_size``: ignore faces whose box is smaller than this (pixels, shorter side);
    ``min_score``: ignore detections scoring lower (a face pasted on a false detection does harm);
    ``max_faces``: restore at most this many faces, the largest first;
    ``color_match`` / ``color_method``: low-frequency colour transfer from the original crops;
    ``mask_shape``: "square" or "ellipse" paste mask; ``parsing_fn``: optional
    ``(restored crops) -> list of HW masks`` (e.g. a face parser) refining the paste masks;
    ``no_harm``: the per-face "never worse" rule (``no_harm.NoHarm``: finer detail from the input, faces
    the model cannot help kept, identity guard); None pastes every restored face as it is;
    ``small``: a second model for faces no larger than ``small.up_to`` (``SmallFaces``; module docstring).
    """

    def __init__(
        self,
        restore_fn: RestoreFn,
        detector: FaceDetector | str | None = None,
        face_size: int = 512,
        upscale: float = 1,
        only_center_face: bool = False,
        min_face_size: float = 20.0,
        max_faces: int | None = None,
        color_match: bool = True,
        background_upsampler: BackgroundUpsampler | None = None,
        min_score: float = 0.9,
        color_method: str = "adain",
        mask_shape: str = "square",
        parsing_fn: Callable[[list[np.ndarray]], Sequence[np.ndarray]] | None = None,
        no_harm: NoHarm | None = None,
        small: SmallFaces | None = None,
    ) -> None:
        if not callable(restore_fn):
            raise TypeError("restore_fn must be callable: list of aligned crops -> list of restored crops")
        if int(face_size) != face_size or face_size < 16:
            raise ValueError(f"face_size must be an integer >= 16; got {face_size}")
        if not upscale > 0:
            raise ValueError(f"upscale must be > 0; got {upscale}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None; got {max_faces}")
        if color_method not in COLOR_METHODS:
            raise ValueError(f"color_method must be one of {COLOR_METHODS}; got {color_method!r}")
        if mask_shape not in MASK_SHAPES:
            raise ValueError(f"mask_shape must be one of {MASK_SHAPES}; got {mask_shape!r}")
        if small is not None and not isinstance(small, SmallFaces):
            raise TypeError(f"small must be a SmallFaces or None; got {type(small).__name__}")
        self.restore_fn = restore_fn
        if detector is None or isinstance(detector, str):
            detector = create_detector(detector or "mtcnn")
        if not isinstance(detector, FaceDetector):
            raise TypeError(
                f"detector must have detect(image) -> list[Detection]; got {type(detector).__name__}"
            )
        self.detector = detector
        self.face_size = int(face_size)
        self.upscale = float(upscale)
        self.only_center_face = only_center_face
        self.min_face_size = float(min_face_size)
        self.min_score = float(min_score)
        self.max_faces = max_faces
        self.color_match = color_match
        self.color_method = color_method
        self.mask_shape = mask_shape
        self.background_upsampler = background_upsampler or lanczos_upsampler
        self.parsing_fn = parsing_fn
        self.no_harm = no_harm
        self.small = small

    # ------------------------------------------------------------------ public

    def __call__(self, image: np.ndarray) -> RestoreResult:
        """Restore one photo; ``restore_fn`` is called once with all its faces (not at all if none; with
        ``small``, each model once with its faces)."""
        return self.restore_many([image], batch_size=1 << 30)[0]  # (one batch per model)

    def restore_many(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[RestoreResult]:
        """Restore several photos, calling ``restore_fn`` on batches of up to ``batch_size`` faces
        drawn from all of them (fewer model calls than one per photo)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        prepared = [self.prepare(image) for image in images]
        crops = [crop for p in prepared for crop in p.crops]
        restored: list[np.ndarray | None] = [None] * len(crops)
        for size in sorted({crop.shape[0] for crop in crops}):  # each model's faces in batches of its own
            chosen = [k for k, crop in enumerate(crops) if crop.shape[0] == size]
            for start in range(0, len(chosen), batch_size):
                batch = chosen[start : start + batch_size]
                for k, face in zip(batch, self._restore([crops[k] for k in batch])):
                    restored[k] = face
        results, start = [], 0
        for p in prepared:
            results.append(self.finish(p, restored[start : start + len(p.crops)]))
            start += len(p.crops)
        return results

    def select(self, detections: Sequence[Detection], image_hw: Sequence[int]) -> list[Detection]:
        """Apply min_score, min_face_size, only_center_face and max_faces to raw detections."""
        kept = [
            d
            for d in detections
            if d.score >= self.min_score and min(d.width, d.height) >= self.min_face_size
        ]
        if self.only_center_face and kept:
            cy, cx = (image_hw[0] - 1) / 2.0, (image_hw[1] - 1) / 2.0
            kept = [min(kept, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)]
        if self.max_faces is not None and len(kept) > self.max_faces:
            largest = sorted(range(len(kept)), key=lambda i: kept[i].width * kept[i].height, reverse=True)
            chosen = set(largest[: self.max_faces])
            kept = [d for i, d in enumerate(kept) if i in chosen]
        return kept

    # ------------------------------------------------------------------ steps

    def prepare(self, image: np.ndarray, detections: Sequence[Detection] | None = None) -> PreparedPhoto:
        """Split the photo's channels, detect and select its faces, align and crop them. ``detections``:
        faces found elsewhere (video: a track's smoothed landmarks), used as given, not selected again."""
        rgb, alpha, layout = split_channels(image)
        if detections is None:
            detections = self.select(self.detector.detect(rgb), rgb.shape)
        detections = list(detections)
        sizes = [self.size_for(d.landmarks5) for d in detections]
        affines = [estimate_affine(d.landmarks5, face_size=s) for d, s in zip(detections, sizes)]
        crops = [warp_face(rgb, a, s) for a, s in zip(affines, sizes)]
        return PreparedPhoto(rgb, alpha, layout, is_grayscale(rgb), detections, affines, crops)

    def size_for(self, landmarks5: np.ndarray) -> int:
        """The crop size a face is aligned at: ``small.size`` when its native size (the aligned side at
        ``face_size``, in input pixels) is at most ``small.up_to``, else ``face_size``."""
        if self.small is None:
            return self.face_size
        native = self.face_size / affine_scale(estimate_affine(landmarks5, face_size=self.face_size))
        return self.small.size if native <= self.small.up_to else self.face_size

    def _restore(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Restore crops of one size (``face_size``, or ``small.size`` by the small-face model)."""
        if not crops:
            return []
        size = crops[0].shape[0]
        small = self.small is not None and size == self.small.size and size != self.face_size
        restored = list((self.small.restore_fn if small else self.restore_fn)(list(crops)))
        name = "small.restore_fn" if small else "restore_fn"
        if len(restored) != len(crops):
            raise ValueError(f"{name} returned {len(restored)} faces for {len(crops)} crops")
        shape = (size, size, 3)
        for k, face in enumerate(restored):
            if not isinstance(face, np.ndarray) or face.shape != shape or face.dtype != np.uint8:
                got = f"{face.shape} {face.dtype}" if isinstance(face, np.ndarray) else type(face).__name__
                raise ValueError(f"{name} output {k} must be a {shape} uint8 RGB array; got {got}")
        return restored

    def output_hw(self, p: PreparedPhoto) -> tuple[int, int]:
        h, w = p.rgb.shape[:2]
        return max(1, round(h * self.upscale)), max(1, round(w * self.upscale))

    def match_to_input(self, p: PreparedPhoto, k: int, face: np.ndarray) -> np.ndarray:
        """Restored face ``k`` of ``p`` (S × S) colour-matched to its input crop as ``finish`` does it (the
        shape mask, without a parsing mask): for a caller that works on matched faces (video's filter)."""
        if not self.color_match:
            return face
        out_hw, size = self.output_hw(p), p.crops[k].shape[0]
        affine = resize_affine(p.affines[k], p.rgb.shape[:2], out_hw)
        weights = face_mask(size, self.mask_shape) * inside_mask(affine, size, out_hw)
        return match_color(face, p.crops[k], weights=weights, method=self.color_method)

    def finish(self, p: PreparedPhoto, restored: Sequence[np.ndarray],
               weights: Sequence[float | None] | None = None, color_matched: bool = False,
               halvings: Sequence[int | None] | None = None) -> RestoreResult:
        """Paste the restored crops (one per face of ``p``) into the (upscaled) photo. ``weights``: per face,
        the model's weight α decided elsewhere (video: one per track), or None to let the rule decide;
        ``color_matched``: the crops are matched already (``match_to_input``); ``halvings``: per face, the
        identity guard's decision taken elsewhere (video: per track), or None to measure it."""
        h, w = p.rgb.shape[:2]
        out_hw = self.output_hw(p)
        color_match = self.color_match and not color_matched
        if out_hw == (h, w):
            canvas = p.rgb.copy()
        else:
            canvas = self.background_upsampler(p.rgb, self.upscale)
            if canvas.shape[:2] != out_hw:  # an upsampler with a fixed factor: fit it to the size asked for
                fit = cv2.INTER_AREA if canvas.shape[0] > out_hw[0] else cv2.INTER_LANCZOS4
                canvas = cv2.resize(canvas, out_hw[::-1], interpolation=fit)
        masks = list(self.parsing_fn(list(restored))) if (self.parsing_fn and restored) else None
        canvas_affines = [resize_affine(a, (h, w), out_hw) for a in p.affines]
        if self.no_harm is None:
            canvas, pasted = paste_faces(canvas, restored, canvas_affines, references=p.crops,
                                         color_match=color_match, color_method=self.color_method,
                                         masks=masks, mask_shape=self.mask_shape)
            verdicts = [None] * len(restored)
        else:
            canvas, pasted, verdicts = self._paste_no_harm(p, canvas, restored, canvas_affines, masks, weights,
                                                           color_match, halvings)
        faces = [
            FaceRecord(d.box, d.landmarks5, d.score, a, c, r, f, v)
            for d, a, c, r, f, v in zip(p.detections, p.affines, p.crops, restored, pasted, verdicts)
        ]
        return RestoreResult(self._to_layout(canvas, p, out_hw), faces)

    def _paste_no_harm(self, p: PreparedPhoto, canvas: np.ndarray, restored: Sequence[np.ndarray],
                       canvas_affines: list[np.ndarray], masks, weights, color_match: bool = True,
                       halvings=None):
        """``finish`` under the no-harm rule: per face, colour-match, decide α (``NoHarm.assess``), then paste
        the model's crop (faces ≤ 1.1·S) or the band-combined change at the working size (larger faces);
        a face kept as it was (α = 0) is not pasted at all. S is each face's crop size (its model's)."""
        rule = self.no_harm
        base = canvas.copy()
        pasted, verdicts, jobs = [], [], []
        for k, (crop, face, affine) in enumerate(zip(p.crops, restored, canvas_affines)):
            size = crop.shape[0]
            # 1. Colour-match the restored face (S × S) to its input crop, as it will be pasted
            mask = face_mask(size, self.mask_shape, None if masks is None else masks[k])
            if color_match:
                face = match_color(face, crop, weights=mask * inside_mask(affine, size, canvas.shape),
                                   method=self.color_method)
            # 2. The verdict: α from the input's detail, capped by the identity guard
            native = size / affine_scale(p.affines[k])
            verdict = rule.assess(crop, face, native, None if weights is None else weights[k],
                                  None if halvings is None else halvings[k])
            alpha = verdict.model_weight
            out = mix(crop, face, alpha)
            pasted.append(out)
            verdicts.append(verdict)
            if verdict.fusion == "none":  # 3a. faces at or below 1.1·S: the model's crop (mixed by α)
                verdict.detail_before, verdict.detail_after = detail(crop), detail(out)
                if alpha > 0:
                    jobs.append((k, partial(paste_face, canvas, out, affine, mask)))
                continue
            # 3b. larger faces: the input at W plus the model's change in its band
            work = rule.work_size(native, size)
            r = work / size
            affine_work = compose_affine(np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5]]), p.affines[k])
            input_work = warp_face(p.rgb, affine_work, work)
            verdict.detail_before = verdict.detail_after = detail(input_work)
            if alpha > 0:
                change = band_change(crop, face, input_work, alpha, rule)
                verdict.detail_after = detail(np.clip(input_work + change, 0, 255))
                mask_work = face_mask(work, self.mask_shape, None if masks is None else masks[k])
                canvas_work = resize_affine(affine_work, p.rgb.shape[:2], canvas.shape[:2])
                jobs.append((k, partial(paste_change, canvas, base, change, canvas_work, mask_work)))
        # 4. Paste, smaller faces first: a larger (usually nearer) face ends up on top where two overlap
        for _, paste in sorted(jobs, key=lambda job: -affine_scale(canvas_affines[job[0]])):
            paste()
        return canvas, pasted, verdicts

    @staticmethod
    def _to_layout(canvas: np.ndarray, p: PreparedPhoto, out_hw: tuple[int, int]) -> np.ndarray:
        """Back to the input's layout: gray stays gray, RGBA gets its (resized) alpha back."""
        if p.is_gray:
            gray = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
            if p.layout == "gray2d":
                return gray
            if p.layout == "gray1":
                return gray[..., None]
            canvas = np.repeat(gray[..., None], 3, axis=2)
        if p.layout == "rgba":
            alpha = p.alpha
            if alpha.shape != out_hw:
                alpha = cv2.resize(alpha, out_hw[::-1], interpolation=cv2.INTER_LINEAR)
            return np.dstack([canvas, alpha])
        return canvas
