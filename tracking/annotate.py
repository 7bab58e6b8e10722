"""Draw track boxes, IDs and class names on a frame (OpenCV)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tracking.tracks import TrackState

# 20 well-separated BGR colours; a track keeps its colour for the whole video.
_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (230, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128)], dtype=np.uint8)[:, ::-1]


def track_color(track_id: int) -> tuple[int, int, int]:
    b, g, r = _PALETTE[track_id % len(_PALETTE)]
    return int(b), int(g), int(r)


def draw_tracks(frame_bgr: np.ndarray, states: Sequence[TrackState], class_names: dict[int, str]) -> np.ndarray:
    """Return a copy of the frame with a box and an 'ID class' label per track.
    Predicted (unmatched) boxes are drawn thinner."""
    out = frame_bgr.copy()
    scale = max(0.4, min(out.shape[:2]) / 900)
    thick = max(1, round(scale * 2))
    for s in states:
        color = track_color(s.track_id)
        x1, y1, x2, y2 = (round(v) for v in s.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick if s.matched else 1)
        label = f"{s.track_id} {class_names.get(s.class_id, str(s.class_id))}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(th + base, y1)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty), color, cv2.FILLED)
        cv2.putText(out, label, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
