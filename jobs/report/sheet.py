"""The report's contact sheet: for the longest tracks of a few videos, small crops of the
tracked object at a few moments, cut from the annotated video (`videos/<id>.mp4`).

PyAV seeks to each moment (annotated videos are written at a constant rate, frame n at
n / fps), so only a few GOPs per video are decoded; on S3 it reads through a presigned
URL with range requests. Crops are JPEG, base64-inlined by the page.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import av
import cv2
import duckdb
import numpy as np
import pyarrow as pa

from jobs.dataset.layout import DatasetLayout

log = logging.getLogger("vidtrack." + __name__)

SHEET_VIDEOS = 4  # videos on the sheet: those with the longest tracks (and an annotated video)
SHEET_TRACKS = 3  # longest tracks per video
SHEET_MIN_DWELL_SHARE = 0.25  # a track on the sheet lasts at least this share of its video's longest
SHEET_MOMENTS = 4  # crops per track, evenly spaced over its matched frames
THUMB_HEIGHT = 96  # pixels
THUMB_MAX_WIDTH = 160  # pixels; wider crops are scaled down to this
CROP_PAD = 0.15  # the box grows by this share of its size on each side
JPEG_QUALITY = 70


def contact_sheet(con: duckdb.DuckDBPyConnection, layout: DatasetLayout) -> list[dict[str, Any]]:
    """[{video_id, source_key, error?, tracks: [{track_id, class_name, t0, t1, thumbs: [{t, jpeg}]}]}]"""
    from jobs.report.data import video_source

    prefix = layout.key("videos") + "/"
    annotated = [o.key[len(prefix):-len(".mp4")] for o in layout.storage.list(prefix) if o.key.endswith(".mp4")]
    con.register("annotated", pa.table({"video_id": pa.array(annotated, pa.string())}))
    candidates = con.execute("""
        select t.video_id, any_value(d.source_key) from trk t join done d using (video_id)
        where t.n_matched > 0 and t.video_id in (select video_id from annotated)
        group by t.video_id order by max(t.dwell_s) desc, t.video_id limit ?""", [SHEET_VIDEOS * 2]).fetchall()
    sheet = []
    for video_id, source_key in candidates:
        src = video_source(layout, video_id)
        if src is None:
            continue
        entry: dict[str, Any] = {"video_id": video_id, "source_key": source_key, "tracks": []}
        try:
            entry["tracks"] = _video_tracks(con, layout, video_id, src)
        except (av.error.FFmpegError, OSError, ValueError) as e:  # the page shows it; the report goes on
            message = str(e).replace(src, layout.video(video_id))  # a presigned URL never reaches the page
            log.warning("contact sheet: %s: %s: %s", layout.video(video_id), e.__class__.__name__, message)
            entry["error"] = f"{e.__class__.__name__}: {message}"
        sheet.append(entry)
        if len(sheet) == SHEET_VIDEOS:
            break
    return sheet


def _video_tracks(con: duckdb.DuckDBPyConnection, layout: DatasetLayout, video_id: str,
                  src: str) -> list[dict[str, Any]]:
    rows = con.execute(_moments_sql(_track_file(con, layout, video_id)), [video_id, video_id]).fetchall()
    frames = grab_frames(src, sorted({r[4] for r in rows}))
    tracks: dict[int, dict[str, Any]] = {}
    for track_id, class_name, t0, t1, frame_index, t, x1, y1, x2, y2 in rows:
        tr = tracks.setdefault(track_id, {"track_id": track_id, "class_name": class_name, "t0": t0, "t1": t1,
                                          "thumbs": []})
        if frame_index in frames:
            tr["thumbs"].append({"t": t, "jpeg": crop_jpeg(frames[frame_index], (x1, y1, x2, y2))})
    return sorted(tracks.values(), key=lambda tr: (tr["t0"] - tr["t1"], tr["track_id"]))


def _track_file(con: duckdb.DuckDBPyConnection, layout: DatasetLayout, video_id: str) -> str:
    """SQL table expression for one video's track rows (read directly: no scan of other files)."""
    local = layout.storage.local_path(layout.tracks(video_id))
    if local is not None:
        path = str(local).replace("'", "''")
        return f"read_parquet('{path}')"
    con.register("sheet_tracks", layout.storage.parquet_dataset([layout.tracks(video_id)]))
    return "sheet_tracks"


def _moments_sql(table: str) -> str:
    last = SHEET_MOMENTS - 1
    positions = ", ".join(f"cast(round({k} * (n - 1) / {last}) as bigint)" for k in range(SHEET_MOMENTS))
    return f"""
        with pick as (select track_id, class_name, t0, t1
                      from (select *, max(dwell_s) over () as longest from trk where video_id = ? and n_matched > 0)
                      where dwell_s >= {SHEET_MIN_DWELL_SHARE} * longest
                      order by dwell_s desc, track_id limit {SHEET_TRACKS}),
             m as (select track_id, frame_index, timestamp_s, x1, y1, x2, y2,
                          row_number() over (partition by track_id order by frame_index) - 1 as i,
                          count(*) over (partition by track_id) as n
                   from {table} where video_id = ? and matched and track_id in (select track_id from pick))
        select p.track_id, p.class_name, p.t0, p.t1, m.frame_index, m.timestamp_s, m.x1, m.y1, m.x2, m.y2
        from m join pick p using (track_id) where m.i in ({positions})
        order by p.track_id, m.frame_index"""


def grab_frames(src: str, frame_indices: list[int]) -> dict[int, np.ndarray]:
    """BGR frames of a constant-rate video at the given indices (seek, then decode forward)."""
    out: dict[int, np.ndarray] = {}
    if not frame_indices:
        return out
    with av.open(src) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 0)
        if fps <= 0 or s.time_base is None:
            raise ValueError("annotated video has no frame rate")
        tb, start = float(s.time_base), s.start_time or 0
        for want in frame_indices:
            c.seek(start + int(want / fps / tb), stream=s, backward=True)
            for f in c.decode(s):
                if f.pts is not None and round((f.pts - start) * tb * fps) >= want:
                    out[want] = f.to_ndarray(format="bgr24")
                    break
    return out


def crop_jpeg(frame: np.ndarray, xyxy: tuple[float, float, float, float]) -> str:
    """A padded crop around the box (pixel corners), scaled to THUMB_HEIGHT, as base64 JPEG."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = xyxy
    px, py = (x2 - x1) * CROP_PAD, (y2 - y1) * CROP_PAD
    left, top = max(0, int(x1 - px)), max(0, int(y1 - py))
    right, bottom = min(w, int(np.ceil(x2 + px))), min(h, int(np.ceil(y2 + py)))
    crop = frame[top:max(bottom, top + 2), left:max(right, left + 2)]
    scale = min(THUMB_HEIGHT / crop.shape[0], THUMB_MAX_WIDTH / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    thumb = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a crop of shape {crop.shape}")
    return base64.b64encode(buf.tobytes()).decode("ascii")
