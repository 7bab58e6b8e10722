"""Track records in memory, in the form every stage after the tracker shares.

- `TrackState`: what any tracker reports, one record per live track per frame.
- `TrackRows`: many such records as columns (one numpy array per field); the refiner
  (tracking/refine.py) reads and returns them, the Parquet writer (tracking/records.py)
  and the render pass take them.
- `TrackLog`: everything the online tracker reported for one video (`TrackRows` chunks)
  and each track's summed appearance embedding, the refiner's input.
- `DETECTED`, `PREDICTED`, `INTERPOLATED`: where a row's box came from (`TrackRows.source`),
  named by `BOX_SOURCES` in the Parquet table's `box_source` column.

This module depends on numpy only, not on a tracking library (tracking/tracker.py adapts
deep-sort-realtime), so what consumes tracks does not import one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DETECTED, PREDICTED, INTERPOLATED = 0, 1, 2
BOX_SOURCES = ("detected", "predicted", "interpolated")  # indexed by the codes above


@dataclass(frozen=True)
class TrackState:
    """One track in one frame.

    xyxy: pixel corners (x1, y1, x2, y2) (see tracking/boxes.py); the matched detection's
    box when `matched`, else the tracker's prediction. confidence: the matched detection's
    score, NaN if predicted. confirmed: the tracker has seen enough of it to trust it.
    det_index: the matched detection's index in this frame's detections (-1 if predicted),
    so its appearance embedding can be credited to the track.
    """

    track_id: int
    class_id: int
    confidence: float
    xyxy: tuple[float, float, float, float]
    matched: bool
    confirmed: bool
    det_index: int = -1


@dataclass
class TrackRows:
    """Columns of track rows, one row per track per frame (numpy arrays of equal length)."""

    frame: np.ndarray  # int64
    track: np.ndarray  # int64
    cls: np.ndarray  # int64
    conf: np.ndarray  # float64, NaN when not detected
    xyxy: np.ndarray  # (n, 4) float64
    source: np.ndarray  # int8: DETECTED, PREDICTED, INTERPOLATED
    confirmed: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, idx: np.ndarray) -> TrackRows:
        return TrackRows(self.frame[idx], self.track[idx], self.cls[idx], self.conf[idx], self.xyxy[idx],
                         self.source[idx], self.confirmed[idx])

    @classmethod
    def concat(cls, parts: Sequence[TrackRows]) -> TrackRows:
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                       np.zeros((0, 4)), np.zeros(0, np.int8), np.zeros(0, bool))
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                     ("frame", "track", "cls", "conf", "xyxy", "source", "confirmed")))

    def sorted(self) -> TrackRows:
        return self.take(np.lexsort((self.track, self.frame)))


class TrackLog:
    """Everything the online tracker reported for one video, and each track's summed
    (L2-normalised) appearance embedding, credited from the detections it matched."""

    def __init__(self, chunk_frames: int = 256) -> None:
        self._parts: list[TrackRows] = []
        self._rows: list[tuple[int, int, int, float, float, float, float, float, int, bool]] = []
        self._pending_frames, self._chunk = 0, chunk_frames
        self.timestamps: list[float] = []  # per frame index, every frame processed
        self.embedding_sum: dict[int, np.ndarray] = {}
        self.embedding_count: dict[int, int] = defaultdict(int)

    def add_frame(self, frame_index: int, timestamp_s: float, states: Sequence[TrackState],
                  embeds: np.ndarray | Sequence[np.ndarray]) -> None:
        while len(self.timestamps) <= frame_index:
            self.timestamps.append(timestamp_s)
        for s in states:
            src = DETECTED if s.matched else PREDICTED
            self._rows.append((frame_index, s.track_id, s.class_id, s.confidence, *s.xyxy, src, s.confirmed))
            if s.matched and 0 <= s.det_index < len(embeds):
                self._credit(s.track_id, np.asarray(embeds[s.det_index], np.float32))
        self._pending_frames += 1
        if self._pending_frames >= self._chunk:
            self._flush()

    def _credit(self, track_id: int, e: np.ndarray) -> None:
        norm = float(np.linalg.norm(e))
        if norm > 0:
            prev = self.embedding_sum.get(track_id)
            if prev is None:  # float32: 5 KB a track, the only part of the log that grows per track
                self.embedding_sum[track_id] = e / np.float32(norm)
            else:
                prev += e / np.float32(norm)
            self.embedding_count[track_id] += 1

    def _flush(self) -> None:
        self._pending_frames = 0
        if not self._rows:
            return
        a = np.array(self._rows, dtype=np.float64)
        self._parts.append(TrackRows(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
                                     a[:, 3], a[:, 4:8], a[:, 8].astype(np.int8), a[:, 9].astype(bool)))
        self._rows = []

    def rows(self) -> TrackRows:
        self._flush()
        return TrackRows.concat(self._parts)

    def mean_embeddings(self) -> dict[int, np.ndarray]:
        out = {}
        for k, v in self.embedding_sum.items():
            n = float(np.linalg.norm(v))
            if n > 0:
                out[k] = v / n
        return out
