"""The archive job against a real S3-compatible server (moto, standalone, on 127.0.0.1)
and a real local Ray: end to end, incremental reruns, bad files, killed actors, hostile keys."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from jobs.exits import EXIT_SOME_FAILED
from jobs.run import JobSpec, RunResult, run_job
from jobs.storage import S3Storage
from tests.conftest import JOB_OVERRIDES, job_spec, make_archive_clips
from tests.conftest import S3_CANARY as CANARY


@pytest.fixture(scope="module")
def ray_local(s3: str, ray_local: None) -> None:
    """conftest's local Ray, started after the moto server so the workers inherit its credentials."""
    return ray_local


def _client(endpoint: str) -> Any:
    return S3Storage("s3://x/", endpoint).client


@pytest.fixture(scope="module")
def archive(s3: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dozen real clips under nested prefixes of s3://archive/raw/."""
    c = _client(s3)
    c.create_bucket(Bucket="archive")
    c.create_bucket(Bucket="results")
    clips = make_archive_clips(tmp_path_factory.mktemp("clips"), 14, 8)
    keys = {}
    for i, clip in enumerate(clips[:12]):
        key = f"raw/2026/11/{20 + i % 3}/cam{i % 4}/{clip.name}"
        c.upload_file(str(clip), "archive", key)
        keys[key] = clip
    keys["_extra"] = clips[12]
    keys["_extra2"] = clips[13]
    return keys


def _spec(s3: str, output: str, extra: tuple[str, ...] = (), input: str = "s3://archive/raw/") -> JobSpec:
    return job_spec(input, output, *extra, endpoint_url=s3, actors=2)


def _snapshot(s3: str, bucket: str, prefix: str = "") -> dict[str, str]:
    c = _client(s3)
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = hashlib.sha256(c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()).hexdigest()
    return out


def _arrow_fs(s3: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=s3.removeprefix("http://"), scheme="http",
                             access_key="AKIAVIDTRACKTEST", secret_key=CANARY, region="us-east-1")


def _tracks(s3: str, dataset: str) -> Any:
    return ds.dataset(dataset.removeprefix("s3://") + "/tracks", filesystem=_arrow_fs(s3), format="parquet").to_table()


def _manifest(s3: str, dataset: str, run_id: str) -> Any:
    path = f"{dataset.removeprefix('s3://')}/manifest/run_id={run_id}/part-0.parquet"
    return pq.read_table(path, filesystem=_arrow_fs(s3))


@pytest.fixture(scope="module")
def first_run(s3: str, archive: dict[str, Path], ray_local: None) -> RunResult:
    return run_job(_spec(s3, "s3://results/tracks/"))


def test_archive_end_to_end(s3: str, archive: dict[str, Path], first_run: RunResult) -> None:
    r = first_run
    assert (r.ok, r.failed, r.skipped, r.exit_code) == (12, 0, 0, 0)
    keys = _snapshot(s3, "results", "tracks/")
    pid = r.params_id
    assert f"tracks/{pid}/config.json" in keys
    assert sum(k.startswith(f"tracks/{pid}/_done/") for k in keys) == 12
    assert sum(k.startswith(f"tracks/{pid}/videos/") and k.endswith(".mp4") for k in keys) == 12
    t = _tracks(s3, r.dataset)
    assert t.num_rows > 0 and set(t["params_id"].to_pylist()) == {pid}
    # DuckDB over the dataset read back from the server: no duplicate (video, frame, track) rows
    dup = duckdb.sql("select count(*) from (select video_id, frame_index, track_id, count(*) n from t "
                     "group by all having n > 1)").fetchall()[0]
    assert dup == (0,)
    per_video = duckdb.sql("select video_id, min(track_id) from t group by 1").fetchall()
    assert per_video and all(m == 1 for _, m in per_video)  # IDs start at 1 in every video
    m = _manifest(s3, r.dataset, r.run_id)
    assert m.num_rows == 12 and set(m["status"].to_pylist()) == {"ok"}
    assert set(m["source_key"].to_pylist()) == {k.removeprefix("raw/") for k in archive if k.startswith("raw/")}
    cfg = json.loads(_client(s3).get_object(Bucket="results", Key=f"tracks/{pid}/config.json")["Body"].read())
    assert cfg["params_id"] == pid and len(cfg["model"]["sha256"]) == 64
    # largest videos were scheduled first: the two actors' first videos are the two largest
    rows = m.to_pylist()
    first_two = sorted(rows, key=lambda row: row["started_at"])[:2]
    assert sorted(r["bytes_in"] for r in first_two) == sorted(r["bytes_in"] for r in rows)[-2:]


def test_incremental_reruns(s3: str, archive: dict[str, Path], first_run: RunResult) -> None:
    out = "s3://results/tracks/"
    before = _snapshot(s3, "results", "tracks/")
    again = run_job(_spec(s3, out))
    assert (again.ok, again.failed, again.skipped) == (0, 0, 12) and again.params_id == first_run.params_id
    after = _snapshot(s3, "results", "tracks/")
    new = set(after) - set(before)
    assert new == {f"tracks/{again.params_id}/manifest/run_id={again.run_id}/part-0.parquet"}
    # nothing published and no marker changed: the report built from these markers stays (issue 16 item 2)
    assert after == {**before, **{k: after[k] for k in new}} and f"tracks/{again.params_id}/report.html" in after

    c = _client(s3)
    c.upload_file(str(archive["_extra"]), "archive", "raw/2026/11/22/cam9/new1.mp4")
    c.upload_file(str(archive["_extra2"]), "archive", "raw/2026/11/22/cam9/new2.mp4")
    more = run_job(_spec(s3, out))
    assert (more.ok, more.skipped) == (2, 12)
    assert {a.source_key for a in more.attempts if a.status == "ok"} == {"2026/11/22/cam9/new1.mp4",
                                                                         "2026/11/22/cam9/new2.mp4"}
    old = _snapshot(s3, "results", f"tracks/{first_run.params_id}/")
    changed = run_job(_spec(s3, out, ("tracker.max_age=20",)))
    assert changed.params_id != first_run.params_id and changed.ok == 14
    assert _snapshot(s3, "results", f"tracks/{first_run.params_id}/") == old  # byte-identical


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 3]


