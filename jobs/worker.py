"""The Ray actor: loads the detector and embedder once, then processes videos one at a
time, each with a fresh tracker (inside `process_video`), in a per-attempt temp dir.

A video that fails for its own reasons (corrupt, unsupported, ...) comes back as a
`failed` AttemptResult: failures are data. Only the actor dying (killed process,
lost node) surfaces as a Ray error, which the driver retries elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.layout import DatasetLayout
from jobs.plan import VideoTask, local_name_for
from jobs.storage import S3Storage, open_storage
from tracking.config import PipelineConfig
from tracking.detector import ModelError, file_sha256

log = logging.getLogger(__name__)

STATUS_OK, STATUS_FAILED, STATUS_SKIPPED, STATUS_LOST = "ok", "failed", "skipped", "lost"


@dataclass
class AttemptResult:
    """One row of the run manifest."""

    video_id: str
    source_key: str
    attempt: int
    status: str
    error_class: str = ""
    error_message: str = ""
    frames: int = 0
    rows: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    stage_seconds: str = "{}"
    node_id: str = ""
    worker_pid: int = 0
    started_at: str = ""
    finished_at: str = ""


def fetch_model(spec: str, endpoint_url: str | None, cache_dir: Path) -> str:
    """Local path for a detector model. `s3://` URIs are downloaded once into
    `cache_dir` under a name derived from a hash of the URI; others pass through."""
    if not spec.startswith("s3://"):
        return spec
    parent, _, name = spec.rpartition("/")
    if not name:
        raise ModelError(f"detector model {spec!r}: URI names no object")
    cache_dir.mkdir(parents=True, exist_ok=True)
    local = cache_dir / local_name_for(spec)
    if not local.exists():
        tmp = local.with_name(local.name + f".{os.getpid()}.partial")
        try:
            S3Storage(parent + "/", endpoint_url).download(name, tmp)
        except Exception as e:  # botocore raises several unrelated types for missing objects/buckets
            tmp.unlink(missing_ok=True)
            raise ModelError(f"detector model {spec!r} could not be downloaded ({e.__class__.__name__}: {e}). "
                             "Check the URI and that this job's role can read it.") from e
        os.replace(tmp, local)
    return str(local)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class VideoWorker:
    """Callable-class actor. Resources are set where the pool is built (jobs/run.py)."""

    def __init__(self, cfg: PipelineConfig, source_uri: str, output_uri: str, params_id: str,
                 model_sha256: str, endpoint_url: str | None = None, threads: int | None = None) -> None:
        import ray
        import torch

        from tracking.pipeline import Models

        if threads:
            torch.set_num_threads(threads)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.source = open_storage(source_uri, endpoint_url)
        self.layout = DatasetLayout(open_storage(output_uri, endpoint_url), params_id)
        cache = Path(tempfile.gettempdir()) / "vidtrack-models"
        local_model = fetch_model(cfg.detector.model, endpoint_url, cache)
        if model_sha256 and Path(local_model).is_file() and file_sha256(local_model) != model_sha256:
            raise ModelError(f"detector model {cfg.detector.model!r} changed during the run: "
                             f"expected SHA-256 {model_sha256}")
        self.cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, model=local_model))
        self.models = Models.load(self.cfg)
        self.params_id = params_id

    def ready(self) -> str:
        return self.node_id

    def process(self, task: VideoTask, attempt: int) -> AttemptResult:
        from tracking.pipeline import VideoOutputs, process_video

        started, t0 = now_iso(), time.perf_counter()
        result = AttemptResult(task.video_id, task.key, attempt, STATUS_FAILED, node_id=self.node_id,
                               worker_pid=os.getpid(), started_at=started, bytes_in=task.size)
        source_name = f"{self.source.uri.rstrip('/')}/{task.key}"
        with tempfile.TemporaryDirectory(prefix=f"vidtrack-{task.video_id[-12:]}-a{attempt}-") as tmp:
            local = Path(tmp) / local_name_for(task.key)
            try:
                self.source.download(task.key, local)
                outputs = VideoOutputs(tracks=Path(tmp) / "tracks.parquet",
                                       video=Path(tmp) / "video.mp4" if self.cfg.output.annotated_video else None)
                summary = process_video(local, outputs, self.cfg, self.models, video_id=task.video_id,
                                        params_id=self.params_id)
                self.layout.storage.upload(outputs.tracks, self.layout.tracks(task.video_id))
                if outputs.video is not None:
                    self.layout.storage.upload(outputs.video, self.layout.video(task.video_id))
                result.status, result.frames, result.rows = STATUS_OK, summary.frames, summary.rows
                result.stage_seconds = json.dumps(summary.stage_seconds, sort_keys=True)
                done = {"video_id": task.video_id, "source_key": task.key, "params_id": self.params_id,
                        "frames": summary.frames, "rows": summary.rows, "attempt": attempt,
                        "tracks_sha256": file_sha256(outputs.tracks), "finished_at": now_iso(),
                        "fps": summary.fps, "width": summary.width, "height": summary.height,
                        "tracks_per_class": summary.tracks_per_class}
                # the marker goes last: its presence alone means the video is complete
                self.layout.storage.put_bytes(self.layout.done(task.video_id),
                                              (json.dumps(done, indent=2, sort_keys=True) + "\n").encode())
            except Exception as e:  # the video's own failure: recorded, not raised
                result.status = STATUS_FAILED
                result.error_class = e.__class__.__name__
                result.error_message = str(e).replace(str(local), source_name)[:2000]
                log.warning("video %s failed: %s: %s", source_name, result.error_class, result.error_message)
                self._mark_failed(task, result)
        result.seconds = round(time.perf_counter() - t0, 3)
        result.finished_at = now_iso()
        return result


    def _mark_failed(self, task: VideoTask, result: AttemptResult) -> None:
        """Remember the failure with the object's size and mtime, so later runs skip it
        until the object changes. Failing to write the marker only costs a retry later."""
        marker = {"video_id": task.video_id, "source_key": task.key, "size": task.size,
                  "modified": task.modified.isoformat(), "error_class": result.error_class,
                  "error_message": result.error_message, "attempt": result.attempt, "at": now_iso()}
        try:
            self.layout.storage.put_bytes(self.layout.failed(task.video_id),
                                          (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode())
        except Exception as e:  # storage trouble: logged; the manifest row still records the failure
            log.error("could not write failure marker for %s: %s", task.key, e)

