"""`--preview FILE.png`: the lines (with an arrow to their `in` side) and zones drawn on a frame
of the selected video, to check where they are before counting. The frame comes from the
source video when given (`--preview-video`, a local file: its display rotation is applied), or
from the dataset's annotated video (local, or streamed from S3 through a presigned URL)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from jobs.count.geometry import CountError, Line, Zone
from jobs.count.source import Video
from jobs.dataset.layout import DatasetLayout
from tracking.atomic import write_bytes_atomic

LINE_BGR, ZONE_BGR, IN_BGR = (0, 220, 255), (255, 160, 0), (0, 200, 0)


def frame_at(source: str, at_s: float) -> np.ndarray:
    """The first frame at or after `at_s` seconds (BGR), or the last one of a shorter video."""
    if "://" not in source:
        from tracking.video import VideoError, VideoReader

        try:
            with VideoReader(source) as r:
                last = None
                for f in r:
                    last = f.bgr
                    if f.timestamp_s >= at_s:
                        break
        except VideoError as e:
            raise CountError(f"preview: {e}") from None
        if last is None:
            raise CountError(f"preview: {source} has no frames")
        return last
    return _stream_frame(source, at_s)


def _stream_frame(url: str, at_s: float) -> np.ndarray:
    import av

    try:
        with av.open(url) as c:
            stream, last = c.streams.video[0], None
            for f in c.decode(stream):
                last = f
                if f.time is not None and f.time - float((stream.start_time or 0) * (stream.time_base or 0)) >= at_s:
                    break
    except av.error.FFmpegError as e:
        raise CountError(f"preview: cannot read the annotated video ({e.__class__.__name__}: {e})") from None
    if last is None:
        raise CountError("preview: the annotated video has no frames")
    return last.to_ndarray(format="bgr24")


def preview_source(layout: DatasetLayout, video: Video, given: str | None) -> str:
    if given:
        return given
    key = layout.video(video.video_id)
    if not layout.storage.exists(key):
        raise CountError(f"preview: video {video.video_id!r} has no annotated video in the dataset; give its source "
                         "with --preview-video FILE")
    return layout.storage.reader_url(key)


def draw(img: np.ndarray, lines: tuple[Line, ...], zones: tuple[Zone, ...]) -> np.ndarray:
    """A copy of `img` with the zones (outline, light fill, name) and lines (segment, name at
    A, an arrow from the middle to the `in` side) drawn on it."""
    out = img.copy()
    overlay = out.copy()
    scale = max(0.5, min(out.shape[:2]) / 720)
    for z in zones:
        pts = np.round(np.array(z.points)).astype(np.int32)
        cv2.fillPoly(overlay, [pts], ZONE_BGR)
    out = cv2.addWeighted(overlay, 0.25, out, 0.75, 0)
    for z in zones:
        pts = np.round(np.array(z.points)).astype(np.int32)
        cv2.polylines(out, [pts], True, ZONE_BGR, max(1, int(2 * scale)), cv2.LINE_AA)
        _label(out, z.name, (int(pts[:, 0].min()) + 4, int(pts[:, 1].min()) + int(18 * scale)), ZONE_BGR, scale)
    for li in lines:
        a, b = (round(li.ax), round(li.ay)), (round(li.bx), round(li.by))
        cv2.line(out, a, b, LINE_BGR, max(1, int(3 * scale)), cv2.LINE_AA)
        mid = ((li.ax + li.bx) / 2, (li.ay + li.by) / 2)
        nx, ny = li.in_normal()
        tip = (round(mid[0] + nx * 40 * scale), round(mid[1] + ny * 40 * scale))
        cv2.arrowedLine(out, (round(mid[0]), round(mid[1])), tip, IN_BGR, max(1, int(2 * scale)), cv2.LINE_AA,
                        tipLength=0.3)
        _label(out, "in", (tip[0] + 4, tip[1] + 4), IN_BGR, scale)
        _label(out, li.name, (a[0] + 4, a[1] - 6), LINE_BGR, scale)
    return out


def _label(img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), max(2, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color, max(1, int(2 * scale)), cv2.LINE_AA)


def write_preview(path: Path, img: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise CountError(f"preview: could not encode {path}")
    write_bytes_atomic(path, png.tobytes())
