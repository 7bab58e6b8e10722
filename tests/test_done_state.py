"""Done state at archive scale (issue 16 items 2, 7, 10): a rerun reads `_done`/`_failed` through
the marker index in a number of requests that does not grow with the videos (counted in the real
moto server's request log), a changed source is still processed again, the report is not rebuilt
when nothing was published; a report write that fails leaves no temporary file and later runs
remove stale ones; the S3 client's connection pool fits the threads that share it.

The done archives are made cheaply and say so: source objects are a few bytes (never decoded:
every one is done), and their `_done` markers and (empty) track files are written directly, as
jobs/worker/publish.py writes them after a real run. The runs over them are real `run_job` calls
(no video to process, so no Ray)."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.dataset.index import index_key, read_markers
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.markers import DoneMarker, SourceIdentity
from jobs.plan import plan_run, video_id_for
from jobs.run import run_job
from jobs.storage import PARALLEL_READS, LocalStorage, S3Storage, printable
from jobs.storage.s3 import UPLOAD_THREADS
from tests.conftest import fresh_python, job_spec
from tracking.records import TRACK_SCHEMA

_FUTURE = datetime.now(UTC) + timedelta(days=3650)
_LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (/[^ ]*) HTTP/1\.[01]"')


class MotoLog:
    """The requests the moto server logged (werkzeug: one line per request it answered) for one
    bucket: what the server saw, not what the client meant to send."""

    def __init__(self, base: Path, bucket: str) -> None:
        self.logs, self.bucket = sorted({p.resolve() for p in base.glob("moto*/moto.log")}), bucket

    def requests(self) -> list[tuple[str, str]]:
        time.sleep(0.3)  # the server logs a request after answering it
        out = []
        for log in self.logs:
            for m in _LINE.finditer(log.read_text(errors="replace")):
                path = m.group(2)
                if path == f"/{self.bucket}" or path.startswith((f"/{self.bucket}/", f"/{self.bucket}?")):
                    out.append((m.group(1), path))
        return out

    def since(self, mark: int) -> list[tuple[str, str]]:
        return self.requests()[mark:]


def _done_archive(s3: str, n: int, base: Path) -> tuple[Any, MotoLog, str]:
    """A bucket with `n` source objects and, after a real run that planned nothing, their `_done`
    markers and track files as a done run leaves them. Returns (spec, log, params_id)."""
    bucket = f"done{n}-{uuid.uuid4().hex[:8]}"
    client = S3Storage("s3://x/", s3).client
    client.create_bucket(Bucket=bucket)
    for i in range(n):
        client.put_object(Bucket=bucket, Key=f"raw/cam{i % 3}/clip{i:03d}.mp4", Body=b"v" * (100 + i))
    first = run_job(job_spec(f"s3://{bucket}/raw/", f"s3://{bucket}/tracks/", endpoint_url=s3,
                             modified_since=_FUTURE))  # lists, plans nothing: the dataset's params_id
    out = S3Storage(f"s3://{bucket}/tracks/", s3)
    layout = DatasetLayout(out, first.params_id)
    empty = pa.BufferOutputStream()
    pq.write_table(TRACK_SCHEMA.empty_table(), empty)
    for obj in S3Storage(f"s3://{bucket}/raw/", s3).list():
        vid = video_id_for(obj.key)
        out.put_bytes(layout.tracks(vid), empty.getvalue().to_pybytes())
        out.put_bytes(layout.done(vid), DoneMarker(
            vid, printable(obj.key), SourceIdentity.of(obj), params_id=first.params_id, run_id="seed", attempt=1,
            frames=250, fps=25.0, width=64, height=48, finished_at=datetime.now(UTC).isoformat()).to_bytes())
    spec = job_spec(f"s3://{bucket}/raw/", f"s3://{bucket}/tracks/", endpoint_url=s3)
    return spec, MotoLog(base, bucket), first.params_id


def _counted_rerun(spec: Any, log: MotoLog) -> tuple[Any, list[tuple[str, str]]]:
    """A real rerun; the requests it made, less listing the input (which grows with the archive)."""
    mark = len(log.requests())
    result = run_job(spec)
    made = [r for r in log.since(mark) if "prefix=raw" not in r[1]]
    return result, made


def test_rerun_reads_done_state_in_requests_that_do_not_grow_with_videos(
        s3: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    counts = {}
    for n in (10, 30):
        spec, log, params_id = _done_archive(s3, n, tmp_path_factory.getbasetemp())
        warm, warm_made = _counted_rerun(spec, log)  # no index yet: every marker read once, index written
        assert warm.skipped == n and warm.report
        assert sum(1 for m, p in warm_made if m == "GET" and "/_done/" in p and "list-type" not in p) == n
        result, made = _counted_rerun(spec, log)
        assert result.skipped == n and result.exit_code == 0
        assert result.report.endswith(f"{params_id}/report.html")  # current: not rebuilt
        assert not [r for r in made if "/_done/" in r[1] and "list-type" not in r[1]], made  # no marker GET
        assert not [r for r in made if "/tracks/video_id=" in r[1] or (r[0] == "PUT" and "report" in r[1])], made
        counts[n] = sorted((m, re.sub(r"run_id(=|%3D)[^/&]+", "run_id=*", p.replace(log.bucket, "B")))
                           for m, p in made)
    assert counts[10] == counts[30], counts  # the same requests, whatever the number of done videos
    assert len(counts[30]) <= 12, counts


def test_changed_new_and_removed_markers_seen_through_the_index(
        s3: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec, log, params_id = _done_archive(s3, 12, tmp_path_factory.getbasetemp())
    run_job(spec)  # writes the marker index
    src, out = S3Storage(spec.input, s3), S3Storage(spec.output, s3)
    layout = DatasetLayout(out, params_id)
    changed = "cam0/clip000.mp4"
    src.put_bytes(changed, b"another recording" * 10)  # a new version of the source: new ETag and size
    gone = video_id_for("cam1/clip001.mp4")
    out.delete(layout.done(gone))  # a marker removed since the index (its video is not done)
    mark = len(log.requests())
    plan = plan_run(src, layout, ["*.mp4"], [])
    made = log.since(mark)
    assert {(t.key, t.replaces) for t in plan.todo} == {(changed, True), ("cam1/clip001.mp4", False)}
    assert len(plan.done) == 10 and plan.markers_changed
    assert not [r for r in made if r[0] == "GET" and "/_done/" in r[1] and "list-type" not in r[1]], made
    again = read_markers(layout, "_done", DoneMarker)  # the index was rewritten without the removed one
    assert gone not in again.markers and not again.changed and len(again.markers) == 11


def test_a_marker_published_after_the_index_is_read_alone(s3: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A killed run's actors publish markers the index never saw: read one by one, then indexed."""
    spec, log, params_id = _done_archive(s3, 8, tmp_path_factory.getbasetemp())
    out = S3Storage(spec.output, s3)
    layout = DatasetLayout(out, params_id)
    first = read_markers(layout, "_done", DoneMarker)
    assert first.fetched == 8 and out.exists(index_key(layout, "_done"))
    late = DoneMarker("late-000000000000", "late.mp4", SourceIdentity(5, "2026-01-01T00:00:00+00:00", "e"))
    out.put_bytes(layout.done(late.video_id), late.to_bytes())
    mark = len(log.requests())
    second = read_markers(layout, "_done", DoneMarker)
    gets = [p for m, p in log.since(mark) if m == "GET" and "/_done/" in p and "list-type" not in p]
    assert gets == [f"/{log.bucket}/tracks/{params_id}/_done/late-000000000000.json"]
    assert second.markers["late-000000000000"] == late and second.fetched == 1 and second.digest != first.digest
    assert read_markers(layout, "_done", DoneMarker).fetched == 0


