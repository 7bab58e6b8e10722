"""The run report: one self-contained HTML page per dataset, computed from the dataset alone.

    vidtrack report out/<params_id>                 -> out/<params_id>/report.html
    vidtrack report s3://bucket/tracks/<params_id>  -> s3://bucket/tracks/<params_id>/report.html
    write_report(storage, params_id)                -> the report's URI (the end of `vidtrack run`)

Sources, all read through DuckDB (track rows never become Python objects; only
aggregates, capped tables and a few sampled boxes do):

    manifest/run_id=*/part-0.parquet   read_parquet(..., union_by_name=true): columns added by
                                       later versions are tolerated, unknown statuses shown as they come
    _done/<id>.json                    complete videos: fps and frame count give the footage duration
    tracks/video_id=<id>/part-0.parquet  only for complete videos, aggregated to one row per track
    videos/<id>.mp4                    the contact sheet's crops (PyAV seeks; S3 through a presigned URL)
    config.json                        parameters, model identity, versions

The page (jobs/report_html.py) has no external reference: styles, the table-sorting script,
charts (matplotlib SVG, jobs/report_charts.py) and thumbnails (base64 JPEG) are inline.
Tables are capped at MAX_TABLE_ROWS; the page shows what was left out and the SQL to list it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import done_markers
from jobs.report_data import ReportData, ReportError
from jobs.storage import ObjectInfo, Storage, StorageError, open_storage
from tracking.atomic import write_bytes_atomic

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("vidtrack." + __name__)

REPORT_NAME = "report.html"

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


def build_report(storage: Storage, params_id: str) -> bytes:
    """The report page for the dataset `<storage>/<params_id>/`, as UTF-8 HTML bytes."""
    from jobs.report_html import render_page

    return render_page(collect(storage, params_id)).encode("utf-8")


def write_report(storage: Storage, params_id: str) -> str:
    """Build the report and publish it as `<params_id>/report.html` in one atomic put.
    Returns the report's URI (a local path or s3://...)."""
    page = build_report(storage, params_id)
    key = DatasetLayout(storage, params_id).key(REPORT_NAME)
    storage.put_bytes(key, page)
    uri = f"{storage.uri.rstrip('/')}/{key}"
    log.info("report: %s (%.0f KiB)", uri, len(page) / 1024)
    return uri


def collect(storage: Storage, params_id: str) -> ReportData:
    """Every number the page shows, from the dataset alone."""
    import duckdb

    from jobs import report_queries as q
    from jobs.report_sheet import contact_sheet

    layout = DatasetLayout(storage, params_id)
    if not storage.exists(layout.config):
        raise ReportError(f"{storage.uri.rstrip('/')}/{params_id}: no config.json, not a vidtrack dataset")
    config = json.loads(storage.read_bytes(layout.config))
    with tempfile.TemporaryDirectory(prefix="vidtrack-report-") as tmp:
        con = duckdb.connect()
        register_manifest(con, layout, Path(tmp))
        register_done(con, layout)
        register_tracks(con, layout)
        q.prepare(con)
        data = ReportData(
            params_id=params_id, dataset_uri=f"{storage.uri.rstrip('/')}/{params_id}",
            generated_at=datetime.now(UTC).isoformat(timespec="seconds"), config=config,
            summary=q.summary(con), history=q.history(con), failures=q.failures(con),
            throughput=q.throughput(con), tracked=q.tracked(con),
            sheet=contact_sheet(con, layout))
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


def register_done(con: duckdb.DuckDBPyConnection, layout: DatasetLayout) -> None:
    """Table `done`: one row per complete video, from its _done marker (read in parallel;
    an unreadable marker is logged and its video counted as not complete)."""
    markers = done_markers(layout).values()
    done = pa.Table.from_pylist([{f: getattr(m, f, None) for f in DONE_SCHEMA.names} for m in markers],
                                schema=DONE_SCHEMA)
    con.register("done_arrow", done)
    con.execute("create table done as select * from done_arrow")
    con.unregister("done_arrow")


def register_tracks(con: duckdb.DuckDBPyConnection, layout: DatasetLayout) -> None:
    """View `tracks` over the complete videos' track files, and table `trk`: one row per
    track (video_id, track_id, class_name, t0, t1, dwell_s, n, n_matched)."""
    ids = [r[0] for r in con.execute("select video_id from done order by video_id").fetchall()]
    if not ids:
        con.execute("create view tracks as select cast(null as varchar) as video_id, cast(null as integer) as "
                    "track_id, cast(null as varchar) as class_name, cast(null as double) as timestamp_s, "
                    "cast(null as integer) as frame_index, cast(null as boolean) as matched, "
                    "0.0::float as x1, 0.0::float as y1, 0.0::float as x2, 0.0::float as y2 where false")
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


def split_dataset_uri(uri: str) -> tuple[str, str]:
    """`out/<params_id>` or `s3://bucket/tracks/<params_id>` -> (storage root, params_id)."""
    trimmed = uri.rstrip("/")
    root, _, params_id = trimmed.rpartition("/")
    if not params_id or not root or root in ("s3:", "s3:/"):
        raise StorageError(f"dataset {uri!r}: expected <output>/<params_id> (a local folder or s3://bucket/.../<id>)")
    return (root + "/" if root.startswith("s3://") else root), params_id


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="the dataset folder: <output>/<params_id> (local) or s3://bucket/prefix/<params_id>")
    p.add_argument("--out", type=Path, help="write the page here instead of <dataset>/report.html")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")


def main(args: argparse.Namespace) -> int:
    root, params_id = split_dataset_uri(args.dataset)
    storage = open_storage(root, args.s3_endpoint_url)
    try:
        if args.out:
            page = build_report(storage, params_id)
            write_bytes_atomic(args.out, page)
            where = str(args.out)
        else:
            where = write_report(storage, params_id)
    except ReportError as e:
        print(f"vidtrack report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {where}")
    return 0
