"""Re-tracking in the driver's own process, without Ray: when every video of a run has its
detections stage, no --address is given and the frames to re-track are few, starting a Ray
session and its actors (about 4 s here) would cost more than the tracking itself. The same
`VideoWorker` runs the same attempts (lease, fetch, track, publish, markers) on one thread of
the driver, so rows, markers and tracks are those of a run on actors; the dispatcher drives it
like the Ray pool (`Pool` in jobs/run/dispatch.py).

A stop that must cut a video short (a second signal, or --grace-seconds over) cannot kill a
thread: the worker is asked to stop at its next batch of frames (`Cancelled`, raised from its
progress callback, passes every `except Exception`), and the pool waits for it to return.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from jobs.dataset.manifest import Attempt, Status
from jobs.plan import VideoTask
from jobs.run.dispatch import attempt_row
from jobs.run.pool import Event, Finished, Started
from jobs.worker.actor import VideoWorker

log = logging.getLogger("vidtrack." + __name__)

# Re-track in the driver when the cached videos hold at most this many frames (a frame that is
# drawn into an annotated video counts ANNOTATED_FRAME_COST times): measured on 2 cores, one
# process re-tracks about 600 frames/s records only and 140 frames/s drawing them, against
# 4-8 s to start Ray and its actors (which then share the work: on many cores, sooner worth it).
IN_DRIVER_MAX_FRAMES = 3000
ANNOTATED_FRAME_COST = 3
CANCEL_WAIT_S = 60.0  # how long a cancelled video may take to reach its next batch


def in_driver(frames: int, annotated: bool) -> bool:
    """Are `frames` cached frames few enough to re-track in the driver's process?"""
    return frames * (ANNOTATED_FRAME_COST if annotated else 1) <= IN_DRIVER_MAX_FRAMES


class Cancelled(BaseException):
    """Raised inside the worker thread at its next batch of frames once the run cancels it."""


class _Worker(VideoWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel = threading.Event()

    def count_frames(self, n: int) -> None:
        if self.cancel.is_set():
            raise Cancelled
        super().count_frames(n)


class InProcessPool:
    """One `VideoWorker` in the driver's process, each video on a fresh thread. The worker is
    made by `add` (the first call; it only opens storage: re-tracking builds no model)."""

    def __init__(self, *worker_args: Any) -> None:
        self._args = worker_args
        self._worker: _Worker | None = None
        self._started: list[Event] = []
        self._done: queue.Queue[tuple[VideoTask, int, Attempt | None]] = queue.Queue()
        self._flight: tuple[VideoTask, int, threading.Thread] | None = None

    @property
    def idle(self) -> int:
        return int(self._worker is not None and self._flight is None)

    @property
    def busy(self) -> int:
        return int(self._flight is not None)

    @property
    def starting(self) -> int:
        return 0

    def add(self, n: int = 1) -> None:
        if self._worker is None and n > 0:
            self._worker = _Worker(*self._args, node_id="")
            self._started.append(Started(self._worker.ready()))

    def submit(self, task: VideoTask, attempt: int) -> None:
        assert self._worker is not None and self._flight is None, "submit to a busy or unstarted pool"
        worker = self._worker
        worker.cancel.clear()
        thread = threading.Thread(target=self._process, args=(worker, task, attempt), daemon=True,
                                  name=f"vidtrack-retrack-{task.video_id[:12]}")
        self._flight = (task, attempt, thread)
        thread.start()

    def _process(self, worker: _Worker, task: VideoTask, attempt: int) -> None:
        row: Attempt | None = None
        try:
            row = worker.process(task, attempt)
        except Cancelled:
            log.info("%s: re-tracking stopped by the run", task.name)
        except BaseException:  # process() returns a row for every failure of the video: a bug, logged
            log.exception("%s: the re-tracking thread failed", task.name)
        finally:
            self._done.put((task, attempt, row))

    def wait(self, timeout: float) -> list[Event]:
        events, self._started = self._started, []
        if self._flight is None:
            return events
        try:
            task, attempt, row = self._done.get(timeout=timeout if not events else 0)
        except queue.Empty:
            return events
        self._flight = None
        if row is None:  # the thread failed without a row (logged): the attempt may be retried
            row = attempt_row(task, attempt, Status.RETRYABLE, "WorkerError", "the re-tracking thread failed "
                              "(see the driver's log)", stage="process")
        return [*events, Finished(task, attempt, row)]

    def frames_in_flight(self, timeout: float = 0.5) -> int:
        return self._worker.frames_done() if self._worker is not None and self._flight else 0

    def cancel_in_flight(self) -> list[tuple[VideoTask, int]]:
        """Stop the video in flight at its next batch and wait for its thread."""
        if self._flight is None or self._worker is None:
            return []
        task, attempt, thread = self._flight
        self._worker.cancel.set()
        thread.join(CANCEL_WAIT_S)
        if thread.is_alive():
            log.error("%s: re-tracking did not stop within %g s", task.name, CANCEL_WAIT_S)
        self._flight = None
        while not self._done.empty():  # its own end, already recorded by the caller as cancelled
            self._done.get_nowait()
        return [(task, attempt)]

    def shutdown(self) -> None:
        self.cancel_in_flight()
