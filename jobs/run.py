"""The archive job's driver: list videos, skip those done for this parameter set, process the
rest on a pool of Ray actors, and record every attempt in the run manifest as it happens.

    vidtrack run --input s3://bucket/raw/ --output s3://bucket/tracks/ [--set k=v ...]
    ray job submit --working-dir . -- python -m jobs run --input ... --output ...

No frame passes through the driver: it ships keys, actors fetch and upload. The retry
policy (`Dispatcher`) is here; the actors' states are `jobs/pool.py`'s; the manifest and
markers are `jobs/manifest.py`'s. Exit codes and statuses: README "Operating it nightly".
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import signal
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import OUTSTANDING, Attempt, ManifestJournal, Status, now_iso, recover
from jobs.dataset.markers import FailedMarker, read_done_marker, write_failed_marker
from jobs.modelref import resolve_model
from jobs.plan import DEFAULT_INCLUDE, Plan, VideoTask, plan_run
from jobs.pool import Died, Event, Finished, Started
from jobs.storage import Storage, open_storage, overlaps
from tracking.config import PipelineConfig

log = logging.getLogger("vidtrack.jobs.run")

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INCOMPLETE = 0, 2, 3, 4
EXIT_SIGNAL_BASE = 128  # 130 after SIGINT, 143 after SIGTERM
PROGRESS_EVERY_S = 2.0  # how often the progress bar asks the actors for frames done


class UsageError(ValueError):
    """Bad input from the user (paths, resources, parameters): one line, exit 2."""


class StartError(RuntimeError):
    """No actor could start (or none within --start-timeout): the cause is in the message."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


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
    detections: bool = True  # keep the detections stage, and re-track from it when it matches


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


@dataclass(frozen=True)
class RunIds:
    """The identities of one run: the run, its tracks dataset, the model, and the detections
    stage it reuses or writes ("" when the stage is off)."""

    run_id: str
    params_id: str
    model_sha256: str
    detections_id: str


def config_document(spec: JobSpec, ids: RunIds) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("vidtrack", "ultralytics-opencv-headless", "deep-sort-realtime", "torch", "ray", "pyarrow", "av"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {"params_id": ids.params_id, "parameters": spec.config.to_dict(), "canonical": spec.config.canonical(),
            "model": {"uri": spec.config.detector.model, "sha256": ids.model_sha256}, "versions": versions,
            "detections_id": ids.detections_id,  # the upstream stage these tracks are made from
            "created_at": datetime.now(UTC).isoformat(timespec="seconds")}


# -- the run ------------------------------------------------------------------------------

def run_job(spec: JobSpec) -> RunResult:
    """Plan, process and record one run. Raises UsageError/ModelError/StorageError for bad
    input before anything is written, StartError when no actor can start."""
    t0 = time.perf_counter()
    source, dest = _open_storages(spec)
    with tempfile.TemporaryDirectory(prefix="vidtrack-driver-") as tmp:
        model = resolve_model(spec.config.detector.model, spec.endpoint_url, Path(tmp))
    ids = _identities(spec, model.sha256)
    layout = DatasetLayout(dest, ids.params_id)
    plan = _plan(spec, source, layout)
    run_id = ids.run_id
    result = RunResult(run_id, ids.params_id, f"{dest.uri.rstrip('/')}/{ids.params_id}")
    journal = ManifestJournal(layout, run_id)
    if not plan.todo:
        layout.write_config(config_document(spec, ids))
        _recover_earlier_runs(layout, run_id)
        return _finish(plan, journal, result, t0, spec.report)
    with _ray_session(spec), _signals_to_flag() as stop:
        pool = _start_pool(spec, source, dest, ids, plan.todo)
        try:  # from here on, whatever happens, the manifest is written
            layout.write_config(config_document(spec, ids))
            _recover_earlier_runs(layout, run_id)
            with journal.held(f"driver of run {run_id}, pid {os.getpid()}"):
                Dispatcher(spec, pool, journal, result, stop).run(plan.todo)
        finally:
            pool.shutdown()
            _finish(plan, journal, result, t0, spec.report)
    return result


def _identities(spec: JobSpec, model_sha256: str) -> RunIds:
    from tracking.embedder import weights_sha256

    detections_id = spec.config.detections_id(model_sha256, weights_sha256()) if spec.detections else ""
    return RunIds(datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                  spec.config.params_id(model_sha256), model_sha256, detections_id)


def _finish(plan: Plan, journal: ManifestJournal, result: RunResult, t0: float, report: bool) -> RunResult:
    _record_not_attempted(plan, journal, result)
    result.seconds = time.perf_counter() - t0
    _close_manifest(journal, result)
    log.info(result.summary_line())
    if report and not result.interrupted_by:
        _write_report(journal.layout, result)
    return result


def _write_report(layout: DatasetLayout, result: RunResult) -> None:
    """The dataset's report.html (jobs/report.py). A report that cannot be built is logged: the
    run's data and exit code stand (`vidtrack report` can rebuild it)."""
    from jobs.report import write_report

    try:
        result.report = write_report(layout.storage, layout.params_id)
    except Exception as e:
        log.error("could not write the run report (%s: %s); rebuild it with: vidtrack report %s",
                  e.__class__.__name__, e, result.dataset)


def _recover_earlier_runs(layout: DatasetLayout, run_id: str) -> None:
    try:
        recover(layout, f"run {run_id} (recovering)")
    except Exception as e:  # their journals stay; the next run tries again
        log.error("could not recover the journal of an earlier run (%s: %s)", e.__class__.__name__, e)


def _open_storages(spec: JobSpec) -> tuple[Storage, Storage]:
    source, dest = open_storage(spec.input, spec.endpoint_url), open_storage(spec.output, spec.endpoint_url)
    if overlaps(source, dest):
        raise UsageError(f"--output {dest.uri} overlaps --input {source.uri}: outputs are never written under "
                         "the input, and the input is never read from the output")
    for flag, store in (("--input", source), ("--output", dest)):
        root = store.local_path()
        if root is not None and root.exists() and not root.is_dir():
            raise UsageError(f"{flag} {root} is a file, not a folder"
                             + (" (to track one video: vidtrack track VIDEO --out DIR)" if flag == "--input" else ""))
    source_root = source.local_path()
    if source_root is not None and not source_root.exists():
        raise UsageError(f"--input {source.uri} does not exist")
    return source, dest


def _plan(spec: JobSpec, source: Storage, layout: DatasetLayout) -> Plan:
    plan = plan_run(source, layout, spec.include, spec.exclude, spec.modified_since, spec.retry_failed,
                    spec.settle_seconds)
    if plan.listed == 0:
        raise UsageError(f"--input {source.uri} holds no objects: check the path or prefix")
    if not (plan.todo or plan.done or plan.failed_before):
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(plan.ignored.items()))
        if not any("settle" in why or "modified-since" in why for why in plan.ignored):
            raise UsageError(f"--input {source.uri}: none of its {plan.listed} objects is a video to process "
                             f"({reasons})")
        log.warning("nothing to process under %s now (%s)", source.uri, reasons)
    return plan


