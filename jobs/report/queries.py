"""The report's numbers: SQL over the tables jobs/report/collect.py registers in DuckDB
(`manifest`, `done`, `tracks`, `trk`). Every result is small: aggregated, or capped at
MAX_TABLE_ROWS rows, or one number per video as a NumPy array (for histograms).

Two views carry the status logic:
    run_last  one row per (run, video): the video's last attempt in that run
    cur       one row per video: its current state, its last attempt that was not a skip
              (preferring real attempts over attempt-0 rows that repeat an earlier outcome)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from jobs.report.data import MAX_TABLE_ROWS, SHORT_TRACK_S, STAGE_ORDER, STATUS_ORDER, Section

FAILURES_PER_CLASS = 25  # failed videos listed per error class (the rest counted)
FAILURE_CLASSES = 40  # error classes listed
MESSAGE_CHARS = 400  # an error message is cut to this on the page (2,000 in the manifest)
CHART_BARS = 30  # nodes / runs / classes drawn in one chart
DWELL_EDGES_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
DWELL_CLASSES = 6  # classes in the dwell histogram


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create view run_last as select * from manifest qualify row_number() over "
                "(partition by run_id, video_id order by attempt desc, finished_at desc nulls last) = 1")
    # a video's current state: its latest real attempt (attempt 0 rows only repeat an earlier
    # run's outcome, e.g. "failed before, source unchanged", and carry none of its details)
    con.execute("create view cur as select * from manifest where status <> 'skipped' qualify row_number() over "
                "(partition by video_id order by (attempt > 0) desc, run_id desc, attempt desc) = 1")


def ordered_statuses(seen: list[str]) -> list[str]:
    """The documented statuses first, in their order, then any others (a newer job's) sorted."""
    return [s for s in STATUS_ORDER if s in seen] + sorted(s for s in set(seen) if s not in STATUS_ORDER)


def summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    one = con.execute("""
        select (select count(*) from (select video_id from manifest union select video_id from done)),
               (select count(*) from done), (select coalesce(sum(frames), 0) from done),
               (select coalesce(sum(frames / fps) filter (where fps > 0), 0) from done),
               (select count(*) from trk), (select coalesce(sum(n), 0) from trk),
               (select count(distinct run_id) from manifest)""").fetchone() or (0,) * 7
    current = dict(con.execute("select status, count(*) from cur where video_id not in (select video_id from done) "
                               "group by status").fetchall())
    latest = con.execute("select max(run_id) from manifest").fetchone()
    latest_run = latest[0] if latest else None
    latest_counts = dict(con.execute("select status, count(*) from run_last where run_id = ? group by status",
                                     [latest_run]).fetchall()) if latest_run else {}
    return {"videos": one[0], "complete": one[1], "frames": int(one[2]), "footage_s": round(float(one[3]), 3),
            "tracks": one[4], "track_rows": int(one[5]), "runs": one[6], "not_complete_by_status": current,
            "latest_run": {"run_id": latest_run, "videos_by_status": latest_counts}}


def history(con: duckdb.DuckDBPyConnection) -> Section:
    """One line per run, newest first: when, parameters, videos per final status, frames,
    processing span (first attempt start to last attempt end) and frames/s over it."""
    statuses = ordered_statuses([r[0] for r in con.execute("select distinct status from manifest").fetchall()])
    counts = {(r, s): n for r, s, n in con.execute("select run_id, status, count(*) from run_last group by all")
              .fetchall()}
    runs = con.execute(f"""
        select run_id, any_value(params_id),
               min(epoch(try_cast(nullif(started_at, '') as timestamptz))),
               max(epoch(try_cast(nullif(finished_at, '') as timestamptz))),
               coalesce(sum(frames) filter (where status = 'ok'), 0), count(*) filter (where status = 'lost')
        from manifest group by run_id order by run_id desc limit {MAX_TABLE_ROWS}""").fetchall()
    rows = []
    for run_id, params_id, t0, t1, frames, lost in runs:
        span = (t1 - t0) if t0 is not None and t1 is not None else None
        fps = frames / span if span else None
        rows.append((_when(run_id, t0), run_id, params_id, *[counts.get((run_id, s), 0) for s in statuses],
                     lost, frames, span, fps))
    header = ["when (UTC)", "run", "params_id", *statuses, "lost attempts", "frames", "span s", "frames/s"]
    total = con.execute("select count(distinct run_id) from manifest").fetchone()
    return Section(tables={"runs": (header, rows)}, values={"statuses": statuses, "runs": total[0] if total else 0})


def _when(run_id: str, started: float | None) -> str:
    if started is not None:
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M")
    try:
        return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ""


def failures(con: duckdb.DuckDBPyConnection) -> Section:
    """Videos whose current state is not ok and that are not complete, grouped by error class
    (largest group first); and the attempts lost with their actor (the node is named)."""
    by_class = con.execute(f"""
        select coalesce(nullif(error_class, ''), '(none)') as error_class, count(*) as videos,
               string_agg(distinct status, ', ') as statuses
        from cur where status <> 'ok' and video_id not in (select video_id from done)
        group by 1 order by videos desc, error_class limit {FAILURE_CLASSES}""").fetchall()
    rows = con.execute(f"""
        select coalesce(nullif(error_class, ''), '(none)') as error_class, status, source_key,
               left(error_message, {MESSAGE_CHARS}) as error_message, video_id, run_id, left(node_id, 12)
        from cur where status <> 'ok' and video_id not in (select video_id from done)
        qualify row_number() over (partition by error_class order by source_key) <= {FAILURES_PER_CLASS}
        order by error_class, source_key""").fetchall()
    rows = [r for r in rows if r[0] in {c for c, _, _ in by_class}]
    lost = con.execute(f"""
        select run_id, left(node_id, 12), source_key, attempt, error_class, left(error_message, {MESSAGE_CHARS})
        from manifest where status = 'lost' order by run_id desc, source_key limit {MAX_TABLE_ROWS}""").fetchall()
    n_lost = con.execute("select count(*) from manifest where status = 'lost'").fetchone()
    return Section(
        tables={"classes": (["error class", "videos", "statuses"], by_class),
                "videos": (["error class", "status", "key", "message", "video_id", "run", "node"], rows),
                "lost": (["run", "node", "key", "attempt", "error class", "message"], lost)},
        values={"failed_videos": sum(n for _, n, _ in by_class), "lost_attempts": n_lost[0] if n_lost else 0})


def throughput(con: duckdb.DuckDBPyConnection) -> Section:
    """Frames/s per video (current ok attempts) and per node (all ok attempts), and seconds
    per stage summed per run (newest CHART_BARS runs) and per node."""
    video_fps = con.execute("select frames / seconds from cur where status = 'ok' and seconds > 0").fetchnumpy()
    slowest = con.execute("""
        select source_key, left(node_id, 12), frames, seconds, frames / seconds as fps from cur
        where status = 'ok' and seconds > 0 order by fps limit 20""").fetchall()
    nodes = con.execute(f"""
        select left(node_id, 12), count(*) as videos, sum(frames) as frames, sum(seconds) as seconds,
               sum(frames) / nullif(sum(seconds), 0) as fps
        from manifest where status = 'ok' group by node_id order by frames desc limit {MAX_TABLE_ROWS}""").fetchall()
    stage = """
        select {by}, k as stage, sum(try_cast(json_extract_string(stage_seconds, '$."' || k || '"') as double))
        from (select *, unnest(json_keys(stage_seconds)) as k from manifest
              where status = 'ok' and json_valid(stage_seconds) and left(stage_seconds, 1) = '{{')
        where {by} in (select {by} from manifest where status = 'ok' group by {by} order by {order} limit {bars})
        group by all"""
    by_run = con.execute(stage.format(by="run_id", order="run_id desc", bars=CHART_BARS)).fetchall()
    by_node = [((n or "")[:12], st, v) for n, st, v in
               con.execute(stage.format(by="node_id", order="sum(frames) desc", bars=CHART_BARS)).fetchall()]
    return Section(
        tables={"slowest": (["key", "node", "frames", "seconds", "frames/s"], slowest),
                "nodes": (["node", "videos", "frames", "seconds", "frames/s"], nodes)},
        values={"video_fps": np.asarray(next(iter(video_fps.values())), dtype=float),
                "stages_by_run": _stage_matrix(by_run), "stages_by_node": _stage_matrix(by_node)})


def _stage_matrix(rows: list[tuple[Any, ...]]) -> tuple[list[str], list[str], np.ndarray]:
    """(labels, stages, seconds[label, stage]) with stages in pipeline order, others after."""
    labels = sorted({r[0] for r in rows})
    seen = {r[1] for r in rows}
    stages = [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))
    m = np.zeros((len(labels), len(stages)))
    for label, stage, seconds in rows:
        m[labels.index(label), stages.index(stage)] += seconds or 0.0
    return labels, stages, m


