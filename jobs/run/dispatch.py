"""The dispatcher: keeps every idle actor busy, in queue order, and acts on each outcome as the
retry policy (jobs/run/retry.py) decides: a final row, a retry after a backoff, a replacement
actor. A stop signal dispatches nothing more; in-flight videos get --grace-seconds. Videos
never dispatched are recorded as `cancelled` (retried next run). It drives any `Pool`:
jobs/run/pool.py's over Ray, a fake one in the tests."""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from typing import Any, Protocol

from jobs.dataset.manifest import Attempt, ManifestJournal, Status, now_iso
from jobs.dataset.markers import DoneMarker, read_marker, write_failed_marker
from jobs.exits import StartError
from jobs.plan import VideoTask
from jobs.run.job import JobSpec, RunResult
from jobs.run.pool import Died, Event, Finished, Started
from jobs.run.retry import RetryPolicy

log = logging.getLogger("vidtrack." + __name__)

PROGRESS_EVERY_S = 2.0  # how often the progress bar asks the actors for frames done


class Pool(Protocol):
    """What the dispatcher needs of a pool (jobs.run.pool.VideoWorkerPool; a fake one in the tests)."""

    idle: int
    busy: int
    starting: int

    def add(self, n: int = 1) -> None: ...
    def submit(self, task: VideoTask, attempt: int) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def cancel_in_flight(self) -> list[tuple[VideoTask, int]]: ...
    def frames_in_flight(self, timeout: float = 0.5) -> int: ...


class Dispatcher:
    """One run's loop over its queue of (video, attempt, not before); `run` returns when every
    video has its final row in the journal."""

    def __init__(self, spec: JobSpec, pool: Pool, journal: ManifestJournal, result: RunResult,
                 stop: list[int], clock: Any = time.monotonic) -> None:
        self.spec, self.pool, self.journal, self.result, self.stop = spec, pool, journal, result, stop
        self.clock = clock
        self.queue: deque[tuple[VideoTask, int, float]] = deque()  # (task, attempt, not before)
        self.policy = RetryPolicy(spec.max_attempts, spec.backoff_seconds, spec.breaker_threshold)
        self.grace_until: float | None = None
        self.no_actor_since: float | None = None
        self.progress: _Progress | None = None

    @property
    def breaker(self) -> str:
        return self.policy.breaker

    def run(self, todo: list[VideoTask]) -> None:
        self.queue.extend((t, 1, 0.0) for t in todo)
        self.progress = progress = _Progress(len(todo), self.spec.progress, self.clock)
        try:
            while (self.queue and not self._halted()) or self.pool.busy:
                if self._grace_over():
                    self._cancel_in_flight(f"in flight when stopped by {signal.Signals(self.stop[0]).name}")
                    break
                self._dispatch()
                for ev in self.pool.wait(timeout=self._wait_timeout()):
                    self._handle(ev)
                self._check_alive()
                progress.show(self.result, self.pool)
        except BaseException as e:  # a second signal, or no actor left: record what was in flight
            self._cancel_in_flight(f"in flight when the run stopped ({e.__class__.__name__}: {e})")
            self.policy.breaker = self.policy.breaker or f"the run stopped ({e.__class__.__name__}: {e})"
            raise
        finally:
            progress.close()
            self._cancel_queued()

    def _cancel_queued(self) -> None:
        why = self.breaker or (f"stopped by {signal.Signals(self.stop[0]).name}" if self.stop else "")
        for task, attempt, _ in self.queue:
            self._final(attempt_row(task, attempt, Status.CANCELLED, "NotAttempted", f"not dispatched: {why}"))
        self.queue.clear()
        self.result.interrupted_by = self.stop[0] if self.stop else 0

    def _cancel_in_flight(self, why: str) -> None:
        """Kill the videos in flight. One may have published `_done` just before: its row says ok."""
        for ev in self.pool.wait(timeout=0):  # results that are already back
            self._handle(ev)
        for task, attempt in self.pool.cancel_in_flight():
            layout = self.journal.layout
            done = read_marker(DoneMarker, layout.storage, layout.done(task.video_id), task.identity)
            if done is not None:
                row = attempt_row(task, attempt, Status.OK, "", "")
                row.frames, row.frames_declared, row.rows = done.frames, done.frames_declared, done.rows
                self._final(row)
            else:
                self._final(attempt_row(task, attempt, Status.CANCELLED, "Interrupted", why))

    def _halted(self) -> bool:
        return bool(self.breaker or self.stop)

    def _grace_over(self) -> bool:
        if not self.stop:
            return False
        if self.grace_until is None:
            self.grace_until = self.clock() + self.spec.grace_seconds
        return self.clock() >= self.grace_until

    def _dispatch(self) -> None:
        now = self.clock()
        while self.pool.idle and not self._halted():
            ready = next((i for i, (_, _, nb) in enumerate(self.queue) if nb <= now), None)
            if ready is None:
                return
            task, attempt, _ = self.queue[ready]
            del self.queue[ready]
            self.pool.submit(task, attempt)

    def _wait_timeout(self) -> float:
        waits = [nb - self.clock() for _, _, nb in self.queue]
        return max(0.05, min([1.0, *waits]))

    def _check_alive(self) -> None:
        """No actor working or able to work while videos wait: stop rather than wait forever."""
        if not self.queue or self._halted() or self.pool.idle or self.pool.busy:
            self.no_actor_since = None
            return
        if not self.pool.starting:
            raise StartError("every actor died or failed to start; no actor left to process videos")
        self.no_actor_since = self.no_actor_since or self.clock()
        if self.clock() - self.no_actor_since > self.spec.start_timeout:
            raise StartError(f"no replacement actor started within --start-timeout {self.spec.start_timeout:g} s "
                             "(the cluster lost the capacity to place one)")

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, Started):
            if ev.info.error:
                log.error("a replacement actor could not start: %s", ev.info.error)
        elif isinstance(ev, Died):
            self._died(ev)
        else:
            self._finished(ev)

    def _finished(self, ev: Finished) -> None:
        row = ev.row
        if row.status != Status.RETRYABLE:
            self.policy.final_outcome()
            self._final(row)
            return
        delay = self.policy.retry_delay(row, ev.attempt, stopped=bool(self.stop))
        if delay is None:
            self._final(row)
            return
        self.journal.add(row)
        self.queue.append((ev.task, ev.attempt + 1, self.clock() + delay))
        log.warning("%s: retryable (%s); attempt %d in %.0f s", row.source_key, row.error_message,
                    ev.attempt + 1, delay)

    def _died(self, ev: Died) -> None:
        row = attempt_row(ev.task, ev.attempt, Status.LOST, "ActorDied", ev.error, node_id=ev.node_id, stage="process")
        log.warning("actor died on %s (attempt %d/%d): %s", ev.task.name, ev.attempt, self.spec.max_attempts,
                    ev.error)
        if not self._halted():
            self.pool.add(1)
        final = self.policy.after_death(ev.attempt, stopped=bool(self.stop))
        if final is None:
            self.journal.add(row)
            self.queue.appendleft((ev.task, ev.attempt + 1, 0.0))
            return
        row.status = final
        if final == Status.FAILED:
            row.error_message = f"the actor died on each of {ev.attempt} attempts: {ev.error}"[:2000]
            write_failed_marker(self.journal.layout, row, ev.task.identity, self.journal.run_id)
        self._final(row)

    def _final(self, row: Attempt) -> None:
        self.journal.add(row)
        self.result.count(row)
        if self.progress is not None:
            self.progress.video_done(self.result)