def _record_not_attempted(plan: Plan, journal: ManifestJournal, result: RunResult) -> None:
    """Rows (not journaled: derivable) for videos this run did not attempt."""
    for t in plan.done:
        journal.add(Attempt(t.video_id, t.name, 0, Status.SKIPPED, bytes_in=t.size,
                            source_modified=t.identity.modified, source_etag=t.identity.etag), durable=False)
    for t, marker in plan.failed_before:
        journal.add(_failed_before_row(t, marker), durable=False)
    result.skipped, result.failed_before = len(plan.done), len(plan.failed_before)


def _failed_before_row(t: VideoTask, m: FailedMarker) -> Attempt:
    return Attempt(t.video_id, t.name, 0, Status.FAILED, m.error_class, "earlier run",
                   f"failed in an earlier run ({m.at}), source unchanged: {m.error_message}"[:2000],
                   bytes_in=t.size, source_modified=t.identity.modified, source_etag=t.identity.etag)


def _close_manifest(journal: ManifestJournal, result: RunResult) -> None:
    result.attempts = journal.rows
    try:
        result.manifest = journal.close()
    except Exception as e:  # the records must survive: keep a local copy and say where
        local = journal.save_locally()
        log.error("could not write the run manifest to the output (%s: %s); saved it to %s and the journal "
                  "stays in the output for the next run to recover", e.__class__.__name__, e, local)


# -- Ray ----------------------------------------------------------------------------------

@contextmanager
def _ray_session(spec: JobSpec) -> Iterator[None]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {"YOLO_VERBOSE": "True" if spec.verbose else "False", "YOLO_AUTOINSTALL": "false"}}
        if spec.address:
            ray.init(address=spec.address, runtime_env=env, logging_level=logging.WARNING)
        else:
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, runtime_env=env)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def check_resources(cpus: float, gpus: float, nodes: list[dict[str, Any]]) -> None:
    """Refuse a request that no node of the cluster could ever hold (it would wait forever)."""
    need = {"CPU": cpus, "GPU": gpus}
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    if any(all(r.get(k, 0.0) >= v for k, v in need.items() if v > 0) for r in alive):
        return
    have = "; ".join(f"{r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU" for r in alive) or "no nodes"
    raise UsageError(f"no node of the Ray cluster can hold an actor with --cpus-per-actor {cpus:g} "
                     f"--gpus-per-actor {gpus:g} (nodes: {have})")


