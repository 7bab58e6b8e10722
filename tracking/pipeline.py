"""process_video: one video in, track records (Parquet), annotated H.264 video and a
summary out. This is the whole per-video data flow:

    VideoReader --batches of frames (tracking/prefetch.py: a decode thread)--> detect (batched YOLO)
        --> embed every crop of the batch (one pass) --> VideoTracker.update per frame,
            in order --> TrackLog (every row the tracker reports, tentative ones too)
            [--> DetectionsRecord (tracking/detstore.py), when the detections stage is kept]
    refine (tracking/refine.py: the whole video's tracks) --> TrackTableWriter (Parquet)
    render: VideoReader again (decode thread) --> draw_tracks from the final records
        --> VideoSink (H.264 mp4)
    summary JSON

`retrack_video` starts from a detections stage file instead of the first line and goes on
the same way. Every file appears whole or not at all, and all of a video's files or none
(tracking/outputs.py). Frames are never held: the render pass decodes the video a second
time, so the annotated video shows exactly what the Parquet records say. The track log
holds about 50 bytes per row (refinement needs the whole video), frames are streamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tracking.annotate import draw_tracks
from tracking.appearance import ClassAppearance, class_groups, motion_class_ids, motion_groups, reid_class_ids
from tracking.atomic import write_json_atomic
from tracking.config import FALLBACK_FPS, PipelineConfig
from tracking.detections import Detections
from tracking.detstore import DetectionsCacheError, DetectionsRecord, Stamp, as_float16, read_batches, read_header
from tracking.models import Models
from tracking.outputs import OutputSet
from tracking.prefetch import prefetched
from tracking.records import TrackTableWriter
from tracking.refine import RefineStats, online_rows, refine
from tracking.sink import VideoSink, sink_time_base
from tracking.timing import StageTimer
from tracking.tracker import VideoTracker
from tracking.tracks import DETECTED, TrackLog, TrackRows, TrackState
from tracking.video import Frame, VideoInfo, VideoReader, fps_from_timestamps

log = logging.getLogger("vidtrack." + __name__)

DetectFn = Callable[[list[Frame]], list[Detections]]


@dataclass(frozen=True)
class VideoOutputs:
    tracks: Path
    video: Path | None = None
    summary: Path | None = None
    online_tracks: Path | None = None  # also write the unrefined records here (e.g. `vidtrack eval`)
    detections: Path | None = None  # also write the detections stage here (tracking/detstore.py)

    @classmethod
    def in_dir(cls, out_dir: str | os.PathLike[str], video_id: str, annotated: bool = True) -> VideoOutputs:
        d = Path(out_dir)
        return cls(d / f"{video_id}.tracks.parquet", d / f"{video_id}.annotated.mp4" if annotated else None,
                   d / f"{video_id}.summary.json")

    def make_folders(self) -> None:
        """Before the long part: an output folder that cannot be made fails now."""
        for path in (self.tracks, self.video, self.summary, self.online_tracks, self.detections):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)


@dataclass
class VideoSummary:
    video_id: str
    source: str
    params_id: str
    frames: int
    frames_declared: int  # what the container claims (0: unknown)
    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    codec: str
    rows: int
    tracks_per_class: dict[str, int]
    stage_seconds: dict[str, float]
    wall_seconds: float
    outputs: dict[str, str | None] = field(default_factory=dict)
    execution: dict[str, str] = field(default_factory=dict)  # what ran it: Models.execution()
    start_time: str = ""  # the container's creation_time, when it has one (VideoInfo.start_time)
    tracker_frames: dict[str, int] = field(default_factory=dict)  # frame counts resolved from seconds and fps
    refine: dict[str, int] = field(default_factory=dict)  # what refinement changed (RefineStats)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frames_per_second"] = round(self.frames_per_second, 3)
        return d


def process_video(source: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, models: Models,
                  *, video_id: str | None = None, params_id: str = "", detect: DetectFn | None = None,
                  max_frames: int | None = None, on_frames: Callable[[int], None] | None = None,
                  detections_id: str = "") -> VideoSummary:
    """Track every object in one video and write its outputs.

    Two passes over the video. Tracking: decode (its own thread, bounded queue) -> [this
    thread] detect + embed a batch, then track, the rows kept in a `TrackLog`. Tracking runs
    inline: on a 2-core machine a separate tracking thread measured slower (it contends with
    inference for the cores and the GIL). Then `refine` (tracking/refine.py) over the whole
    video's rows, the Parquet table, and a render pass that decodes the video again and draws
    each frame's final records (the annotated video shows what the Parquet says).
    `outputs.online_tracks`, if set, also gets the online tracker's unrefined rows;
    `outputs.detections`, the detections stage (every frame's detections and embeddings, under
    `detections_id`), from which `retrack_video` tracks again without decoding or a model.

    `on_frames(n)` is called with the number of frames done after each batch (progress).
    `detect` replaces the detector (e.g. MOTChallenge public detections); the
    embedder and a fresh tracker are always used. On any error nothing is left
    under the output names (temporary files are removed) and the error propagates;
    unreadable input raises `tracking.video.VideoError` naming the file.
    """
    # DeepSORT's per-frame math is many tiny numpy/scipy calls (4x4 Cholesky solves, 100x1280
    # distances): a multi-threaded BLAS spends more waking its threads than computing (tracking
    # measured 4-5x faster on one BLAS thread). Inference runs in its own thread pools.
    with threadpool_limits(limits=1, user_api="blas"):
        job = _Job(source, outputs, cfg, video_id or Path(source).stem, params_id, models.detector.names, on_frames,
                   execution=models.execution())
        outputs.make_folders()
        with contextlib.ExitStack() as stack:
            outs = OutputSet(stack, job.timer)
            record = (DetectionsRecord(outputs.detections, lambda w: outs.open(w, "detections"),
                                       detections_id=detections_id, class_names=job.names,
                                       execution=job.execution, class_dims=models.embedder.stored_dims())
                      if outputs.detections else None)
            tracking = _track(job, models, detect, record, max_frames)
            done = _write_outputs(job, outs, tracking)
        return _summarize(job, outs, tracking, done)


def retrack_video(detections: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, *,
                  detections_id: str, source: str | os.PathLike[str] | None = None, video_id: str | None = None,
                  params_id: str = "", on_frames: Callable[[int], None] | None = None) -> VideoSummary:
    """Track a video again from its detections stage (`process_video(outputs.detections=...)`):
    the same records as a full run with these parameters, without decoding or any model.
    `source` is decoded only to draw `outputs.video`. Raises DetectionsCacheError for a file
    that cannot be used (missing, truncated, another schema or `detections_id`)."""
    with threadpool_limits(limits=1, user_api="blas"):
        wall0 = time.perf_counter()
        header = read_header(detections, detections_id)
        job = _Job(source or detections, outputs if source is not None else dataclasses.replace(outputs, video=None),
                   cfg, video_id or Path(detections).stem, params_id, header.class_names, on_frames, wall0=wall0,
                   execution={**header.execution, "tracking": "re-tracked from the detections stage"})
        info = VideoInfo(os.fspath(source or detections), header.width, header.height, header.fps,
                         header.frame_count, 0, "", 0.0, header.start_time)
        tracking = _TrackStage(cfg, info, job.timer, job.names)
        for stamps, dets, embeds in read_batches(detections, header):
            tracking.process(stamps, dets, embeds)
            job.progress(tracking)
        if tracking.frames_tracked != header.frames or tracking.frames_tracked == 0:
            raise DetectionsCacheError(
                f"{os.fspath(detections)}: {tracking.frames_tracked} of {header.frames} frames read")
        job.outputs.make_folders()
        with contextlib.ExitStack() as stack:
            outs = OutputSet(stack, job.timer)
            done = _write_outputs(job, outs, tracking)
        return _summarize(job, outs, tracking, done)


@dataclass
class _Job:
    """One video's run: what every step after decoding needs to know about it."""

    source: str | os.PathLike[str]  # the video (for a re-track without one: the detections file)
    outputs: VideoOutputs
    cfg: PipelineConfig
    video_id: str
    params_id: str
    names: dict[int, str]  # class id -> name
    on_frames: Callable[[int], None] | None = None
    timer: StageTimer = field(default_factory=StageTimer)
    wall0: float = field(default_factory=time.perf_counter)
    execution: dict[str, str] = field(default_factory=dict)  # Models.execution(), or the detections stage's

    def progress(self, tracking: _TrackStage) -> None:
        if self.on_frames:
            self.on_frames(tracking.frames_tracked)


