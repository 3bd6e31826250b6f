"""Restore every face of a stream of video frames, steadily.

Three stabilisers keep a face from flickering, each can be turned off (to measure it):

1. **Landmark smoothing** (``landmark_radius``): the face is aligned with its track's landmarks fitted
   by a line over ± radius frames (``tracking.smoothed``), so the crop, and the paste-back mask built
   from the same affine, move with the face instead of jittering with the detector.
2. **Prompt smoothing** (``prompt_momentum``): OSDFace's visual prompt is the set of distinct nearest
   codebook entries of the VRE's 16 × 16 feature map; when two codes are nearly equidistant, per-frame
   noise swaps them and the prompt changes from one frame to the next. The features (not the codes) are
   averaged along the track over its last ``PROMPT_WINDOW`` frames, ``f̃_t = Σ_k m^k·f_{t−k} / Σ_k m^k``,
   before the nearest codes are chosen: aligned crops of one face give features that correspond
   position by position, and noise that swaps codes averages out. The memory is finite on purpose: a
   clip resumed after an interruption, warmed up on the frames before (``warmup_frames``), gets the
   very prompts an uninterrupted run gets (an exponential average's endless memory would not).
3. **Tracks bridge misses**: a face the detector loses for a frame or two between sightings is still
   restored at its interpolated position rather than popping out and back.
4. **One "never worse" decision per track** (when the face restorer has a ``no_harm`` rule): the model's
   weight α from the input's detail (``NoHarm.detail_weight``) is averaged over the track's last
   ``PROMPT_WINDOW`` frames, so a face does not switch between restored and kept from frame to frame; the
   identity guard caps it per track too: measured at the track's first restored frame and then every
   ``PROMPT_WINDOW`` frames (by frame number), its decision (how many times α is halved) applied to the
   frames between. Finite memory, like the prompt's: a resumed clip is identical.
   A face the rule keeps whole (α < 0.01) is not run through the model (VRE, UNet, VAE; nor does it enter
   its track's prompt window, nor filtered).
5. **Temporal filtering** (``temporal_radius``, default 2): each face is averaged with the same track's
   face in the frames ± radius, each warped onto it by dense optical flow and weighted by how well the
   warp matches (``temporal.TemporalFilter``): twice, on the model's input crop (the neighbours are cut
   from their frames with this frame's alignment; gate 32 levels) and on its restored crop (the track's
   restored crops of the neighbouring frames; gate 24); then a third time on the pasted frame, in the
   face's paste region (its mask on the frame), over the neighbouring pasted frames: the frame as it is
   seen, where the face meets what was not restored. The flow compensates the face's own motion, so
   what is averaged away is the flicker the degradation and the model add afresh each frame, and what
   the flow cannot explain (a blink, a new word) differs by more than the gate and comes through alone.
   The second pass needs the restored faces of the next ``temporal_radius`` frames, the third their
   pasted frames: the last frames of a block wait for the next block (or the end of the shot). Finite
   memory: a resumed clip is identical. Faces the "never worse" rule keeps whole are not filtered (they
   are the input), nor are larger faces' regions in the third pass (their change is pasted in bands).

Two rules decide which detections are faces to restore:

- **Shot cuts** (``cuts.CutDetector``: colour histogram and grey-level change between consecutive
  frames): at a cut the frames before it are finished (the block is restored short), every track ends
  and every per-track memory is cleared (landmarks, prompt window, temporal filter, "never worse" weight):
  the frames after a cut come out exactly as if the clip started there (blocks are by frame number).
- **Track confirmation** (``confirm_frames``, default 3): a track is restored at frame t only if it was
  seen, at a score of at least ``confirm_score``, in ``confirm_frames`` of the frames t ± L of its shot
  (L the look-ahead; all of them when the shot is shorter). A one-frame false detection (a teacup, a
  subtitle) is not restored. The cost: a face that really shows for fewer than ``confirm_frames`` frames
  is not restored either. With the look-ahead (≥ ``confirm_frames`` − 1 frames) a face is confirmed from
  its first frame: nothing is delayed.

Frames go through ``VideoFaceRestorer`` as an iterator; it keeps its look-ahead (``landmark_radius``,
``bridge_gap`` or ``confirm_frames`` − 1 frames, the most of them) plus one block of ``batch_size``
frames in memory, whose faces go through the model together (in batches of ``batch_size`` faces).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..face.alignment import affine_scale, resize_affine, warp_face
from ..face.paste import face_mask, mask_on_canvas
from ..face.detection import Detection
from ..face.restorer import FaceRecord, FaceRestorer, PreparedPhoto
from ..image_utils import tensor_to_numpy, to_batch
from ..photos import blend_fidelity
from .cuts import CutDetector
from .io import Frame
from .temporal import INPUT_GATE, OUTPUT_GATE, TemporalFilter
from .tracking import FaceTracker, Track, smoothed

PROMPT_WINDOW = 8  # frames of VRE features averaged per track (0.7^8 ≈ 6 %: little is cut off)


@dataclass
class Stabilisers:
    """``landmark_radius``: frames each side of the landmark line fit (0: raw detections, no
    look-ahead); ``prompt_momentum``: weight of a track's past VRE features (0: every frame's own
    prompt); ``bridge_gap``: frames a track may go unseen and still be restored (0: off);
    ``temporal_radius``: frames each side averaged, motion-compensated, into a face's input and restored
    crops (0: off)."""

    landmark_radius: int = 3
    prompt_momentum: float = 0.7
    bridge_gap: int = 3
    temporal_radius: int = 2

    def __post_init__(self):
        if self.landmark_radius < 0 or self.bridge_gap < 0 or self.temporal_radius < 0:
            raise ValueError("landmark_radius, bridge_gap and temporal_radius must be >= 0")
        if not 0.0 <= self.prompt_momentum < 1.0:
            raise ValueError(f"prompt_momentum must be in [0, 1); got {self.prompt_momentum}")

    @classmethod
    def off(cls) -> Stabilisers:
        return cls(0, 0.0, 0, 0)


class _PerTrack:
    """State kept per face track; a track's is dropped when the tracker has forgotten it."""

    def __init__(self):
        self.state: dict[int, object] = {}

    def keep_only(self, track_ids: Iterable[int]) -> None:
        keep = set(track_ids)
        self.state = {k: v for k, v in self.state.items() if k in keep}

    def reset(self) -> None:
        self.state.clear()


