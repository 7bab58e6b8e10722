"""`TrackState`: what any tracker reports, one record per live track per frame.

It lives apart from the DeepSORT adapter (tracking/tracker.py) so that what consumes
tracks (the Parquet writer, the annotator) does not depend on a tracking library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackState:
    """One track in one frame.

    xyxy: pixel corners (x1, y1, x2, y2) (see tracking/boxes.py); the matched detection's
    box when `matched`, else the tracker's prediction. confidence: the matched detection's
    score, NaN if predicted. confirmed: the tracker has seen enough of it to trust it.
    det_index: the matched detection's index in this frame's detections (-1 if predicted),
    so its appearance embedding can be credited to the track.
    """

    track_id: int
    class_id: int
    confidence: float
    xyxy: tuple[float, float, float, float]
    matched: bool
    confirmed: bool
    det_index: int = -1
