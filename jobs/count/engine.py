"""Run one count over a dataset: select, check, compute (jobs/count/queries.py), then
aggregate into buckets on the chosen clock. Nothing is written here (jobs/count/output.py
writes)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from jobs.count import queries as q
from jobs.count.geometry import CountError, set_id
from jobs.count.settings import CountSpec
from jobs.count.source import Video, check_classes, known_classes, register_tracks, select_videos
from jobs.dataset.layout import DatasetLayout

log = logging.getLogger("vidtrack." + __name__)

COUNT_VERSION = 1  # part of every set_id: a change of the counting rules gives new events folders
# DuckDB's own memory (it spills to a temporary folder beyond it): a count of 10 million rows
# stays under 2 GiB of process memory on a 2-core machine (bench/count_bench.py)
MEMORY_LIMIT = "1200MB"


@dataclass
class CountRun:
    """A computed count: DuckDB tables `events`, `visits`, `geo` (and `covered` per bucket)."""

    layout: DatasetLayout
    spec: CountSpec
    videos: list[Video]
    con: duckdb.DuckDBPyConnection
    set_id: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def clock(self) -> str:
        """`wall` when every selected video's start is known (a clock pattern), else `footage`."""
        return "wall" if self.spec.clock is not None else "footage"

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()


def compute(layout: DatasetLayout, config: dict[str, Any], spec: CountSpec) -> CountRun:
    """Count lines and zones over the complete videos the spec selects. Raises CountError for
    bad input before anything is computed."""
    t0 = time.perf_counter()
    spec.check()
    videos = select_videos(layout, spec)
    # beyond the limit DuckDB spills to its temporary folder: this process's own, never the working directory
    spill = Path(tempfile.gettempdir()) / f"vidtrack-count-{os.getpid()}"
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill)})
    register_tracks(con, layout, videos)
    if spec.classes:
        check_classes(spec, known_classes(layout, config, con))
    geo = q.geo_table(videos)
    con.register("geo", geo)
    n_lines, zones = q.slots(geo)
    t1 = time.perf_counter()
    try:
        q.build_marks(con, spec, geo)
    except duckdb.IOException as e:
        raise CountError(f"{layout.storage.uri.rstrip('/')}/{layout.params_id}: cannot read the track files "
                         f"({str(e).splitlines()[0]})") from None
    q.build_events(con, n_lines, len(zones))
    q.build_visits(con, len(zones))
    _apply_window(con, spec)
    run = CountRun(layout, spec, videos, con, set_id({"version": COUNT_VERSION, **spec.document()}))
    run.seconds = {"select": round(t1 - t0, 3), "count": round(time.perf_counter() - t1, 3)}
    log.debug("count %s: %d videos, %s", run.set_id, len(videos), run.seconds)
    return run


def _apply_window(con: duckdb.DuckDBPyConnection, spec: CountSpec) -> None:
    """Keep the events inside [since, until) of the clock, and clip the visits to it."""
    lo = -1e18 if spec.since is None else spec.since
    hi = 1e18 if spec.until is None else spec.until
    con.execute("delete from events where t < ? or t >= ?", [lo, hi])
    con.execute("delete from visits where t0 + end_s < ? or t0 + start_s >= ?", [lo, hi])
    con.execute("update visits set start_s = greatest(start_s, ? - t0), end_s = least(end_s, ? - t0)", [lo, hi])
    con.execute("update visits set dwell_s = end_s - start_s")
    con.execute(f"""create temp table spans as select video_id, greatest(t0, {lo!r}) as lo,
                    least(t0 + dur, {hi!r}) as hi from geo where least(t0 + dur, {hi!r}) > greatest(t0, {lo!r})""")


def bucket_expr(column: str, bucket_s: float | None) -> str:
    return f"floor({column} / {bucket_s!r}) * {bucket_s!r}" if bucket_s else "0.0::double"


def line_counts(run: CountRun, by_class: bool = False) -> list[tuple[Any, ...]]:
    """(line, bucket start, [class,] in, out) per line and bucket, buckets in order."""
    b = bucket_expr("t", run.spec.bucket_s)
    cls = ", class_name" if by_class else ""
    return run.rows(f"""
        select name, {b} as bucket{cls}, count(*) filter (where direction = 'in'),
               count(*) filter (where direction = 'out')
        from events where kind = 'line' group by all order by name, bucket{cls}""")


def zone_counts(run: CountRun, by_class: bool = False) -> list[tuple[Any, ...]]:
    """(zone, bucket start, [class,] entries, exits, mean dwell s per track, mean tracks inside)
    per zone and bucket. Dwell: a track's seconds in the zone over its visits that start in
    the bucket; occupancy: visit-seconds in the bucket over the footage seconds it holds."""
    bs = run.spec.bucket_s
    cls, cls_v = (", class_name", ", v.class_name") if by_class else ("", "")
    occupancy = _occupancy_sql(bs, cls_v)
    return run.rows(f"""
        with ev as (select name as zone, {bucket_expr('t', bs)} as bucket{cls},
                           count(*) filter (where direction = 'in') as entries,
                           count(*) filter (where direction = 'out') as exits
                    from events where kind = 'zone' group by all),
             dw as (select zone, bucket{cls}, avg(dwell) as mean_dwell
                    from (select zone, {bucket_expr('t0 + start_s', bs)} as bucket{cls}, video_id, track_id,
                                 sum(dwell_s) as dwell from visits group by all) group by all),
             oc as ({occupancy})
        select zone, bucket{cls}, coalesce(entries, 0), coalesce(exits, 0), mean_dwell, coalesce(inside, 0)
        from ev full join dw using (zone, bucket{cls}) full join oc using (zone, bucket{cls})
        order by zone, bucket{cls}""")


def _occupancy_sql(bucket_s: float | None, cls_v: str) -> str:
    if not bucket_s:
        return (f"select v.zone, 0.0::double as bucket{cls_v}, sum(v.dwell_s) / (select sum(hi - lo) from spans) "
                f"as inside from visits v group by all")
    b = repr(bucket_s)
    covered = (f"select r.b * {b} as bucket, sum(least(s.hi, (r.b + 1) * {b}) - greatest(s.lo, r.b * {b})) as cov "
               f"from spans s, range(floor(s.lo / {b})::bigint, ceil(s.hi / {b})::bigint) r(b) group by 1")
    return (f"select v.zone, r.b * {b} as bucket{cls_v}, sum(least(v.t0 + v.end_s, (r.b + 1) * {b}) - "
            f"greatest(v.t0 + v.start_s, r.b * {b})) / any_value(c.cov) as inside "
            f"from visits v, range(floor((v.t0 + v.start_s) / {b})::bigint, "
            f"floor((v.t0 + v.end_s) / {b})::bigint + 1) r(b) join ({covered}) c on c.bucket = r.b * {b} "
            f"group by all")