def test_bad_files_become_failed_rows(s3: str, archive: dict[str, Path], first_run: RunResult) -> None:
    c = _client(s3)
    c.create_bucket(Bucket="mixed")
    for key, clip in archive.items():
        if key.startswith("raw/"):
            c.upload_file(str(clip), "mixed", key)
    c.put_object(Bucket="mixed", Key="raw/bad/corrupt.mp4", Body=_truncate(archive["_extra"].read_bytes()))
    c.put_object(Bucket="mixed", Key="raw/bad/empty.mp4", Body=b"")
    c.put_object(Bucket="mixed", Key="raw/bad/notes.mp4", Body=b"meeting notes, not a video\n" * 10)
    r = run_job(_spec(s3, "s3://results/mixed/", input="s3://mixed/raw/"))
    assert (r.ok, r.failed, r.exit_code) == (12, 3, EXIT_SOME_FAILED)
    failed = {a.source_key: a for a in r.attempts if a.status == "failed"}
    assert set(failed) == {"bad/corrupt.mp4", "bad/empty.mp4", "bad/notes.mp4"}
    for key, a in failed.items():
        assert a.error_class in ("VideoError", "IncompleteVideoError") and f"s3://mixed/raw/{key}" in a.error_message
        assert a.attempt == 1  # not retried: the video's own fault
    assert "empty" in failed["bad/empty.mp4"].error_message
    m = _manifest(s3, r.dataset, r.run_id)
    assert sorted(m.filter(ds.field("status") == "failed")["source_key"].to_pylist()) == sorted(failed)
    # every good video's records are byte-identical to the clean run's
    clean = _snapshot(s3, "results", f"tracks/{first_run.params_id}/tracks/")
    mixed = _snapshot(s3, "results", f"mixed/{r.params_id}/tracks/")
    assert r.params_id == first_run.params_id
    strip = len(f"tracks/{first_run.params_id}/")
    assert {k[strip:]: v for k, v in clean.items() if "new" not in k} == \
        {k[len(f"mixed/{r.params_id}/"):]: v for k, v in mixed.items()}


