"""process_video: one video in, track records (Parquet), annotated H.264 video and a
summary out. This is the whole per-video data flow:

    VideoReader (decode thread) --batches of frames--> detect (batched YOLO)
        --> embed every crop of the batch (one pass) --> VideoTracker.update per frame,
            in order --> TrackTableWriter (Parquet row groups)
                     \\-> draw_tracks + VideoSink (encode thread, H.264 mp4)

Decode and encode run on their own threads behind bounded queues, so they overlap
with inference and memory stays flat however long the video is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from tracking.annotate import draw_tracks
from tracking.atomic import AtomicOutput, write_bytes_atomic
from tracking.config import PipelineConfig
from tracking.detections import Detections
from tracking.detector import Detector
from tracking.embedder import AppearanceEmbedder
from tracking.records import TrackTableWriter
from tracking.tracker import VideoTracker
from tracking.tracks import TrackState
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
                  max_frames: int | None = None, on_frames: Callable[[int], None] | None = None) -> VideoSummary:
    """Track every object in one video and write its outputs.

    Three threads joined by bounded queues (memory stays flat): decode -> [this thread]
    detect + embed a batch, then track, write rows -> annotate + encode. Tracking runs inline:
    on a 2-core machine a separate tracking thread measured slower (it contends with
    inference for the cores and the GIL); decode and encode spend their time in FFmpeg.

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
                              detect=detect, max_frames=max_frames, on_frames=on_frames)


