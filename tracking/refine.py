"""Offline refinement of one video's tracks, after the online tracker has seen all of it.

A batch job can look ahead, which a live tracker cannot. `refine` takes every row the
tracker reported (`TrackLog`, tentative ones included) and each track's mean appearance,
and returns the rows to publish:

1. **track start** (`keep_track_start`): a track that gets confirmed keeps the frames
   before its confirmation (its first `n_init - 1` detections), which the online output
   withholds; tracks never confirmed are dropped, as online (`output.confirmed_only`).
2. **class vote** (`class_vote`): each track takes the class with the highest summed
   detection confidence over its detected rows.
3. **stitching** (`stitch_max_gap_s`): a track that ends is joined to one of the same
   class that starts at most `stitch_max_gap_s` later, when the cosine distance between
   their mean embeddings is <= `stitch_max_distance` and the jump between the last and
   first boxes needs at most `stitch_max_speed` box heights per second (plus half a
   height of slack); a class tracked by motion alone (no embedding) on that motion gate
   only. Pairs are joined greedily, cheapest first; each track has at most one
   successor and one predecessor, and a successor starts after its predecessor's last
   detection, so joined tracks never overlap in time.
4. **gap filling** (`max_gap_s`): inside a track, frames between two detections at most
   `max_gap_s` apart get linearly interpolated boxes (`box_source` "interpolated"),
   replacing the tracker's predictions; longer gaps keep the predictions.
   **re-entry** (`reentry_max_gap_s`, tracking/reentry.py): then people who left the view and
   came back are joined by appearance alone, over longer gaps, by the same rules.
5. **short tracks** (`min_track_s`): tracks detected over less than this are removed.
6. IDs are renumbered 1..N in order of first appearance.

Memory: the log holds about 50 bytes per row (one row per track per frame) plus one
summed embedding per track; rows are kept as numpy chunks, not Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.config import RefineConfig
from tracking.reentry import chain_embeddings, greedy_links, reentry_links
from tracking.tracks import DETECTED, INTERPOLATED, TrackLog, TrackRows

EDGE_FRAMES = 2  # a track detected this close to the video's first or last frame may be cut short by it


@dataclass
class RefineStats:
    tracks_in: int = 0
    tracks_out: int = 0
    stitched: int = 0
    reentered: int = 0
    removed_short: int = 0
    start_rows: int = 0
    interpolated_rows: int = 0
    relabelled_rows: int = 0


def online_rows(log: TrackLog, confirmed_only: bool) -> TrackRows:
    """What the online tracker published without refinement: confirmed rows only (if asked)."""
    rows = log.rows()
    return rows.take(np.flatnonzero(rows.confirmed)) if confirmed_only else rows


def refine(log: TrackLog, cfg: RefineConfig, fps: float, confirmed_only: bool = True,
           reentry_classes: np.ndarray | None = None,
           motion_classes: np.ndarray | None = None) -> tuple[TrackRows, RefineStats]:
    """The refined rows of one video (sorted by frame, then track) and what changed.
    `reentry_classes`: the class ids re-entry may join (those with re-identification embeddings);
    `motion_classes`: those tracked by motion alone (no embedding: stitched on the motion gate)."""
    rows, stats = log.rows(), RefineStats()
    if confirmed_only:
        ever = np.unique(rows.track[rows.confirmed])
        keep = np.isin(rows.track, ever) if cfg.keep_track_start else rows.confirmed
        stats.start_rows = int(np.count_nonzero(keep & ~rows.confirmed))
        rows = rows.take(np.flatnonzero(keep))
    rows = rows.take(np.flatnonzero(_has_detection(rows)))
    stats.tracks_in = len(np.unique(rows.track))
    if cfg.class_vote:
        rows, stats.relabelled_rows = _vote_classes(rows)
    ts = np.asarray(log.timestamps, np.float64)
    links: dict[int, int] = {}
    if cfg.stitch_max_gap_s > 0:
        motion = frozenset(motion_classes.tolist()) if motion_classes is not None else frozenset()
        links = _stitch_links(rows, log.mean_embeddings(), ts, cfg, motion)
        rows, stats.stitched = _apply_links(rows, links), len(links)
    if cfg.reentry_max_gap_s > 0 and reentry_classes is not None and len(reentry_classes):
        back = reentry_links(rows, chain_embeddings(log.embedding_sum, links), ts, cfg.reentry_max_gap_s,
                             cfg.reentry_max_distance, reentry_classes)
        rows, stats.reentered = _apply_links(rows, back), len(back)
    rows, stats.interpolated_rows = _fill_gaps(rows, ts, cfg.max_gap_s)
    if cfg.min_track_s > 0:
        rows, stats.removed_short = _drop_short(rows, ts, cfg.min_track_s, fps)
    rows = _renumber(rows)
    stats.tracks_out = len(np.unique(rows.track))
    return rows.sorted(), stats


def _has_detection(rows: TrackRows) -> np.ndarray:
    """Rows of tracks with at least one detected row (a track is born from a detection)."""
    return np.isin(rows.track, np.unique(rows.track[rows.source == DETECTED]))


def _per_track(rows: TrackRows) -> tuple[np.ndarray, np.ndarray]:
    """The distinct track IDs and, for each row, its track's position among them."""
    tracks, inv = np.unique(rows.track, return_inverse=True)
    return tracks, inv.reshape(-1)