def test_markers_stay_readable_by_older_code(tmp_path: Path) -> None:
    """The index is beside the markers, never instead of them: each `_done/<id>.json` is the JSON
    older vidtrack reads, and a dataset without an index (older vidtrack's) reads the same."""
    layout = DatasetLayout(LocalStorage(tmp_path), "p")
    marker = DoneMarker("v-1", "v.mp4", SourceIdentity(3, "2026-01-01T00:00:00+00:00"), frames=7)
    layout.storage.put_bytes(layout.done("v-1"), marker.to_bytes())
    assert read_markers(layout, "_done", DoneMarker).markers == {"v-1": marker}
    assert (tmp_path / "p" / "_index" / "done.parquet").is_file()
    assert DoneMarker.from_bytes((tmp_path / "p" / "_done" / "v-1.json").read_bytes()) == marker
    (tmp_path / "p" / "_index" / "done.parquet").write_bytes(b"not parquet")  # damaged: read markers instead
    assert read_markers(layout, "_done", DoneMarker).markers == {"v-1": marker}


# -- item 7: the report's temporary file ------------------------------------------------------------

def _local_dataset(tmp_path: Path) -> tuple[Any, str]:
    """A real run over a local folder that plans nothing: config, manifest and report exist."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes(b"x" * 100)
    spec = job_spec(tmp_path / "in", tmp_path / "out", modified_since=_FUTURE)
    result = run_job(spec)
    assert (tmp_path / "out" / result.params_id / "report.html").is_file()
    return spec, result.params_id


def test_a_report_write_that_fails_leaves_no_partial(tmp_path: Path) -> None:
    """The file-size limit (RLIMIT_FSIZE, in a child process) makes the kernel refuse the report's
    bytes (EFBIG) through the real file object of the real write; only the limit is set by the test,
    after the report's data is collected and before it is written."""
    _, params_id = _local_dataset(tmp_path)
    code = f"""
import errno, resource, signal, sys
import jobs.report.build as build
from jobs.storage import LocalStorage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
collect = build._collect
def collect_then_limit(*a, **k):
    data = collect(*a, **k)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    return data
build._collect = collect_then_limit
try:
    build.write_report(LocalStorage({str(tmp_path / "out")!r}), {params_id!r})
except OSError as e:
    sys.exit(0 if e.errno == errno.EFBIG else 3)
sys.exit(2)
"""
    before = (tmp_path / "out" / params_id / "report.html").read_bytes()
    child = fresh_python(code)
    assert child.returncode == 0, child.stderr[-3000:]
    folder = tmp_path / "out" / params_id
    assert not list(folder.glob(".*.partial")), list(folder.iterdir())
    assert (folder / "report.html").read_bytes() == before  # the published report is untouched