class PromptSmoother(_PerTrack):
    """Per-track average of the last ``window`` VRE features (C, h, w), the one k frames old weighted m^k."""

    def __init__(self, momentum: float, window: int = PROMPT_WINDOW):
        super().__init__()
        self.momentum, self.window = momentum, window

    def __call__(self, track_id: int, features: torch.Tensor) -> torch.Tensor:
        if self.momentum == 0:
            return features
        history = self.state.setdefault(track_id, deque(maxlen=self.window))
        history.appendleft(features)  # newest first
        weights = [self.momentum ** k for k in range(len(history))]
        return sum(w * f for w, f in zip(weights, history)) / sum(weights)


class WeightSmoother(_PerTrack):
    """Per-track mean of the no-harm rule's α over the last ``window`` frames (one decision per track)."""

    def __init__(self, window: int = PROMPT_WINDOW):
        super().__init__()
        self.window = window

    def __call__(self, track_id: int, weight: float) -> float:
        history = self.state.setdefault(track_id, deque(maxlen=self.window))
        history.append(float(weight))
        return float(np.mean(history))


@dataclass
class _Ready:
    frame: Frame
    prepared: PreparedPhoto
    track_ids: list[int]
    cut: bool = False
    neighbours: list[np.ndarray] = field(default_factory=list)  # the frames t ± r of its shot (RGB)
    restored: list[np.ndarray | None] = field(default_factory=list)  # per face: the model's crop (None: kept)
    weights: list[float] | None = None  # per face: the "never worse" α of its track


@dataclass
class RestoredFrame:
    """A restored frame (upright RGB, the output size), its input timestamp, its faces' track ids and
    their records (box, landmarks as aligned, score; in input-frame pixels, upright); ``cut``: the frame
    starts a new shot."""

    index: int
    pts: int
    rgb: np.ndarray
    track_ids: list[int]
    faces: list[FaceRecord] = field(default_factory=list)
    cut: bool = False


