"""process_video: one video in, track records (Parquet), annotated H.264 video and a
summary out. This is the whole per-video data flow:

    VideoReader (decode thread) --batches of frames--> detect (batched YOLO)
        --> embed every crop of the batch (one pass) --> VideoTracker.update per frame,
            in order --> TrackLog (every row the tracker reports, tentative ones too)
    refine (tracking/refine.py: the whole video's tracks) --> TrackTableWriter (Parquet)
    render: VideoReader again (decode thread) --> draw_tracks from the final records
        --> VideoSink (H.264 mp4)

Decode runs on its own thread behind a bounded queue, so it overlaps with inference.
Frames are never held: the render pass decodes the video a second time, so the
annotated video shows exactly what the Parquet records say. The track log holds about
50 bytes per row (refinement needs the whole video), frames are streamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from tracking.annotate import draw_tracks
from tracking.atomic import AtomicOutput, write_bytes_atomic
from tracking.config import FALLBACK_FPS, PipelineConfig
from tracking.detections import Detections
from tracking.detector import Detector
from tracking.detstore import DetectionsCacheError, DetectionsWriter, Stamp, as_float16, read_batches, read_header
from tracking.embedder import AppearanceEmbedder
from tracking.records import TrackTableWriter
from tracking.refine import RefineStats, online_rows, refine
from tracking.tracker import VideoTracker
from tracking.tracks import DETECTED, TrackLog, TrackRows, TrackState
from tracking.video import Frame, VideoInfo, VideoReader, VideoSink, fps_from_timestamps

log = logging.getLogger("vidtrack." + __name__)

DetectFn = Callable[[list[Frame]], list[Detections]]


@dataclass
class Models:
    """What an actor loads once and reuses for every video."""

    detector: Detector
    embedder: AppearanceEmbedder

    @classmethod
    def load(cls, cfg: PipelineConfig) -> Models:
        detector = Detector(cfg.detector)
        return cls(detector, AppearanceEmbedder(cfg.embedder, device=detector.device))


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
    tracker_frames: dict[str, int] = field(default_factory=dict)  # frame counts resolved from seconds and fps
    refine: dict[str, int] = field(default_factory=dict)  # what refinement changed (RefineStats)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frames_per_second"] = round(self.frames_per_second, 3)
        return d


class _Timer:
    """Seconds per stage, thread-safe enough for one writer per key."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


_DONE = object()


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised in the caller by `check()`."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # re-raised in the pipeline thread by check()
            self.error = e

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def _batches(reader: VideoReader, size: int, timer: _Timer, stop: threading.Event,
             q: queue.Queue[Any]) -> Callable[[], None]:
    def produce() -> None:
        batch: list[Frame] = []
        t = time.perf_counter()
        try:
            for frame in reader:
                batch.append(frame)
                if len(batch) == size:
                    t = timer.add("decode", t)
                    _put(q, batch, stop)
                    batch = []
                    t = time.perf_counter()
            timer.add("decode", t)
            if batch:
                _put(q, batch, stop)
        finally:
            _put(q, _DONE, stop)
    return produce