def _vote_classes(rows: TrackRows) -> tuple[TrackRows, int]:
    if not len(rows):
        return rows, 0
    weight = np.where(rows.source == DETECTED, np.nan_to_num(rows.conf, nan=0.0), 0.0)
    pairs, inv = np.unique(np.column_stack([rows.track, rows.cls]), axis=0, return_inverse=True)
    score = np.bincount(inv.reshape(-1), weights=weight, minlength=len(pairs))
    order = np.lexsort((pairs[:, 1], -score, pairs[:, 0]))  # per track: highest score, then lowest class id
    tracks, first = np.unique(pairs[order, 0], return_index=True)
    winner = pairs[order[first], 1]
    new = winner[np.searchsorted(tracks, rows.track)]
    changed = int(np.count_nonzero(new != rows.cls))
    rows.cls = new
    return rows, changed


@dataclass(frozen=True)
class _Ends:
    """A track's detected extent: first/last detected frame and box, class, mean embedding."""

    track: int
    first: int
    last: int
    first_box: np.ndarray
    last_box: np.ndarray
    cls: int


def _track_ends(rows: TrackRows) -> list[_Ends]:
    det = rows.take(np.flatnonzero(rows.source == DETECTED))
    order = np.lexsort((det.frame, det.track))
    det = det.take(order)
    out: list[_Ends] = []
    if not len(det):
        return out
    tracks, starts = np.unique(det.track, return_index=True)
    stops = np.append(starts[1:], len(det))
    for t, a, b in zip(tracks.tolist(), starts.tolist(), stops.tolist(), strict=True):
        out.append(_Ends(t, int(det.frame[a]), int(det.frame[b - 1]), det.xyxy[a], det.xyxy[b - 1], int(det.cls[a])))
    return out


def _jump(a: _Ends, b: _Ends, dt: float, max_speed: float) -> tuple[bool, float]:
    """Is the jump from a's last box to b's first plausible (box centres at most `max_speed`
    box heights per second apart, plus half a height of slack for detector jitter; box heights
    within a factor of two), and its share of the plausible distance."""
    ha, hb = a.last_box[3] - a.last_box[1], b.first_box[3] - b.first_box[1]
    if ha <= 0 or hb <= 0 or not 0.5 <= hb / ha <= 2.0:
        return False, float("inf")
    ca, cb = (a.last_box[:2] + a.last_box[2:]) / 2, (b.first_box[:2] + b.first_box[2:]) / 2
    dist, limit = float(np.linalg.norm(cb - ca)), (ha + hb) / 2 * (max_speed * dt + 0.5)
    return dist <= limit, dist / limit


def _stitch_links(rows: TrackRows, emb: dict[int, np.ndarray], ts: np.ndarray, cfg: RefineConfig,
                  motion: frozenset[int] = frozenset()) -> dict[int, int]:
    """predecessor -> successor, chosen greedily by appearance distance (for `motion` classes,
    which have no appearance, by the jump's share of the plausible one)."""
    ends = sorted(_track_ends(rows), key=lambda e: e.first)
    firsts = np.array([e.first for e in ends], np.int64)
    candidates = []
    for a in ends:  # successors start after a's last detection and at most stitch_max_gap_s later
        until = int(np.searchsorted(ts, ts[a.last] + cfg.stitch_max_gap_s + 1e-9, side="right"))
        lo, hi = np.searchsorted(firsts, [a.last + 1, until])
        by_motion = a.cls in motion
        for b in ends[lo:hi]:
            if a.cls != b.cls or (not by_motion and (a.track not in emb or b.track not in emb)):
                continue
            dt = float(ts[b.first] - ts[a.last])
            plausible, jump = _jump(a, b, dt, cfg.stitch_max_speed)
            if dt > cfg.stitch_max_gap_s or not plausible:
                continue
            cost = jump if by_motion else 1.0 - float(emb[a.track] @ emb[b.track])
            if by_motion or cost <= cfg.stitch_max_distance:
                candidates.append((cost, a.track, b.track))
    return greedy_links(candidates)


