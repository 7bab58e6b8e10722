"""Fresh deep-sort-realtime `DeepSort`s per video, fed precomputed embeddings: one per class
group, so a track only ever takes detections of its own group (a person track never a car's).
A group without appearance (`embedder.model = "none"`, `embedder.motion_classes`) matches on
motion alone: DeepSORT's matching cascade (recently seen tracks first) with the IoU between
each track's Kalman-predicted box and the detections as the cost (`iou_cascade`). A box around
two or more objects that are also detected on their own (`tracking.boxes.group_boxes`,
`tracker.group_box_cover`) goes to no tracker.

The adapter converts at the boundary: `Detections` (xyxy) -> deep-sort-realtime's
``([left, top, width, height], confidence, class)`` tuples, and its tracks back to
`TrackState`s (tracking/tracks.py). Track IDs are the video's own: 1..N in order of first
appearance over every group (with one group, exactly deep-sort-realtime's), so nothing leaks
between videos. Frame counts come from `TrackerConfig.resolve(fps)`: `max_age_s` seconds become
frames at this video's rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from deep_sort_realtime.deep_sort import linear_assignment
from deep_sort_realtime.deep_sort.detection import Detection
from deep_sort_realtime.deepsort_tracker import DeepSort

from tracking.boxes import box_iou, group_boxes, xyxy_to_ltwh
from tracking.config import TrackerConfig
from tracking.detections import Detections
from tracking.tracks import TrackState

REID_GROUP = -1  # the group key of classes with re-identification embeddings: its own appearance gate
NO_GROUP = -2  # the key of boxes no tracker takes (group boxes: tracker.group_box_cover)


class VideoTracker:
    """One video's tracking. `groups` maps class ids to a group key (a class not in it is a
    group of its own; `REID_GROUP` gates appearance at `tracker.reid_max_cosine_distance`);
    None tracks every class in one group, as deep-sort-realtime does."""

    def __init__(self, cfg: TrackerConfig, fps: float = 0.0, groups: dict[int, int] | None = None,
                 motion: frozenset[int] = frozenset()) -> None:
        self.cfg, self.fps, self.groups, self.motion = cfg, fps, groups, motion  # motion: group keys
        self.frame_counts = cfg.resolve(fps)  # max_age, n_init, nn_budget in frames
        self._trackers: dict[int, GroupTracker] = {}
        self._ids: dict[tuple[int, int], int] = {}  # (group, deep-sort id) -> the video's track id

    def group_keys(self, class_id: np.ndarray) -> np.ndarray:
        if self.groups is None:
            return np.zeros(len(class_id), np.int64)
        return np.array([self.groups.get(int(c), int(c)) for c in class_id], np.int64)

    def update(self, dets: Detections, embeds: np.ndarray) -> list[TrackState]:
        """Advance one frame in every group (also when `dets` is empty). `embeds`: (n, d)
        aligned with `dets`; each group's tracker sees only its own rows."""
        if len(dets) != len(embeds):
            raise ValueError(f"{len(dets)} detections but {len(embeds)} embeddings")
        keys = self.group_keys(dets.class_id)
        keys[group_boxes(dets.xyxy, dets.confidence, dets.class_id, self.cfg.group_box_cover)] = NO_GROUP
        for key in np.unique(keys[keys != NO_GROUP]).tolist():
            if key not in self._trackers:
                gate = self.cfg.reid_max_cosine_distance if key == REID_GROUP else self.cfg.max_cosine_distance
                self._trackers[key] = GroupTracker(self.cfg, self.frame_counts, gate, key in self.motion)
        states = []
        for key, tracker in sorted(self._trackers.items()):
            rows = np.flatnonzero(keys == key)
            for s in tracker.update(dets[rows] if len(rows) < len(dets) else dets, embeds[rows]):
                video_id = self._ids.setdefault((key, s.track_id), len(self._ids) + 1)
                states.append(dataclasses.replace(
                    s, track_id=video_id, det_index=int(rows[s.det_index]) if s.det_index >= 0 else -1))
        return states

    def predict(self) -> list[TrackState]:
        """Advance one frame that was not detected (`detector.max_fps`): every track moves on its
        motion model and none is missed for it (a DeepSORT update with no detections would delete
        every tentative track); each comes back unmatched, its box predicted."""
        states = []
        for key, tracker in sorted(self._trackers.items()):
            for s in tracker.predict():
                states.append(dataclasses.replace(s, track_id=self._ids.setdefault((key, s.track_id),
                                                                                   len(self._ids) + 1)))
        return states


