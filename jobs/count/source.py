"""The dataset side of a count: which videos are complete and selected, their geometry and
clock, and the track rows as a DuckDB view (local files read in place, S3 through pyarrow's
filesystem). Only videos with a `_done` marker are counted."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from jobs.count.geometry import CountError, Line, Zone, check_in_frame
from jobs.count.settings import CountSpec
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, done_markers
from jobs.storage import StorageError, open_storage

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("vidtrack." + __name__)

# the columns a count reads; `box_source` is null in files written before it existed (all detected)
TRACK_COLUMNS = pa.schema([
    pa.field("video_id", pa.string()), pa.field("frame_index", pa.int32()), pa.field("timestamp_s", pa.float64()),
    pa.field("track_id", pa.int32()), pa.field("class_name", pa.string()), pa.field("x1", pa.float32()),
    pa.field("y1", pa.float32()), pa.field("x2", pa.float32()), pa.field("y2", pa.float32()),
    pa.field("box_source", pa.string()),
])


@dataclass(frozen=True)
class Video:
    video_id: str
    source_key: str
    fps: float
    width: int
    height: int
    frames: int
    start: float | None  # wall-clock start (UNIX time) from the key, None on the footage clock
    lines: tuple[Line, ...]
    zones: tuple[Zone, ...]

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def split_dataset(uri: str) -> tuple[str, str]:
    """`out/<params_id>` or `s3://bucket/tracks/<params_id>` -> (storage root, params_id)."""
    root, _, params_id = uri.rstrip("/").rpartition("/")
    if not params_id or not root or root in ("s3:", "s3:/"):
        raise CountError(f"dataset {uri!r}: expected <output>/<params_id> (a local folder or s3://bucket/.../<id>)")
    return (root + "/" if root.startswith("s3://") else root), params_id


def open_dataset(uri: str, endpoint_url: str | None = None) -> tuple[DatasetLayout, dict[str, Any]]:
    """The dataset's layout and its config.json; a path without one is not a dataset."""
    root, params_id = split_dataset(uri)
    try:
        layout = DatasetLayout(open_storage(root, endpoint_url), params_id)
    except StorageError as e:
        raise CountError(f"{uri}: {e}") from None
    return layout, read_config(layout)


def read_config(layout: DatasetLayout) -> dict[str, Any]:
    where = f"{layout.storage.uri.rstrip('/')}/{layout.params_id}"
    try:
        present = layout.storage.exists(layout.config)
        data = layout.storage.read_bytes(layout.config) if present else b""
    except StorageError as e:
        raise CountError(f"{where}: {e}") from None
    if not present:
        raise CountError(f"{where}: not a vidtrack dataset (no config.json; expected <output>/<params_id>)")
    try:
        config: dict[str, Any] = json.loads(data)
    except ValueError as e:
        raise CountError(f"{where}: config.json is not JSON ({e})") from None
    return config


def select_videos(layout: DatasetLayout, spec: CountSpec) -> list[Video]:
    """The complete videos the spec selects, each with its lines, zones and clock, checked
    against its frame. A named --video that is not complete is an error."""
    markers = done_markers(layout, save_index=False)  # counting writes nothing but its own events
    missing = [v for v in spec.videos if v not in markers]
    if missing:
        raise CountError(f"video {missing[0]!r} is not a complete video of this dataset (no _done marker)")
    videos = []
    for vid, m in sorted(markers.items()):
        if spec.selects(vid, m.source_key):
            videos.append(_video(vid, m, spec))
    unsized = [v.video_id for v in videos if not (v.width and v.height)]
    if unsized:  # markers of an old vidtrack: there is no frame to check the lines against
        log.warning("%d videos (e.g. %s) have no frame size in their _done marker: their lines and zones are not "
                    "checked against the frame", len(unsized), unsized[0])
    if spec.clock is not None:
        unmatched = [v.source_key for v in videos if v.start is None]
        if unmatched and spec.clock.from_container:
            raise CountError(f"video {unmatched[0]!r} has no creation_time from its container ({len(unmatched)} of "
                             f"{len(videos)} selected videos): use a key pattern, or narrow --key")
        if unmatched:
            raise CountError(f"clock pattern {spec.clock.pattern!r} does not match the key {unmatched[0]!r} "
                             f"({len(unmatched)} of {len(videos)} selected videos): fix it or narrow --key")
    return videos


def _video(vid: str, m: DoneMarker, spec: CountSpec) -> Video:
    lines, zones = spec.shapes_for(m.source_key)
    if m.width and m.height:
        check_in_frame((*lines, *zones), m.width, m.height, vid)
    start = spec.clock.start_of(m.source_key, m.start_time) if spec.clock is not None else None
    return Video(vid, m.source_key, m.fps, m.width, m.height, m.frames, start, lines, zones)


def known_classes(layout: DatasetLayout, config: dict[str, Any], con: duckdb.DuckDBPyConnection) -> set[str]:
    """Class names this dataset can hold: the tracked ones and those the detector was limited to."""
    params = config.get("parameters", {}).get("detector", {})
    named = {str(c) for c in params.get("classes", []) if isinstance(c, str)}
    found = {r[0] for r in con.execute("select distinct class_name from tracks").fetchall()}
    return named | found


def check_classes(spec: CountSpec, known: set[str]) -> None:
    unknown = [c for c in spec.classes if c not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:20]) or "none"
        raise CountError(f"class {unknown[0]!r} is not in this dataset (its classes: {listed})")


def register_tracks(con: duckdb.DuckDBPyConnection, layout: DatasetLayout, videos: list[Video]) -> None:
    """View `tracks` (TRACK_COLUMNS and `vno`, a number per video that windows partition on:
    sorting on an integer is cheaper than on the video_id string) over the selected videos'
    track files: local files read in place by DuckDB, S3 objects through pyarrow's filesystem."""
    keys = [layout.tracks(v.video_id) for v in videos]
    paths = [layout.storage.local_path(k) for k in keys]
    if keys and all(p is not None for p in paths):
        files = "[" + ", ".join(_sql_str(str(p)) for p in paths) + "]"
        con.execute(f"create view tracks_raw as select *, file_index::integer as vno from read_parquet({files}, "
                    "union_by_name=true, hive_partitioning=false)")  # one file per video: its index numbers it
        present = {r[0] for r in con.execute("describe tracks_raw").fetchall()}
        cols = ", ".join(f.name if f.name in present else f"cast(null as varchar) as {f.name}"
                         for f in TRACK_COLUMNS)
        con.execute(f"create view tracks as select vno, {cols} from tracks_raw")
        return
    data = layout.storage.parquet_dataset(keys).replace_schema(TRACK_COLUMNS) if keys else TRACK_COLUMNS.empty_table()
    con.register("tracks_arrow", data)
    con.register("video_numbers", pa.table({"video_id": [v.video_id for v in videos],
                                            "vno": pa.array(range(len(videos)), pa.int32())}))
    con.execute("create view tracks as select n.vno, t.* from tracks_arrow t join video_numbers n using (video_id)")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
