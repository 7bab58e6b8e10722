"""`Detections`: one frame's detector output as aligned arrays (supervision-style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.boxes import ltwh_to_xyxy, xyxy_to_ltwh


@dataclass(frozen=True)
class Detections:
    """Boxes of one frame.

    xyxy: (n, 4) float32 pixel corners (x1, y1, x2, y2) in the frame's coordinates.
    confidence: (n,) float32 in [0, 1].
    class_id: (n,) int32 detector class ids.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (n, 4), got {self.xyxy.shape}")
        if self.confidence.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(
                f"confidence {self.confidence.shape} and class_id {self.class_id.shape} must have shape ({n},)")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def from_arrays(cls, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray) -> Detections:
        return cls(np.asarray(xyxy, np.float32).reshape(-1, 4), np.asarray(confidence, np.float32).reshape(-1),
                   np.asarray(class_id, np.int32).reshape(-1))

    def __getitem__(self, keep: np.ndarray) -> Detections:
        return Detections(self.xyxy[keep], self.confidence[keep], self.class_id[keep])

    def clipped_crop_boxes(self, width: int, height: int) -> np.ndarray:
        """(n, 4) int crop rectangles (x1, y1, x2, y2), integer-truncated the way
        deep-sort-realtime crops (ltwh cast to int), clipped to the frame."""
        corners = ltwh_to_xyxy(xyxy_to_ltwh(self.xyxy).astype(np.int64))
        return np.clip(corners, 0, [width, height, width, height])

    def usable(self, width: int, height: int) -> Detections:
        """Drop boxes whose integer crop is empty: DeepSORT cannot embed or gate them."""
        crops = self.clipped_crop_boxes(width, height)
        keep = (crops[:, 2] > crops[:, 0]) & (crops[:, 3] > crops[:, 1])
        return self if keep.all() else self[keep]
