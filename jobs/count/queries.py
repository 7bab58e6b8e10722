"""The count as SQL over the track rows (DuckDB): no track row becomes a Python object.

Two passes over each track's rows in frame order. The first gives every row its side of each
line and zone, packs them into integers, and keeps only the rows where a side differs from the
previous or the next row (each track's first and last rows among them): a narrow lag/lead sort
over all rows. The second runs the windows that carry the last side seen and its position
(last_value ... ignore nulls) over those few rows and keeps the crossings, zone transitions and
track ends (table `marks`). Events, zone visits and the footage seconds per bucket are built
from that small table.

Per row, the anchor P (bottom centre or centre of the box) gets, for each line A->B, the signed
distance s = cross(B - A, P - A) / |B - A| (positive on the `in` side, the right-hand side of
A->B on the screen) and a side: +1 when s > h, -1 when s < -h, none inside the band |s| <= h
(h: the hysteresis). A crossing is a change of side between two consecutive rows of the track
that have one (rows in the band are skipped), where the straight path between those two rows
meets the line within the segment. For a zone the side is inside/outside the polygon, with the
band being within h of its outline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from jobs.count.settings import CountSpec
from jobs.count.source import Video

if TYPE_CHECKING:
    import duckdb

WINDOW = "partition by vno, track_id order by frame_index"
GEO_COLUMN = re.compile(r"\b(?:l\d+_(?:ax|ay|bx|by)|z\d+_(?:x\d+|y\d+|minx|miny|maxx|maxy))\b")


def geo_table(videos: Sequence[Video]) -> pa.Table:
    """One row per video: its clock offset and duration, and its lines and zones in slots
    (l0, l1, ... and z0, z1, ...; a zone's outline padded to its slot's vertex count by
    repeating its first point, which adds only zero-length edges)."""
    n_lines = max((len(v.lines) for v in videos), default=0)
    n_zones = max((len(v.zones) for v in videos), default=0)
    cols: dict[str, list[object]] = {"vno": list(range(len(videos))), "video_id": [v.video_id for v in videos],
                                     "source_key": [v.source_key for v in videos],
                                     "fps": [v.fps for v in videos], "t0": [v.start or 0.0 for v in videos],
                                     "dur": [v.duration_s for v in videos],
                                     "wall": [v.start is not None for v in videos]}
    for k in range(n_lines):
        ls = [v.lines[k] if k < len(v.lines) else None for v in videos]
        cols[f"l{k}_name"] = [li.name if li else None for li in ls]
        for a in ("ax", "ay", "bx", "by"):
            cols[f"l{k}_{a}"] = [getattr(li, a) if li else None for li in ls]
    for k in range(n_zones):
        zs = [v.zones[k] if k < len(v.zones) else None for v in videos]
        cols[f"z{k}_name"] = [z.name if z else None for z in zs]
        for i, bound in enumerate(("minx", "miny")):
            cols[f"z{k}_{bound}"] = [min(p[i] for p in z.points) if z else None for z in zs]
        for i, bound in enumerate(("maxx", "maxy")):
            cols[f"z{k}_{bound}"] = [max(p[i] for p in z.points) if z else None for z in zs]
        n_pts = max(len(z.points) for z in zs if z)
        for j in range(n_pts):
            pts = [(z.points + (z.points[0],) * n_pts)[j] if z else None for z in zs]
            cols[f"z{k}_x{j}"] = [p[0] if p else None for p in pts]
            cols[f"z{k}_y{j}"] = [p[1] if p else None for p in pts]
    types = {"vno": pa.int32(), "video_id": pa.string(), "source_key": pa.string(), "wall": pa.bool_()}
    return pa.table({k: pa.array(v, types.get(k, pa.string() if k.endswith("_name") else pa.float64()))
                     for k, v in cols.items()})


def slots(geo: pa.Table) -> tuple[int, list[int]]:
    """(line slots, vertex count of each zone slot) of a geo table."""
    names = geo.column_names
    n_lines = sum(1 for c in names if c.startswith("l") and c.endswith("_name"))
    zones = [sum(1 for c in names if c.startswith(f"z{k}_x")) for k in range(len(names))
             if f"z{k}_name" in names]
    return n_lines, zones


def _line_exprs(k: int) -> tuple[str, str]:
    """(signed distance to line k, squared length of line k), in SQL."""
    dx, dy = f"(l{k}_bx - l{k}_ax)", f"(l{k}_by - l{k}_ay)"
    length2 = f"({dx} * {dx} + {dy} * {dy})"
    return f"(({dx} * (py - l{k}_ay) - {dy} * (px - l{k}_ax)) / sqrt({length2}))", length2


def _zone_exprs(k: int, n: int) -> tuple[str, str]:
    """(anchor inside zone k (even-odd rule), squared distance to its outline), in SQL."""
    crossings, dists = [], []
    for i in range(n):
        j = (i + 1) % n
        xi, yi, xj, yj = f"z{k}_x{i}", f"z{k}_y{i}", f"z{k}_x{j}", f"z{k}_y{j}"
        crossings.append(f"coalesce((({yi} > py) <> ({yj} > py)) and "
                         f"(px < ({xj} - {xi}) * (py - {yi}) / nullif({yj} - {yi}, 0) + {xi}), false)::int")
        ex, ey = f"({xj} - {xi})", f"({yj} - {yi})"
        t = f"greatest(0, least(1, coalesce(((px - {xi}) * {ex} + (py - {yi}) * {ey}) / nullif({ex} * {ex} + " \
            f"{ey} * {ey}, 0), 0)))"
        dists.append(f"power(px - {xi} - {t} * {ex}, 2) + power(py - {yi} - {t} * {ey}, 2)")
    return f"(({' + '.join(crossings)}) % 2 = 1)", f"least({', '.join(dists)})"


def constants(geo: pa.Table) -> dict[str, float]:
    """The geometry columns that hold one value for every video (a line given on the command
    line): the heavy pass uses them as literals and, when all are, does not join `geo` at all."""
    out = {}
    for name in geo.column_names:
        values = set(geo.column(name).to_pylist()) if GEO_COLUMN.fullmatch(name) else set()
        if len(values) == 1 and None not in values:
            out[name] = float(values.pop())
    return out


def _inline(sql: str, consts: dict[str, float]) -> tuple[str, bool]:
    """(sql with constant geometry columns as literals, whether it still needs `geo`)."""
    out = GEO_COLUMN.sub(lambda m: repr(consts[m.group(0)]) if m.group(0) in consts else m.group(0), sql)
    return out, GEO_COLUMN.search(out) is not None


def _base_sql(spec: CountSpec, join_geo: bool) -> str:
    anchor_y = "t.y2" if spec.anchor == "bottom_center" else "(t.y1 + t.y2) / 2"
    classes = ""
    if spec.classes:
        classes = " and t.class_name in (" + ", ".join("'" + c.replace("'", "''") + "'" for c in spec.classes) + ")"
    geo = ", g.* exclude (vno, video_id, source_key) from tracks t join geo g using (vno)" if join_geo \
        else " from tracks t"
    return (f"select t.vno, t.track_id, t.frame_index, t.timestamp_s, t.class_name, "
            f"((t.x1 + t.x2) / 2)::double as px, ({anchor_y})::double as py{geo} "
            f"where coalesce(t.box_source, 'detected') <> 'predicted'{classes}")


def _sides_sql(n_lines: int, zones: list[int], h: float) -> str:
    """Per row: the signed distance to each line, inside-or-not and squared distance to the
    outline of each zone."""
    cols = [f"{_line_exprs(k)[0]} as s{k}" for k in range(n_lines)]
    for k, n in enumerate(zones):
        inside, dist2 = _zone_exprs(k, n)
        # most anchors are nowhere near a zone: its bounding box (grown by h) spares them the outline
        far = f"(px < z{k}_minx - {h!r} or px > z{k}_maxx + {h!r} or py < z{k}_miny - {h!r} or py > z{k}_maxy + {h!r})"
        cols += [f"case when {far} then false else {inside} end as zin{k}",
                 f"case when {far} then {(h + 1) ** 2!r} else {dist2} end as zd{k}"]
    return ", ".join(cols) or "0 as _none"


def _state_sql(n_lines: int, n_zones: int, h: float) -> str:
    """The side of each line (+1 `in`, -1 `out`, null within h of it) and of each zone (+1
    inside, -1 outside, null within h of its outline)."""
    cols = [f"case when s{k} > {h!r} then 1 when s{k} < {-h!r} then -1 end as st{k}" for k in range(n_lines)]
    cols += [f"case when zd{k} > {h * h!r} then (case when zin{k} then 1 else -1 end) end as zs{k}"
             for k in range(n_zones)]
    return ", ".join(cols) or "0 as _none"


def _packed_sql(n_lines: int, n_zones: int) -> list[str]:
    """Every side of a row packed into BIGINTs (3 states a slot: none, -1, +1; 39 slots each)."""
    states = [f"st{k}" for k in range(n_lines)] + [f"zs{k}" for k in range(n_zones)]
    chunks = [states[i:i + 39] for i in range(0, len(states), 39)]
    return [" + ".join(f"coalesce({c} + 2, 0)::bigint * {3 ** i}" for i, c in enumerate(chunk)) for chunk in chunks]


def _changes_sql(spec: CountSpec, n_lines: int, zones: list[int], consts: dict[str, float]) -> str:
    """The rows where any side differs from the previous or the next row of the track (with
    each track's first and last rows). Every run of rows on one side keeps its first and last
    row, so the last row with a side before any row is kept too: the windows of `marks` see
    exactly what they would over all rows, on a small fraction of them. Only the anchor goes
    through the sort (the sides are computed again for the rows kept: a narrow sort is the
    cheap one)."""
    h = float(spec.hysteresis_px)
    packed = _packed_sql(n_lines, len(zones)) or ["0::bigint"]
    pk = ", ".join(f"{p} as pk{i}" for i, p in enumerate(packed))
    moved = " or ".join(f"pk{i} is distinct from lag(pk{i}) over wo or pk{i} is distinct from lead(pk{i}) over wo"
                        for i in range(len(packed)))
    row = "vno, track_id, frame_index, timestamp_s, class_name, px, py"
    sides, join_geo = _inline(_sides_sql(n_lines, zones, h), consts)
    return f"""
        with sides as (select {row}, {sides} from ({_base_sql(spec, join_geo)})),
             states as (select *, {_state_sql(n_lines, len(zones), h)} from sides),
             packed as (select {row}, {pk} from states)
        select * from packed window wo as ({WINDOW}) qualify {moved}"""


def _window_sql(n_lines: int, zones: list[int]) -> str:
    cols = ["row_number() over wo as rn", "count(*) over wa as nrows"]
    for k in range(n_lines):
        cols.append(f"last_value(st{k} ignore nulls) over wp as pst{k}")
        for c in ("px", "py", f"s{k}"):
            cols.append(f"last_value(case when st{k} is not null then {c} end ignore nulls) over wp as p{c}_{k}")
    for k in range(len(zones)):
        cols += [f"last_value(zs{k} ignore nulls) over wp as pzs{k}",
                 f"first_value(zs{k} ignore nulls) over wa as fzs{k}",
                 f"last_value(zs{k} ignore nulls) over wa as lzs{k}"]
    return ", ".join(cols)


def _mark_sql(n_lines: int, zones: list[int]) -> tuple[str, str]:
    """(columns, the condition for keeping a row) of `marks`."""
    cols, keep = [], []
    for k in range(n_lines):
        _, length2 = _line_exprs(k)
        t = f"(ps{k}_{k} / (ps{k}_{k} - s{k}))"
        cx, cy = f"(ppx_{k} + {t} * (px - ppx_{k}))", f"(ppy_{k} + {t} * (py - ppy_{k}))"
        u = f"((({cx} - l{k}_ax) * (l{k}_bx - l{k}_ax) + ({cy} - l{k}_ay) * (l{k}_by - l{k}_ay)) / {length2})"
        cols.append(f"coalesce(st{k} <> pst{k} and {u} between 0 and 1, false) as ev{k}, st{k}")
        keep.append(f"ev{k}")
    for k in range(len(zones)):
        raw = f"(case when zin{k} then 1 else -1 end)"
        cols += [f"case when zs{k} <> pzs{k} then zs{k} end as zt{k}",
                 f"(rn = 1 and coalesce(fzs{k}, {raw}) = 1) as zfirst{k}",
                 f"(rn = nrows and coalesce(lzs{k}, {raw}) = 1) as zlast{k}"]
        keep += [f"zt{k} is not null", f"zfirst{k}", f"zlast{k}"]
    return ", ".join(cols), " or ".join(keep) or "false"


def build_marks(con: duckdb.DuckDBPyConnection, spec: CountSpec, geo: pa.Table) -> None:
    """Table `marks`: the rows where a line is crossed or a zone entered or left, and each
    track's first and last rows when it is inside a zone there. Two passes: a cheap one
    (lag/lead over all rows) keeps the rows where a side changes, the windows that carry the
    last side seen run over those only."""
    n_lines, zones = slots(geo)
    h = float(spec.hysteresis_px)
    marks, keep = _mark_sql(n_lines, zones)
    con.execute(f"create temp table changes as {_changes_sql(spec, n_lines, zones, constants(geo))}")
    con.execute(f"""
        create temp table marks as
        with c as (select c.*, g.* exclude (vno, source_key) from changes c join geo g using (vno)),
             sides as (select *, {_sides_sql(n_lines, zones, h)} from c),
             states as (select *, {_state_sql(n_lines, len(zones), h)} from sides),
             win as (select *, {_window_sql(n_lines, zones)} from states
                     window wp as ({WINDOW} rows between unbounded preceding and 1 preceding),
                            wa as ({WINDOW} rows between unbounded preceding and unbounded following),
                            wo as ({WINDOW}))
        select video_id, track_id, class_name, frame_index, timestamp_s, px, py, {marks}
        from win where {keep}""")
    con.execute("drop table changes")


def build_events(con: duckdb.DuckDBPyConnection, n_lines: int, n_zones: int) -> None:
    """Table `events`: one row per line crossing and per zone entry or exit."""
    cols = "m.video_id, m.track_id, m.class_name, m.frame_index, m.timestamp_s, m.px, m.py"
    parts = [f"select {cols}, 'line' as kind, g.l{k}_name as name, case when m.st{k} = 1 then 'in' else 'out' end "
             f"as direction from marks m join geo g using (video_id) where m.ev{k}" for k in range(n_lines)]
    parts += [f"select {cols}, 'zone' as kind, g.z{k}_name as name, case when m.zt{k} = 1 then 'in' else 'out' "
              f"end as direction from marks m join geo g using (video_id) where m.zt{k} is not null"
              for k in range(n_zones)]
    body = " union all ".join(parts) if parts else _EMPTY_EVENT
    con.execute(f"""
        create temp table events as
        select e.video_id, g.source_key, e.track_id, e.class_name, e.kind, e.name, e.direction, e.frame_index,
               e.timestamp_s, case when g.wall then to_timestamp(g.t0 + e.timestamp_s) end as wall_time,
               g.t0 + e.timestamp_s as t, e.px::float as x, e.py::float as y
        from ({body}) e join geo g using (video_id)""")


_EMPTY_EVENT = ("select null::varchar as video_id, null::integer as track_id, null::varchar as class_name, "
                "null::integer as frame_index, null::double as timestamp_s, null::double as px, null::double as py, "
                "null::varchar as kind, null::varchar as name, null::varchar as direction where false")


def build_visits(con: duckdb.DuckDBPyConnection, n_zones: int) -> None:
    """Table `visits`: one row per stay of a track in a zone, from its entry (or its first row,
    when it starts inside) to its exit (or its last row, when it ends inside)."""
    parts = []
    for k in range(n_zones):
        cols = f"m.video_id, m.track_id, m.class_name, g.z{k}_name as zone, m.frame_index, m.timestamp_s"
        src = "from marks m join geo g using (video_id)"
        parts.append(f"select {cols}, 0 as ord, coalesce(zt{k} = 1, false) as entered, false as exited {src} "
                     f"where zfirst{k} or zt{k} = 1")
        parts.append(f"select {cols}, 1 as ord, false as entered, coalesce(zt{k} = -1, false) as exited {src} "
                     f"where zlast{k} or zt{k} = -1")
    body = " union all ".join(parts) if parts else (
        "select null::varchar as video_id, null::integer as track_id, null::varchar as class_name, "
        "null::varchar as zone, null::integer as frame_index, null::double as timestamp_s, 0 as ord, "
        "false as entered, false as exited where false")
    con.execute(f"""
        create temp table visits as
        select v.video_id, g.source_key, track_id, any_value(class_name) as class_name, zone,
               min(frame_index) as start_frame, max(frame_index) as end_frame,
               min(timestamp_s) as start_s, max(timestamp_s) as end_s, max(timestamp_s) - min(timestamp_s) as dwell_s,
               bool_or(entered) as entered, bool_or(exited) as exited, any_value(g.t0) as t0, any_value(g.wall) as wall
        from (select *, sum(1 - ord) over (partition by video_id, track_id, zone order by frame_index, ord
                                           rows between unbounded preceding and current row) as visit
              from ({body})) v join geo g using (video_id)
        group by v.video_id, g.source_key, track_id, zone, visit""")