def _track(job: _Job, models: Models, detect: DetectFn | None, record: DetectionsRecord | None,
           max_frames: int | None) -> _TrackStage:
    """Decode, detect, embed and track every frame (the first `max_frames`); the tracker's rows
    go to a `TrackLog`, the detections (if `record`) to the detections stage. Only every k-th
    frame is detected (`DetectorConfig.every`), the others decoded without pixels and predicted."""
    detect_fn: DetectFn = detect or (lambda frames: models.detector([f.bgr for f in frames]))
    with VideoReader(job.source) as reader:
        tracking = _TrackStage(job.cfg, reader.info, job.timer, job.names)
        every = job.cfg.detector.every(reader.info.fps) if reader.info.fps else 1  # else: at the 1st batch
        pixels = (lambda i: i % every == 0) if every > 1 else None
        with prefetched(reader, job.cfg.detector.batch_size * every, job.timer, max_frames=max_frames,
                        pixels=pixels) as batches:
            for batch in batches:
                tracking.start(batch)
                dets, embeds = _infer(batch, tracking.every, detect_fn, models.embedder, reader.info, job.timer)
                embeds = as_float16(embeds)  # as the detections stage keeps them: re-tracking gives the same rows
                tracking.process(batch, dets, embeds)
                if record:
                    record.add(batch, dets, embeds, fps=tracking.fps, info=reader.info)
                job.progress(tracking)
    if tracking.frames_tracked == 0:
        raise RuntimeError(f"{job.source}: no frames processed")
    return tracking


