"""Decode prefetch: a video's frames decoded on their own thread, in batches, behind a
bounded queue, so decoding overlaps with what the caller does with the previous batch.

    with VideoReader(path) as reader, prefetched(reader, 8, timer) as batches:
        for batch in batches:  # list[Frame], in order
            ...

The decode thread's exception (a `VideoError`, say) is raised in the caller's thread, at
the point where the batches would have continued; leaving the `with` block early (the
caller's own error, or `max_frames`) stops the thread and waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tracking.timing import StageTimer
from tracking.video import Frame, VideoReader

log = logging.getLogger("vidtrack." + __name__)

_DONE = object()


@contextlib.contextmanager
def prefetched(reader: VideoReader, batch_size: int, timer: StageTimer | None = None, *,
               max_frames: int | None = None, name: str = "vidtrack-decode",
               pixels: Callable[[int], bool] | None = None) -> Iterator[Iterator[list[Frame]]]:
    """The reader's frames in batches of `batch_size` (the last one shorter), cut after
    `max_frames` frames in all (None: every frame). Decode time counts as `timer`'s
    "decode" stage (None: not counted). `pixels`: which frame indices need their BGR pixels
    (`VideoReader.frames`; None: all)."""
    stop = threading.Event()
    frames_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    frames = reader.frames(pixels)
    worker = _Worker(name, _batches(frames, batch_size, timer or StageTimer(), stop, frames_q))
    with _running(worker, stop) as decoder:
        yield _first_frames(_drain(frames_q, decoder), max_frames)


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


def _batches(reader: Iterator[Frame], size: int, timer: StageTimer, stop: threading.Event,
             q: queue.Queue[Any]) -> Callable[[], None]:
    """The decode thread's body: batches of `size` frames into `q`, then _DONE."""
    def produce() -> None:
        batch: list[Frame] = []
        t = time.perf_counter()
        try:
            for frame in reader:
                batch.append(frame)
                if len(batch) == size:
                    t = timer.add("decode", t)
                    _put(q, batch, stop)
                    if stop.is_set():  # the caller left (`max_frames`, an error): decode no further
                        return
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


def _join(worker: _Worker) -> None:
    worker.join()
    worker.check()


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
