"""The Ray actor: loads the detector and embedder once, then processes videos one at a
time, each with a fresh tracker (inside `process_video`), in a per-attempt temp dir.

Every attempt comes back as an `Attempt` row, classified (README "Operating it nightly"):
- the video's own problem (`tracking.video.VideoError`: corrupt, incomplete, unsupported)
  -> `failed`, with a `_failed` marker carrying the source's identity;
- anything else (storage, network, disk, a source that changed while read) -> `retryable`:
  no marker, the driver retries it with backoff and the next run picks it up.
Outputs are published in the order video, tracks, `_done`; an attempt that fails after
publishing some of them removes them again, so only `_done` videos have outputs.
Only the actor dying (killed process, lost node) surfaces as a Ray error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, Status, now_iso
from jobs.dataset.markers import DoneMarker, write_failed_marker
from jobs.detcache import DetectionsCache
from jobs.modelref import fetch_model
from jobs.plan import VideoTask, local_name_for
from jobs.storage import LeaseHeld, Storage, open_storage
from tracking.config import ConfigError, PipelineConfig
from tracking.modelref import ModelError, file_sha256
from tracking.video import VideoError

if TYPE_CHECKING:
    from tracking.pipeline import Models, VideoOutputs, VideoSummary

log = logging.getLogger("vidtrack.jobs.worker")

# Actors' scratch folders (a copy of the video in flight, its outputs before upload).
LEASE_TTL_S = 300.0  # an S3 lease left by a dead actor expires after this; renewed every TTL/3 while held
WORK_ROOT = Path(os.environ.get("VIDTRACK_WORK_DIR") or Path(tempfile.gettempdir()) / "vidtrack-work")


@dataclass(frozen=True)
class ActorInfo:
    """What `ready()` reports: where the actor runs, and why it could not start, if it could not."""

    node_id: str
    pid: int
    workdir: str
    error: str = ""  # "ErrorClass: message" when the models could not be loaded
    usage_error: bool = False  # the error is the user's input (bad model, class name, device)
    model_loads: int = 0  # 0 for an actor that only re-tracks (it never builds a model)


class _StageError(Exception):
    """An exception with the stage it happened in (fetch, process, publish)."""

    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage, self.cause = stage, cause


class VideoWorker:
    """Callable-class actor. Resources are set where the pool is built (jobs/pool.py).
    A failure to load the models does not raise out of the constructor (Ray would hide
    it behind "actor died in its creation task"): `ready()` reports it."""

    def __init__(self, cfg: PipelineConfig, source_uri: str, output_uri: str, params_id: str,
                 model_sha256: str, endpoint_url: str | None = None, threads: int | None = None,
                 run_id: str = "", detections_id: str = "", load_models: bool = True) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.run_id, self.owner = run_id, f"run {run_id}, node {self.node_id[:12]}, pid {os.getpid()}"
        self.workdir = _claim_workdir(self.node_id)
        self.source: Storage = open_storage(source_uri, endpoint_url)
        self.layout = DatasetLayout(open_storage(output_uri, endpoint_url), params_id)
        self.params_id = params_id
        # the detections stage: reused when it matches, written otherwise ("" turns it off)
        self.cache = DetectionsCache(self.layout.storage, detections_id) if detections_id else None
        self.models: Models | None = None
        self.model_loads = 0  # how many times this actor built the detector and embedder
        self._frames_done = 0
        self.start_error, self.usage_error = "", False
        try:
            self._configure(cfg, model_sha256, endpoint_url, threads)
            if load_models:  # an actor that only re-tracks never builds a model
                self._models()
        except Exception as e:  # reported by ready(), with its real cause
            self.start_error = f"{e.__class__.__name__}: {e}"
            self.usage_error = isinstance(e, ModelError | ConfigError | ValueError)
            log.error("actor could not start: %s", self.start_error)

    def _configure(self, cfg: PipelineConfig, model_sha256: str, endpoint_url: str | None,
                   threads: int | None) -> None:
        self.cfg, self._model_args = cfg, (model_sha256, endpoint_url)
        if threads:  # inference follows the actor's CPU share (torch is not imported for it: seconds)
            from tracking.inference import set_inference_threads

            set_inference_threads(threads)

    def _models(self) -> Models:
        """The detector and embedder, built on first use (once per actor)."""
        if self.models is None:
            from tracking.pipeline import Models

            model_sha256, endpoint_url = self._model_args
            cfg = self.cfg
            local_model = fetch_model(cfg.detector.model, endpoint_url,
                                      Path(tempfile.gettempdir()) / "vidtrack-models")
            if model_sha256 and Path(local_model).is_file() and file_sha256(local_model) != model_sha256:
                raise ModelError(f"detector model {cfg.detector.model!r} changed during the run: "
                                 f"expected SHA-256 {model_sha256}")
            self.cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, model=local_model))
            self.models = Models.load(self.cfg)
            self.model_loads += 1
        return self.models

    def ready(self) -> ActorInfo:
        return ActorInfo(self.node_id, os.getpid(), str(self.workdir), self.start_error, self.usage_error,
                         self.model_loads)

    def frames_done(self) -> int:
        """Frames of the video in flight processed so far (the actor is threaded: this answers
        while `process` runs), so the driver's progress moves inside an hour-long video."""
        return self._frames_done

    def _count_frames(self, n: int) -> None:
        self._frames_done = n

    def process(self, task: VideoTask, attempt: int) -> Attempt:
        self._frames_done = 0
        started, t0 = now_iso(), time.perf_counter()
        row = Attempt(task.video_id, task.name, attempt, Status.RETRYABLE, node_id=self.node_id,
                      worker_pid=os.getpid(), started_at=started, bytes_in=task.size,
                      source_modified=task.identity.modified, source_etag=task.identity.etag)
        try:
            with tempfile.TemporaryDirectory(prefix=f"a{attempt}-", dir=self.workdir) as tmp:
                self._attempt(task, attempt, Path(tmp), row)
        except _StageError as e:
            self._record_failure(task, row, e)
        row.seconds = round(time.perf_counter() - t0, 3)
        row.finished_at = now_iso()
        return row

    def _attempt(self, task: VideoTask, attempt: int, tmp: Path, row: Attempt) -> None:
        """One run at a time per video: concurrent runs on one output skip what another holds."""
        lease_key = self.layout.lease(task.video_id)
        with _stage("lease"), self.layout.storage.lease(lease_key, self.owner, self.run_id,
                                                                       LEASE_TTL_S) as still_held:
            self._leased_attempt(task, attempt, tmp, row, still_held)

    def _leased_attempt(self, task: VideoTask, attempt: int, tmp: Path, row: Attempt,
                        still_held: Callable[[], None]) -> None:
        from tracking.pipeline import VideoOutputs

        local, detections = tmp / local_name_for(task.key), tmp / "detections.parquet"
        t = time.perf_counter()
        with _stage("fetch"):
            if task.replaces:  # the source changed: its old version is no longer complete
                self.layout.storage.delete(self.layout.done(task.video_id))
            cached = self.cache is not None and self.cache.fetch(task, detections)
            if not cached or self.cfg.output.annotated_video:  # re-tracking decodes only to draw
                self.source.download(task.obj, local)
        fetch_s = time.perf_counter() - t
        outputs = VideoOutputs(tracks=tmp / "tracks.parquet",
                               video=tmp / "video.mp4" if self.cfg.output.annotated_video else None)
        with _stage("process"):
            summary, row.detections = self._track(task, local, detections, cached, outputs)
        row.frames, row.rows = summary.frames, summary.rows
        row.frames_declared = summary.frames_declared
        row.tracker_frames = json.dumps(summary.tracker_frames, sort_keys=True)
        t = time.perf_counter()
        with _stage("publish"):
            still_held()  # a lease lost while processing (renewals failed): another run may own it now
            if self.cache is not None and row.detections != "cached":
                self.cache.publish(task, detections, summary.frames)
            self._publish(task, attempt, outputs, summary, row)
        row.stage_seconds = json.dumps({"fetch": round(fetch_s, 3), **summary.stage_seconds,
                                        "publish": round(time.perf_counter() - t, 3)}, sort_keys=True)
        row.status = Status.OK

    def _track(self, task: VideoTask, local: Path, detections: Path, cached: bool,
               outputs: VideoOutputs) -> tuple[VideoSummary, str]:
        """Re-track from the cached detections, or detect, embed and track (writing the detections
        stage). A cached file that turns out unusable falls back to full processing."""
        from tracking.detstore import DetectionsCacheError
        from tracking.pipeline import process_video, retrack_video

        how = "detected"
        if cached and self.cache is not None:
            try:
                source = local if local.exists() else None
                return retrack_video(detections, outputs, self.cfg, detections_id=self.cache.detections_id,
                                     source=source, video_id=task.video_id, params_id=self.params_id,
                                     on_frames=self._count_frames), "cached"
            except DetectionsCacheError as e:
                log.warning("%s: cached detections unusable (%s): processing it in full", task.name, e)
                how = "fallback"
                if not local.exists():
                    self.source.download(task.obj, local)
        try:
            return process_video(local, dataclasses.replace(outputs, detections=detections if self.cache else None),
                                 self.cfg, self._models(), video_id=task.video_id, params_id=self.params_id,
                                 on_frames=self._count_frames,
                                 detections_id=self.cache.detections_id if self.cache else ""), how
        except VideoError as e:  # name the source, not our temp copy
            raise type(e)(self._source_name(task), e.reason.replace(str(local), task.name)) from e

    def _publish(self, task: VideoTask, attempt: int, outputs: VideoOutputs, summary: VideoSummary,
                 row: Attempt) -> None:
        """Video, then tracks, then `_done` last; on any error, remove what was published."""
        storage, layout = self.layout.storage, self.layout
        try:
            if outputs.video is not None:
                storage.upload(outputs.video, layout.video(task.video_id))
            storage.upload(outputs.tracks, layout.tracks(task.video_id))
            storage.delete(layout.failed(task.video_id))
            marker = DoneMarker(
                task.video_id, task.name, task.identity, params_id=self.params_id, attempt=attempt,
                frames=row.frames, frames_declared=row.frames_declared, rows=row.rows,
                tracks_sha256=file_sha256(outputs.tracks), fps=summary.fps, width=summary.width,
                height=summary.height, tracks_per_class=summary.tracks_per_class,
                tracker_frames=summary.tracker_frames, refine=summary.refine, finished_at=now_iso())
            storage.put_bytes(layout.done(task.video_id), marker.to_bytes())  # last: the video is complete
        except Exception:
            self._remove_outputs(task)
            raise

    def _remove_outputs(self, task: VideoTask) -> None:
        """Best effort: outputs of a video that is not complete must not stay beside the dataset."""
        for key in (self.layout.done(task.video_id), self.layout.tracks(task.video_id),
                    self.layout.video(task.video_id)):
            try:
                self.layout.storage.delete(key)
            except Exception as e:  # the storage is failing: say so; readers still join on _done
                log.error("could not remove %s of an incomplete video: %s", key, e)

    def _record_failure(self, task: VideoTask, row: Attempt, err: _StageError) -> None:
        cause = err.cause
        own = isinstance(cause, VideoError)
        # another run holds the video: this run leaves it to that one. Held by this run: an earlier attempt
        # whose actor was cut off is still going (a lost node's process): retry it after a backoff
        elsewhere = isinstance(cause, LeaseHeld) and f"run {self.run_id}," not in str(cause)
        row.status = Status.FAILED if own else Status.CANCELLED if elsewhere else Status.RETRYABLE
        row.error_class, row.error_stage = cause.__class__.__name__, err.stage
        row.error_message = str(cause)[:2000]
        log.warning("video %s %s in %s: %s: %s", task.name, row.status, err.stage, row.error_class, row.error_message)
        if not own:  # the video may be fine: leave no trace that would make it look failed or done
            return
        self._remove_outputs(task)
        write_failed_marker(self.layout, row, task.identity)

    def _source_name(self, task: VideoTask) -> str:
        return f"{self.source.uri.rstrip('/')}/{task.name}"


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Wrap any exception raised inside in a `_StageError` naming the stage."""
    try:
        yield
    except _StageError:
        raise
    except Exception as e:
        raise _StageError(name, e) from e


def _claim_workdir(node_id: str) -> Path:
    """This actor's scratch folder, `<tmp>/vidtrack-work/<node>-<pid>`. Folders left by actors
    of this node whose process is gone (killed, SIGTERM) are removed first."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    for d in WORK_ROOT.glob(f"{node_id[:12]}-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            log.info("removed scratch folder %s of a dead actor", d)
    workdir = WORK_ROOT / f"{node_id[:12]}-{os.getpid()}"
    workdir.mkdir(exist_ok=True)
    return workdir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