def _start_pool(spec: JobSpec, source: Storage, dest: Storage, ids: RunIds, todo: list[VideoTask]) -> Any:
    """Actors started and the first one ready, or StartError with the real cause. When every
    video can be re-tracked from the detections stage, the actors are CPU actors that never
    build a model (no GPU requested)."""
    import ray

    from jobs.pool import ActorPool
    from jobs.worker import VideoWorker

    retrack_only = _all_cached(dest, ids, todo)
    gpus = 0.0 if retrack_only else spec.gpus_per_actor
    check_resources(spec.cpus_per_actor, gpus, ray.nodes())
    actor_cls = ray.remote(VideoWorker).options(
        # two threads: `process` runs one video while `frames_done` answers the progress poll
        num_cpus=spec.cpus_per_actor, num_gpus=gpus, max_restarts=0, max_concurrency=2)
    threads = max(1, int(spec.cpus_per_actor))
    pool = ActorPool(lambda: actor_cls.remote(spec.config, source.uri, dest.uri, ids.params_id, ids.model_sha256,
                                              spec.endpoint_url, threads, ids.run_id, ids.detections_id,
                                              not retrack_only))
    pool.add(min(_actor_count(spec, ray.cluster_resources(), gpus), len(todo)))
    try:
        _wait_first_ready(pool, spec.start_timeout)
    except BaseException:
        pool.shutdown()
        raise
    return pool


