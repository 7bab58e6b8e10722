"""A fresh deep-sort-realtime `DeepSort` per video, fed precomputed embeddings.

The adapter converts at the boundary: `Detections` (xyxy) -> deep-sort-realtime's
``([left, top, width, height], confidence, class)`` tuples, and its tracks back to
`TrackState`s (tracking/tracks.py). Track IDs come from the tracker instance (its own `_next_id`), so
they start at 1 in every video and nothing leaks between videos. Frame counts come
from `TrackerConfig.resolve(fps)`: `max_age_s` seconds become frames at this video's rate.
"""

from __future__ import annotations

import numpy as np
from deep_sort_realtime.deepsort_tracker import DeepSort

from tracking.boxes import xyxy_to_ltwh
from tracking.config import TrackerConfig
from tracking.detections import Detections
from tracking.tracks import TrackState


class VideoTracker:
    def __init__(self, cfg: TrackerConfig, fps: float = 0.0) -> None:
        self.frames = cfg.resolve(fps)
        self._ds = DeepSort(
            max_age=self.frames["max_age"],
            n_init=self.frames["n_init"],
            max_cosine_distance=cfg.max_cosine_distance,
            max_iou_distance=cfg.max_iou_distance,
            nn_budget=self.frames["nn_budget"],
            embedder=None,  # embeddings are computed in batches by AppearanceEmbedder
        )

    def update(self, dets: Detections, embeds: np.ndarray) -> list[TrackState]:
        """Advance one frame (also when `dets` is empty). `embeds`: (n, d) aligned with `dets`."""
        if len(dets) != len(embeds):
            raise ValueError(f"{len(dets)} detections but {len(embeds)} embeddings")
        ltwh = xyxy_to_ltwh(dets.xyxy).tolist()
        raw = [(box, float(c), int(k)) for box, c, k in zip(ltwh, dets.confidence, dets.class_id, strict=True)]
        tracks = self._ds.update_tracks(raw, embeds=list(embeds), others=list(range(len(raw))))
        states = []
        for t in tracks:
            if t.is_deleted():
                continue
            matched = t.time_since_update == 0
            box = t.to_ltrb(orig=matched)
            conf = t.get_det_conf() if matched else None
            states.append(TrackState(
                track_id=int(t.track_id),
                class_id=int(t.get_det_class()),
                confidence=float(conf) if conf is not None else float("nan"),
                xyxy=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                matched=matched,
                confirmed=t.is_confirmed(),
                det_index=int(t.get_det_supplementary()) if matched else -1,
            ))
        return states