def _apply_links(rows: TrackRows, links: dict[int, int]) -> TrackRows:
    """Relabel each chain with its first track's ID; drop a predecessor's predicted rows
    from its successor's first frame on (the successor's own rows cover them)."""
    tracks, inv = _per_track(rows)
    first = np.full(len(tracks), np.iinfo(np.int64).max)
    np.minimum.at(first, inv, rows.frame)
    pos = {int(t): i for i, t in enumerate(tracks.tolist())}
    limit = np.full(len(tracks), np.iinfo(np.int64).max)
    for a, b in links.items():
        limit[pos[a]] = first[pos[b]]
    rows = rows.take(np.flatnonzero((rows.source == DETECTED) | (rows.frame < limit[inv])))
    pred = {b: a for a, b in links.items()}
    root = np.empty(len(tracks), np.int64)
    for i, t in enumerate(tracks.tolist()):
        while t in pred:
            t = pred[t]
        root[i] = t
    rows.track = root[np.searchsorted(tracks, rows.track)]
    return rows


def _fill_gaps(rows: TrackRows, ts: np.ndarray, max_gap_s: float) -> tuple[TrackRows, int]:
    """Interpolate boxes between consecutive detections of a track at most `max_gap_s` apart,
    replacing the predicted rows there."""
    if max_gap_s <= 0 or not len(rows):
        return rows, 0
    det = rows.take(np.flatnonzero(rows.source == DETECTED))
    det = det.take(np.lexsort((det.frame, det.track)))
    same = det.track[1:] == det.track[:-1]
    gap = det.frame[1:] - det.frame[:-1]
    fill = np.flatnonzero(same & (gap > 1) & (ts[det.frame[1:]] - ts[det.frame[:-1]] <= max_gap_s + 1e-9))
    parts = []
    for i in fill.tolist():
        f0, f1, t = int(det.frame[i]), int(det.frame[i + 1]), int(det.track[i])
        frames = np.arange(f0 + 1, f1)
        w = ((frames - f0) / (f1 - f0))[:, None]
        boxes = det.xyxy[i] * (1 - w) + det.xyxy[i + 1] * w
        n = len(frames)
        parts.append(TrackRows(frames.astype(np.int64), np.full(n, t, np.int64), np.full(n, det.cls[i], np.int64),
                               np.full(n, np.nan), boxes, np.full(n, INTERPOLATED, np.int8), np.ones(n, bool)))
    covered = _inside(rows, det.track[fill], det.frame[fill], det.frame[fill + 1])
    filled = TrackRows.concat([rows.take(np.flatnonzero(~covered)), *parts])
    return filled, sum(len(p) for p in parts)


def _inside(rows: TrackRows, track: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows strictly between frames lo[i] and hi[i] of track[i] (intervals of a track disjoint)."""
    if not len(track):
        return np.zeros(len(rows), bool)
    span = int(max(rows.frame.max(), hi.max())) + 2
    start, end = track * span + lo + 1, track * span + hi - 1
    order = np.argsort(start)
    start, end = start[order], end[order]
    key = rows.track * span + rows.frame
    i = np.searchsorted(start, key, side="right") - 1
    return (i >= 0) & (key <= end[np.maximum(i, 0)])


def _drop_short(rows: TrackRows, ts: np.ndarray, min_track_s: float, fps: float) -> tuple[TrackRows, int]:
    """Remove tracks whose detections span less than `min_track_s` (one frame counts 1/fps),
    unless they are detected in the video's first or last two frames: the video may have
    cut them short, so their length is unknown (a clip shorter than `min_track_s` keeps
    the tracks it shows from its start or to its end)."""
    frame_s = 1.0 / fps if fps > 0 else 0.0
    last_frame = len(ts) - 1
    short = [e.track for e in _track_ends(rows) if ts[e.last] - ts[e.first] + frame_s < min_track_s
             and e.first > EDGE_FRAMES - 1 and e.last < last_frame - EDGE_FRAMES + 1]
    return rows.take(np.flatnonzero(~np.isin(rows.track, short))), len(short)


def _renumber(rows: TrackRows) -> TrackRows:
    """IDs 1..N in order of first appearance (ties: the older ID first)."""
    if not len(rows):
        return rows
    tracks, inv = _per_track(rows)
    first = np.full(len(tracks), np.iinfo(np.int64).max)
    np.minimum.at(first, inv, rows.frame)
    new_id = np.empty(len(tracks), np.int64)
    new_id[np.lexsort((tracks, first))] = np.arange(1, len(tracks) + 1)
    rows.track = new_id[inv]
    return rows
