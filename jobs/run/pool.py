"""A pool of `VideoWorker` actors (`VideoWorkerPool`; not to be confused with Ray's general
`ray.util.ActorPool`): each is starting (its `ready()` pending), idle, or busy with one video.
The pool only moves actors between those states and reports what happened as events; what to
do about them (retries, backoff, giving up) is the dispatcher's and the retry policy's
(jobs/run/dispatch.py, jobs/run/retry.py), unit-tested against a fake pool without Ray."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.dataset.manifest import Attempt
from jobs.plan import VideoTask
from jobs.worker.actor import ActorInfo

log = logging.getLogger("vidtrack." + __name__)


@dataclass(frozen=True)
class Started:
    info: ActorInfo  # info.error is set when the actor could not load its models


@dataclass(frozen=True)
class Finished:
    task: VideoTask
    attempt: int
    row: Attempt


@dataclass(frozen=True)
class Died:
    """The actor's process or node died during the attempt (or before it answered)."""

    task: VideoTask
    attempt: int
    error: str
    node_id: str


Event = Started | Finished | Died


class VideoWorkerPool:
    def __init__(self, make_actor: Callable[[], Any]) -> None:
        import ray

        self._ray = ray
        self._make = make_actor
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor
        self._idle: list[Any] = []
        self._busy: dict[Any, tuple[Any, VideoTask, int]] = {}  # process() ref -> (actor, task, attempt)
        self._info: dict[Any, ActorInfo] = {}
        self._driver_node = ray.get_runtime_context().get_node_id()

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        return len(self._busy)

    @property
    def starting(self) -> int:
        return len(self._starting)

    def in_flight(self) -> list[tuple[VideoTask, int]]:
        return [(task, attempt) for _, task, attempt in self._busy.values()]

    def add(self, n: int = 1) -> None:
        for _ in range(n):
            actor = self._make()
            self._starting[actor.ready.remote()] = actor

    def submit(self, task: VideoTask, attempt: int) -> None:
        actor = self._idle.pop()
        self._busy[actor.process.remote(task, attempt)] = (actor, task, attempt)

    def wait(self, timeout: float) -> list[Event]:
        refs = list(self._busy) + list(self._starting)
        if not refs:
            return []
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=timeout, fetch_local=False)
        return [self._collect(ref) for ref in done]

    def _collect(self, ref: Any) -> Event:
        from ray.exceptions import RayActorError, WorkerCrashedError

        if ref in self._starting:
            actor = self._starting.pop(ref)
            try:
                info: ActorInfo = self._ray.get(ref)
            except (RayActorError, WorkerCrashedError) as e:  # killed while loading, or its node was lost
                info = ActorInfo("", 0, "", f"{e.__class__.__name__}: {first_line(e)}")
            self._info[actor] = info
            if info.error:
                self._kill(actor)
            else:
                self._idle.append(actor)
            return Started(info)
        actor, task, attempt = self._busy.pop(ref)
        try:
            row: Attempt = self._ray.get(ref)
        except (RayActorError, WorkerCrashedError) as e:
            node = self._info.get(actor, ActorInfo("", 0, "")).node_id
            self._kill(actor)
            return Died(task, attempt, f"{e.__class__.__name__}: {first_line(e)}", node)
        self._idle.append(actor)
        return Finished(task, attempt, row)

    def frames_in_flight(self, timeout: float = 0.5) -> int:
        """Frames processed so far by the videos in flight, over all actors (0 for an actor
        that does not answer within `timeout`)."""
        refs = [actor.frames_done.remote() for actor, _, _ in self._busy.values()]
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
        total = 0
        for ref in done:
            try:
                total += int(self._ray.get(ref))
            except Exception as e:  # a dying actor: its video's frames show up when it is retried
                log.debug("no progress from an actor: %s", first_line(e))
        return total

    def cancel_in_flight(self) -> list[tuple[VideoTask, int]]:
        """Stop the videos in flight by killing their actors (their scratch folders are removed
        here when on this node, else by the next actor that starts there)."""
        cancelled = self.in_flight()
        for actor, _, _ in list(self._busy.values()):
            self._kill(actor)
        self._busy.clear()
        return cancelled

    def shutdown(self) -> None:
        for actor in self._idle + [a for a, _, _ in self._busy.values()] + list(self._starting.values()):
            self._kill(actor)
        self._idle.clear()
        self._busy.clear()
        self._starting.clear()

    def _kill(self, actor: Any) -> None:
        self._ray.kill(actor, no_restart=True)
        info = self._info.get(actor)
        if info and info.workdir and info.node_id == self._driver_node:
            shutil.rmtree(Path(info.workdir), ignore_errors=True)


def first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else e.__class__.__name__)[:500]
