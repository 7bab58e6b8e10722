"""The detections stage in the jobs layer: `<output>/_detections/<detections_id>/<video_id>.parquet`
(the file itself is tracking/detstore.py's) with a `_done` marker carrying the source's identity.
It sits beside the tracks datasets, shared by every one made from the same detections. A run
whose detector and embedder settings match (the same `detections_id`) re-tracks a video from
it instead of decoding it and running the models, as long as the source object is unchanged:

- where it lives: `detections_key`, `detections_done_key`;
- which videos have it: `DetectionsStage.cached` (when every video does, `all_cached`, the
  driver re-tracks them in its own process or on CPU-only actors that never build a model:
  jobs/run/session.py);
- reading and writing one video's: `DetectionsStage.fetch`, `publish` (the worker,
  jobs/worker/attempt.py, which also falls back to full processing when a file is unusable).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.dataset.manifest import now_iso
from jobs.dataset.markers import DetectionsMarker, read_marker
from jobs.plan import VideoTask
from jobs.storage import UNKNOWN_SIZE, ObjectInfo, Storage

log = logging.getLogger("vidtrack." + __name__)

FOLDER = "_detections"


def detections_key(detections_id: str, video_id: str) -> str:
    return "/".join((FOLDER, detections_id, f"{video_id}.parquet"))


def detections_done_key(detections_id: str, video_id: str) -> str:
    return "/".join((FOLDER, detections_id, "_done", f"{video_id}.json"))


@dataclass(frozen=True)
class DetectionsStage:
    storage: Storage
    detections_id: str

    def _marker(self, task: VideoTask) -> DetectionsMarker | None:
        key = detections_done_key(self.detections_id, task.video_id)
        return read_marker(DetectionsMarker, self.storage, key, task.identity)

    def cached(self, tasks: list[VideoTask]) -> dict[str, int]:
        """video_id -> frames, for the videos whose detections can be reused (one small read
        each, in parallel)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            markers = list(pool.map(self._marker, tasks))
        return {t.video_id: m.frames for t, m in zip(tasks, markers, strict=True) if m is not None}

    def all_cached(self, tasks: list[VideoTask]) -> int | None:
        """The frames to re-track when every video can be re-tracked without decoding or a
        model, else None."""
        cached = self.cached(tasks)
        log.info("%d of %d videos to process have reusable detections (%s): they are re-tracked without "
                 "decoding or a model", len(cached), len(tasks), self.detections_id)
        return sum(cached.values()) if len(cached) == len(tasks) else None

    def fetch(self, task: VideoTask, dest: Path) -> bool:
        """Download the video's detections if they describe this version of its source."""
        marker = self._marker(task)
        if marker is None:
            return False
        key = detections_key(self.detections_id, task.video_id)
        self.storage.download(ObjectInfo(key, UNKNOWN_SIZE, datetime.fromtimestamp(0, UTC)), dest)
        return True

    def publish(self, task: VideoTask, path: Path, frames: int, run_id: str = "") -> None:
        """The detections file, then its marker (written last: its presence means complete),
        which names the run that wrote it."""
        self.storage.upload(path, detections_key(self.detections_id, task.video_id))
        marker = DetectionsMarker(task.video_id, task.name, task.identity, detections_id=self.detections_id,
                                  frames=frames, finished_at=now_iso(), run_id=run_id)
        self.storage.put_bytes(detections_done_key(self.detections_id, task.video_id), marker.to_bytes())
