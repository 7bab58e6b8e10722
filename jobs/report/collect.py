"""The report's inputs, registered in DuckDB from the dataset alone: `manifest` (every run's
manifest, unioned by column name), `done` (the `_done` markers), `tracks` (complete videos'
track files, read in place or through pyarrow) and `trk` (one row per track)."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from jobs.dataset.index import read_markers
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker
from jobs.report.data import ReportData, ReportError
from jobs.storage import ObjectInfo, Storage
from tracking.records import TRACK_SCHEMA

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("vidtrack." + __name__)


# The manifest columns the report relies on (README "Output dataset"); anything else is optional.
MANIFEST_COLUMNS = {
    "run_id": "varchar", "params_id": "varchar", "video_id": "varchar", "source_key": "varchar",
    "attempt": "integer", "status": "varchar", "error_class": "varchar", "error_message": "varchar",
    "frames": "bigint", "rows": "bigint", "bytes_in": "bigint", "seconds": "double", "stage_seconds": "varchar",
    "node_id": "varchar", "worker_pid": "bigint", "started_at": "varchar", "finished_at": "varchar",
}
DONE_SCHEMA = pa.schema([
    pa.field("video_id", pa.string()), pa.field("source_key", pa.string()), pa.field("frames", pa.int64()),
    pa.field("fps", pa.float64()), pa.field("width", pa.int64()), pa.field("height", pa.int64()),
    pa.field("finished_at", pa.string()),
])


def collect(storage: Storage, params_id: str) -> ReportData:
    """Every number the page shows, from the dataset alone."""
    import duckdb

    from jobs.report import queries as q
    from jobs.report.sheet import contact_sheet

    layout = DatasetLayout(storage, params_id)
    if not storage.exists(layout.config):
        raise ReportError(f"{storage.uri.rstrip('/')}/{params_id}: no config.json, not a vidtrack dataset")
    config = json.loads(storage.read_bytes(layout.config))
    with tempfile.TemporaryDirectory(prefix="vidtrack-report-") as tmp:
        con = duckdb.connect()
        register_manifest(con, layout, Path(tmp))
        done_digest = register_done(con, layout)
        register_tracks(con, layout)
        q.prepare(con)
        data = ReportData(
            params_id=params_id, dataset_uri=f"{storage.uri.rstrip('/')}/{params_id}",
            generated_at=datetime.now(UTC).isoformat(timespec="seconds"), config=config,
            summary=q.summary(con), history=q.history(con), failures=q.failures(con),
            throughput=q.throughput(con), tracked=q.tracked(con),
            sheet=contact_sheet(con, layout), done_digest=done_digest)
        con.close()
    return data


def register_manifest(con: duckdb.DuckDBPyConnection, layout: DatasetLayout, tmp: Path) -> None:
    """Table `manifest`: every manifest file, unioned by column name, with the documented
    columns cast to their types (missing ones null) and any further columns kept."""
    prefix = layout.key("manifest") + "/"
    objects = [o for o in layout.storage.list(prefix) if o.key.endswith(".parquet")]
    paths = [_local_copy(layout.storage, o, tmp / f"manifest-{i}.parquet") for i, o in enumerate(objects)]
    if not paths:
        cols = ", ".join(f"cast(null as {t}) as {c}" for c, t in MANIFEST_COLUMNS.items())
        con.execute(f"create table manifest as select {cols} where false")
        return
    files = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
    con.execute(f"create view manifest_raw as select * from read_parquet({files}, union_by_name=true)")
    present = {r[0] for r in con.execute("describe manifest_raw").fetchall()}
    cols = ", ".join(f"cast({c} as {t}) as {c}" if c in present else f"cast(null as {t}) as {c}"
                     for c, t in MANIFEST_COLUMNS.items())
    extra = "".join(f", {_sql_ident(c)}" for c in sorted(present - set(MANIFEST_COLUMNS)))
    con.execute(f"create table manifest as select {cols}{extra} from manifest_raw")
    log.debug("manifest: %d files, extra columns %s", len(paths), sorted(present - set(MANIFEST_COLUMNS)))


def register_done(con: duckdb.DuckDBPyConnection, layout: DatasetLayout) -> str:
    """Table `done`: one row per complete video, from its _done marker (through the marker index,
    as a run plans; an unreadable marker is logged and its video counted as not complete). Returns
    the markers' digest."""
    read = read_markers(layout, "_done", DoneMarker)
    markers = read.markers.values()
    done = pa.Table.from_pylist([{f: getattr(m, f, None) for f in DONE_SCHEMA.names} for m in markers],
                                schema=DONE_SCHEMA)
    con.register("done_arrow", done)
    con.execute("create table done as select * from done_arrow")
    con.unregister("done_arrow")
    return read.digest


def register_tracks(con: duckdb.DuckDBPyConnection, layout: DatasetLayout) -> None:
    """View `tracks` over the complete videos' track files, and table `trk`: one row per
    track (video_id, track_id, class_name, t0, t1, dwell_s, n, n_matched)."""
    ids = [r[0] for r in con.execute("select video_id from done order by video_id").fetchall()]
    if not ids:  # the track table's own columns (tracking/records.py), no rows
        con.register("tracks_none", TRACK_SCHEMA.empty_table())
        con.execute("create view tracks as select * from tracks_none")
    elif (folder := layout.storage.local_path(layout.key("tracks"))) is not None:  # read in place
        glob = _sql_str(folder / "*" / "*.parquet")
        con.execute(f"create view tracks as select * from read_parquet({glob}, hive_partitioning=false) "
                    "where video_id in (select video_id from done)")
    else:
        con.register("tracks_s3", layout.storage.parquet_dataset([layout.tracks(v) for v in ids]))
        con.execute("create view tracks as select * from tracks_s3")
    con.execute("create table trk as select video_id, track_id, any_value(class_name) as class_name, "
                "min(timestamp_s) as t0, max(timestamp_s) as t1, max(timestamp_s) - min(timestamp_s) as dwell_s, "
                "count(*) as n, count_if(matched) as n_matched from tracks group by video_id, track_id")


def _local_copy(storage: Storage, obj: ObjectInfo, dest: Path) -> str:
    path = storage.local_path(obj.key)
    if path is not None:
        return str(path)
    storage.download(obj, dest)
    return str(dest)


def _sql_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
