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
from typing import Any

from threadpoolctl import threadpool_limits

from tracking.annotate import draw_tracks
from tracking.atomic import write_bytes_atomic
from tracking.config import PipelineConfig
from tracking.detections import Detections
from tracking.detector import Detector
from tracking.embedder import AppearanceEmbedder
from tracking.records import TrackTableWriter
from tracking.tracker import VideoTracker
from tracking.video import Frame, VideoReader, VideoSink, fps_from_timestamps

log = logging.getLogger(__name__)

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
                  max_frames: int | None = None) -> VideoSummary:
    """Track every object in one video and write its outputs.

    Three threads joined by bounded queues (memory stays flat): decode -> [this thread]
    detect + embed a batch, then track, write rows -> annotate + encode. Tracking runs inline:
    on a 2-core machine a separate tracking thread measured slower (it contends with
    inference for the cores and the GIL); decode and encode spend their time in FFmpeg.

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
                              detect=detect, max_frames=max_frames)


def _process_video(source: str | os.PathLike[str], outputs: VideoOutputs, cfg: PipelineConfig, models: Models,
                   *, video_id: str | None, params_id: str, detect: DetectFn | None,
                   max_frames: int | None) -> VideoSummary:
    wall0 = time.perf_counter()
    video_id = video_id or Path(source).stem
    timer = _Timer()
    detect_fn: DetectFn = detect or (lambda frames: models.detector([f.bgr for f in frames]))
    names = models.detector.names
    batch_size = cfg.detector.batch_size
    stop = threading.Event()

    with VideoReader(source) as reader:
        info = reader.info
        frames_q: queue.Queue[Any] = queue.Queue(maxsize=2)
        encode_q: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size)
        video_path = outputs.video if cfg.output.annotated_video else None
        writer = TrackTableWriter(outputs.tracks, video_id=video_id, params_id=params_id, class_names=names,
                                  frame_size=(info.width, info.height),
                                  row_group_frames=cfg.output.row_group_frames)
        tracking = _TrackStage(cfg, writer, encode_q if video_path else None, timer, stop)
        decoder = _Worker("vidtrack-decode", _batches(reader, batch_size, timer, stop, frames_q))
        sink: VideoSink | None = None
        encoder: _Worker | None = None
        frames = 0
        decoder.start()
        try:
            for batch in _drain(frames_q, decoder):
                if max_frames is not None:
                    if frames >= max_frames:
                        break
                    batch = batch[: max_frames - frames]
                if video_path is not None and sink is None:  # opened at the first batch: fps may come from it
                    fps = info.fps or fps_from_timestamps([f.timestamp_s for f in batch])
                    sink = VideoSink(video_path, info.width, info.height, fps,
                                     cfg.output.video_crf, cfg.output.video_preset)
                    encoder = _Worker("vidtrack-encode", _encode(sink, encode_q, names, timer, stop))
                    encoder.start()
                t = time.perf_counter()
                dets = [d.usable(info.width, info.height) for d in detect_fn(batch)]
                t = timer.add("detect", t)
                embeds = models.embedder([f.bgr for f in batch], dets)
                timer.add("embed", t)
                if encoder:
                    encoder.check()
                tracking.process(batch, dets, embeds)
                frames += len(batch)
            if encoder:
                _put(encode_q, _DONE, stop)
                _join(encoder)
            if frames == 0:
                raise RuntimeError(f"{source}: no frames processed")
        except BaseException:
            stop.set()
            if encoder:
                encoder.join(timeout=10)
            writer.abort()
            if sink:
                sink.abort()
            raise
        finally:
            stop.set()
            decoder.join(timeout=10)
        if sink:
            t = time.perf_counter()
            sink.close()
            timer.add("encode", t)
        t = time.perf_counter()
        writer.close()
        timer.add("write", t)

    summary = VideoSummary(
        video_id=video_id, source=os.fspath(source), params_id=params_id, frames=frames,
        duration_s=round(frames / info.fps, 3) if info.fps else 0.0, fps=info.fps,
        width=info.width, height=info.height, rotation=info.rotation, codec=info.codec, rows=writer.rows,
        tracks_per_class={names.get(k, str(k)): len(v) for k, v in sorted(tracking.per_class.items())},
        stage_seconds={k: round(v, 3) for k, v in sorted(timer.seconds.items())},
        wall_seconds=round(time.perf_counter() - wall0, 3),
        outputs={"tracks": os.fspath(outputs.tracks), "video": os.fspath(video_path) if sink and video_path else None},
    )
    if outputs.summary is not None:
        write_json_atomic(outputs.summary, summary.to_dict())
    log.info("%s: %d frames, %d rows, %.1f frames/s, stages %s", video_id, frames, writer.rows,
             summary.frames_per_second, summary.stage_seconds)
    return summary


def _join(worker: _Worker) -> None:
    worker.join()
    worker.check()


class _TrackStage:
    """Takes (frames, detections, embeddings) batches in order: one fresh tracker per
    video, rows to the Parquet writer, (frame, tracks) on to the encoder."""

    def __init__(self, cfg: PipelineConfig, writer: TrackTableWriter, encode_q: queue.Queue[Any] | None,
                 timer: _Timer, stop: threading.Event) -> None:
        self.tracker = VideoTracker(cfg.tracker)
        self.confirmed_only = cfg.output.confirmed_only
        self.writer, self.encode_q, self.timer, self.stop = writer, encode_q, timer, stop
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
            if self.encode_q is not None:
                _put(self.encode_q, (frame.bgr, states), self.stop)
                t = time.perf_counter()


def _encode(sink: VideoSink, q: queue.Queue[Any], names: dict[int, str], timer: _Timer,
            stop: threading.Event) -> Callable[[], None]:
    def consume() -> None:
        while not stop.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            t = time.perf_counter()
            frame_bgr, states = item
            sink.write(draw_tracks(frame_bgr, states, names))
            timer.add("encode", t)
    return consume


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())
