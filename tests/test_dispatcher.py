"""The driver's retry policy (`jobs.run.dispatch.Dispatcher`) against a fake pool and a fake clock:
no Ray, no models, milliseconds. The real pool is exercised by the job tests."""

from __future__ import annotations

import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, ManifestJournal, Status
from jobs.dataset.markers import FailedMarker
from jobs.exits import StartError
from jobs.plan import VideoTask, video_id_for
from jobs.run import JobSpec, RunResult
from jobs.run.dispatch import Dispatcher
from jobs.run.pool import Died, Event, Finished, Started
from jobs.storage import LocalStorage, ObjectInfo
from jobs.worker.actor import ActorInfo
from tracking.config import PipelineConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakePool:
    """Actors that answer in submission order with scripted outcomes per key:
    'ok', 'failed', 'retryable' or 'died' (the actor is gone; the dispatcher must add one)."""

    def __init__(self, outcomes: dict[str, list[str]], clock: Clock, actors: int = 2) -> None:
        self.outcomes, self.clock = outcomes, clock
        self.idle, self.busy, self.starting = actors, 0, 0
        self.running: list[tuple[VideoTask, int]] = []
        self.submitted: list[tuple[str, int, float]] = []
        self.added = 0

    def add(self, n: int = 1) -> None:
        self.starting += n
        self.added += n

    def submit(self, task: VideoTask, attempt: int) -> None:
        assert self.idle > 0, "dispatched to no idle actor"
        self.idle, self.busy = self.idle - 1, self.busy + 1
        self.running.append((task, attempt))
        self.submitted.append((task.key, attempt, self.clock.now))

    def wait(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        if self.starting:
            self.starting, self.idle = self.starting - 1, self.idle + 1
            events.append(Started(ActorInfo("node", 1, "")))
        if not self.running:
            self.clock.now += timeout
            return events
        task, attempt = self.running.pop(0)
        self.busy -= 1
        outcome = self.outcomes[task.key].pop(0)
        if outcome == "died":
            events.append(Died(task, attempt, "ActorDiedError: killed", "node"))
        else:
            self.idle += 1
            events.append(Finished(task, attempt, Attempt(task.video_id, task.name, attempt, outcome, frames=10,
                                                          error_stage="publish" if outcome == "retryable" else "")))
        return events

    def cancel_in_flight(self) -> list[tuple[VideoTask, int]]:
        cancelled, self.running = self.running, []
        self.busy = 0
        return cancelled

    def frames_in_flight(self, timeout: float = 0.5) -> int:
        return 0


def _task(key: str, size: int = 100) -> VideoTask:
    return VideoTask(ObjectInfo(key, size, datetime(2026, 11, 1, tzinfo=UTC)), video_id_for(key))


def _run(tmp_path: Path, outcomes: dict[str, list[str]], stop: list[int] | None = None,
         **spec_kw: object) -> tuple[RunResult, FakePool, ManifestJournal]:
    spec = JobSpec(input="in", output="out", config=PipelineConfig(), progress=False, backoff_seconds=2.0)
    spec = replace(spec, **spec_kw)  # type: ignore[arg-type]
    clock = Clock()
    pool = FakePool(outcomes, clock)
    journal = ManifestJournal(DatasetLayout(LocalStorage(tmp_path), "pid"), "run1")
    result = RunResult("run1", "pid", str(tmp_path))
    Dispatcher(spec, pool, journal, result, stop if stop is not None else [], clock=clock).run(
        [_task(k) for k in outcomes])
    return result, pool, journal


def _final(journal: ManifestJournal) -> dict[str, tuple[str, int]]:
    return {r.source_key: (r.status, r.attempt) for r in journal.rows}  # the last row per video wins


def test_each_outcome_gets_its_policy(tmp_path: Path) -> None:
    r, pool, journal = _run(tmp_path, {"a.mp4": ["ok"], "b.mp4": ["retryable", "retryable", "ok"],
                                       "c.mp4": ["died", "ok"], "d.mp4": ["failed"]})
    assert _final(journal) == {"a.mp4": ("ok", 1), "b.mp4": ("ok", 3), "c.mp4": ("ok", 2), "d.mp4": ("failed", 1)}
    assert (r.ok, r.failed, r.outstanding, r.frames) == (3, 1, 0, 30)
    assert [row.status for row in journal.rows if row.source_key == "c.mp4"] == ["lost", "ok"]
    assert pool.added == 1  # the dead actor was replaced
    # retryable: attempt n+1 only after a doubling backoff (2 s, then 4 s)
    b = [t for k, _, t in pool.submitted if k == "b.mp4"]
    assert b[1] - b[0] >= 2.0 and b[2] - b[1] >= 4.0
    # lost: retried at once, ahead of the queue
    c = [(a, t) for k, a, t in pool.submitted if k == "c.mp4"]
    assert c[1][0] == 2


def test_retryable_until_max_attempts_is_left_for_the_next_run(tmp_path: Path) -> None:
    r, _, journal = _run(tmp_path, {"a.mp4": ["retryable"] * 3}, max_attempts=3)
    assert [row.attempt for row in journal.rows] == [1, 2, 3]
    assert _final(journal)["a.mp4"] == ("retryable", 3)
    assert r.outstanding == 1 and r.exit_code == 4
    assert not list(tmp_path.rglob("_failed/*"))  # never remembered as the video's fault


def test_circuit_breaker_cancels_what_is_left(tmp_path: Path) -> None:
    keys = [f"v{i}.mp4" for i in range(8)]
    r, pool, journal = _run(tmp_path, {k: ["retryable"] * 3 for k in keys}, breaker_threshold=3, max_attempts=3)
    assert len(pool.submitted) <= 4  # threshold, plus what was already in flight
    final = _final(journal)
    assert sum(s == "cancelled" for s, _ in final.values()) >= 4
    assert all("circuit breaker" in row.error_message for row in journal.rows if row.status == "cancelled")
    assert r.exit_code == 4


def test_an_actor_killing_video_becomes_failed_with_a_marker(tmp_path: Path) -> None:
    r, _, journal = _run(tmp_path, {"poison.mp4": ["died"] * 2, "ok.mp4": ["ok"]}, max_attempts=2)
    assert _final(journal)["poison.mp4"] == ("failed", 2) and r.failed == 1
    marker = FailedMarker.from_bytes((tmp_path / "pid" / "_failed" / f"{video_id_for('poison.mp4')}.json").read_bytes())
    assert "died on each of 2 attempts" in marker.error_message and marker.source is not None


def test_stop_signal_dispatches_nothing_and_records_everything(tmp_path: Path) -> None:
    r, pool, journal = _run(tmp_path, {f"v{i}.mp4": ["ok"] for i in range(5)}, stop=[signal.SIGTERM])
    assert pool.submitted == [] and r.interrupted_by == signal.SIGTERM and r.exit_code == 143
    assert {s for s, _ in _final(journal).values()} == {Status.CANCELLED}
    assert len(journal.rows) == 5


def test_no_actor_left_is_an_error_not_a_hang(tmp_path: Path) -> None:
    class DeadPool(FakePool):
        def add(self, n: int = 1) -> None:  # replacements never come up
            pass

    spec = JobSpec(input="in", output="out", config=PipelineConfig(), progress=False)
    clock = Clock()
    pool = DeadPool({"a.mp4": ["died"], "b.mp4": ["died"], "c.mp4": ["ok"]}, clock)
    journal = ManifestJournal(DatasetLayout(LocalStorage(tmp_path), "pid"), "run1")
    with pytest.raises(StartError, match="no actor left"):
        Dispatcher(spec, pool, journal, RunResult("run1", "pid", ""), [], clock=clock).run(
            [_task(k) for k in ("a.mp4", "b.mp4", "c.mp4")])
    assert {row.status for row in journal.rows} >= {"lost", "cancelled"}  # recorded, even so