class GroupTracker:
    """One deep-sort-realtime `DeepSort` for one class group of one video."""

    def __init__(self, cfg: TrackerConfig, frame_counts: dict[str, int], max_cosine_distance: float,
                 motion_only: bool = False) -> None:
        self.frame_counts = frame_counts
        self.high_conf, self.low_iou = cfg.high_conf, cfg.low_match_iou
        self._ds = DeepSort(
            max_age=self.frame_counts["max_age"],
            n_init=self.frame_counts["n_init"],
            max_cosine_distance=max_cosine_distance,
            max_iou_distance=cfg.max_iou_distance,
            nn_budget=self.frame_counts["nn_budget"],
            embedder=None,  # embeddings are computed in batches by AppearanceEmbedder
        )
        self._gap = 1  # frames since the last detected frame, this one included
        self._matcher = iou_cascade if motion_only else type(self._ds.tracker)._match
        self._ds.tracker._match = self._match_in_detection_steps

    def predict(self) -> list[TrackState]:
        """A frame without detection: the Kalman prediction only (see VideoTracker.predict)."""
        self._ds.tracker.predict()
        self._gap += 1
        return self._states(self._ds.tracker.tracks)

    def _match_in_detection_steps(self, detections: list[Detection]) -> Any:
        """deep-sort-realtime's matching, with each track's time since its last match counted in
        detected frames: after predicted-only frames, a track matched at the previous detected
        frame is still "matched last time" (its IoU stage and cascade level 1), as at every frame."""
        tracker, shift = self._ds.tracker, self._gap - 1
        if shift == 0:
            return self._matcher(tracker, detections)
        for t in tracker.tracks:
            t.time_since_update -= shift
        try:
            return self._matcher(tracker, detections)
        finally:
            for t in tracker.tracks:
                t.time_since_update += shift

    def update(self, dets: Detections, embeds: np.ndarray) -> list[TrackState]:
        """Advance one frame (also when `dets` is empty); deep-sort-realtime's track ids."""
        ltwh = xyxy_to_ltwh(dets.xyxy).tolist()
        high = [i for i, c in enumerate(dets.confidence.tolist()) if c >= self.high_conf]
        raw = [(ltwh[i], float(dets.confidence[i]), int(dets.class_id[i])) for i in high]
        tracks = self._ds.update_tracks(raw, embeds=[embeds[i] for i in high], others=high)
        if len(high) < len(dets):
            self._second_association(dets, ltwh, sorted(set(range(len(dets))) - set(high)), embeds)
        self._gap = 1
        return self._states(tracks)

    def _states(self, tracks: list[Any]) -> list[TrackState]:
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
        lost = [t for t in self._ds.tracker.tracks if t.is_confirmed() and t.time_since_update == self._gap]
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


def iou_cascade(tracker: Any, detections: list[Detection]) -> Any:
    """Motion-only matching for deep-sort-realtime's `Tracker._match`: its matching cascade
    over every track (confirmed or not; the recently seen first), each pair's cost 1 - IoU of
    the track's predicted box and the detection, admitted up to `max_iou_distance`. Unlike
    deep-sort-realtime's own IoU stage, a track missed for a few frames can still be matched:
    `max_age` means the same as with appearance."""
    def cost(tracks: list[Any], dets: list[Detection], track_indices: list[int],
             detection_indices: list[int]) -> np.ndarray:
        boxes = np.array([tracks[i].to_ltwh() for i in track_indices], np.float64).reshape(-1, 4)
        cands = np.array([dets[j].ltwh for j in detection_indices], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        cands[:, 2:] += cands[:, :2]
        return 1.0 - box_iou(boxes, cands)

    matches, unmatched_tracks, unmatched_dets = linear_assignment.matching_cascade(
        cost, tracker.max_iou_distance, tracker.max_age, tracker.tracks, detections)
    return matches, unmatched_tracks, unmatched_dets