def _put(q: queue.Queue[Any], item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drain(q: queue.Queue[Any], worker: _Worker) -> Iterator[Any]:
    """Items from `worker` until it is done; its exception, if any, is raised here. The
    producer queues _DONE in a `finally` before its thread records the error, so join it
    first: otherwise a decode failure could look like the end of a shorter video."""
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            if not worker.is_alive() and q.empty():
                _join(worker)
                return
            continue
        if item is _DONE:
            _join(worker)
            return
        yield item


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
        return _process_video(source, outputs, cfg, models, video_id=video_id, params_id=params_id,
                              detect=detect, max_frames=max_frames, on_frames=on_frames, detections_id=detections_id)


def _process_video(source: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, models: Models,
                   *, video_id: str | None, params_id: str, detect: DetectFn | None,
                   max_frames: int | None, on_frames: Callable[[int], None] | None,
                   detections_id: str) -> VideoSummary:
    wall0 = time.perf_counter()
    video_id = video_id or Path(source).stem
    timer, stop = _Timer(), threading.Event()
    names = models.detector.names
    detect_fn: DetectFn = detect or (lambda frames: models.detector([f.bgr for f in frames]))
    _make_folders(outputs)
    with contextlib.ExitStack() as stack:
        outs = _OutputSet(stack, timer)
        record = _DetectionsRecord(outs, outputs.detections, detections_id, names) if outputs.detections else None
        info, tracking = _track(source, cfg, models, detect_fn, timer, stop, max_frames, on_frames, record)
        done = _write_outputs(source, outputs, cfg, outs, info, tracking, names, video_id, params_id, timer)
    return _summarize(source, outputs, outs, info, tracking, done, names, video_id, params_id, timer, wall0)


def retrack_video(detections: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, *,
                  detections_id: str, source: str | os.PathLike[str] | None = None, video_id: str | None = None,
                  params_id: str = "", on_frames: Callable[[int], None] | None = None) -> VideoSummary:
    """Track a video again from its detections stage (`process_video(outputs.detections=...)`):
    the same records as a full run with these parameters, without decoding or any model.
    `source` is decoded only to draw `outputs.video`. Raises DetectionsCacheError for a file
    that cannot be used (missing, truncated, another schema or `detections_id`)."""
    with threadpool_limits(limits=1, user_api="blas"):
        wall0, timer = time.perf_counter(), _Timer()
        header = read_header(detections, detections_id)
        info = VideoInfo(os.fspath(source or detections), header.width, header.height, header.fps,
                         header.frame_count, 0, "", 0.0)
        tracking = _TrackStage(cfg, info, timer)
        for stamps, dets, embeds in read_batches(detections, header):
            tracking.process(stamps, dets, embeds)
            if on_frames:
                on_frames(tracking.frames_tracked)
        if tracking.frames_tracked != header.frames or tracking.frames_tracked == 0:
            raise DetectionsCacheError(
                f"{os.fspath(detections)}: {tracking.frames_tracked} of {header.frames} frames read")
        if source is None:
            outputs = dataclasses.replace(outputs, video=None)
        _make_folders(outputs)
        video_id, names = video_id or Path(detections).stem, header.class_names
        with contextlib.ExitStack() as stack:
            outs = _OutputSet(stack, timer)
            done = _write_outputs(source or detections, outputs, cfg, outs, info, tracking, names, video_id,
                                  params_id, timer)
        return _summarize(source or detections, outputs, outs, info, tracking, done, names, video_id, params_id,
                          timer, wall0)


def _make_folders(outputs: VideoOutputs) -> None:
    for path in (outputs.tracks, outputs.video, outputs.summary, outputs.online_tracks, outputs.detections):
        if path is not None:  # before the long part: an output folder that cannot be made fails now
            path.parent.mkdir(parents=True, exist_ok=True)


@dataclass
class _Written:
    """What the output step produced, for the summary."""

    final: TrackRows
    stats: RefineStats
    rows: int
    video: Path | None


def _write_outputs(source: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, outs: _OutputSet,
                   info: VideoInfo, tracking: _TrackStage, names: dict[int, str], video_id: str, params_id: str,
                   timer: _Timer) -> _Written:
    """After tracking: refine, the Parquet table(s), the annotated video (inside the outputs' stack)."""
    t = time.perf_counter()
    if cfg.refine.enabled:
        final, stats = refine(tracking.log, cfg.refine, tracking.fps, cfg.output.confirmed_only)
    else:
        final, stats = online_rows(tracking.log, cfg.output.confirmed_only), RefineStats()
    t = timer.add("refine", t)
    rows = _write_tables(outputs, outs, final, tracking, cfg, video_id, params_id, names, info)
    timer.add("write", t)
    video_path = outputs.video if cfg.output.annotated_video else None
    if video_path is not None:
        _render(source, video_path, info, tracking, final, cfg, names, outs, timer)
    return _Written(final, stats, rows, video_path)


def _summarize(source: str | os.PathLike[str], outputs: VideoOutputs, outs: _OutputSet, info: VideoInfo,
               tracking: _TrackStage, done: _Written, names: dict[int, str], video_id: str, params_id: str,
               timer: _Timer, wall0: float) -> VideoSummary:
    """The summary, written once the outputs are published (a failed write withdraws them)."""
    summary = _summary(video_id, source, params_id, info, tracking.frames_tracked, done.rows, done.final, names,
                       timer, wall0, {"tracks": os.fspath(outputs.tracks),
                               "video": os.fspath(done.video) if done.video else None})
    summary.tracker_frames, summary.refine = tracking.tracker_frames, asdict(done.stats)
    if outputs.summary is not None:
        with outs.withdrawn_on_error():
            write_json_atomic(outputs.summary, summary.to_dict())
    log.info("%s: %d frames, %d rows, %.1f frames/s, stages %s", video_id, tracking.frames_tracked, done.rows,
             summary.frames_per_second, summary.stage_seconds)
    return summary


def _track(source: str | os.PathLike[str], cfg: PipelineConfig, models: Models, detect_fn: DetectFn,
           timer: _Timer, stop: threading.Event, max_frames: int | None,
           on_frames: Callable[[int], None] | None,
           record: _DetectionsRecord | None) -> tuple[VideoInfo, _TrackStage]:
    """Decode, detect, embed and track every frame; the tracker's rows go to a `TrackLog`,
    the detections (if `record`) to the detections stage."""
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source))
        info = reader.info
        tracking = _TrackStage(cfg, info, timer)
        frames_q: queue.Queue[Any] = queue.Queue(maxsize=2)
        decoder = stack.enter_context(_running(
            _Worker("vidtrack-decode", _batches(reader, cfg.detector.batch_size, timer, stop, frames_q)), stop))
        for batch in _first_frames(_drain(frames_q, decoder), max_frames):
            dets, embeds = _infer(batch, detect_fn, models.embedder, info, timer)
            embeds = as_float16(embeds)  # as the detections stage keeps them: re-tracking gives the same rows
            tracking.process(batch, dets, embeds)
            if record:
                record.add(batch, dets, embeds, tracking, info)
            if on_frames:
                on_frames(tracking.frames_tracked)
    if tracking.frames_tracked == 0:
        raise RuntimeError(f"{source}: no frames processed")
    return info, tracking