def _process_video(source: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, models: Models,
                   *, video_id: str | None, params_id: str, detect: DetectFn | None,
                   max_frames: int | None, on_frames: Callable[[int], None] | None) -> VideoSummary:
    wall0 = time.perf_counter()
    video_id = video_id or Path(source).stem
    timer, stop = _Timer(), threading.Event()
    names = models.detector.names
    detect_fn: DetectFn = detect or (lambda frames: models.detector([f.bgr for f in frames]))
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source))
        info = reader.info
        outs = _OutputSet(stack, timer)
        writer = outs.open(TrackTableWriter(outputs.tracks, video_id=video_id, params_id=params_id,
                                            class_names=names, frame_size=(info.width, info.height),
                                            row_group_frames=cfg.output.row_group_frames), "write")
        video_path = outputs.video if cfg.output.annotated_video else None
        encoding = _EncodeStage(video_path, info, cfg, names, stack, outs, timer, stop) if video_path else None
        tracking = _TrackStage(cfg, writer, encoding, timer, stop)
        frames_q: queue.Queue[Any] = queue.Queue(maxsize=2)
        decoder = stack.enter_context(_running(
            _Worker("vidtrack-decode", _batches(reader, cfg.detector.batch_size, timer, stop, frames_q)), stop))
        frames = 0
        for batch in _first_frames(_drain(frames_q, decoder), max_frames):
            if encoding:
                encoding.open(batch)  # at the first batch: fps may come from its timestamps
            dets, embeds = _infer(batch, detect_fn, models.embedder, info, timer)
            if encoding:
                encoding.check()
            tracking.process(batch, dets, embeds)
            frames += len(batch)
            if on_frames:
                on_frames(frames)
        if encoding:
            encoding.finish()
        if frames == 0:
            raise RuntimeError(f"{source}: no frames processed")
    annotated = os.fspath(video_path) if encoding and encoding.opened and video_path else None
    summary = _summary(video_id, source, params_id, info, frames, writer.rows, tracking, names, timer, wall0,
                       {"tracks": os.fspath(outputs.tracks), "video": annotated})
    if outputs.summary is not None:
        with outs.withdrawn_on_error():
            write_json_atomic(outputs.summary, summary.to_dict())
    log.info("%s: %d frames, %d rows, %.1f frames/s, stages %s", video_id, frames, writer.rows,
             summary.frames_per_second, summary.stage_seconds)
    return summary


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
             rows: int, tracking: _TrackStage, names: dict[int, str], timer: _Timer, wall0: float,
             outputs: dict[str, str | None]) -> VideoSummary:
    return VideoSummary(
        video_id=video_id, source=os.fspath(source), params_id=params_id, frames=frames,
        frames_declared=info.frame_count,
        duration_s=round(frames / info.fps, 3) if info.fps else 0.0, fps=info.fps,
        width=info.width, height=info.height, rotation=info.rotation, codec=info.codec, rows=rows,
        tracks_per_class={names.get(k, str(k)): len(v) for k, v in sorted(tracking.per_class.items())},
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


class _TrackStage:
    """Takes (frames, detections, embeddings) batches in order: one fresh tracker per
    video, rows to the Parquet writer, (frame, tracks) on to the encode stage."""

    def __init__(self, cfg: PipelineConfig, writer: TrackTableWriter, encoding: _EncodeStage | None,
                 timer: _Timer, stop: threading.Event) -> None:
        self.tracker = VideoTracker(cfg.tracker)
        self.confirmed_only = cfg.output.confirmed_only
        self.writer, self.encoding, self.timer, self.stop = writer, encoding, timer, stop
        self.per_class: dict[int, set[int]] = defaultdict(set)

    def process(self, batch: list[Frame], dets: list[Detections], embeds: list[Any]) -> None:
        t = time.perf_counter()
        for frame, d, e in zip(batch, dets, embeds, strict=True):
            states = self.tracker.update(d, e)
            if self.confirmed_only:
                states = [s for s in states if s.confirmed]
            t = self.timer.add("track", t)
            self.writer.add_frame(frame.index, frame.timestamp_s, states)
            for s in states:
                self.per_class[s.class_id].add(s.track_id)
            t = self.timer.add("write", t)
            if self.encoding is not None:
                self.encoding.put(frame.bgr, states)
                t = time.perf_counter()


class _EncodeStage:
    """Draws each frame's tracks and encodes it to H.264 on its own thread, behind a
    bounded queue. The sink opens at the first batch: a source whose container declares
    no frame rate gets one from that batch's timestamps."""

    def __init__(self, path: Path, info: VideoInfo, cfg: PipelineConfig, names: dict[int, str],
                 stack: contextlib.ExitStack, outs: _OutputSet, timer: _Timer, stop: threading.Event) -> None:
        self.path, self.info, self.out_cfg, self.names = path, info, cfg.output, names
        self.stack, self.outs, self.timer, self.stop = stack, outs, timer, stop
        self.q: queue.Queue[Any] = queue.Queue(maxsize=2 * cfg.detector.batch_size)
        self._thread: _Worker | None = None

    @property
    def opened(self) -> bool:
        return self._thread is not None

    def open(self, batch: list[Frame]) -> None:
        if self._thread is not None:
            return
        fps = self.info.fps or fps_from_timestamps([f.timestamp_s for f in batch])
        sink = self.outs.open(VideoSink(self.path, self.info.width, self.info.height, fps,
                                        self.out_cfg.video_crf, self.out_cfg.video_preset), "encode")
        self._thread = self.stack.enter_context(
            _running(_Worker("vidtrack-encode", lambda: self._consume(sink)), self.stop))

    def put(self, frame_bgr: np.ndarray, states: list[TrackState]) -> None:
        _put(self.q, (frame_bgr, states), self.stop)

    def check(self) -> None:
        """Re-raise the encode thread's error, if it had one."""
        if self._thread is not None:
            self._thread.check()

    def finish(self) -> None:
        """Wait until every queued frame is encoded (the sink closes with the ExitStack)."""
        if self._thread is not None:
            _put(self.q, _DONE, self.stop)
            _join(self._thread)

    def _consume(self, sink: VideoSink) -> None:
        while not self.stop.is_set():
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            t = time.perf_counter()
            frame_bgr, states = item
            sink.write(draw_tracks(frame_bgr, states, self.names))
            self.timer.add("encode", t)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())
