"""The run manifest and the per-video markers: what happened to every video, as data.

- `Status`: what an attempt came to (see README "Operating it nightly").
- `Attempt`: one manifest row (one video, one attempt); `MANIFEST_SCHEMA` is derived from it.
- `ManifestJournal`: every finished attempt is written at once as a small journal object
  (`_journal/run_id=<run>/<seq>.json`), so an abnormal end of the driver loses at most
  the attempts in flight; `close()` compacts the run into `manifest/run_id=<run>/part-0.parquet`
  and removes the journal. A run that never closed (driver killed) is compacted by the next
  run on the same dataset (`recover`).

The `_done/` and `_failed/` markers are jobs/dataset/markers.py's.
"""

from __future__ import annotations

import json
import logging
import tempfile
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.storage import LeaseHeld

if TYPE_CHECKING:
    from jobs.dataset.layout import DatasetLayout
    from jobs.dataset.markers import DoneMarker

log = logging.getLogger("vidtrack.jobs.manifest")

JOURNAL_LEASE_TTL_S = 300.0  # a killed driver's journal (on S3) can be recovered this long after


class Status(StrEnum):
    OK = "ok"                # tracks, video and _done published
    FAILED = "failed"        # the video's own fault (corrupt, incomplete, unsupported): _failed marker
    RETRYABLE = "retryable"  # infrastructure (storage, network, disk, throttling): retried next run
    LOST = "lost"            # the actor died during the attempt; retried within the run
    CANCELLED = "cancelled"  # interrupted (SIGINT/SIGTERM) or never dispatched; retried next run
    SKIPPED = "skipped"      # already done for this params_id, source unchanged


#: statuses that leave work for the next run (exit code 4 when any remains at the end)
OUTSTANDING = frozenset({Status.RETRYABLE, Status.CANCELLED})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Attempt:
    """One row of the run manifest: one video, one attempt (attempt 0: not attempted this
    run, e.g. skipped as done or failed in an earlier run with the source unchanged)."""

    video_id: str
    source_key: str  # printable: bytes that are not UTF-8 appear backslash-escaped
    attempt: int
    status: str
    error_class: str = ""
    error_stage: str = ""  # fetch | process | publish (retryable), or where the actor died
    error_message: str = ""
    frames: int = 0
    frames_declared: int = 0  # what the container claims (0: unknown)
    rows: int = 0
    bytes_in: int = 0
    source_modified: str = ""
    source_etag: str = ""
    seconds: float = 0.0
    stage_seconds: str = "{}"  # JSON: seconds per stage (fetch, decode, detect, embed, track, write, encode, publish)
    tracker_frames: str = "{}"  # JSON: frame counts the tracker used, resolved from seconds and the video's fps
    detections: str = ""  # detected | cached (re-tracked from the detections stage) | fallback (cache unusable)
    # what made the rows (tracking.pipeline.Models.execution; for a cached video, what made its detections):
    device: str = ""  # cpu, or cuda:N with the GPU's name
    backend: str = ""  # each network's runtime, e.g. "detector openvino; reid openvino"
    precision: str = ""  # each network's runtime and precision, e.g. "detector torch fp16; reid openvino fp32 (cpu)"
    cpu: str = ""  # the CPU's model and the ISA features that decide CPU results' speed [avx2,avx512,vnni,...]
    node_id: str = ""
    worker_pid: int = 0
    started_at: str = ""
    finished_at: str = ""
    run_id: str = ""
    params_id: str = ""


_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64()}
MANIFEST_SCHEMA = pa.schema([
    pa.field(f.name, _ARROW[typing.get_type_hints(Attempt)[f.name]]) for f in fields(Attempt)
])


class ManifestJournal:
    """Durable per-attempt records for one run, compacted into one Parquet file at the end."""

    def __init__(self, layout: DatasetLayout, run_id: str) -> None:
        self.layout, self.run_id = layout, run_id
        self.rows: list[Attempt] = []

    def held(self, owner: str) -> AbstractContextManager[Callable[[], None]]:
        """The lease that tells other runs this journal is being written (not to be recovered)."""
        return self.layout.storage.lease(self.layout.journal_lease(self.run_id), owner, self.run_id,
                                         JOURNAL_LEASE_TTL_S)

    def add(self, row: Attempt, durable: bool = True) -> None:
        """Record a row; `durable` rows are written to the output's journal at once."""
        row.run_id, row.params_id = self.run_id, self.layout.params_id
        self.rows.append(row)
        if not durable:
            return
        try:
            self.layout.storage.put_bytes(self.layout.journal(self.run_id, len(self.rows)),
                                          json.dumps(asdict(row), sort_keys=True).encode())
        except Exception as e:  # kept in memory: only an abnormal end would lose it now
            log.error("could not journal the attempt of %s (%s: %s); it stays in memory until the manifest",
                      row.source_key, e.__class__.__name__, e)

    def close(self) -> str:
        """Write the run's manifest, then drop its journal. Returns the manifest's key."""
        key = write_manifest(self.layout, self.run_id, self.rows)
        _drop_journal(self.layout, self.run_id)
        return key

    def save_locally(self) -> Path:
        """Last resort when the output cannot take the manifest: a local copy to point at."""
        path = Path(tempfile.gettempdir()) / f"vidtrack-manifest-{self.run_id}.parquet"
        pq.write_table(pa.Table.from_pylist([asdict(r) for r in self.rows], schema=MANIFEST_SCHEMA), path)
        return path