def test_killed_actor_is_retried_without_duplicates(s3: str, archive: dict[str, Path], ray_local: None,
                                                    tmp_path: Path) -> None:
    """SIGKILL the process of an actor while it processes a video: the job still
    completes every video exactly once."""
    c = _client(s3)
    c.create_bucket(Bucket="faults")
    clips = make_archive_clips(tmp_path / "long", 4, 40)
    for clip in clips:
        c.upload_file(str(clip), "faults", f"raw/{clip.name}")
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for p in psutil.process_iter(["cmdline"]):
                if any("ray::VideoWorker.process" in part for part in (p.info["cmdline"] or [])) and _ours(p):
                    time.sleep(1.0)  # well into the video
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                    except ProcessLookupError:
                        continue
                    return
            time.sleep(0.1)

    t = threading.Thread(target=killer)
    t.start()
    r = run_job(_spec(s3, "s3://results/faults/", input="s3://faults/raw/"))
    t.join()
    assert killed, "no actor process was found to kill"
    assert (r.ok, r.failed) == (4, 0)
    lost = [a for a in r.attempts if a.status == "lost"]
    assert len(lost) == 1 and lost[0].error_class == "ActorDied"
    assert any(n in lost[0].error_message for n in ("ActorDiedError", "RayActorError", "WorkerCrashedError"))
    retried = [a for a in r.attempts if a.video_id == lost[0].video_id and a.status == "ok"]
    assert len(retried) == 1 and retried[0].attempt == 2
    keys = _snapshot(s3, "results", f"faults/{r.params_id}/")
    assert sum("/_done/" in k for k in keys) == 4
    assert sum("/tracks/" in k for k in keys) == 4
    tbl = _tracks(s3, r.dataset)
    dup = duckdb.sql("select count(*) from (select video_id, frame_index, track_id from tbl "
                     "group by all having count(*) > 1)").fetchall()[0]
    assert dup == (0,) and tbl.num_rows > 0