def attempt_row(task: VideoTask, attempt: int, status: Status, error_class: str, message: str,
                node_id: str = "", stage: str = "") -> Attempt:
    """A manifest row the driver writes itself (the actor never answered for this attempt)."""
    return Attempt(task.video_id, task.name, attempt, status, error_class, stage, message[:2000],
                   bytes_in=task.size, source_modified=task.identity.modified, source_etag=task.identity.etag,
                   node_id=node_id, finished_at=now_iso())


class _Progress:
    """The progress bar: videos done, and frames over all actors every few seconds."""

    def __init__(self, total: int, enabled: bool, clock: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="video", desc="vidtrack", disable=not enabled, dynamic_ncols=True)
        self.clock = clock
        self.started = self.next_show = clock()

    def video_done(self, r: RunResult) -> None:
        self.bar.update(1)
        self.bar.set_postfix(ok=r.ok, failed=r.failed, retry=r.outstanding)

    def show(self, r: RunResult, pool: Pool) -> None:
        """Frames over all actors (finished videos and the ones in flight), every few seconds."""
        if self.clock() < self.next_show:
            return
        self.next_show = self.clock() + PROGRESS_EVERY_S
        frames = r.frames + pool.frames_in_flight()
        elapsed = max(1e-6, self.clock() - self.started)
        self.bar.set_postfix(ok=r.ok, failed=r.failed, retry=r.outstanding, frames=frames,
                             fps=f"{frames / elapsed:.1f}")

    def close(self) -> None:
        self.bar.close()
