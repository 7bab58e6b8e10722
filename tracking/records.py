"""Track records on disk: the Parquet table's schema (`TRACK_SCHEMA`) and its writer, which
takes a whole video's rows (`TrackRows`, tracking/tracks.py) and writes a row group per
`row_group_frames` frames.

One row per track per frame. Boxes are pixel corners (x1, y1, x2, y2) in the
decoded (display-oriented) frame; `timestamp_s` is the frame's presentation time
in seconds from the first frame; `matched` says whether the box is this frame's
detection (True) or not (False, `confidence` null); `box_source` says where a box
came from: "detected" (this frame's detection), "predicted" (the tracker's motion
prediction while the object was not detected) or "interpolated" (filled in by the
offline refinement between two detections of the track, tracking/refine.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracking.atomic import AtomicOutput
from tracking.tracks import BOX_SOURCES, DETECTED, TrackRows

TRACK_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("track_id", pa.int32(), nullable=False),
    pa.field("class_id", pa.int16(), nullable=False),
    pa.field("class_name", pa.string(), nullable=False),
    pa.field("confidence", pa.float32(), nullable=True),
    pa.field("x1", pa.float32(), nullable=False),
    pa.field("y1", pa.float32(), nullable=False),
    pa.field("x2", pa.float32(), nullable=False),
    pa.field("y2", pa.float32(), nullable=False),
    pa.field("matched", pa.bool_(), nullable=False),
    pa.field("box_source", pa.string(), nullable=False),
    pa.field("frame_width", pa.int32(), nullable=False),
    pa.field("frame_height", pa.int32(), nullable=False),
    pa.field("params_id", pa.string(), nullable=False),
])


class TrackTableWriter(AtomicOutput):
    """A video's track rows (`write_rows`) to one Parquet file, a row group per
    `row_group_frames` frames. Written under a temporary name and renamed on a clean
    close; removed if the `with` block raises."""

    def __init__(self, path: str | os.PathLike[str], *, video_id: str, params_id: str,
                 class_names: dict[int, str], frame_size: tuple[int, int], row_group_frames: int = 256) -> None:
        super().__init__(path)
        self._writer = pq.ParquetWriter(self._tmp, TRACK_SCHEMA, compression="zstd")
        self.video_id, self.params_id = video_id, params_id
        self.class_names = class_names
        self.width, self.height = frame_size
        self.row_group_frames = row_group_frames
        self.rows = 0
        self._reset()

    def _reset(self) -> None:
        self._cols: dict[str, list[object]] = {name: [] for name in
                                                ("frame_index", "timestamp_s", "track_id", "class_id",
                                                 "confidence", "x1", "y1", "x2", "y2", "matched", "box_source")}

    def write_rows(self, rows: TrackRows, timestamps: Sequence[float]) -> None:
        """Write a whole video's rows (sorted by frame), a row group per `row_group_frames`
        frames. `timestamps[i]` is frame i's presentation time."""
        self.flush()
        ts = np.asarray(timestamps, np.float64)
        edges = np.searchsorted(rows.frame, np.arange(0, len(ts) + self.row_group_frames, self.row_group_frames))
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            if b > a:
                self._write_slice(rows.take(np.arange(a, b)), ts)

    def _write_slice(self, r: TrackRows, ts: np.ndarray) -> None:
        c = self._cols
        c["frame_index"], c["timestamp_s"] = r.frame.tolist(), ts[r.frame].tolist()
        c["track_id"], c["class_id"] = r.track.tolist(), r.cls.tolist()
        c["confidence"] = [None if v != v else v for v in r.conf.tolist()]
        for i, k in enumerate(("x1", "y1", "x2", "y2")):
            c[k] = r.xyxy[:, i].tolist()
        c["matched"] = (r.source == DETECTED).tolist()
        c["box_source"] = [BOX_SOURCES[v] for v in r.source.tolist()]
        self.flush()

    def flush(self) -> None:
        n = len(self._cols["frame_index"])
        if n == 0:
            return
        c = self._cols
        arrays = {
            "video_id": pa.array([self.video_id] * n, pa.string()),
            **{k: pa.array(c[k], TRACK_SCHEMA.field(k).type) for k in c},
            "class_name": pa.array([self.class_names.get(k, str(k)) for k in cast(list[int], c["class_id"])],
                                   pa.string()),
            "frame_width": pa.array([self.width] * n, pa.int32()),
            "frame_height": pa.array([self.height] * n, pa.int32()),
            "params_id": pa.array([self.params_id] * n, pa.string()),
        }
        self._writer.write_table(pa.Table.from_pydict(arrays, schema=TRACK_SCHEMA))
        self.rows += n
        self._reset()

    def _finish(self) -> None:
        self.flush()
        self._writer.close()

    def _discard(self) -> None:
        self._writer.close()