def test_hostile_keys_and_no_secret_leaks(s3: str, archive: dict[str, Path], ray_local: None,
                                          caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    c = _client(s3)
    c.create_bucket(Bucket="hostile")
    clip = str(archive["_extra"])
    canary_file = Path(tempfile_root(), "vidtrack-canary-escape.mp4")
    keys = ["../../../../../../tmp/vidtrack-canary-escape.mp4", "/abs/leading-slash.mp4",
            "ünïcødé/视频 κάμερα.mp4", "deep/" + "ä" * 300 + "b" * 400 + ".mp4",
            "dots/..mp4"]
    assert len(keys[3].encode()) > 1000
    for k in keys:
        c.upload_file(clip, "hostile", k)
    before = _snapshot(s3, "results", "")
    with caplog.at_level("DEBUG"):
        r = run_job(_spec(s3, "s3://results/hostile/", input="s3://hostile/"))
    assert (r.ok, r.failed) == (len(keys), 0)
    assert not canary_file.exists()
    out = _snapshot(s3, "results", "")
    assert {k for k in out if out[k] != before.get(k)} and all(
        k.startswith("hostile/") for k in out if out[k] != before.get(k))  # nothing written elsewhere
    for k in (k for k in out if k.startswith("hostile/")):
        assert ".." not in k.split("/") and "//" not in k and k.isascii() and len(k) < 200
    # the secret appears in no log line, manifest row, config or done marker
    assert CANARY not in caplog.text
    for k in (k for k in out if k.startswith("hostile/")):
        assert CANARY.encode() not in c.get_object(Bucket="results", Key=k)["Body"].read()
    import ray._private.worker

    ray_logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # this session's, wherever Ray keeps it
    logged = [f for f in ray_logs.rglob("*") if f.is_file()]
    assert logged, f"no Ray log files under {ray_logs}"
    for f in logged:
        assert CANARY.encode() not in f.read_bytes(), f


def _ours(p: psutil.Process) -> bool:
    """A process started by this test session's Ray (not another session's on this machine)."""
    try:
        return any(a.pid == os.getpid() for a in p.parents())
    except psutil.Error:
        return False


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.slow
def test_listing_paginates_over_thousands_of_keys(s3: str) -> None:
    c = _client(s3)
    c.create_bucket(Bucket="many")
    for i in range(1100):
        c.put_object(Bucket="many", Key=f"p/{i % 7}/{i:05d}.mp4", Body=io.BytesIO(b"x"))
    listed = list(S3Storage("s3://many/p/", s3).list())
    assert len(listed) == 1100 and len({o.key for o in listed}) == 1100


def test_overlapping_prefixes_refused(s3: str) -> None:
    with pytest.raises(ValueError, match="overlaps"):
        run_job(_spec(s3, "s3://archive/raw/out/"))
    with pytest.raises(ValueError, match="overlaps"):
        run_job(_spec(s3, "s3://archive/", input="s3://archive/raw/"))


def test_model_from_s3_is_fetched_and_identified_by_its_bytes(s3: str, archive: dict[str, Path],
                                                             first_run: RunResult) -> None:
    from tests.conftest import MODEL

    c = _client(s3)
    c.create_bucket(Bucket="models")
    c.upload_file(str(MODEL), "models", "detectors/yolov8n.pt")
    c.create_bucket(Bucket="one")
    c.upload_file(str(archive["_extra"]), "one", "raw/a.mp4")
    spec = _spec(s3, "s3://results/s3model/", input="s3://one/raw/")
    spec.config = load_config(None, [*JOB_OVERRIDES, "detector.model=s3://models/detectors/yolov8n.pt"])
    r = run_job(spec)
    assert (r.ok, r.failed) == (1, 0)
    assert r.params_id == first_run.params_id  # same bytes as the local file: the same dataset identity
    cfg = json.loads(c.get_object(Bucket="results", Key=f"s3model/{r.params_id}/config.json")["Body"].read())
    assert cfg["model"] == {"uri": "s3://models/detectors/yolov8n.pt",
                            "sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest()}
    missing = _spec(s3, "s3://results/s3model/", input="s3://one/raw/")
    missing.config = load_config(None, [*JOB_OVERRIDES, "detector.model=s3://models/nope.pt"])
    from tracking.modelref import ModelError

    with pytest.raises(ModelError, match=r"s3://models/nope\.pt"):
        run_job(missing)


def test_s3_lease_is_exclusive_expires_and_is_released(s3: str) -> None:
    from jobs.storage import LeaseHeld

    c = _client(s3)
    c.create_bucket(Bucket="leases")
    store = S3Storage("s3://leases/ds/", s3)
    with store.lease("p/_lease/v.json", "run A", "A", 60) as held:
        held()
        with pytest.raises(LeaseHeld, match="run A"), S3Storage("s3://leases/ds/", s3).lease("p/_lease/v.json",
                                                                                            "run B", "B", 60):
            pass
    assert "Contents" not in c.list_objects_v2(Bucket="leases", Prefix="ds/p/_lease/")  # released
    # a lease left by a dead holder expires and is taken over
    c.put_object(Bucket="leases", Key="ds/p/_lease/w.json",
                 Body=json.dumps({"owner": "dead run", "expires": time.time() - 1}).encode())
    with store.lease("p/_lease/w.json", "run C", "C", 60):
        body = json.loads(c.get_object(Bucket="leases", Key="ds/p/_lease/w.json")["Body"].read())
        assert body["owner"] == "run C"


def test_s3_usage_errors_and_changed_objects(s3: str, archive: dict[str, Path], ray_local: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import EXIT_USAGE, main

    base = ["--output", "s3://results/usage/", "--s3-endpoint-url", s3, "--no-progress",
            *[a for o in JOB_OVERRIDES for a in ("--set", o)]]
    assert main(["run", "--input", "s3://no-such-bucket-here/raw/", *base]) == EXIT_USAGE
    assert "no-such-bucket-here" in capsys.readouterr().err
    assert main(["run", "--input", "s3://archive/raww/", *base]) == EXIT_USAGE  # a mistyped prefix
    assert "holds no objects" in capsys.readouterr().err
    c = _client(s3)
    c.create_bucket(Bucket="changing")
    c.upload_file(str(archive["_extra"]), "changing", "raw/cam.mp4")
    first = run_job(_spec(s3, "s3://results/changing/", input="s3://changing/raw/"))
    assert first.ok == 1
    c.upload_file(str(archive["_extra2"]), "changing", "raw/cam.mp4")  # re-uploaded: another ETag
    again = run_job(_spec(s3, "s3://results/changing/", input="s3://changing/raw/"))
    assert (again.ok, again.skipped) == (1, 0)


def test_s3_lease_of_a_dead_attempt_of_the_same_run_is_taken_over(s3: str) -> None:
    """The driver retries a video only after its attempt ended (the actor died): that attempt's
    lease, not yet expired, must not block the retry; another run's lease does."""
    from jobs.storage import LeaseHeld

    c = _client(s3)
    c.create_bucket(Bucket="leases2")
    c.put_object(Bucket="leases2", Key="ds/_lease/v.json",
                 Body=json.dumps({"owner": "attempt 1 (killed)", "run": "R", "expires": time.time() + 300}).encode())
    store = S3Storage("s3://leases2/ds/", s3)
    with pytest.raises(LeaseHeld, match="attempt 1"), store.lease("_lease/v.json", "run S", "S", 60):
        pass
    with store.lease("_lease/v.json", "attempt 2", "R", 60):
        assert json.loads(c.get_object(Bucket="leases2", Key="ds/_lease/v.json")["Body"].read())["owner"] == "attempt 2"


def test_archived_object_is_retryable_until_restored(s3: str, archive: dict[str, Path], ray_local: None) -> None:
    """An object in an archival storage class cannot be read until restored: that is the storage's
    state, not the video's fault — no failure marker, picked up by the run after the restore."""
    c = _client(s3)
    c.create_bucket(Bucket="cold")
    c.upload_file(str(archive["_extra"]), "cold", "raw/a.mp4", ExtraArgs={"StorageClass": "GLACIER"})
    c.upload_file(str(archive["_extra2"]), "cold", "raw/b.mp4")
    spec = _spec(s3, "s3://results/cold/", input="s3://cold/raw/")
    spec.max_attempts, spec.backoff_seconds = 1, 0.1
    r = run_job(spec)
    (row,) = [a for a in r.attempts if a.source_key == "a.mp4"]
    assert row.status == "retryable" and row.error_stage == "fetch" and "archived" in row.error_message
    assert (r.ok, r.failed, r.outstanding, r.exit_code) == (1, 0, 1, 4)
    assert not [k for k in _snapshot(s3, "results", "cold/") if "/_failed/" in k]
    c.restore_object(Bucket="cold", Key="raw/a.mp4", RestoreRequest={"Days": 1})
    again = run_job(_spec(s3, "s3://results/cold/", input="s3://cold/raw/"))
    assert (again.ok, again.skipped, again.exit_code) == (1, 1, 0)


def test_tracker_change_retracks_from_cached_detections_on_s3(s3: str, archive: dict[str, Path],
                                                               ray_local: None) -> None:
    c = _client(s3)
    c.create_bucket(Bucket="retrack")
    for i, key in enumerate(k for k in archive if k.startswith("raw/")):
        if i < 3:
            c.upload_file(str(archive[key]), "retrack", f"raw/v{i}.mp4")
    first = run_job(_spec(s3, "s3://results/retrack/", input="s3://retrack/raw/"))
    assert first.ok == 3 and {a.detections for a in first.attempts} == {"detected"}
    assert len(_snapshot(s3, "results", "retrack/_detections/")) == 6  # 3 files + their 3 markers
    c.upload_file(str(archive["_extra"]), "retrack", "raw/v0.mp4")  # re-uploaded: its detections are stale
    again = run_job(_spec(s3, "s3://results/retrack/", ("tracker.max_age_s=1.0",), input="s3://retrack/raw/"))
    assert again.ok == 3 and again.params_id != first.params_id
    assert {a.source_key: a.detections for a in again.attempts} == {"v0.mp4": "detected", "v1.mp4": "cached",
                                                                     "v2.mp4": "cached"}
