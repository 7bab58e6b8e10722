"""The report page: one self-contained HTML document from a ReportData.

No external reference of any kind: the style, the table-sorting script, the SVG charts
and the JPEG thumbnails are inline, and a Content-Security-Policy forbids the page any
fetch (`default-src 'none'`). A machine-readable summary sits in
`<script type="application/json" id="vidtrack-summary">`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from jobs.logsafe import shown
from jobs.report import charts
from jobs.report.data import MAX_TABLE_ROWS, SHORT_TRACK_S, ReportData, Section
from jobs.report.queries import CHART_BARS, DWELL_EDGES_S, FAILURES_PER_CLASS, ordered_statuses

LINES = "\n"  # what a <pre> block keeps


def escape(text: object, keep: str = "") -> str:
    """HTML-escaped, with control and other non-printable characters shown as \\n, \\x1b, ...
    (a name never puts a raw ESC or CR into the page); `keep`: characters left as they are."""
    return html.escape(shown(text, keep))


CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

NOWRAP = ("when (UTC)", "run")  # columns whose cells never wrap

CSS = """
:root{--fg:#1d2330;--mut:#667085;--line:#e4e7ec;--bg:#f7f8fa;--bad:#b42318;--badbg:#fef3f2;--ok:#067647}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}header{background:#101828;color:#fff;padding:18px 28px 14px}
header h1{margin:0 0 4px;font-size:20px}header .sub{color:#cfd4dc;font-size:13px;word-break:break-all}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 28px}
nav a{margin-right:18px;color:#344054;text-decoration:none;font-weight:600}nav a:hover{text-decoration:underline}
main{max-width:1180px;margin:0 auto;padding:8px 28px 40px}section{background:#fff;border:1px solid var(--line);
border-radius:8px;padding:6px 20px 16px;margin:18px 0}h2{font-size:17px;margin:14px 0 8px}h3{font-size:14px;
margin:16px 0 6px}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0 4px}.card{background:#fff;
border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:130px}.card b{display:block;
font-size:22px}.card span{color:var(--mut);font-size:12px}.card.bad{border-color:#fda29b;background:var(--badbg)}
.card.bad b{color:var(--bad)}.note{color:var(--mut);font-size:12.5px;margin:4px 0 10px}.ok{color:var(--ok);
font-weight:600}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:10px 24px}
svg.chart{width:100%;height:auto;display:block}.tablewrap{max-height:460px;overflow:auto;border:1px solid
var(--line);border-radius:6px;margin:6px 0 10px}table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{position:sticky;top:0;background:#f2f4f7;cursor:pointer;white-space:nowrap;user-select:none}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}td.msg{font-family:ui-monospace,monospace;font-size:11.5px;
word-break:break-word;max-width:520px}td.key{word-break:break-all;min-width:140px}td.nowrap{white-space:nowrap}
details.fail{border-left:3px solid var(--bad);padding-left:10px;margin:8px 0}details.fail summary{cursor:pointer;
font-weight:600}details.fail summary .n{color:var(--bad)}.sheet-video{margin:10px 0 18px}.track{display:flex;
align-items:flex-start;gap:10px;margin:6px 0;padding:6px 0;border-top:1px dashed var(--line)}.track .label{
width:190px;flex:none;font-size:12.5px}.track .label b{font-size:13px}.thumbs{display:flex;gap:8px;flex-wrap:wrap}
figure{margin:0;text-align:center}figure img{display:block;height:96px;border-radius:4px;border:1px solid
var(--line);background:#000}figcaption{font-size:11px;color:var(--mut)}pre{background:#f2f4f7;padding:10px;
border-radius:6px;overflow:auto;font-size:12px;max-height:420px}code{font-size:12px}
"""

SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var i = th.cellIndex, body = th.closest("table").tBodies[0], asc = th.dataset.dir !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? "asc" : "desc";
    var key = function (row) {
      var c = row.cells[i];
      return c.dataset.v !== undefined ? Number(c.dataset.v) : c.textContent.toLowerCase();
    };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    }).forEach(function (r) { body.appendChild(r); });
  });
});
document.body.dataset.ready = "1";
"""

SQL_HINTS = """-- every failed video (current state), from the dataset alone
select video_id, source_key, status, error_class, error_message from (
  select *, row_number() over (partition by video_id order by (attempt > 0) desc, run_id desc, attempt desc) as k
  from read_parquet('{d}/manifest/*/*.parquet', union_by_name=true) where status <> 'skipped')
where k = 1 and status <> 'ok';
-- tracks per video with the share of short tracks (< {short} s)
select video_id, count(*) as tracks, avg((dwell_s < {short})::int) as short_share from (
  select video_id, track_id, max(timestamp_s) - min(timestamp_s) as dwell_s
  from '{d}/tracks/*/*.parquet' group by all) group by all order by short_share desc;"""


def render_page(d: ReportData) -> str:
    body = "\n".join([_header(d), _nav(), "<main>", _failures(d.failures), _history(d.history),
                      _throughput(d.throughput), _tracked(d.tracked), _counts(d.counts), _sheet(d.sheet),
                      _parameters(d),
                      "</main>"])
    summary = json.dumps({"params_id": d.params_id, "generated_at": d.generated_at, **d.summary},
                         sort_keys=True, default=str).replace("</", "<\\/")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>vidtrack report · {escape(d.params_id)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f'<script type="application/json" id="vidtrack-summary">{summary}</script>\n'
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def _fmt(v: Any) -> tuple[str, str | None]:
    """(display text, numeric sort key or None) for one table cell."""
    if v is None:
        return "", None
    if isinstance(v, bool):
        return str(v).lower(), None
    if isinstance(v, int):
        return f"{v:,}", str(v)
    if isinstance(v, float):
        text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 1 else f"{v:,.1f}"
        return text, repr(v)
    return str(v), None


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], wide: Sequence[str] = (), total: int | None = None,
          what: str = "rows") -> str:
    """A sortable table (click a header). Columns named in `wide` get the message style;
    `total` > len(rows) adds a note that the table is capped."""
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    out = []
    for row in rows:
        cells = []
        for h, v in zip(header, row, strict=True):
            text, key = _fmt(v)
            cls = ("num" if key is not None else "msg" if h in wide else "key" if h == "key"
                   else "nowrap" if h in NOWRAP else "")
            attrs = (f' class="{cls}"' if cls else "") + (f' data-v="{key}"' if key is not None else "")
            cells.append(f"<td{attrs}>{escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    note = (f'<p class="note">{len(rows):,} of {total:,} {what} shown.</p>'
            if total is not None and total > len(rows) else "")
    return (f'<div class="tablewrap"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(out) + f"</tbody></table></div>{note}")


def _card(value: Any, label: str, bad: bool = False) -> str:
    return f'<div class="card{" bad" if bad else ""}"><b>{escape(_fmt(value)[0])}</b><span>{escape(label)}</span></div>'


def _header(d: ReportData) -> str:
    s = d.summary
    not_complete = s["not_complete_by_status"]
    failed = sum(n for st, n in not_complete.items() if st != "ok")
    cards = [_card(s["videos"], "videos seen"), _card(s["complete"], "complete"),
             _card(failed, "not complete (failed)", bad=failed > 0), _card(s["runs"], "runs"),
             _card(s["frames"], "frames"), _card(_duration(s["footage_s"]), "of footage"),
             _card(s["tracks"], "tracks")]
    latest = s["latest_run"]
    by_status = latest["videos_by_status"]
    counts = ", ".join(f"{by_status[st]:,} {st}" for st in ordered_statuses(list(by_status)))
    last = f"latest run {escape(latest['run_id'])}: {escape(counts)}" if latest["run_id"] else "no run recorded yet"
    return (f"<header><h1>vidtrack run report</h1><div class=sub>params_id <b>{escape(d.params_id)}</b> · "
            f"{escape(d.dataset_uri)} · generated {escape(d.generated_at)}</div></header>"
            f'<div style="max-width:1180px;margin:0 auto;padding:0 28px"><div class="cards">{"".join(cards)}</div>'
            f'<p class="note">{last}</p></div>')


def _nav() -> str:
    links = [("failures", "Failures"), ("runs", "Runs"), ("throughput", "Throughput"), ("tracked", "What was tracked"),
             ("sheet", "Contact sheet"), ("parameters", "Parameters")]
    return "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


def _failures(f: Section) -> str:
    n = f.values["failed_videos"]
    parts = ['<section id="failures"><h2>Failures</h2>']
    if not n:
        parts.append('<p class="ok">No failed videos: every video seen is complete.</p>')
    else:
        parts.append(f'<p class="note">Not complete: {_plural(n, "video")} whose latest attempt did not succeed, '
                     f"grouped by error class; up to {FAILURES_PER_CLASS} listed per class.</p>")
        header, rows = f.tables["videos"]
        for error_class, count, statuses in f.tables["classes"][1]:
            mine = [r[1:] for r in rows if r[0] == error_class]
            parts.append(f'<details class="fail" open data-error-class="{escape(error_class)}"><summary>'
                         f'{escape(error_class)} <span class="n">{_plural(count, "video")}</span> ({escape(statuses)})'
                         f"</summary>{table(header[1:], mine, wide=('message',), total=count, what='videos')}"
                         "</details>")
    lost_header, lost = f.tables["lost"]
    if lost:
        parts.append(f"<details><summary><b>Attempts lost with their actor ({f.values['lost_attempts']:,})</b>"
                     "</summary><p class=\"note\">The actor died (node lost, process killed); the video was retried "
                     "on another actor.</p>"
                     + table(lost_header, lost, wide=("message",), total=f.values["lost_attempts"], what="attempts")
                     + "</details>")
    return "".join(parts) + "</section>"


def _history(h: Section) -> str:
    header, rows = h.tables["runs"]
    return ('<section id="runs"><h2>Run history</h2><p class="note">One line per run, newest first. The status '
            "columns count videos by their last attempt in the run; the span runs from the first attempt's start "
            "to the last one's end.</p>" + table(header, rows, total=h.values["runs"], what="runs") + "</section>")


def _throughput(t: Section) -> str:
    fps = t.values["video_fps"]
    node_header, nodes = t.tables["nodes"]
    top = nodes[:CHART_BARS]
    run_labels, run_stages, run_seconds = t.values["stages_by_run"]
    node_labels, node_stages, node_seconds = t.values["stages_by_node"]
    charts_html = [
        charts.histogram("video-fps", "Frames/s per video", fps, "frames/s (whole pipeline, per video)"),
        charts.barh("node-fps", "Frames/s per node", [str(r[0]) for r in top], [r[4] or 0.0 for r in top],
                    "frames/s (all ok attempts)"),
        charts.stacked_barh("stages-run", "Seconds per stage, per run", run_labels, run_stages, run_seconds, "seconds"),
        charts.stacked_barh("stages-node", "Seconds per stage, per node", node_labels, node_stages, node_seconds,
                            "seconds"),
    ]
    slow_header, slow = t.tables["slowest"]
    return ('<section id="throughput"><h2>Throughput</h2>'
            f'<p class="note">{len(fps):,} complete videos. Stage seconds can overlap (decoding runs on its '
            "own thread beside detection), so a bar can exceed the wall time; encode is the render pass "
            "(decode again, draw, encode).</p>"
            f'<div class="grid">{"".join(charts_html)}</div>'
            f"<h3>Nodes</h3>{table(node_header, nodes)}<h3>Slowest videos</h3>{table(slow_header, slow)}</section>")


def _tracked(t: Section) -> str:
    class_header, classes = t.tables["classes"]
    top = classes[:CHART_BARS]
    names, dwell = t.values["dwell"]
    charts_html = [
        charts.barh("tracks-class", "Tracks per class", [r[0] for r in top], [r[1] for r in top], "tracks"),
        charts.binned_lines("dwell", "Track duration (dwell) per class", names, dwell, DWELL_EDGES_S, "seconds"),
        charts.histogram("tracks-hour", "Tracks per video per hour of footage", t.values["tracks_per_hour"],
                         "tracks per hour of footage"),
        charts.histogram("short-share", f"Share of short tracks (< {SHORT_TRACK_S:g} s) per video",
                         t.values["short_share"], "share of the video's tracks (high: ID churn)", bins=20,
                         xlim=(0.0, 1.0)),
    ]
    video_header, videos = t.tables["videos"]
    return ('<section id="tracked"><h2>What was tracked</h2>'
            f'<div class="grid">{"".join(charts_html)}</div><h3>Classes</h3>{table(class_header, classes)}'
            f"<h3>Videos, highest share of short tracks first</h3>"
            + table(video_header, videos, total=t.values["videos_total"], what="videos") + "</section>")


def _counts(c: Any) -> str:
    """Crossings per line, direction and time bucket (`vidtrack report --counts FILE`)."""
    if c is None:
        return ""
    totals = [(name, t["in"], t["out"]) for name, t in sorted(c.totals.items())]
    clock = "wall-clock time" if c.clock == "wall" else "footage time (seconds from each video's start)"
    return ('<section id="counts"><h2>Line counts</h2>'
            f'<p class="note">Crossings of each line per {_duration(c.bucket_s)} of {escape(clock)}, '
            "from the tracks (<code>vidtrack count</code> has zones, events and per-class counts).</p>"
            f'<h3>Totals</h3>{table(["line", "in", "out"], totals)}'
            f'<h3>Over time</h3>{table(c.header, c.rows)}</section>')


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:04.1f}"


def _sheet(sheet: list[dict[str, Any]]) -> str:
    parts = ['<section id="sheet"><h2>Contact sheet</h2><p class="note">The longest tracks of the videos with the '
             "longest tracks: crops from the annotated video at evenly spaced moments of each track.</p>"]
    if not sheet:
        parts.append('<p class="note">No annotated video with tracks in this dataset.</p>')
    for v in sheet:
        parts.append(f'<div class="sheet-video"><h3>{escape(v["source_key"] or v["video_id"])} '
                     f'<span class="note">{escape(v["video_id"])}</span></h3>')
        if "error" in v:
            parts.append(f'<p class="note">could not read the annotated video: {escape(v["error"])}</p>')
        for tr in v["tracks"]:
            thumbs = "".join(f'<figure><img alt="track {tr["track_id"]} at {_clock(th["t"])}" '
                             f'src="data:image/jpeg;base64,{th["jpeg"]}"><figcaption>{_clock(th["t"])}</figcaption>'
                             "</figure>" for th in tr["thumbs"])
            parts.append(f'<div class="track"><div class="label"><b>track {tr["track_id"]}</b> · '
                         f'{escape(str(tr["class_name"]))}<br>{_clock(tr["t0"])} – {_clock(tr["t1"])} '
                         f'({tr["t1"] - tr["t0"]:.1f} s)</div><div class="thumbs">{thumbs}</div></div>')
        parts.append("</div>")
    return "".join(parts) + "</section>"


def _parameters(d: ReportData) -> str:
    cfg = d.config
    model = cfg.get("model", {})
    versions = sorted((cfg.get("versions") or {}).items())
    params = json.dumps(cfg.get("parameters", {}), indent=2, sort_keys=True)
    hints = SQL_HINTS.format(d=d.dataset_uri.replace("'", "''"), short=f"{SHORT_TRACK_S:g}")
    return ('<section id="parameters"><h2>Parameters and software</h2>'
            f"<p>params_id <code>{escape(str(cfg.get('params_id', d.params_id)))}</code> · model "
            f"<code>{escape(str(model.get('uri', '')))}</code> · SHA-256 <code>{escape(str(model.get('sha256', '')))}"
            f"</code> · dataset created {escape(str(cfg.get('created_at', '')))}</p>"
            f'<div class="grid"><div><h3>Resolved parameters</h3><pre>{escape(params, LINES)}</pre></div>'
            f"<div><h3>Versions</h3>{table(['package', 'version'], versions)}</div></div>"
            f"<h3>The full lists, in SQL (DuckDB)</h3><p class=\"note\">Tables above show at most "
            f"{MAX_TABLE_ROWS} rows.</p><pre>{escape(hints, LINES)}</pre></section>")