class VideoFaceRestorer:
    """Frames (``io.Frame``, in order) → ``RestoredFrame``s, in order, one per frame.

    ``face_restorer`` supplies detection, face selection, alignment and paste-back exactly as for
    photos (its ``restore_fn`` is not used: faces go through ``pipe`` here, with smoothed prompts).
    ``cuts``: the shot-cut detector (None: no cut detection); ``confirm_frames`` / ``confirm_score``:
    track confirmation (``confirm_frames=1``: every detection is restored); ``detect_size``: frames whose
    long side is larger are shrunk to it for detection only (boxes and landmarks scaled back; None: full
    size). At 1280×720 it takes MTCNN from about 230 to 40 ms a frame; the cost: a face smaller than
    about 20 px in the shrunk copy (40 px at 720p) is not found.
    """

    def __init__(self, pipe, face_restorer: FaceRestorer, stabilisers: Stabilisers | None = None,
                 batch_size: int = 8, fidelity: float = 0.0, posterior: str = "mode", seed: int = 114,
                 cuts: CutDetector | None | bool = True, confirm_frames: int = 3, confirm_score: float = 0.8,
                 detect_size: int | None = 640):
        if face_restorer.small is not None:
            raise ValueError("a video is restored by one model: build its face restorer without small faces "
                             "(make_face_restorer(..., small_faces=False))")
        if face_restorer.face_size != pipe.sample_size:
            raise ValueError(f"face_restorer aligns at {face_restorer.face_size} px; the model runs at "
                             f"{pipe.sample_size}")
        if confirm_frames < 1:
            raise ValueError(f"confirm_frames must be >= 1; got {confirm_frames}")
        self.pipe, self.faces = pipe, face_restorer
        self.stab = stabilisers or Stabilisers()
        self.batch_size, self.fidelity, self.posterior, self.seed = batch_size, fidelity, posterior, seed
        self.cuts = CutDetector() if cuts is True else (cuts or None)
        self.confirm_frames, self.confirm_score = confirm_frames, confirm_score
        self.detect_size = detect_size
        self.lookahead = max(self.stab.landmark_radius, self.stab.bridge_gap, confirm_frames - 1,
                             self.stab.temporal_radius)
        self.tracker = FaceTracker(history=max(32, 4 * self.lookahead + 2 * self.stab.bridge_gap + 2))
        self.prompts = PromptSmoother(self.stab.prompt_momentum)
        self.input_filter, self.output_filter = TemporalFilter(INPUT_GATE), TemporalFilter(OUTPUT_GATE)
        self._recent: deque[Frame] = deque(maxlen=self.stab.temporal_radius)  # frames before the one prepared
        self._raw: dict[int, dict[int, np.ndarray]] = {}  # track → frame → the model's restored crop
        self._unfinished: deque[_Ready] = deque()  # restored, waiting for their neighbours' restored faces
        self._composites: deque[tuple[RestoredFrame, list]] = deque()  # pasted frames and their face regions
        self._released = 0  # of them, yielded already (kept as the next ones' neighbours)
        self._guard: dict[int, int] = {}  # track → the identity guard's halvings, measured every PROMPT_WINDOW frames
        self.weights = WeightSmoother()
        self._shot_start: int | None = None  # first frame of the current shot (of this run)
        self._cuts: set[int] = set()  # frames of this run that start a new shot

    def warmup_start(self, frame: int) -> int:
        """Where to start so that ``frame`` and the ones after come out as in an uninterrupted run: before
        it by the prompt window and the landmark look-back, and on a block boundary (blocks of
        ``batch_size`` frames go through the model together, and a batch's numbers depend a little on
        its make-up). The look-ahead covers the temporal filter's radius: a restored face of frame − radius
        has its own prompt window and input neighbours within this start."""
        start = max(0, frame - PROMPT_WINDOW - self.lookahead)  # (covers the confirmation's look-back)
        return start - start % self.batch_size

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """The detector's faces, found on a copy shrunk to ``detect_size`` (long side) when larger."""
        h, w = rgb.shape[:2]
        if self.detect_size is None or max(h, w) <= self.detect_size:
            return self.faces.detector.detect(rgb)
        s = self.detect_size / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        f = np.array([w / small.shape[1], h / small.shape[0]])  # back to full size, pixel centres at integers
        return [Detection(box=((np.asarray(d.box, np.float64).reshape(2, 2) + 0.5) * f - 0.5).ravel(),
                          score=d.score, landmarks5=(np.asarray(d.landmarks5, np.float64) + 0.5) * f - 0.5)
                for d in self.faces.detector.detect(small)]

    def reset(self) -> None:
        """End every track and clear every per-track memory (at a shot cut)."""
        self.tracker.end_tracks()
        for smoother in (self.prompts, self.weights):
            smoother.reset()
        self._recent.clear()
        self._raw.clear()
        self._guard.clear()
        self._composites.clear()
        self._released = 0

    def __call__(self, frames: Iterable[Frame]) -> Iterator[RestoredFrame]:
        pending: deque[Frame] = deque()
        ready: list[_Ready] = []
        self._shot_start, self._cuts = None, set()
        for frame in frames:
            # 1. Detect, select (size, score, centre face, count: as for photos)
            detections = self.faces.select(self.detect(frame.rgb), frame.rgb.shape)
            # 2. A cut: the frames before it are finished with what is known (a short block), then every
            #    track and smoother starts afresh, as at the start of a clip
            cut = self.cuts is not None and self.cuts(frame.rgb) and self._shot_start is not None
            if cut:
                self._cuts.add(frame.index)
                while pending:
                    ready.append(self._prepare(pending.popleft(), pending, shot_end=frame.index - 1))
                yield from self._restore(ready, flush=True)
                ready = []
                self.reset()
            if cut or self._shot_start is None:
                self._shot_start = frame.index
            self.tracker.update(frame.index, detections)
            pending.append(frame)
            # 3. Frames with enough look-ahead get their smoothed faces aligned and cropped; the faces of a
            #    block of ``batch_size`` frames (by frame number: the same blocks whatever the first frame)
            #    go through the model together
            while pending and pending[0].index <= frame.index - self.lookahead:
                ready.append(self._prepare(pending.popleft(), pending))
                if (ready[-1].frame.index + 1) % self.batch_size == 0:
                    yield from self._restore(ready)
                    ready = []
        end = pending[-1].index if pending else None
        while pending:
            ready.append(self._prepare(pending.popleft(), pending, shot_end=end))
        yield from self._restore(ready, flush=True)

    def confirmed(self, track: Track, index: int, shot_end: int | None = None) -> bool:
        """The track was seen (score ≥ ``confirm_score``) in ``confirm_frames`` of the frames index ± the
        look-ahead within its shot (in all of them when the shot has fewer)."""
        if self.confirm_frames <= 1:
            return True
        first = max(index - self.lookahead, self._shot_start if self._shot_start is not None else index)
        last = index + self.lookahead if shot_end is None else min(index + self.lookahead, shot_end)
        seen = sum(1 for k, d in track.observations.items() if first <= k <= last and d.score >= self.confirm_score)
        return seen >= min(self.confirm_frames, last - first + 1)

    def _prepare(self, frame: Frame, after: Iterable[Frame], shot_end: int | None = None) -> _Ready:
        """Align and crop ``frame``'s confirmed faces (smoothed landmarks); with the temporal filter, keep the
        frames ± ``temporal_radius`` of its shot (``after``: the frames after it, already read), from which
        the faces that go through the model are cut with the same alignment."""
        radius, gap = self.stab.landmark_radius, self.stab.bridge_gap
        faces = []
        for track in self.tracker.tracks.values():
            if not self.confirmed(track, frame.index, shot_end):
                continue
            face = track.observations.get(frame.index)
            if radius:  # line fit over ± radius (and across a gap of up to ``gap`` frames)
                face = smoothed(track, frame.index, max(radius, gap), sigma=max(radius / 2, 0.5), max_gap=gap)
            elif face is None and gap:  # raw detections, a short gap bridged by the line through its ends
                face = smoothed(track, frame.index, gap, sigma=float(gap), max_gap=gap)
            if face is not None:
                faces.append((track.id, face))
        prepared = self.faces.prepare(frame.rgb, [f for _, f in faces])
        r = self.stab.temporal_radius
        others = [f.rgb for f in (*self._recent, *after) if 0 < abs(f.index - frame.index) <= r]
        if r:
            self._recent.append(frame)
        return _Ready(frame, prepared, [t for t, _ in faces], cut=frame.index in self._cuts, neighbours=others)

    @torch.inference_mode()
    def _restore(self, ready: list[_Ready], flush: bool = False) -> Iterator[RestoredFrame]:
        """Run a block's faces through the model, then finish (filter, paste) the frames whose neighbours
        are restored: all of them when ``flush`` (a cut or the end), else all but the last ``temporal_radius``."""
        crops = [c for r in ready for c in r.prepared.crops]
        track_ids = [t for r in ready for t in r.track_ids]
        indices = [r.frame.index for r in ready for _ in r.track_ids]
        owners = [(r, j) for r in ready for j in range(len(r.track_ids))]
        pipe = self.pipe
        # 3. One "never worse" weight per track: α from each frame's input detail, averaged along the track
        weights = None
        rule = self.faces.no_harm
        if rule is not None:
            affines = [a for r in ready for a in r.prepared.affines]
            weights = [self.weights(tid, rule.detail_weight(crop, crop.shape[0] / affine_scale(affine)))
                       for crop, affine, tid in zip(crops, affines, track_ids)]
        # 4. The model, for every face but those the rule keeps whole (α < 0.01 is "kept": the input is
        #    pasted, the model's face is not used), on its input crop filtered over the neighbouring frames
        run = [k for k in range(len(crops)) if weights is None or weights[k] >= 0.01]
        restored: list[np.ndarray | None] = [None] * len(crops)
        for start in range(0, len(run), self.batch_size):
            batch = run[start:start + self.batch_size]
            chunk = [self.input_filter(crops[k], self._neighbour_crops(*owners[k])) for k in batch]
            for k, c in zip(batch, chunk):  # the filtered crop is the face's input from here on (colour, α-mix)
                r, j = owners[k]
                r.prepared.crops[j] = c
            lq = torch.cat(to_batch(chunk))  # (B, 3, S, S) in [-1, 1]
            # 4a. VRE features (B, C, h, w), averaged along each track in frame order → visual prompt
            features = pipe.visual_features(lq).float()
            features = torch.stack([self.prompts(track_ids[k], f) for k, f in zip(batch, features)])
            prompt_embeds = pipe.prompt_from_features(features)  # (B, 77, 1024)
            generators = [torch.Generator(pipe.device).manual_seed(self.seed) for _ in chunk]
            out = pipe.restore_tensor(lq, generator=generators, posterior=self.posterior,
                                      prompt_embeds=prompt_embeds)  # (B, 3, S, S) in [-1, 1]
            for k, o in zip(batch, tensor_to_numpy(out)):
                r, j = owners[k]  # matched to its (filtered) input before the filter: steadier colour
                o = self.faces.match_to_input(r.prepared, j, o)
                restored[k] = o
                self._raw.setdefault(track_ids[k], {})[indices[k]] = o
        self.prompts.keep_only(self.tracker.tracks)
        self.weights.keep_only(self.tracker.tracks)
        self._guard = {t: h for t, h in self._guard.items() if t in self.tracker.tracks}
        start = 0
        for r in ready:
            n = len(r.track_ids)
            r.restored = restored[start:start + n]
            r.weights = None if weights is None else weights[start:start + n]
            start += n
        self._unfinished.extend(ready)
        # 5. Finish the frames whose neighbours are restored: filter each restored face over them, paste back
        radius = self.stab.temporal_radius
        last = ready[-1].frame.index if ready else -1
        while self._unfinished and (flush or self._unfinished[0].frame.index + radius <= last):
            self._composites.append(self._finish(self._unfinished.popleft()))
        # 6. Release the composites whose neighbours are composited: the faces' regions filtered over them
        newest = self._composites[-1][0].index if self._composites else -1
        while self._released < len(self._composites) and (
                flush or self._composites[self._released][0].index + radius <= newest):
            yield self._settle(self._released)
            self._released += 1
        while self._released and self._composites[0][0].index < self._composites[self._released - 1][0].index - radius:
            self._composites.popleft()
            self._released -= 1
        first = self._unfinished[0].frame.index if self._unfinished else last + 1
        for frames in self._raw.values():  # forget what no unfinished frame needs
            for index in [i for i in frames if i < first - radius]:
                del frames[index]
        self._raw = {t: f for t, f in self._raw.items() if f}

    def _neighbour_crops(self, r: _Ready, j: int) -> list[np.ndarray]:
        """Face ``j`` of ``r`` cut from the neighbouring frames with its own alignment."""
        return [warp_face(rgb, r.prepared.affines[j], self.faces.face_size) for rgb in r.neighbours]

    def _settle(self, k: int) -> RestoredFrame:
        """Composite ``k`` with each restored face's region (its paste mask on the frame) filtered over the
        neighbouring composites: the frame as it is seen, where the face meets what was not restored."""
        frame, regions = self._composites[k]
        t, radius = frame.index, self.stab.temporal_radius
        others = [f for f, _ in self._composites if f.index != t and abs(f.index - t) <= radius]
        if not regions or not others:
            return frame
        out = frame.rgb.copy()
        for (x0, y0, x1, y1), alpha in regions:
            region = frame.rgb[y0:y1, x0:x1]
            filtered = self.output_filter(region, [o.rgb[y0:y1, x0:x1] for o in others]).astype(np.float32)
            blended = region + alpha[..., None] * (filtered - region)
            out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return RestoredFrame(t, frame.pts, out, frame.track_ids, frame.faces, frame.cut)

    def _finish(self, r: _Ready) -> tuple[RestoredFrame, list]:
        radius, faces = self.stab.temporal_radius, []
        t = r.frame.index
        for tid, face, crop in zip(r.track_ids, r.restored, r.prepared.crops):
            if face is None:  # kept whole by the "never worse" rule: the input
                faces.append(crop)
                continue
            mine = self._raw.get(tid, {})
            others = [mine[i] for i in range(t - radius, t + radius + 1) if i != t and i in mine]
            faces.append(blend_fidelity(self.output_filter(face, others), crop, self.fidelity))
        # the identity guard, one decision per track: measured at its first frame and every PROMPT_WINDOW
        # frames (by frame number: a resumed clip measures where an uninterrupted run does), applied between
        halvings = [None if face is None or tid not in self._guard or t % PROMPT_WINDOW == 0 else self._guard[tid]
                    for tid, face in zip(r.track_ids, r.restored)]
        result = self.faces.finish(r.prepared, faces, r.weights, color_matched=True, halvings=halvings)
        for tid, face, record, given in zip(r.track_ids, r.restored, result.faces, halvings):
            if face is None:  # kept: measured afresh when the model is back (as a resumed run would)
                self._guard.pop(tid, None)
            elif given is None and record.verdict is not None and record.verdict.identity is not None:
                self._guard[tid] = record.verdict.guard_halvings
        # the regions to settle over the neighbouring composites: faces the model restored, pasted whole at S
        regions = []
        if radius:
            canvas_hw = self.faces.output_hw(r.prepared)
            mask = face_mask(self.faces.face_size, self.faces.mask_shape)
            for face, record in zip(r.restored, result.faces):
                v = record.verdict
                if face is None or (v is not None and (v.fusion != "none" or v.model_weight == 0)):
                    continue
                found = mask_on_canvas(mask, resize_affine(record.affine, r.prepared.rgb.shape[:2], canvas_hw),
                                       canvas_hw)
                if found is not None:
                    regions.append(found)
        return RestoredFrame(t, r.frame.pts, result.image, r.track_ids, result.faces, r.cut), regions
