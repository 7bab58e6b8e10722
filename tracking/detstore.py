"""The detections stage's file: every frame of one video with what the detector found on it
(after its own conf/iou/classes filter) and each detection's appearance embedding, so the
video can be tracked again with other tracker or refinement settings without decoding it or
running a model (`tracking.pipeline.retrack_video`).

One Parquet row per frame, frames without detections included (re-tracking must see the same
frame sequence and timestamps: track ages advance on empty frames), and frames the detector did
not see (`detector.max_fps`): `detected` false, no detections (the tracker predicts them instead
of missing every track there). A frame's detections are flat lists: `xyxy` (4 floats each),
`confidence`, `class_id`, and `embedding` (float16, `embedding_dim` values each, or for the classes
in the metadata's `class_dims` only that many: a person's 256 re-identification values are not stored
padded to the general embedder's 1280, tracking/appearance.py). Files before
`detected` ("vidtrack-detections-1") are read as every frame detected. The file's metadata holds
what re-tracking needs besides: frame size and rate, the detector's class names, and
`detections_id` (what produced it, from `PipelineConfig.detections_id` beside `params_id`).
Written under a temporary name and renamed on a clean close, so a file at its name is complete.

`DetectionsRecord` writes it while a video is tracked, `read_header` and `read_batches` read
it back for re-tracking. The job layer keeps these files in the dataset (jobs/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracking.atomic import AtomicOutput
from tracking.detections import Detections

if TYPE_CHECKING:
    from tracking.video import VideoInfo

DETECTIONS_SCHEMA = pa.schema([
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("xyxy", pa.list_(pa.float32()), nullable=False),
    pa.field("confidence", pa.list_(pa.float32()), nullable=False),
    pa.field("class_id", pa.list_(pa.int16()), nullable=False),
    pa.field("embedding", pa.list_(pa.float16()), nullable=False),
    pa.field("detected", pa.bool_(), nullable=False),
])
FORMAT = "vidtrack-detections-2"
# files before `detected` (every frame detected) are read as they are
_FORMATS = {FORMAT: DETECTIONS_SCHEMA, "vidtrack-detections-1": pa.schema(list(DETECTIONS_SCHEMA)[:-1])}


class DetectionsCacheError(Exception):
    """A detections file that cannot be used (missing, truncated, another schema or another
    `detections_id`): the video is processed in full instead."""


class Stamp(Protocol):
    """What the tracker needs of a frame (a decoded `Frame`, or a `FrameStamp` from the file)."""

    @property
    def index(self) -> int: ...

    @property
    def timestamp_s(self) -> float: ...


@dataclass(frozen=True)
class FrameStamp:
    """A frame without its pixels: what the tracker needs of it."""

    index: int
    timestamp_s: float


@dataclass(frozen=True)
class DetectionsHeader:
    detections_id: str
    width: int
    height: int
    fps: float
    frame_count: int  # declared by the container (0: unknown)
    class_names: dict[int, str]
    embedding_dim: int
    class_dims: dict[int, int]  # classes whose embeddings are stored shorter than embedding_dim (zero-padded)
    frames: int  # rows in the file: every decoded frame
    execution: dict[str, str]  # what detected and embedded it (pipeline.Models.execution)
    start_time: str = ""  # the source container's creation_time (VideoInfo.start_time)


def as_float16(embeds: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Embeddings as the detections file stores them. The full pipeline tracks with exactly these
    values too, so tracking from the file gives the same records row for row."""
    return [np.asarray(e, np.float16).astype(np.float32) for e in embeds]


class DetectionsWriter(AtomicOutput):
    def __init__(self, path: str | os.PathLike[str], *, detections_id: str, width: int, height: int, fps: float,
                 frame_count: int, class_names: dict[int, str], row_group_frames: int = 1024,
                 execution: dict[str, str] | None = None, class_dims: dict[int, int] | None = None,
                 start_time: str = "") -> None:
        super().__init__(path)
        self.class_dims = class_dims or {}
        self._meta = {"format": FORMAT, "detections_id": detections_id, "width": width, "height": height,
                      "fps": fps, "frame_count": frame_count, "class_names": sorted(class_names.items()),
                      "execution": execution or {}, "class_dims": sorted(self.class_dims.items()),
                      "start_time": start_time}
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict[str, object]] = []
        self.row_group_frames, self.frames, self.dim = row_group_frames, 0, 0

    def add(self, frames: Sequence[Stamp], dets: Sequence[Detections | None], embeds: Sequence[np.ndarray]) -> None:
        """A batch of frames in order; a frame's detections are None where it was not detected."""
        for f, d, e in zip(frames, dets, embeds, strict=True):
            seen = d if d is not None else Detections.empty()
            e16 = np.asarray(e, np.float16)
            if len(seen):
                self.dim = self.dim or e16.shape[1]
            flat = e16[_stored(seen.class_id, e16.shape[1] if e16.ndim == 2 else 0, self.class_dims)]
            self._rows.append({"frame_index": f.index, "timestamp_s": f.timestamp_s,
                               "xyxy": seen.xyxy.reshape(-1), "confidence": seen.confidence,
                               "class_id": seen.class_id, "embedding": flat, "detected": d is not None})
        self.frames += len(frames)
        if len(self._rows) >= self.row_group_frames:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        if self._writer is None:  # opened at the first rows: the embedding size is known by then (or never)
            self._meta["embedding_dim"] = self.dim
            meta = {b"vidtrack": json.dumps(self._meta).encode()}
            self._writer = pq.ParquetWriter(self._tmp, DETECTIONS_SCHEMA.with_metadata(meta), compression="zstd")
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=DETECTIONS_SCHEMA))
        self._rows = []

    def _finish(self) -> None:
        self._flush()
        if self._writer is None:
            raise ValueError(f"{self.path}: no frames to write")
        self._writer.close()

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.close()