def _write_tables(outputs: VideoOutputs, outs: _OutputSet, final: TrackRows, tracking: _TrackStage,
                  cfg: PipelineConfig, video_id: str, params_id: str, names: dict[int, str],
                  info: VideoInfo) -> int:
    """The final records (and, if asked, the online tracker's unrefined ones); returns the row count."""
    tables = [(outputs.tracks, final)]
    if outputs.online_tracks is not None:
        tables.append((outputs.online_tracks, online_rows(tracking.log, cfg.output.confirmed_only)))
    written = []
    for path, data in tables:
        writer = outs.open(TrackTableWriter(path, video_id=video_id, params_id=params_id, class_names=names,
                                            frame_size=(info.width, info.height),
                                            row_group_frames=cfg.output.row_group_frames), "write")
        writer.write_rows(data, tracking.log.timestamps)
        written.append(writer.rows)
    return written[0]


def _render(source: str | os.PathLike[str], path: Path, info: VideoInfo, tracking: _TrackStage,
            final: TrackRows, cfg: PipelineConfig, names: dict[int, str], outs: _OutputSet, timer: _Timer) -> None:
    """The annotated video: decode the source again and draw each frame's final records.
    Its whole wall time (decode, draw, encode) counts as the "encode" stage."""
    t = time.perf_counter()
    sink = outs.open(VideoSink(path, info.width, info.height, tracking.fps or FALLBACK_FPS,
                               cfg.output.video_crf, cfg.output.video_preset), "encode")
    bounds = np.searchsorted(final.frame, np.arange(tracking.frames_tracked + 1))
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source))
        frames_q: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        decoder = stack.enter_context(_running(
            _Worker("vidtrack-render-decode", _batches(reader, cfg.detector.batch_size, _Timer(), stop, frames_q)),
            stop))
        for batch in _first_frames(_drain(frames_q, decoder), tracking.frames_tracked):
            for frame in batch:
                states = _states(final, int(bounds[frame.index]), int(bounds[frame.index + 1]))
                sink.write(draw_tracks(frame.bgr, states, names))
    timer.add("encode", t)


def _states(rows: TrackRows, a: int, b: int) -> list[TrackState]:
    return [TrackState(int(rows.track[i]), int(rows.cls[i]), float(rows.conf[i]),
                       (float(rows.xyxy[i, 0]), float(rows.xyxy[i, 1]), float(rows.xyxy[i, 2]),
                        float(rows.xyxy[i, 3])), bool(rows.source[i] == DETECTED), True) for i in range(a, b)]


def _first_frames(batches: Iterator[list[Frame]], max_frames: int | None) -> Iterator[list[Frame]]:
    """The batches, cut after `max_frames` frames in all (None: every batch)."""
    frames = 0
    for batch in batches:
        if max_frames is not None:
            if frames >= max_frames:
                return
            batch = batch[: max_frames - frames]
        frames += len(batch)
        yield batch


def _infer(batch: list[Frame], detect_fn: DetectFn, embedder: AppearanceEmbedder, info: VideoInfo,
           timer: _Timer) -> tuple[list[Detections], list[Any]]:
    """Detect every frame of the batch (boxes DeepSORT cannot crop dropped), then embed
    every crop of the batch in one pass."""
    t = time.perf_counter()
    dets = [d.usable(info.width, info.height) for d in detect_fn(batch)]
    t = timer.add("detect", t)
    embeds = embedder([f.bgr for f in batch], dets)
    timer.add("embed", t)
    return dets, embeds


