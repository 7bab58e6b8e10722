"""`StageTimer`: the seconds a video spends in each pipeline stage (decode, detect, embed,
track, refine, write, encode, detections), reported in its summary."""

from __future__ import annotations

import time
from collections import defaultdict


class StageTimer:
    """Seconds per stage, thread-safe enough for one writer per key."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, stage: str, since: float) -> float:
        """Count the time from `since` (a `time.perf_counter()`) to now towards `stage`; returns now."""
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now