def test_next_run_removes_stale_partials_of_earlier_ones(tmp_path: Path) -> None:
    spec, params_id = _local_dataset(tmp_path)
    folder = tmp_path / "out" / params_id
    stale, young = folder / ".report.html.0badf00d.partial", folder / ".report.html.1234abcd.partial"
    for p in (stale, young):
        p.write_bytes(b"<html>half a report")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    result = run_job(spec)  # nothing published: the report is current, and the stale file goes anyway
    assert result.report and not stale.exists()
    assert young.exists()  # perhaps a concurrent writer's


# -- item 10 (half): the connection pool ----------------------------------------------------------

def test_connection_pool_fits_the_threads_that_share_a_client(s3: str, caplog: pytest.LogCaptureFixture) -> None:
    store = S3Storage(f"s3://pool-{uuid.uuid4().hex[:8]}/ds/", s3)
    assert store.client.meta.config.max_pool_connections >= PARALLEL_READS + UPLOAD_THREADS
    store.client.create_bucket(Bucket=store.bucket)
    layout = DatasetLayout(store, "p")
    for i in range(64):
        store.put_bytes(layout.done(f"v{i:03d}"), DoneMarker(f"v{i:03d}", "k", None).to_bytes())
    caplog.set_level(logging.WARNING, logger="urllib3")
    read = read_markers(layout, "_done", DoneMarker, save=False)  # PARALLEL_READS threads on one client
    assert read.fetched == 64
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()], caplog.text