def _summary(video_id: str, source: str | os.PathLike[str], params_id: str, info: VideoInfo, frames: int,
             rows: int, final: TrackRows, names: dict[int, str], timer: _Timer, wall0: float,
             outputs: dict[str, str | None]) -> VideoSummary:
    per_class = np.unique(np.column_stack([final.cls, final.track]), axis=0) if len(final) else np.zeros((0, 2))
    classes, counts = np.unique(per_class[:, 0].astype(int), return_counts=True)
    return VideoSummary(
        video_id=video_id, source=os.fspath(source), params_id=params_id, frames=frames,
        frames_declared=info.frame_count,
        duration_s=round(frames / info.fps, 3) if info.fps else 0.0, fps=info.fps,
        width=info.width, height=info.height, rotation=info.rotation, codec=info.codec, rows=rows,
        tracks_per_class={names.get(k, str(k)): int(n) for k, n in zip(classes.tolist(), counts.tolist(), strict=True)},
        stage_seconds={k: round(v, 3) for k, v in sorted(timer.seconds.items())},
        wall_seconds=round(time.perf_counter() - wall0, 3), outputs=outputs)


def _join(worker: _Worker) -> None:
    worker.join()
    worker.check()


@contextlib.contextmanager
def _running(worker: _Worker, stop: threading.Event) -> Iterator[_Worker]:
    """Start the thread; on leaving, stop it and wait for it (a bounded wait, it is a
    daemon). Its own error, if another one is already propagating, is logged."""
    worker.start()
    try:
        yield worker
    except BaseException as e:
        stop.set()
        worker.join(timeout=10)
        if worker.error is not None and worker.error is not e:
            log.warning("%s failed as well: %r", worker.name, worker.error)
        raise
    stop.set()
    worker.join(timeout=10)


_Out = TypeVar("_Out", bound=AtomicOutput)


class _OutputSet:
    """A video's output files, all or none. Each is an `AtomicOutput` entered on the
    caller's ExitStack: written under a temporary name, published by a rename on a clean
    close, removed if anything fails before or while it closes. Outputs close in reverse
    order of opening; one already published is removed again if a later one fails."""

    def __init__(self, stack: contextlib.ExitStack, timer: _Timer) -> None:
        self._stack, self._timer = stack, timer
        self._published: list[Path] = []
        stack.push(self._withdraw)  # first in, so it runs after every output has closed

    def open(self, out: _Out, stage: str) -> _Out:
        """Enter `out` on the stack; the time its close takes counts towards `stage`."""
        return self._stack.enter_context(self._closing(out, stage))

    @contextlib.contextmanager
    def _closing(self, out: _Out, stage: str) -> Iterator[_Out]:
        with out:
            yield out
            t = time.perf_counter()
        self._timer.add(stage, t)
        self._published.append(out.path)

    @contextlib.contextmanager
    def withdrawn_on_error(self) -> Iterator[None]:
        """For a last output written after the stack has closed (the summary)."""
        try:
            yield
        except BaseException:
            self._remove_published()
            raise

    def _withdraw(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                  tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._remove_published()

    def _remove_published(self) -> None:
        for path in self._published:
            path.unlink(missing_ok=True)


class _DetectionsRecord:
    """The detections stage, written beside the tracks (opened at the first batch, when the
    tracker's frame rate is known: re-tracking must use the same one)."""

    def __init__(self, outs: _OutputSet, path: Path, detections_id: str, names: dict[int, str]) -> None:
        self.outs, self.path, self.detections_id, self.names = outs, path, detections_id, names
        self.writer: DetectionsWriter | None = None

    def add(self, batch: Sequence[Stamp], dets: list[Detections], embeds: list[np.ndarray], tracking: _TrackStage,
            info: VideoInfo) -> None:
        if self.writer is None:
            self.writer = self.outs.open(DetectionsWriter(
                self.path, detections_id=self.detections_id, width=info.width, height=info.height, fps=tracking.fps,
                frame_count=info.frame_count, class_names=self.names), "detections")
        self.writer.add(batch, dets, embeds)


class _TrackStage:
    """Takes (frames, detections, embeddings) batches in order: one fresh tracker per video,
    made at the first batch (a video whose container declares no frame rate gets one from
    that batch's timestamps, so times in seconds resolve to this video's frame counts)."""

    def __init__(self, cfg: PipelineConfig, info: VideoInfo, timer: _Timer) -> None:
        self.cfg, self.info, self.timer = cfg, info, timer
        self.tracker: VideoTracker | None = None
        self.log = TrackLog(cfg.output.row_group_frames)
        self.fps, self.frames_tracked = 0.0, 0

    @property
    def tracker_frames(self) -> dict[str, int]:
        return dict(self.tracker.frame_counts) if self.tracker is not None else {}

    def process(self, batch: Sequence[Stamp], dets: list[Detections], embeds: list[Any]) -> None:
        t = time.perf_counter()
        if self.tracker is None:
            self.fps = self.info.fps or fps_from_timestamps([f.timestamp_s for f in batch])
            self.tracker = VideoTracker(self.cfg.tracker, self.fps)
        for frame, d, e in zip(batch, dets, embeds, strict=True):
            self.log.add_frame(frame.index, frame.timestamp_s, self.tracker.update(d, e), e)
        self.frames_tracked += len(batch)
        self.timer.add("track", t)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())