def _infer(batch: list[Frame], every: int, detect_fn: DetectFn, embedder: ClassAppearance, info: VideoInfo,
           timer: StageTimer) -> tuple[list[Detections | None], list[Any]]:
    """Detect the batch's frames whose index is a multiple of `every` (boxes DeepSORT cannot
    crop dropped), then embed every crop of the batch in one pass. A frame not detected gets
    None and no embeddings."""
    seen = [f for f in batch if f.index % every == 0]
    t = time.perf_counter()
    found = [d.usable(info.width, info.height) for d in detect_fn(seen)] if seen else []
    t = timer.add("detect", t)
    feats = embedder([f.bgr for f in seen], found) if seen else []
    timer.add("embed", t)
    if len(seen) == len(batch):
        return list(found), feats
    it, none = iter(zip(found, feats, strict=True)), np.zeros((0, embedder.dim), np.float32)
    pairs: list[tuple[Detections | None, Any]] = [next(it) if f.index % every == 0 else (None, none) for f in batch]
    return [d for d, _ in pairs], [e for _, e in pairs]


class _TrackStage:
    """Takes (frames, detections, embeddings) batches in order: one fresh tracker per video,
    made at the first batch (a video whose container declares no frame rate gets one from
    that batch's timestamps, so times in seconds resolve to this video's frame counts)."""

    def __init__(self, cfg: PipelineConfig, info: VideoInfo, timer: StageTimer, names: dict[int, str]) -> None:
        self.cfg, self.info, self.timer = cfg, info, timer
        self.groups, self.motion = class_groups(cfg, names), motion_groups(cfg, names)  # tracking/appearance.py
        self.tracker: VideoTracker | None = None
        self.log = TrackLog(cfg.output.row_group_frames)
        self.fps, self.frames_tracked, self.every = 0.0, 0, 1

    @property
    def tracker_frames(self) -> dict[str, int]:
        """The tracker's frame counts and `detect_every`, the frames from one detected frame to the next."""
        return {**self.tracker.frame_counts, "detect_every": self.every} if self.tracker is not None else {}

    def start(self, batch: Sequence[Stamp]) -> VideoTracker:
        """The video's tracker, made at its first batch, and its detection stride (`self.every`)."""
        if self.tracker is None:
            self.fps = self.info.fps or fps_from_timestamps([f.timestamp_s for f in batch])
            self.tracker = VideoTracker(self.cfg.tracker, self.fps, self.groups, self.motion)
            self.every = self.cfg.detector.every(self.fps)
        return self.tracker

    def process(self, batch: Sequence[Stamp], dets: Sequence[Detections | None], embeds: list[Any]) -> None:
        """A frame's detections are None where it was not detected: its tracks are predicted."""
        t = time.perf_counter()
        tracker = self.start(batch)
        for frame, d, e in zip(batch, dets, embeds, strict=True):
            states = tracker.update(d, e) if d is not None else tracker.predict()
            self.log.add_frame(frame.index, frame.timestamp_s, states, e)
        self.frames_tracked += len(batch)
        self.timer.add("track", t)


@dataclass
class _Written:
    """What the output step produced, for the summary."""

    final: TrackRows
    stats: RefineStats
    rows: int
    video: Path | None


def _write_outputs(job: _Job, outs: OutputSet, tracking: _TrackStage) -> _Written:
    """After tracking: refine, the Parquet table(s), the annotated video (inside the outputs' stack)."""
    cfg, t = job.cfg, time.perf_counter()
    if cfg.refine.enabled:
        final, stats = refine(tracking.log, cfg.refine, tracking.fps, cfg.output.confirmed_only,
                              reentry_classes=reid_class_ids(cfg.embedder, job.names),
                              motion_classes=motion_class_ids(cfg.embedder, job.names))
    else:
        final, stats = online_rows(tracking.log, cfg.output.confirmed_only), RefineStats()
    t = job.timer.add("refine", t)
    rows = _write_tables(job, outs, tracking, final)
    job.timer.add("write", t)
    video_path = job.outputs.video if cfg.output.annotated_video else None
    if video_path is not None:
        _render(job, outs, tracking, final, video_path)
    return _Written(final, stats, rows, video_path)


