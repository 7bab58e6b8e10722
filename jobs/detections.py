"""The detections stage in the output: `<output>/_detections/<detections_id>/<video_id>.parquet`
(tracking/detstore.py) with a `_done` marker carrying the source's identity. A run whose
detector and embedder settings match (the same `detections_id`) re-tracks a video from it
instead of decoding it and running the models, as long as the source object is unchanged."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import now_iso
from jobs.dataset.markers import DoneMarker, read_done_marker
from jobs.plan import VideoTask
from jobs.storage import UNKNOWN_SIZE, ObjectInfo, Storage

log = logging.getLogger("vidtrack.jobs.detcache")


@dataclass(frozen=True)
class DetectionsCache:
    storage: Storage
    detections_id: str

    def _marker(self, task: VideoTask) -> DoneMarker | None:
        key = DatasetLayout.detections_done(self.detections_id, task.video_id)
        return read_done_marker(self.storage, key, task.identity)

    def has(self, task: VideoTask) -> bool:
        return self._marker(task) is not None

    def cached(self, tasks: list[VideoTask]) -> set[str]:
        """video_ids whose detections can be reused (one small read each, in parallel)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            hits = list(pool.map(self.has, tasks))
        return {t.video_id for t, hit in zip(tasks, hits, strict=True) if hit}

    def fetch(self, task: VideoTask, dest: Path) -> bool:
        """Download the video's detections if they describe this version of its source."""
        marker = self._marker(task)
        if marker is None:
            return False
        key = DatasetLayout.detections(self.detections_id, task.video_id)
        self.storage.download(ObjectInfo(key, UNKNOWN_SIZE, datetime.fromtimestamp(0, UTC)), dest)
        return True

    def publish(self, task: VideoTask, path: Path, frames: int) -> None:
        """The detections file, then its marker (written last: its presence means complete)."""
        self.storage.upload(path, DatasetLayout.detections(self.detections_id, task.video_id))
        marker = DoneMarker(task.video_id, task.name, task.identity, params_id=self.detections_id, frames=frames,
                            finished_at=now_iso())
        self.storage.put_bytes(DatasetLayout.detections_done(self.detections_id, task.video_id), marker.to_bytes())
