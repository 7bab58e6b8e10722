"""What a run is asked to do (`JobSpec`, from `vidtrack run`'s flags), the identities it works
under (`RunIds`), and what it came to (`RunResult`: counts, the exit code, the summary line)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs.dataset.manifest import OUTSTANDING, Attempt, Status
from jobs.exits import EXIT_INCOMPLETE, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_SOME_FAILED
from jobs.plan import DEFAULT_INCLUDE
from tracking.config import PipelineConfig


@dataclass
class JobSpec:
    input: str
    output: str
    config: PipelineConfig
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    address: str | None = None
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))
    exclude: list[str] = field(default_factory=list)
    modified_since: datetime | None = None
    settle_seconds: float = 0.0
    max_attempts: int = 3
    endpoint_url: str | None = None
    progress: bool = True
    retry_failed: bool = False
    start_timeout: float = 300.0
    grace_seconds: float = 30.0
    breaker_threshold: int = 5  # consecutive infrastructure failures that stop dispatching
    backoff_seconds: float = 2.0  # first retry delay of a retryable video; doubles each attempt
    verbose: bool = False
    report: bool = True  # write <dataset>/report.html at the end of the run
    counts: Any = None  # jobs.count.settings.CountSpec: the report's line counts section (--counts FILE)
    detections: bool = True  # keep the detections stage, and re-track from it when it matches


@dataclass(frozen=True)
class RunIds:
    """The identities of one run: the run, its tracks dataset, the model, and the detections
    stage it reuses or writes ("" when the stage is off)."""

    run_id: str
    params_id: str
    model_sha256: str
    detections_id: str


@dataclass
class RunResult:
    run_id: str
    params_id: str
    dataset: str
    ok: int = 0
    failed: int = 0  # this run's own failures
    failed_before: int = 0  # failed in an earlier run, source unchanged: still failed
    outstanding: int = 0  # retryable or cancelled at the end: the next run picks them up
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    interrupted_by: int = 0  # signal number
    manifest: str = ""  # where the manifest went ("" if it could not be written)
    report: str = ""  # where report.html went ("" if not written)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted_by:
            return EXIT_SIGNAL_BASE + self.interrupted_by
        if self.outstanding or not self.manifest:
            return EXIT_INCOMPLETE
        return EXIT_SOME_FAILED if self.failed or self.failed_before else EXIT_OK

    def summary_line(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        stop = f"; interrupted by {signal.Signals(self.interrupted_by).name}" if self.interrupted_by else ""
        return (f"run {self.run_id}: {self.ok} ok, {self.failed} failed, {self.failed_before} failed before "
                f"(unchanged), {self.outstanding} outstanding (retried next run), {self.skipped} done before; "
                f"{self.frames} frames in {self.seconds:.1f} s ({fps:.1f} frames/s){stop}; dataset {self.dataset}")

    def count(self, row: Attempt) -> None:
        """Count a video's final row."""
        if row.status == Status.OK:
            self.ok += 1
            self.frames += row.frames
        elif row.status == Status.FAILED:
            self.failed += 1
        elif row.status in OUTSTANDING:
            self.outstanding += 1