def _write_tables(job: _Job, outs: OutputSet, tracking: _TrackStage, final: TrackRows) -> int:
    """The final records (and, if asked, the online tracker's unrefined ones); returns the row count."""
    tables = [(job.outputs.tracks, final)]
    if job.outputs.online_tracks is not None:
        tables.append((job.outputs.online_tracks, online_rows(tracking.log, job.cfg.output.confirmed_only)))
    written = []
    for path, data in tables:
        writer = outs.open(TrackTableWriter(path, video_id=job.video_id, params_id=job.params_id,
                                            class_names=job.names,
                                            frame_size=(tracking.info.width, tracking.info.height),
                                            row_group_frames=job.cfg.output.row_group_frames), "write")
        writer.write_rows(data, tracking.log.timestamps)
        written.append(writer.rows)
    return written[0]


def _render(job: _Job, outs: OutputSet, tracking: _TrackStage, final: TrackRows, path: Path) -> None:
    """The annotated video, at the source's presentation times: decode the source again and draw
    each frame's final records. Its wall time (decode, draw, encode) is the "encode" stage."""
    t, cfg, info, fps = time.perf_counter(), job.cfg, tracking.info, tracking.fps or FALLBACK_FPS
    sink = outs.open(VideoSink(path, info.width, info.height, fps, cfg.output.video_crf, cfg.output.video_preset,
                               sink_time_base(tracking.log.timestamps[:tracking.frames_tracked], fps)), "encode")
    bounds = np.searchsorted(final.frame, np.arange(tracking.frames_tracked + 1))
    with (VideoReader(job.source) as reader,
          prefetched(reader, cfg.detector.batch_size, max_frames=tracking.frames_tracked,
                     name="vidtrack-render-decode") as batches):
        for batch in batches:
            for frame in batch:
                states = _states(final, int(bounds[frame.index]), int(bounds[frame.index + 1]))
                sink.write(draw_tracks(frame.bgr, states, job.names), frame.timestamp_s)
    job.timer.add("encode", t)


def _states(rows: TrackRows, a: int, b: int) -> list[TrackState]:
    return [TrackState(int(rows.track[i]), int(rows.cls[i]), float(rows.conf[i]),
                       (float(rows.xyxy[i, 0]), float(rows.xyxy[i, 1]), float(rows.xyxy[i, 2]),
                        float(rows.xyxy[i, 3])), bool(rows.source[i] == DETECTED), True) for i in range(a, b)]


def _summarize(job: _Job, outs: OutputSet, tracking: _TrackStage, done: _Written) -> VideoSummary:
    """The summary, written once the outputs are published (a failed write withdraws them)."""
    summary = _summary(job, tracking, done)
    if job.outputs.summary is not None:
        with outs.withdrawn_on_error():
            write_json_atomic(job.outputs.summary, summary.to_dict())
    log.info("%s: %d frames, %d rows, %.1f frames/s, stages %s", job.video_id, tracking.frames_tracked, done.rows,
             summary.frames_per_second, summary.stage_seconds)
    return summary


def _summary(job: _Job, tracking: _TrackStage, done: _Written) -> VideoSummary:
    info, frames, final = tracking.info, tracking.frames_tracked, done.final
    per_class = np.unique(np.column_stack([final.cls, final.track]), axis=0) if len(final) else np.zeros((0, 2))
    classes, counts = np.unique(per_class[:, 0].astype(int), return_counts=True)
    return VideoSummary(
        video_id=job.video_id, source=os.fspath(job.source), params_id=job.params_id, frames=frames,
        frames_declared=info.frame_count, start_time=info.start_time,
        duration_s=round(frames / info.fps, 3) if info.fps else 0.0, fps=info.fps,
        width=info.width, height=info.height, rotation=info.rotation, codec=info.codec, rows=done.rows,
        tracks_per_class={job.names.get(k, str(k)): int(n)
                          for k, n in zip(classes.tolist(), counts.tolist(), strict=True)},
        stage_seconds={k: round(v, 3) for k, v in sorted(job.timer.seconds.items())},
        wall_seconds=round(time.perf_counter() - job.wall0, 3),
        outputs={"tracks": os.fspath(job.outputs.tracks), "video": os.fspath(done.video) if done.video else None},
        execution=job.execution,
        tracker_frames=tracking.tracker_frames, refine=asdict(done.stats))