def tracked(con: duckdb.DuckDBPyConnection) -> Section:
    """Tracks per class, tracks per hour of footage and short-track share per video, and
    the dwell-time histogram of the most frequent classes."""
    classes = con.execute(f"""
        select class_name, count(*) as tracks, avg(dwell_s), median(dwell_s),
               avg((dwell_s < {SHORT_TRACK_S})::int) as short_share
        from trk group by class_name order by tracks desc limit {MAX_TABLE_ROWS}""").fetchall()
    per_video = f"""
        select d.source_key, d.video_id, d.frames / nullif(d.fps, 0) as footage_s, count(t.track_id) as tracks,
               count(t.track_id) / nullif(d.frames / nullif(d.fps, 0) / 3600, 0) as tracks_per_hour,
               avg((t.dwell_s < {SHORT_TRACK_S})::int) as short_share
        from done d left join trk t using (video_id) group by d.source_key, d.video_id, d.frames, d.fps"""
    arrays = con.execute(f"select tracks_per_hour, short_share from ({per_video})").fetchnumpy()
    videos = con.execute(f"select * from ({per_video}) order by short_share desc nulls last, tracks desc "
                         f"limit {MAX_TABLE_ROWS}").fetchall()
    edges = DWELL_EDGES_S
    bucket = "case " + " ".join(f"when dwell_s < {hi} then {i}" for i, hi in enumerate(edges[1:])) + \
             f" else {len(edges) - 1} end"
    dwell = con.execute(f"""
        select class_name, {bucket} as b, count(*) from trk
        where class_name in (select class_name from trk group by 1 order by count(*) desc limit {DWELL_CLASSES})
        group by all""").fetchall()
    return Section(
        tables={"classes": (["class", "tracks", "mean dwell s", "median dwell s", "short share"], classes),
                "videos": (["key", "video_id", "footage s", "tracks", "tracks/h", "short share"], videos)},
        values={"tracks_per_hour": _floats(arrays["tracks_per_hour"]), "short_share": _floats(arrays["short_share"]),
                "dwell": _dwell_matrix(dwell, classes), "videos_total": len(arrays["short_share"])})


def _floats(a: Any) -> np.ndarray:
    """A DuckDB column as float64 with NULLs dropped."""
    arr = np.ma.filled(np.ma.asarray(a, dtype=float), np.nan) if np.ma.isMaskedArray(a) else np.asarray(a, float)
    return arr[np.isfinite(arr)]


def _dwell_matrix(rows: list[tuple[Any, ...]], classes: list[tuple[Any, ...]]) -> tuple[list[str], np.ndarray]:
    names = [c[0] for c in classes if c[0] in {r[0] for r in rows}][:DWELL_CLASSES]
    m = np.zeros((len(names), len(DWELL_EDGES_S)))
    for name, b, n in rows:
        if name in names:
            m[names.index(name), b] = n
    return names, m
