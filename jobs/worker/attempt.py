"""One attempt at one video, inside its lease: fetch (the source, or its cached detections),
track (re-track from the detections stage, or detect, embed and track, writing the stage),
publish (the detections stage, then the video's outputs, all or nothing). Every step runs in
a named stage, so a failure says where it happened (jobs/worker/outcome.py classifies it)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, Status
from jobs.detections import DetectionsStage
from jobs.plan import VideoTask, local_name_for
from jobs.storage import Storage
from jobs.worker.outcome import stage
from jobs.worker.publish import publish_outputs
from tracking.config import PipelineConfig
from tracking.video import VideoError

if TYPE_CHECKING:
    from tracking.pipeline import Models, VideoOutputs, VideoSummary

log = logging.getLogger("vidtrack." + __name__)

LEASE_TTL_S = 300.0  # an S3 lease left by a dead actor expires after this; renewed every TTL/3 while held


class Context(Protocol):
    """What an attempt needs of its actor (jobs.worker.actor.VideoWorker)."""

    cfg: PipelineConfig
    source: Storage
    layout: DatasetLayout
    stage: DetectionsStage | None  # None: the detections stage is off
    run_id: str
    owner: str

    def models(self) -> Models: ...
    def count_frames(self, n: int) -> None: ...
    def check_driver(self) -> None: ...


class VideoAttempt:
    def __init__(self, ctx: Context, task: VideoTask, tmp: Path, row: Attempt) -> None:
        self.ctx, self.task, self.row = ctx, task, row
        self.local, self.detections = tmp / local_name_for(task.key), tmp / "detections.parquet"
        self.tmp = tmp

    def run(self) -> None:
        """One run at a time per video: concurrent runs on one output skip what another holds."""
        layout = self.ctx.layout
        with stage("lease"), layout.storage.lease(layout.lease(self.task.video_id), self.ctx.owner,
                                                  self.ctx.run_id, LEASE_TTL_S) as still_held:
            self._leased(still_held)

    def _leased(self, still_held: Callable[[], None]) -> None:
        from tracking.pipeline import VideoOutputs

        ctx, task, row = self.ctx, self.task, self.row
        t = time.perf_counter()
        with stage("fetch"):
            cached = self._fetch()
        fetch_s = time.perf_counter() - t
        outputs = VideoOutputs(tracks=self.tmp / "tracks.parquet",
                               video=self.tmp / "video.mp4" if ctx.cfg.output.annotated_video else None)
        with stage("process"):
            summary, row.detections = self._track(cached, outputs)
        row.frames, row.rows = summary.frames, summary.rows
        row.frames_declared = summary.frames_declared
        row.tracker_frames = json.dumps(summary.tracker_frames, sort_keys=True)
        for key in ("device", "backend", "precision", "cpu"):
            setattr(row, key, summary.execution.get(key, ""))
        t = time.perf_counter()
        with stage("publish"):
            still_held()  # a lease lost while processing (renewals failed): another run may own it now
            if ctx.stage is not None and row.detections != "cached":
                ctx.stage.publish(task, self.detections, summary.frames, ctx.run_id)
            publish_outputs(ctx.layout, task, outputs, summary, row, ctx.check_driver)
        row.stage_seconds = json.dumps({"fetch": round(fetch_s, 3), **summary.stage_seconds,
                                        "publish": round(time.perf_counter() - t, 3)}, sort_keys=True)
        row.status = Status.OK

    def _fetch(self) -> bool:
        """The cached detections when they describe this source, and the source itself unless
        re-tracking needs no frames (it decodes only to draw the annotated video)."""
        ctx, task = self.ctx, self.task
        if task.replaces:  # the source changed: its old version is no longer complete
            ctx.layout.storage.delete(ctx.layout.done(task.video_id))
        cached = ctx.stage is not None and ctx.stage.fetch(task, self.detections)
        if not cached or ctx.cfg.output.annotated_video:
            ctx.source.download(task.obj, self.local)
        return cached

    def _track(self, cached: bool, outputs: VideoOutputs) -> tuple[VideoSummary, str]:
        """Re-track from the cached detections, or detect, embed and track (writing the detections
        stage). A cached file that turns out unusable falls back to full processing."""
        from tracking.detstore import DetectionsCacheError
        from tracking.pipeline import process_video, retrack_video

        ctx, task, local, how = self.ctx, self.task, self.local, "detected"
        params_id = ctx.layout.params_id
        if cached and ctx.stage is not None:
            try:
                source = local if local.exists() else None
                return retrack_video(self.detections, outputs, ctx.cfg, detections_id=ctx.stage.detections_id,
                                     source=source, video_id=task.video_id, params_id=params_id,
                                     on_frames=ctx.count_frames), "cached"
            except DetectionsCacheError as e:
                log.warning("%s: cached detections unusable (%s): processing it in full", task.name, e)
                how = "fallback"
                if not local.exists():
                    ctx.source.download(task.obj, local)
        try:
            return process_video(local, dataclasses.replace(outputs, detections=self.detections if ctx.stage else None),
                                 ctx.cfg, ctx.models(), video_id=task.video_id, params_id=params_id,
                                 on_frames=ctx.count_frames,
                                 detections_id=ctx.stage.detections_id if ctx.stage else ""), how
        except VideoError as e:  # name the source, not our temp copy
            name = f"{ctx.source.uri.rstrip('/')}/{task.name}"
            raise type(e)(name, e.reason.replace(str(local), task.name)) from e
