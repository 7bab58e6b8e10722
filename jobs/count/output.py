"""What a count gives back: the events and visits as Parquet inside the dataset, a table on the
terminal, one JSON object, and the bucketed counts as a CSV or Parquet file.

In the dataset (the job's output; the archive's input is never written):

    <params_id>/counts/<set_id>/events.parquet   one row per line crossing and zone entry/exit
    <params_id>/counts/<set_id>/visits.parquet   one row per stay of a track in a zone
    <params_id>/counts/<set_id>/count.json       what was counted (lines, zones, selection, clock); last

`set_id` is a hash of everything that changes the events (lines, zones, per-camera file,
classes, selection, window, anchor, hysteresis, clock, rule version): two different line sets
never share a folder, the same one counted again replaces its own files. Each file is
written whole and atomically (a renamed temporary file locally, one PUT on S3).
"""

from __future__ import annotations

import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from jobs.count.engine import CountRun, line_counts, zone_counts
from jobs.count.geometry import CountError
from tracking.atomic import write_bytes_atomic

EVENT_COLUMNS = ("video_id, source_key, track_id, class_name, kind, name, direction, frame_index, timestamp_s, "
                 "wall_time, x, y")
VISIT_COLUMNS = ("video_id, source_key, track_id, class_name, zone, start_frame, end_frame, start_s, end_s, dwell_s, "
                 "entered, exited, case when wall then to_timestamp(t0 + start_s) end as wall_start")
OUT_FORMATS = (".csv", ".parquet")


def events_prefix(run: CountRun) -> str:
    return run.layout.key("counts", run.set_id)


def write_events(run: CountRun) -> str:
    """Publish events.parquet and visits.parquet, then count.json; returns the folder's URI."""
    prefix = events_prefix(run)
    storage = run.layout.storage
    with tempfile.TemporaryDirectory(prefix="vidtrack-count-") as tmp:
        for name, sql in (("events", f"select {EVENT_COLUMNS} from events order by video_id, timestamp_s, track_id"),
                          ("visits", f"select {VISIT_COLUMNS} from visits order by video_id, start_s, track_id")):
            path = Path(tmp) / f"{name}.parquet"
            run.con.execute(f"copy ({sql}) to '{path}' (format parquet, compression zstd)")
            storage.upload(path, f"{prefix}/{name}.parquet")
    doc = {"set_id": run.set_id, "params_id": run.layout.params_id, "clock": run.clock,
           "videos": len(run.videos), "definition": run.spec.document(),
           "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    storage.put_bytes(f"{prefix}/count.json", (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    return f"{storage.uri.rstrip('/')}/{prefix}"


def bucket_label(run: CountRun, start: float) -> str:
    if not run.spec.bucket_s:
        return "all"
    if run.clock == "wall":
        return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = round(start)
    return f"+{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def totals(run: CountRun) -> dict[str, Any]:
    """The JSON object: per line {in, out}, per zone {entries, exits, mean_dwell_s}, over the
    whole selection, plus which clock, the set id and the number of videos."""
    lines = {n: {"in": i, "out": o} for n, i, o in run.rows(
        "select name, count(*) filter (where direction = 'in'), count(*) filter (where direction = 'out') "
        "from events where kind = 'line' group by name order by name")}
    dwell = dict(run.rows("select zone, avg(d) from (select zone, video_id, track_id, sum(dwell_s) as d "
                          "from visits group by all) group by zone"))
    zones = {n: {"entries": i, "exits": o, "mean_dwell_s": None} for n, i, o in run.rows(
        "select name, count(*) filter (where direction = 'in'), count(*) filter (where direction = 'out') "
        "from events where kind = 'zone' group by name order by name")}
    for name in {z.name for v in run.videos for z in v.zones} | {z.name for z in run.spec.zones}:
        zones.setdefault(name, {"entries": 0, "exits": 0, "mean_dwell_s": None})
        zones[name]["mean_dwell_s"] = None if dwell.get(name) is None else round(float(dwell[name]), 3)
    for name in {li.name for v in run.videos for li in v.lines} | {li.name for li in run.spec.lines}:
        lines.setdefault(name, {"in": 0, "out": 0})
    return {"lines": dict(sorted(lines.items())), "zones": dict(sorted(zones.items())), "clock": run.clock,
            "bucket_s": run.spec.bucket_s, "videos": len(run.videos), "set_id": run.set_id}


def print_table(run: CountRun, out: TextIO) -> None:
    """Counts per line and bucket, then per zone and bucket, as aligned text."""
    clock = run.spec.clock
    where = (" (seconds of footage)" if clock is None else " (from the containers' creation_time)"
             if clock.from_container else f" (from the source keys, {clock.pattern!r})")
    print(f"{len(run.videos)} complete videos; clock: {run.clock}{where}", file=out)
    rows = [(n, bucket_label(run, b), i, o) for n, b, i, o in line_counts(run)]
    if rows:
        _aligned(out, ("line", "bucket", "in", "out"), rows)
    zrows = [(n, bucket_label(run, b), e, x, "" if d is None else f"{d:.1f}", f"{occ:.2f}")
             for n, b, e, x, d, occ in zone_counts(run)]
    if zrows:
        _aligned(out, ("zone", "bucket", "entries", "exits", "mean dwell s", "mean inside"), zrows)


def _aligned(out: TextIO, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))),
              file=out)


def check_out_path(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in OUT_FORMATS:
        raise CountError(f"--out {path}: expected a .csv or .parquet file")
    if path is not None and not path.parent.is_dir():
        raise CountError(f"--out {path}: folder {path.parent} does not exist")


def counts_table(run: CountRun) -> pa.Table:
    """The bucketed counts per line or zone and class, one row each (what --out writes)."""
    cols: dict[str, list[Any]] = {k: [] for k in ("clock", "bucket", "bucket_start", "bucket_s", "kind", "name",
                                                  "class_name", "in", "out", "entries", "exits", "mean_dwell_s",
                                                  "mean_inside")}
    def add(**row: Any) -> None:
        for k in cols:
            cols[k].append(row.get(k))
    for n, b, c, i, o in line_counts(run, by_class=True):
        add(clock=run.clock, bucket=bucket_label(run, b), bucket_start=b, bucket_s=run.spec.bucket_s, kind="line",
            name=n, class_name=c, **{"in": i, "out": o})
    for n, b, c, e, x, d, occ in zone_counts(run, by_class=True):
        add(clock=run.clock, bucket=bucket_label(run, b), bucket_start=b, bucket_s=run.spec.bucket_s, kind="zone",
            name=n, class_name=c, entries=e, exits=x, mean_dwell_s=d, mean_inside=occ)
    types = {"in": pa.int64(), "out": pa.int64(), "entries": pa.int64(), "exits": pa.int64(),
             "bucket_start": pa.float64(), "bucket_s": pa.float64(), "mean_dwell_s": pa.float64(),
             "mean_inside": pa.float64()}
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def write_out(run: CountRun, path: Path) -> None:
    table, buf = counts_table(run), io.BytesIO()
    if path.suffix.lower() == ".csv":
        pcsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf, compression="zstd")
    write_bytes_atomic(path, buf.getvalue())
