"""Face tracks across video frames, and their temporally smoothed landmarks.

``FaceTracker.update(index, detections)`` gives every detection of a frame a track id. A track
predicts where its face will be (constant velocity of its landmarks), and detections are matched to
the predictions by the Hungarian method on centre distance relative to face size; a face the detector
misses for a few frames (another face passes in front of it) keeps its track and its identity.

``smoothed(track, index)`` fits a straight line to the track's landmarks in a window of ± ``radius``
frames (Gaussian weights) and evaluates it at ``index``: per-frame detector jitter is averaged away,
steady motion is followed without lag (a plain moving average lags at the ends of a window that a
line fit does not), and frames where the detector missed a face between two sightings get an
interpolated position. Smoothing at frame t needs the detections up to t + radius: the video driver
keeps that many frames in hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..face.detection import Detection


@dataclass
class Track:
    """One face through the clip: its observations by frame index (landmarks5 (5, 2), box (4,), score)."""

    id: int
    observations: dict[int, Detection] = field(default_factory=dict)
    last_index: int = -1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((5, 2)))  # landmarks per frame

    @property
    def last(self) -> Detection:
        return self.observations[self.last_index]

    def predict(self, index: int) -> np.ndarray:
        """Landmarks expected at ``index`` (constant velocity from the last sighting)."""
        return self.last.landmarks5 + self.velocity * (index - self.last_index)


def face_scale(landmarks5: np.ndarray) -> float:
    """A size of the face in pixels: the eye-centre to mouth-centre distance plus the eye distance."""
    eyes, mouth = landmarks5[:2].mean(0), landmarks5[3:].mean(0)
    return float(np.linalg.norm(eyes - mouth) + np.linalg.norm(landmarks5[0] - landmarks5[1])) + 1e-6


class FaceTracker:
    """Online tracker. ``max_distance``: a detection joins a track only if its landmark centre lies
    within this many face scales of the track's prediction; ``max_missed``: frames a track survives
    unseen; ``history``: frames of observations kept per track (≥ 2·radius + 1 of the smoother)."""

    def __init__(self, max_distance: float = 0.6, max_missed: int = 8, history: int = 32, momentum: float = 0.5):
        self.max_distance, self.max_missed, self.history, self.momentum = max_distance, max_missed, history, momentum
        self.tracks: dict[int, Track] = {}
        self._next_id = 0

    def update(self, index: int, detections: Sequence[Detection]) -> list[int]:
        """Assign each detection of frame ``index`` a track id (new tracks for new faces); returns the ids."""
        live = [t for t in self.tracks.values() if index - t.last_index <= self.max_missed]
        ids: list[int | None] = [None] * len(detections)
        if live and detections:
            cost = np.full((len(live), len(detections)), 1e6)
            for i, track in enumerate(live):
                predicted = track.predict(index)
                scale = face_scale(predicted)
                for j, det in enumerate(detections):
                    dist = np.linalg.norm(det.landmarks5.mean(0) - predicted.mean(0)) / scale
                    size = abs(np.log(face_scale(det.landmarks5) / scale))
                    if dist <= self.max_distance and size < 0.7:
                        cost[i, j] = dist + 0.5 * size
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] < 1e6:
                    ids[j] = live[i].id
        for j, det in enumerate(detections):
            if ids[j] is None:
                ids[j] = self._next_id
                self.tracks[self._next_id] = Track(self._next_id)
                self._next_id += 1
            self._observe(self.tracks[ids[j]], index, det)
        self._forget(index)
        return ids  # type: ignore[return-value]

    def end_tracks(self) -> None:
        """Forget every track (a shot cut): the next detections start new ones (ids keep counting up)."""
        self.tracks.clear()

    def _observe(self, track: Track, index: int, det: Detection) -> None:
        if track.last_index >= 0:
            step = (det.landmarks5 - track.last.landmarks5) / max(1, index - track.last_index)
            track.velocity = self.momentum * track.velocity + (1 - self.momentum) * step
        track.observations[index] = det
        track.last_index = index

    def _forget(self, index: int) -> None:
        for tid in list(self.tracks):
            track = self.tracks[tid]
            for old in [k for k in track.observations if k < index - self.history]:
                del track.observations[old]
            if not track.observations:
                del self.tracks[tid]


def smoothed(track: Track, index: int, radius: int, sigma: float | None = None,
             max_gap: int | None = None) -> Detection | None:
    """The track's face at frame ``index``: a Gaussian-weighted straight-line fit of its landmarks and box
    over frames index ± radius, evaluated at ``index``. None when the track was not seen at ``index``
    and has no sighting on both sides of it within ``max_gap`` frames (default: radius). ``radius=0``:
    the raw detection."""
    near = {k: d for k, d in track.observations.items() if abs(k - index) <= radius}
    if index not in near:
        gap = radius if max_gap is None else max_gap
        before = [k for k in near if index - gap <= k < index]
        after = [k for k in near if index < k <= index + gap]
        if not before or not after:
            return None
    if radius == 0:
        return near[index]
    sigma = sigma or max(radius / 2, 0.5)
    offsets = np.array(sorted(near), dtype=np.float64) - index
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    values = np.stack([np.concatenate([near[int(k + index)].landmarks5.ravel(), near[int(k + index)].box])
                       for k in offsets])  # (n, 14)
    fitted = local_line_fit(offsets, values, weights)
    score = min(near[int(k + index)].score for k in offsets)
    return Detection(box=fitted[10:], score=score if index not in near else near[index].score,
                     landmarks5=fitted[:10].reshape(5, 2))


def local_line_fit(offsets: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares line a + b·offset through ``values`` (n, d) at ``offsets`` (n,); returns a
    (the value at offset 0). One point, or all at one offset: the weighted mean."""
    s0, s1, s2 = weights.sum(), (weights * offsets).sum(), (weights * offsets ** 2).sum()
    y0 = (weights[:, None] * values).sum(0)
    y1 = (weights[:, None] * offsets[:, None] * values).sum(0)
    det = s0 * s2 - s1 ** 2
    if det <= 1e-9 * max(s0 * s2, 1e-12):
        return y0 / s0
    return (s2 * y0 - s1 * y1) / det
