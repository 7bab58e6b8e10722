"""The archive job's driver: list videos, skip those done for this parameter set, process the
rest on a pool of Ray actors, and record every attempt in the run manifest as it happens.

    vidtrack run --input s3://bucket/raw/ --output s3://bucket/tracks/ [--set k=v ...]
    ray job submit --working-dir . -- python -m jobs run --input ... --output ...

No frame passes through the driver: it ships keys, actors fetch and upload. Beside it in
jobs/run/: what a run is asked and what it came to (job.py), the Ray session and the pool's
start (session.py), the actors' states (pool.py), the dispatcher (dispatch.py) and its retry
policy (retry.py), signals (signals.py). The manifest and markers are jobs/dataset/'s. Exit
codes and statuses: README "Operating it nightly".
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import logging
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import Attempt, ManifestJournal, Status, recover
from jobs.dataset.markers import FailedMarker
from jobs.exits import UsageError
from jobs.modelref import fetch_reid_model, resolve_model
from jobs.plan import Plan, VideoTask, plan_run
from jobs.run.dispatch import Dispatcher
from jobs.run.job import JobSpec, RunIds, RunResult
from jobs.run.session import ray_session, start_pool, where_to_run
from jobs.run.signals import signals_to_flag
from jobs.storage import Storage, open_storage, overlaps
from jobs.worker.scratch import sweep_scratch

log = logging.getLogger("vidtrack." + __name__)


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


def run_job(spec: JobSpec) -> RunResult:
    """Plan, process and record one run. Raises UsageError/ModelError/StorageError for bad
    input before anything is written, StartError when no actor can start."""
    t0 = time.perf_counter()
    source, dest = _open_storages(spec)
    sweep_scratch()  # scratch folders of processes gone (a killed run's actors) on this host
    with tempfile.TemporaryDirectory(prefix="vidtrack-driver-") as tmp:
        model = resolve_model(spec.config.detector.model, spec.endpoint_url, Path(tmp))
        reid_local = fetch_reid_model(spec.config.embedder.reid_model, spec.endpoint_url, Path(tmp))
        ids = _identities(spec, model.sha256, reid_local)
    layout = DatasetLayout(dest, ids.params_id)
    plan = _plan(spec, source, layout)
    run_id = ids.run_id
    result = RunResult(run_id, ids.params_id, f"{dest.uri.rstrip('/')}/{ids.params_id}")
    journal = ManifestJournal(layout, run_id)
    if not plan.todo:
        layout.write_config(config_document(spec, ids))
        recovered = _recover_earlier_runs(layout, run_id)
        return _finish(plan, journal, result, t0, spec.report, spec.counts,
                       rebuild=recovered or plan.markers_changed)
    where = where_to_run(spec, dest, ids, plan.todo)
    with ray_session(spec, where), signals_to_flag() as stop:
        pool = start_pool(spec, source, dest, ids, plan.todo, where)
        try:  # from here on, whatever happens, the manifest is written
            layout.write_config(config_document(spec, ids))
            _recover_earlier_runs(layout, run_id)
            with journal.held(f"driver of run {run_id}, pid {os.getpid()}"):
                Dispatcher(spec, pool, journal, result, stop).run(plan.todo)
        finally:
            pool.shutdown()
            _finish(plan, journal, result, t0, spec.report, spec.counts)
    return result


def _identities(spec: JobSpec, model_sha256: str, reid_local: str) -> RunIds:
    """The run's ids from the models' bytes: the detector's and, when set, the re-identification
    network's (`reid_local`: its local .xml; no model is loaded)."""
    from tracking.appearance import appearance_sha256
    from tracking.reid import reid_sha256

    local = dataclasses.replace(spec.config.embedder, reid_model=reid_local)
    reid = reid_sha256(reid_local) if reid_local else ""  # both files hashed once
    detections_id = spec.config.detections_id(model_sha256, appearance_sha256(local, reid)) if spec.detections else ""
    return RunIds(datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
                  spec.config.params_id(model_sha256, reid), model_sha256, detections_id)


def _finish(plan: Plan, journal: ManifestJournal, result: RunResult, t0: float, report: bool,
            counts: Any = None, rebuild: bool = True) -> RunResult:
    _record_not_attempted(plan, journal, result)
    result.seconds = time.perf_counter() - t0
    _close_manifest(journal, result)
    log.info(result.summary_line())
    if report and not result.interrupted_by:
        _write_report(journal.layout, result, counts, "" if rebuild else plan.done_digest)
    return result


def _write_report(layout: DatasetLayout, result: RunResult, counts: Any = None, done_digest: str = "") -> None:
    """The dataset's report.html (jobs/report/), unless `done_digest` is given (the run attempted
    nothing and no marker changed) and the published report was built from those markers and
    counts. A report that cannot be built is logged: the run's data and exit code stand
    (`vidtrack report` can rebuild it)."""
    from jobs.report import current_report, write_report

    try:
        current = current_report(layout.storage, layout.params_id, done_digest, counts) if done_digest else None
        if current:
            log.info("report: %s is current (nothing published since it was built)", current)
        result.report = current or write_report(layout.storage, layout.params_id, counts)
    except Exception as e:
        log.error("could not write the run report (%s: %s); rebuild it with: vidtrack report %s",
                  e.__class__.__name__, e, result.dataset)


def _recover_earlier_runs(layout: DatasetLayout, run_id: str) -> bool:
    """True when an earlier run's manifest was recovered (or may have been: the report is rebuilt)."""
    try:
        return bool(recover(layout, f"run {run_id} (recovering)"))
    except Exception as e:  # their journals stay; the next run tries again
        log.error("could not recover the journal of an earlier run (%s: %s)", e.__class__.__name__, e)
        return True


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
