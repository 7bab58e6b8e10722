"""A fresh deep-sort-realtime `DeepSort` per video, fed precomputed embeddings.

The adapter converts at the boundary: `Detections` (xyxy) -> deep-sort-realtime's
``([left, top, width, height], confidence, class)`` tuples, and its tracks back to
`TrackState`s (tracking/tracks.py). Track IDs come from the tracker instance (its own `_next_id`), so
they start at 1 in every video and nothing leaks between videos. Frame counts come
from `TrackerConfig.resolve(fps)`: `max_age_s` seconds become frames at this video's rate.
"""

from __future__ import annotations

import numpy as np
from deep_sort_realtime.deep_sort.detection import Detection
from deep_sort_realtime.deepsort_tracker import DeepSort

from tracking.boxes import box_iou, xyxy_to_ltwh
from tracking.config import TrackerConfig
from tracking.detections import Detections
from tracking.tracks import TrackState


class VideoTracker:
    def __init__(self, cfg: TrackerConfig, fps: float = 0.0) -> None:
        self.frame_counts = cfg.resolve(fps)  # max_age, n_init, nn_budget in frames
        self.high_conf, self.low_iou = cfg.high_conf, cfg.low_match_iou
        self._ds = DeepSort(
            max_age=self.frame_counts["max_age"],
            n_init=self.frame_counts["n_init"],
            max_cosine_distance=cfg.max_cosine_distance,
            max_iou_distance=cfg.max_iou_distance,
            nn_budget=self.frame_counts["nn_budget"],
            embedder=None,  # embeddings are computed in batches by AppearanceEmbedder
        )

    def update(self, dets: Detections, embeds: np.ndarray) -> list[TrackState]:
        """Advance one frame (also when `dets` is empty). `embeds`: (n, d) aligned with `dets`."""
        if len(dets) != len(embeds):
            raise ValueError(f"{len(dets)} detections but {len(embeds)} embeddings")
        ltwh = xyxy_to_ltwh(dets.xyxy).tolist()
        high = [i for i, c in enumerate(dets.confidence.tolist()) if c >= self.high_conf]
        raw = [(ltwh[i], float(dets.confidence[i]), int(dets.class_id[i])) for i in high]
        tracks = self._ds.update_tracks(raw, embeds=[embeds[i] for i in high], others=high)
        if len(high) < len(dets):
            self._second_association(dets, ltwh, sorted(set(range(len(dets))) - set(high)), embeds)
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

    def _second_association(self, dets: Detections, ltwh: list[list[float]], low: list[int],
                            embeds: np.ndarray) -> None:
        """BYTE-style: detections below `high_conf` may extend confirmed tracks that were
        matched in the previous frame and missed in this one, greedily by IoU with the track's
        predicted box (>= `low_match_iou`); they never start a track. Their embeddings stay out
        of the track's appearance gallery (low scores are often occluded crops)."""
        lost = [t for t in self._ds.tracker.tracks if t.is_confirmed() and t.time_since_update == 1]
        if not lost:
            return
        iou = box_iou(np.array([t.to_ltrb() for t in lost], np.float64), dets.xyxy[low].astype(np.float64))
        while iou.size and iou.max() >= self.low_iou:
            ti, di = np.unravel_index(int(np.argmax(iou)), iou.shape)
            i = low[di]
            t = lost[ti]
            t.update(self._ds.tracker.kf, Detection(ltwh[i], float(dets.confidence[i]), embeds[i],
                                                   class_name=int(dets.class_id[i]), others=i))
            t.features.pop()
            iou[ti, :], iou[:, di] = -1.0, -1.0