class DetectionsRecord:
    """The detections stage of a video as it is tracked (`process_video`): the file is made at
    the first batch, when the tracker's frame rate is known (re-tracking must use the same
    one). `open_output` enters the writer among the video's other outputs (all or none)."""

    def __init__(self, path: str | os.PathLike[str], open_output: Callable[[DetectionsWriter], DetectionsWriter], *,
                 detections_id: str, class_names: dict[int, str], execution: dict[str, str] | None = None,
                 class_dims: dict[int, int] | None = None) -> None:
        self.path, self.open_output = path, open_output
        self.detections_id, self.class_names, self.execution = detections_id, class_names, execution
        self.class_dims = class_dims  # see DetectionsWriter
        self.writer: DetectionsWriter | None = None

    def add(self, batch: Sequence[Stamp], dets: Sequence[Detections | None], embeds: list[np.ndarray], *,
            fps: float, info: VideoInfo) -> None:
        """One batch as the tracker took it (`fps`: the tracker's frame rate)."""
        if self.writer is None:
            self.writer = self.open_output(DetectionsWriter(
                self.path, detections_id=self.detections_id, width=info.width, height=info.height, fps=fps,
                frame_count=info.frame_count, class_names=self.class_names, execution=self.execution,
                class_dims=self.class_dims, start_time=info.start_time))
        self.writer.add(batch, dets, embeds)


def _stored(class_id: np.ndarray, dim: int, class_dims: dict[int, int]) -> np.ndarray:
    """(n, dim) mask of the embedding values a file stores: each row's first `class_dims[class]`
    values (all `dim` for other classes), row by row (what boolean indexing flattens in order)."""
    if not class_dims:  # one width for every row (one network): no per-row lookup on this per-frame path
        return np.ones((len(class_id), dim), bool)
    width = np.array([class_dims.get(int(c), dim) for c in class_id], np.int64).reshape(-1, 1)
    return np.arange(dim)[None, :] < width


def _unpack(flat: np.ndarray, class_id: np.ndarray, dim: int, class_dims: dict[int, int]) -> np.ndarray:
    """One frame's (n, dim) float32 embeddings from its stored values, zero-padded as tracked."""
    if not dim:  # no detection in the file, or no class with an appearance (motion alone)
        return np.zeros((len(class_id), 0), np.float32)
    out = np.zeros((len(class_id), dim), np.float32)
    out[_stored(class_id, dim, class_dims)] = flat.astype(np.float32)
    return out


def read_header(path: str | os.PathLike[str], detections_id: str) -> DetectionsHeader:
    """The file's header, checked: raises DetectionsCacheError naming the file and the reason."""
    try:
        f = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise DetectionsCacheError(f"{os.fspath(path)}: not a readable detections file ({e})") from e
    meta = json.loads((f.schema_arrow.metadata or {}).get(b"vidtrack", b"{}"))
    schema = _FORMATS.get(meta.get("format"))
    if schema is None or not f.schema_arrow.remove_metadata().equals(schema):
        raise DetectionsCacheError(f"{os.fspath(path)}: another schema than {FORMAT}'s")
    if meta.get("detections_id") != detections_id:
        raise DetectionsCacheError(f"{os.fspath(path)}: made by {meta.get('detections_id')!r}, not {detections_id!r}")
    return DetectionsHeader(detections_id, int(meta["width"]), int(meta["height"]), float(meta["fps"]),
                            int(meta["frame_count"]), {int(k): str(v) for k, v in meta["class_names"]},
                            int(meta["embedding_dim"]), {int(k): int(v) for k, v in meta.get("class_dims", [])},
                            f.metadata.num_rows,
                            meta.get("execution") or {"detections": "not recorded (a detections stage before 0.3)"},
                            str(meta.get("start_time", "")))


def read_batches(path: str | os.PathLike[str], header: DetectionsHeader, batch_frames: int = 256
                 ) -> Iterator[tuple[list[FrameStamp], list[Detections | None], list[np.ndarray]]]:
    """The file's frames in order, a batch at a time, as the tracker takes them (a frame not
    detected: None)."""
    dim = header.embedding_dim
    try:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_frames):
            cols = rb.to_pydict()
            stamps = [FrameStamp(i, t) for i, t in zip(cols["frame_index"], cols["timestamp_s"], strict=True)]
            detected = cols.get("detected") or [True] * len(stamps)
            dets = [Detections.from_arrays(np.asarray(b, np.float32), np.asarray(c, np.float32), np.asarray(k))
                    if seen else None
                    for b, c, k, seen in zip(cols["xyxy"], cols["confidence"], cols["class_id"], detected,
                                             strict=True)]
            embeds = [_unpack(np.asarray(e, np.float16), np.asarray(k), dim, header.class_dims)
                      for e, k in zip(cols["embedding"], cols["class_id"], strict=True)]
            yield stamps, dets, embeds
    except (OSError, pa.ArrowInvalid) as e:
        raise DetectionsCacheError(f"{os.fspath(path)}: unreadable ({e})") from e