def write_manifest(layout: DatasetLayout, run_id: str, rows: list[Attempt]) -> str:
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=MANIFEST_SCHEMA)
    key = layout.manifest(run_id)
    with tempfile.TemporaryDirectory(prefix="vidtrack-manifest-") as tmp:
        path = Path(tmp) / "manifest.parquet"
        pq.write_table(table, path, compression="zstd")
        layout.storage.upload(path, key)
    return key


def _drop_journal(layout: DatasetLayout, run_id: str) -> None:
    for obj in list(layout.storage.list(layout.journal_prefix(run_id))):
        layout.storage.delete(obj.key)


def recover(layout: DatasetLayout, owner: str) -> list[str]:
    """Compact the journals of runs that never wrote their manifest (driver killed) into their
    manifest, with a row for each `_done` marker of theirs that no journal entry records (an
    actor that published as its driver died). A run still going holds the lease on its journal
    (`ManifestJournal.held`) and is left alone; a killed run that journaled nothing is known by
    the lease it left. Returns the recovered run ids."""
    by_run: dict[str, list[str]] = {}
    for obj in layout.storage.list(layout.key("_journal") + "/"):
        run_part, name = obj.key.split("/")[-2:]
        if run_part.startswith("run_id=") and obj.key.endswith(".json"):
            by_run.setdefault(run_part[len("run_id="):], []).append(obj.key)
        elif name.startswith("run_id=") and name.endswith(".lease"):
            by_run.setdefault(name[len("run_id="):-len(".lease")], [])
    recovered = []
    for run_id, keys in sorted(by_run.items()):
        try:
            with layout.storage.lease(layout.journal_lease(run_id), owner, "recovery", JOURNAL_LEASE_TTL_S):
                if _recover_run(layout, run_id, keys):
                    recovered.append(run_id)
        except LeaseHeld:
            log.debug("run %s is still going: its journal is its own", run_id)
    return recovered


def _recover_run(layout: DatasetLayout, run_id: str, keys: list[str]) -> bool:
    rows: list[Attempt] = []
    if not layout.storage.exists(layout.manifest(run_id)):
        rows = [Attempt(**known_fields(Attempt, json.loads(layout.storage.read_bytes(k)))) for k in sorted(keys)]
        unrecorded = unrecorded_done(layout, run_id, rows)
        if rows or unrecorded:
            write_manifest(layout, run_id, rows + unrecorded)
            log.warning("run %s ended without its manifest: recovered %d attempt records from its journal and "
                        "%d from `_done` markers it did not record", run_id, len(rows), len(unrecorded))
        rows += unrecorded
    _drop_journal(layout, run_id)
    return bool(rows)


def unrecorded_done(layout: DatasetLayout, run_id: str, rows: list[Attempt]) -> list[Attempt]:
    """Rows for the `_done` markers that name `run_id` and that no `ok` row in `rows` records:
    status ok, their figures from the marker, `error_message` starting "recovered"."""
    from jobs.dataset.markers import done_markers  # markers import this module

    ok = {r.video_id for r in rows if r.status == Status.OK}
    return [_row_of(m, run_id, layout.params_id) for vid, m in sorted(done_markers(layout).items())
            if m.run_id == run_id and vid not in ok]


def _row_of(m: DoneMarker, run_id: str, params_id: str) -> Attempt:
    src = m.source
    note = f"recovered from its _done marker ({m.finished_at}): run {run_id}'s driver died; no journal entry had it"
    return Attempt(m.video_id, m.source_key, m.attempt, Status.OK, error_message=note, frames=m.frames,
                   frames_declared=m.frames_declared, rows=m.rows, bytes_in=src.size if src else 0,
                   source_modified=src.modified if src else "", source_etag=src.etag if src else "",
                   finished_at=m.finished_at, run_id=run_id, params_id=params_id)


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The items of `data` that are fields of the dataclass `cls` (a newer writer's extra keys are dropped)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


__all__ = ["MANIFEST_SCHEMA", "OUTSTANDING", "Attempt", "ManifestJournal", "Status", "known_fields", "now_iso",
           "recover", "write_manifest"]