def _wait_first_ready(pool: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pool.idle:
        if not pool.starting:
            raise StartError("no actor could start")
        if time.monotonic() > deadline:
            raise StartError(f"no actor started within --start-timeout {timeout:g} s: the cluster cannot place "
                             "an actor with the requested resources, or loading the models hangs")
        for ev in pool.wait(timeout=1.0):
            if isinstance(ev, Started) and ev.info.error:
                raise StartError(f"actor could not start: {ev.info.error}", usage=ev.info.usage_error)


def _all_cached(dest: Storage, ids: RunIds, todo: list[VideoTask]) -> bool:
    from jobs.detcache import DetectionsCache

    if not ids.detections_id:
        return False
    cached = DetectionsCache(dest, ids.detections_id).cached(todo)
    log.info("%d of %d videos to process have reusable detections (%s): they are re-tracked without "
             "decoding or a model", len(cached), len(todo), ids.detections_id)
    return len(cached) == len(todo)


def _actor_count(spec: JobSpec, resources: dict[str, float], gpus: float) -> int:
    if spec.actors:
        return spec.actors
    if gpus > 0 and resources.get("GPU", 0) > 0:
        return max(1, int(resources["GPU"] / gpus))
    return max(1, int(resources.get("CPU", 1) / spec.cpus_per_actor))


@contextmanager
def _signals_to_flag() -> Iterator[list[int]]:
    """SIGINT/SIGTERM set a flag the dispatcher reads (stop dispatching, let in-flight videos
    finish within --grace-seconds, record the rest as cancelled); a second signal stops at once."""
    stop: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        log.warning("%s: no new videos; waiting for the ones in flight (again to stop now)",
                    signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- the retry policy ---------------------------------------------------------------------

class Pool(Protocol):
    """What the dispatcher needs of a pool (jobs.pool.ActorPool; a fake one in the tests)."""

    idle: int
    busy: int
    starting: int

    def add(self, n: int = 1) -> None: ...
    def submit(self, task: VideoTask, attempt: int) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def cancel_in_flight(self) -> list[tuple[VideoTask, int]]: ...
    def frames_in_flight(self, timeout: float = 0.5) -> int: ...


class Dispatcher:
    """Keeps every idle actor busy, in queue order, and decides what each outcome means:
    - ok / failed (the video's own fault): final;
    - retryable (infrastructure): retried after a backoff (doubling) up to --max-attempts,
      then left for the next run; `breaker_threshold` of them in a row (across videos)
      open the circuit breaker: nothing more is dispatched (the output or input is down);
    - the actor died: a `lost` row, a replacement actor, the video retried first, up to
      --max-attempts (then `failed`: it kills every actor that touches it);
    - a stop signal: nothing more is dispatched; in-flight videos get --grace-seconds.
    Videos never dispatched are recorded as `cancelled` (retried next run)."""

    def __init__(self, spec: JobSpec, pool: Pool, journal: ManifestJournal, result: RunResult,
                 stop: list[int], clock: Any = time.monotonic) -> None:
        self.spec, self.pool, self.journal, self.result, self.stop = spec, pool, journal, result, stop
        self.clock = clock
        self.queue: deque[tuple[VideoTask, int, float]] = deque()  # (task, attempt, not before)
        self.infra_streak = 0
        self.breaker: str = ""  # why dispatching stopped
        self.grace_until: float | None = None
        self.no_actor_since: float | None = None
        self.started = self.next_progress = clock()
        self.bar: Any = None

    def run(self, todo: list[VideoTask]) -> None:
        self.queue.extend((t, 1, 0.0) for t in todo)
        self.bar = _progress(len(todo), self.spec.progress)
        try:
            while (self.queue and not self._halted()) or self.pool.busy:
                if self._grace_over():
                    self._cancel_in_flight(f"in flight when stopped by {signal.Signals(self.stop[0]).name}")
                    break
                self._dispatch()
                for ev in self.pool.wait(timeout=self._wait_timeout()):
                    self._handle(ev)
                self._check_alive()
                self._show_progress()
        except BaseException as e:  # a second signal, or no actor left: record what was in flight
            self._cancel_in_flight(f"in flight when the run stopped ({e.__class__.__name__}: {e})")
            self.breaker = self.breaker or f"the run stopped ({e.__class__.__name__}: {e})"
            raise
        finally:
            self.bar.close()
            why = self.breaker or (f"stopped by {signal.Signals(self.stop[0]).name}" if self.stop else "")
            for task, attempt, _ in self.queue:
                self._final(self._row(task, attempt, Status.CANCELLED, "NotAttempted", f"not dispatched: {why}"))
            self.queue.clear()
            self.result.interrupted_by = self.stop[0] if self.stop else 0

    def _show_progress(self) -> None:
        """Frames over all actors (finished videos and the ones in flight), every few seconds."""
        if self.clock() < self.next_progress:
            return
        self.next_progress = self.clock() + PROGRESS_EVERY_S
        frames = self.result.frames + self.pool.frames_in_flight()
        elapsed = max(1e-6, self.clock() - self.started)
        self.bar.set_postfix(ok=self.result.ok, failed=self.result.failed, retry=self.result.outstanding,
                             frames=frames, fps=f"{frames / elapsed:.1f}")

    def _cancel_in_flight(self, why: str) -> None:
        """Kill the videos in flight. One may have published `_done` just before: its row says ok."""
        for ev in self.pool.wait(timeout=0):  # results that are already back
            self._handle(ev)
        for task, attempt in self.pool.cancel_in_flight():
            layout = self.journal.layout
            done = read_done_marker(layout.storage, layout.done(task.video_id), task.identity)
            if done is not None:
                row = self._row(task, attempt, Status.OK, "", "")
                row.frames, row.frames_declared, row.rows = done.frames, done.frames_declared, done.rows
                self._final(row)
            else:
                self._final(self._row(task, attempt, Status.CANCELLED, "Interrupted", why))

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
            self.infra_streak = 0
            self._final(row)
            return
        self.infra_streak += 1
        if self.infra_streak >= self.spec.breaker_threshold and not self.breaker:
            self.breaker = (f"circuit breaker open after {self.infra_streak} infrastructure failures in a row; "
                            f"last: {row.error_stage}: {row.error_message}")[:1000]
            log.error("%s", self.breaker)
        if ev.attempt < self.spec.max_attempts and not self._halted():
            self.journal.add(row)
            delay = self.spec.backoff_seconds * 2 ** (ev.attempt - 1)
            self.queue.append((ev.task, ev.attempt + 1, self.clock() + delay))
            log.warning("%s: retryable (%s); attempt %d in %.0f s", row.source_key, row.error_message,
                        ev.attempt + 1, delay)
        else:
            self._final(row)

    def _died(self, ev: Died) -> None:
        row = self._row(ev.task, ev.attempt, Status.LOST, "ActorDied", ev.error, node_id=ev.node_id, stage="process")
        log.warning("actor died on %s (attempt %d/%d): %s", ev.task.name, ev.attempt, self.spec.max_attempts,
                    ev.error)
        if not self._halted():
            self.pool.add(1)
        if ev.attempt < self.spec.max_attempts and not self._halted():
            self.journal.add(row)
            self.queue.appendleft((ev.task, ev.attempt + 1, 0.0))
        elif self._halted():
            row.status = Status.CANCELLED
            self._final(row)
        else:
            row.status = Status.FAILED
            row.error_message = f"the actor died on each of {ev.attempt} attempts: {ev.error}"[:2000]
            write_failed_marker(self.journal.layout, row, ev.task.identity)
            self._final(row)

    def _row(self, task: VideoTask, attempt: int, status: Status, error_class: str, message: str,
             node_id: str = "", stage: str = "") -> Attempt:
        return Attempt(task.video_id, task.name, attempt, status, error_class, stage, message[:2000],
                       bytes_in=task.size, source_modified=task.identity.modified, source_etag=task.identity.etag,
                       node_id=node_id, finished_at=now_iso())

    def _final(self, row: Attempt) -> None:
        self.journal.add(row)
        self.result.count(row)
        self.bar.update(1)
        self.bar.set_postfix(ok=self.result.ok, failed=self.result.failed, retry=self.result.outstanding)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="vidtrack", disable=not enabled, dynamic_ncols=True)
