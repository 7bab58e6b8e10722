"""Nightly trust (issue 7): the bad nights. Each test is one finding, on real files, a real
local Ray, real signals sent to a real driver process; none of them passes on vidtrack 0.1."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.config import load_config
from jobs.dataset.layout import DatasetLayout
from jobs.dataset.manifest import MANIFEST_SCHEMA, Attempt, Status
from jobs.dataset.markers import DoneMarker, SourceIdentity
from jobs.exits import EXIT_INCOMPLETE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from jobs.plan import DEFAULT_INCLUDE, plan_run, video_id_for
from jobs.run import run_job
from jobs.run.session import check_resources
from jobs.storage import LeaseHeld, LocalStorage, printable
from tests.conftest import (
    JOB_OVERRIDES,
    MODEL,
    REPO,
    VIDEOS,
    job_spec,
    make_archive_clips,
    need_shared,
    read_frames,
    write_video,
)
from tracking.modelref import file_sha256
from tracking.video import IncompleteVideoError, VideoReader


@pytest.fixture(scope="module")
def shared_job_data() -> None:
    """The shared model and videos a test runs on: it skips without them (fails under
    VIDTRACK_REQUIRE_SHARED); the tests that need neither run anyway."""
    need_shared(MODEL, VIDEOS)


needs_data = pytest.mark.usefixtures("shared_job_data")


def _frames(n: int, src: Path = VIDEOS / "car-detection.mp4") -> list[np.ndarray]:
    return read_frames(src, n)


def _faststart_mp4(path: Path, frames: list[np.ndarray]) -> Path:
    """An MP4 whose index (moov) is at the front: truncated, it still declares every frame."""
    return write_video(path, frames, container_format="mp4", options={"movflags": "+faststart"})


def _cut(path: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


_spec = functools.partial(job_spec, actors=1, backoff_seconds=0.1)


def _params_id(*extra: str) -> str:
    from tracking.reid import reid_sha256

    cfg = load_config(None, [*JOB_OVERRIDES, *extra])
    return cfg.params_id(file_sha256(MODEL), reid_sha256(cfg.embedder.reid_model) if cfg.embedder.reid_model else "")


def _blocked(tmp_path: Path, clips: int, frames: int, blocked: str) -> tuple[Path, Path, str]:
    """Input clips, and an output whose `<params_id>/<blocked>` is a file where a folder must go
    (a real storage error for every write under it)."""
    inp, out, pid = tmp_path / "in", tmp_path / "out", _params_id()
    make_archive_clips(inp, clips, frames)
    (out / pid).mkdir(parents=True)
    (out / pid / blocked).write_text("a file where a folder must go")
    return inp, out, pid


def _dataset(out: Path) -> Path:
    """The one tracks dataset under an output (beside the shared detections stage)."""
    (dataset,) = [p for p in out.iterdir() if p.name != "_detections"]
    return dataset


def _manifest_rows(dataset: Path) -> list[dict[str, object]]:
    return [r for f in sorted(dataset.glob("manifest/*/*.parquet")) for r in pq.read_table(f).to_pylist()]


# -- 1. incomplete videos are never ok ------------------------------------------------------

@needs_data
@pytest.mark.parametrize("kind", ["faststart-mp4", "matroska"])
def test_truncated_video_fails_decoded_vs_declared(kind: str, tmp_path: Path) -> None:
    frames = _frames(60)
    if kind == "faststart-mp4":
        full = _faststart_mp4(tmp_path / "full.mp4", frames)
    else:
        full = write_video(tmp_path / "full.mkv", frames, fps=25, container_format="matroska")
    with VideoReader(full) as r:
        assert sum(1 for _ in r) == 60  # the whole file passes
    cut = _cut(full, tmp_path / f"cut{full.suffix}")
    with VideoReader(cut) as r, pytest.raises(IncompleteVideoError, match=r"cut\.(mp4|mkv)"):
        for _ in r:
            pass


@needs_data
def test_shared_videos_are_complete() -> None:
    """No false alarm on real files: every shared video decodes to what it declares."""
    for p in sorted(VIDEOS.glob("*.mp4")):
        with VideoReader(p) as r:
            assert sum(1 for _ in r) == r.info.frame_count > 0


@needs_data
def test_truncated_video_in_a_run_is_failed_and_unpublished(ray_local: None, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    _cut(_faststart_mp4(tmp_path / "whole.mp4", _frames(40)), inp / "cut.mp4", 0.6)
    r = run_job(_spec(inp, tmp_path / "out"))
    assert (r.ok, r.failed, r.exit_code) == (0, 1, EXIT_SOME_FAILED)
    (row,) = [a for a in r.attempts if a.attempt == 1]
    assert row.error_class == "IncompleteVideoError" and "cut.mp4" in row.error_message
    assert any(w in row.error_message for w in ("declares", "truncated"))
    dataset = tmp_path / "out" / r.params_id
    assert not list(dataset.glob("_done/*")) and not list(dataset.glob("tracks/*/*")) and not list(
        dataset.glob("videos/*"))
    assert list(dataset.glob("_failed/*.json"))


# -- 2. markers carry the source's identity -----------------------------------------------

@needs_data
def test_changed_source_is_processed_again(ray_local: None, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    clips = make_archive_clips(inp, 2, 6)
    first = run_job(_spec(inp, out))
    assert (first.ok, first.exit_code) == (2, EXIT_OK)
    done_path = out / first.params_id / "_done" / f"{video_id_for('clip00.mp4')}.json"
    assert DoneMarker.from_bytes(done_path.read_bytes()).source == SourceIdentity.of(
        next(o for o in LocalStorage(inp).list() if o.key == "clip00.mp4"))
    # the completed version of a file replaces the one processed last night (same name, other bytes)
    write_video(clips[0], _frames(9, VIDEOS / "one-by-one-person-detection.mp4"), fps=25)
    second = run_job(_spec(inp, out))
    assert (second.ok, second.skipped) == (1, 1)
    marker = DoneMarker.from_bytes(done_path.read_bytes())
    assert marker.frames == 9 and marker.source is not None and marker.source.size == clips[0].stat().st_size
    tracks = pq.read_table(out / first.params_id / "tracks" / f"video_id={video_id_for('clip00.mp4')}"
                           / "part-0.parquet")
    assert tracks.num_rows == marker.rows and max(tracks["frame_index"].to_pylist(), default=0) <= 8
    # a file that failed is processed again once it is replaced by a good one, without --retry-failed
    bad = inp / "late.mp4"
    bad.write_bytes(b"\x00" * 500)
    assert run_job(_spec(inp, out)).failed == 1
    assert run_job(_spec(inp, out)).failed_before == 1  # unchanged: still failed, not skipped
    write_video(bad, _frames(5), fps=25)
    assert run_job(_spec(inp, out)).ok == 1
    assert not (out / first.params_id / "_failed" / f"{video_id_for('late.mp4')}.json").exists()


def test_markers_of_vidtrack_0_1_are_still_understood(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mp4").write_bytes(b"x" * 10)
    (src / "b.mp4").write_bytes(b"y" * 10)
    obj = {o.key: o for o in LocalStorage(src).list()}
    layout = DatasetLayout(LocalStorage(tmp_path / "out"), "pid")
    # 0.1 failure marker: size and mtime at the top level
    layout.storage.put_bytes(layout.failed(video_id_for("a.mp4")), json.dumps(
        {"video_id": video_id_for("a.mp4"), "source_key": "a.mp4", "size": 10,
         "modified": obj["a.mp4"].modified.isoformat(), "error_class": "VideoError", "error_message": "bad",
         "attempt": 1, "at": "2026-01-01T00:00:00+00:00"}).encode())
    # 0.1 done marker: no identity; the source was modified after it was written -> changed
    layout.storage.put_bytes(layout.done(video_id_for("b.mp4")), json.dumps(
        {"video_id": video_id_for("b.mp4"), "source_key": "b.mp4", "frames": 3,
         "finished_at": "2000-01-01T00:00:00+00:00"}).encode())
    plan = plan_run(LocalStorage(src), layout, ["*.mp4"], [])
    assert [t.key for t, _ in plan.failed_before] == ["a.mp4"]
    assert [t.key for t in plan.todo] == ["b.mp4"] and plan.todo[0].replaces


# -- 3. infrastructure failures are retried, not remembered as the video's ------------------

@needs_data
@pytest.mark.parametrize("blocked", ["tracks", "_done"])  # the tracks upload fails / the last write fails
def test_blocked_output_is_retryable_and_leaves_nothing(blocked: str, ray_local: None, tmp_path: Path) -> None:
    inp, out, pid = _blocked(tmp_path, 1, 6, blocked)
    r = run_job(_spec(inp, out, max_attempts=2))
    assert (r.ok, r.failed, r.outstanding, r.exit_code) == (0, 0, 1, EXIT_INCOMPLETE)
    rows = [a for a in r.attempts if a.attempt > 0]
    assert [a.status for a in rows] == ["retryable", "retryable"]  # retried within the run, then left
    assert all(a.error_stage == "publish" for a in rows)
    assert not list((out / pid).glob("_failed/*")) and not list((out / pid).glob("videos/*.mp4"))
    assert not list((out / pid).glob("tracks/*/*.parquet"))  # nothing a README query would read
    assert not list(out.rglob("*.partial"))
    (out / pid / blocked).unlink()  # the storage is fixed: the next run picks it up by itself
    again = run_job(_spec(inp, out))
    assert (again.ok, again.exit_code) == (1, EXIT_OK)


@needs_data
def test_circuit_breaker_stops_dispatching(ray_local: None, tmp_path: Path) -> None:
    inp, out, _ = _blocked(tmp_path, 5, 4, "videos")
    r = run_job(_spec(inp, out, max_attempts=1, breaker_threshold=2))
    attempted = [a for a in r.attempts if a.status == Status.RETRYABLE]
    cancelled = [a for a in r.attempts if a.status == Status.CANCELLED]
    assert len(attempted) == 2 and len(cancelled) == 3  # not every remaining video computed for nothing
    assert all("circuit breaker" in a.error_message for a in cancelled)
    assert r.exit_code == EXIT_INCOMPLETE


def test_upload_error_leaves_no_partial_file(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "out")
    with pytest.raises(OSError):
        store.upload(Path("/proc/self/mem"), "a/b.bin")  # opens, then fails to read: a real I/O error
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


# -- 4. empty success is a usage error; 5/7. clear causes, nothing written ------------------

@needs_data
@pytest.mark.parametrize("case", ["missing", "file", "empty", "no-videos"])
def test_nothing_to_do_because_of_the_input_is_a_usage_error(case: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    if case == "file":
        inp.write_bytes(b"x")
    elif case in ("empty", "no-videos"):
        inp.mkdir()
        if case == "no-videos":
            (inp / "notes.txt").write_text("hello")
    rc = main(["run", "--input", str(inp), "--output", str(tmp_path / "out"), "--set", f"detector.model={MODEL}"])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_USAGE and len(err.splitlines()) == 1 and str(inp) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--actors", "0"], "--actors"), (["--actors", "-1"], "--actors"), (["--cpus-per-actor", "0"], "--cpus-per-actor"),
    (["--modified-since", "yesterday"], "not a date"), (["--max-attempts", "0"], "--max-attempts"),
])
def test_bad_flags_are_one_line_usage_errors(args: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == EXIT_USAGE and len(err.splitlines()) == 1 and message in err
    assert "_utc_datetime" not in err and "_positive" not in err


@needs_data
def test_output_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_archive_clips(tmp_path / "in", 1, 3)
    (tmp_path / "out").write_text("x")
    rc = main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
               "--set", f"detector.model={MODEL}"])
    assert rc == EXIT_USAGE and "is a file" in capsys.readouterr().err


def test_unsatisfiable_resources_fail_at_once_not_hang() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}]
    check_resources(1, 0, nodes)
    with pytest.raises(ValueError, match="--gpus-per-actor 1"):
        check_resources(1, 1, nodes)
    with pytest.raises(ValueError, match="--cpus-per-actor 3"):
        check_resources(3, 0, nodes)


@needs_data
@pytest.mark.parametrize("extra, message", [
    (["--gpus-per-actor", "1"], "no node of the Ray cluster"),
    (["--set", "detector.classes=['persn']"], "'persn' is not a class"),
    (["--set", "detector.device=cuda"], "CUDA is not available"),
    (["--set", "detector.model=NOTAMODEL"], "model.pt"),
])
def test_start_errors_show_their_cause_before_any_output(extra: list[str], message: str, ray_local: None,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_archive_clips(tmp_path / "in", 1, 3)
    if "NOTAMODEL" in extra[-1]:
        bad = tmp_path / "model.pt"
        bad.write_bytes(b"PK\x03\x04 this is not a model")
        extra = ["--set", f"detector.model={bad}"]
    t0 = time.monotonic()
    rc = main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--no-progress",
               *[a for o in JOB_OVERRIDES for a in ("--set", o)], *extra])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE and message in err, err
    assert time.monotonic() - t0 < 120
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("config.json"))


# -- 6. records survive signals and a killed driver -----------------------------------------

def _driver(tmp_path: Path, inp: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIDTRACK_WORK_DIR": str(tmp_path / "work"), "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "jobs", "run", "--input", str(inp), "--output", str(out), "--no-progress",
            "--actors", "1", *[a for o in JOB_OVERRIDES for a in ("--set", o)], *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)


def _wait_for(pred: object, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_keeps_the_records(sig: signal.Signals, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    make_archive_clips(inp, 6, 20)
    proc = _driver(tmp_path, inp, out, "--grace-seconds", "0")
    _wait_for(lambda: any(out.glob("*/_done/*.json")) and any((tmp_path / "work").glob("*/a*")))
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 128 + sig, output
    dataset = _dataset(out)
    rows = _manifest_rows(dataset)
    done = len(list(dataset.glob("_done/*.json")))
    assert sum(r["status"] == "ok" for r in rows) == done >= 1
    assert len({r["video_id"] for r in rows}) == 6  # every planned video has a row
    assert {r["status"] for r in rows} <= {"ok", "cancelled"} and any(r["status"] == "cancelled" for r in rows)
    assert not list((dataset / "_journal").rglob("*.json")) if (dataset / "_journal").exists() else True
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file()]  # no copy of a source left
    assert not list(out.rglob("*.partial"))
    # the next run picks up exactly the cancelled videos
    again = _driver(tmp_path, inp, out)
    assert again.wait(timeout=300) == EXIT_OK


@needs_data
@pytest.mark.slow
def test_killed_driver_loses_no_finished_attempt_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """SIGKILL mid-video (issue 16 item 5): the dead run's Ray session ends with it (the agents
    Ray leaves with parent PID 1 included), its scratch folders go, every `_done` names its run
    and has a manifest row behind it once the next run recovered the killed run's records."""
    import psutil

    inp, out, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    make_archive_clips(inp, 4, 12)
    proc = _driver(tmp_path, inp, out)
    _wait_for(lambda: any(out.glob("*/_journal/*/*.json")) and any(work.glob("*/a*")))  # one recorded, one in flight
    session = psutil.Process(proc.pid).children(recursive=True)
    assert any("DashboardAgent" in " ".join(p.cmdline()) for p in session)
    dead_folders = {d.name for d in work.iterdir()}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(session, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive]
    dataset = _dataset(out)
    journaled = list(dataset.glob("_journal/*/*.json"))
    assert len(journaled) >= 1 and not list(dataset.glob("manifest/*"))
    killed_run = journaled[0].parent.name
    assert _driver(tmp_path, inp, out).wait(timeout=300) == EXIT_OK  # also recovers the killed run's records
    recovered = pq.read_table(dataset / "manifest" / killed_run / "part-0.parquet")
    assert recovered.num_rows >= len(journaled) and set(recovered["status"].to_pylist()) == {"ok"}
    assert not list(dataset.glob("_journal/*/*.json"))
    assert not dead_folders & {d.name for d in work.iterdir()}  # the dead run's scratch is reclaimed
    ok = {(r["run_id"], r["video_id"]) for r in _manifest_rows(dataset) if r["status"] == "ok"}
    markers = [DoneMarker.from_bytes(p.read_bytes()) for p in dataset.glob("_done/*.json")]
    assert len(markers) == 4 and all(m.run_id for m in markers)
    assert {(m.run_id, m.video_id) for m in markers} <= ok  # no `_done` without its row
    stage = [json.loads(p.read_bytes()) for p in out.glob("_detections/*/_done/*.json")]
    assert len(stage) == 4 and all(m["run_id"] for m in stage)


def test_scratch_of_processes_gone_is_reclaimed_whatever_the_node(tmp_path: Path) -> None:
    """A folder named by a process that is gone (another Ray node id, another run, vidtrack 0.2's
    `<node>-<pid>`) is removed; a live process's folder and another host's stay."""
    from jobs.procs import ProcessRef
    from jobs.worker.scratch import sweep_scratch

    gone = subprocess.Popen(["sleep", "0"])
    dead = ProcessRef.of(gone.pid)
    gone.wait()
    me = ProcessRef.of(os.getpid())
    names = {"dead": dead.tag(), "reused": dataclasses.replace(me, started=me.started - 60).tag(),
             "legacy": f"0123456789ab-{gone.pid}", "live": me.tag(),
             "elsewhere": dataclasses.replace(dead, host="other-host").tag()}
    for name in names.values():
        (tmp_path / name / "a1-x").mkdir(parents=True)
        (tmp_path / name / "a1-x" / "copy.mp4").write_bytes(b"x" * 1000)
    assert not dead.alive() and me.alive()
    removed = {p.name for p in sweep_scratch(tmp_path)}
    assert removed == {names["dead"], names["reused"], names["legacy"]}
    assert {p.name for p in tmp_path.iterdir()} == {names["live"], names["elsewhere"]}


def test_done_published_after_the_driver_died_is_recovered_as_a_row(tmp_path: Path) -> None:
    """The killed run journaled video a; its actor published `_done` for b as the driver died;
    run c (another run's, recorded in its manifest) is not touched. The recovering run writes
    the killed run's manifest with both."""
    from jobs.dataset.manifest import ManifestJournal, recover, write_manifest

    layout = DatasetLayout(LocalStorage(tmp_path / "out"), "pid")
    ident = SourceIdentity(10, "2026-01-01T00:00:00+00:00")
    ManifestJournal(layout, "run-K").add(Attempt("a", "a.mp4", 1, Status.OK, frames=3))
    write_manifest(layout, "run-L", [Attempt("c", "c.mp4", 1, Status.OK, run_id="run-L")])
    for vid, run in (("a", "run-K"), ("b", "run-K"), ("c", "run-L")):
        marker = DoneMarker(vid, f"{vid}.mp4", ident, params_id="pid", run_id=run, attempt=1, frames=5, rows=7,
                            finished_at="2026-01-01T00:00:09+00:00")
        layout.storage.put_bytes(layout.done(vid), marker.to_bytes())
    assert recover(layout, "run N") == ["run-K"]
    rows = {r["video_id"]: r for r in pq.read_table(tmp_path / "out" / layout.manifest("run-K")).to_pylist()}
    assert set(rows) == {"a", "b"} and rows["b"]["status"] == "ok" and rows["b"]["rows"] == 7
    assert rows["b"]["error_message"].startswith("recovered") and not rows["a"]["error_message"]


def test_an_actor_publishes_nothing_once_its_driver_is_gone(tmp_path: Path) -> None:
    """Right before `_done`, the actor asks whether its driver still runs: a driver that is gone
    (a real process, exited) leaves nothing published, the tracks it uploaded removed again."""
    from jobs.plan import VideoTask
    from jobs.procs import ProcessRef
    from jobs.worker.actor import VideoWorker
    from jobs.worker.publish import DriverGone, publish_outputs
    from tracking.pipeline import VideoOutputs, VideoSummary

    gone = subprocess.Popen(["sleep", "0"])
    worker = VideoWorker.__new__(VideoWorker)  # only its driver check: no Ray, no models
    worker.driver, worker.run_id = ProcessRef.of(gone.pid), "run-K"
    gone.wait()
    layout = DatasetLayout(LocalStorage(tmp_path / "out"), "pid")
    tracks = tmp_path / "t.parquet"
    tracks.write_bytes(b"tracks")
    task = VideoTask(next(iter(LocalStorage(tmp_path).list())), "v")
    summary = VideoSummary("v", "t.parquet", "pid", 3, 3, 0.1, 25.0, 64, 48, 0, "h264", 2, {}, {}, 0.1)
    with pytest.raises(DriverGone, match="run-K"):
        publish_outputs(layout, task, VideoOutputs(tracks=tracks), summary,
                        Attempt("v", "t.parquet", 1, Status.RETRYABLE, run_id="run-K"), worker.check_driver)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


@needs_data
def test_manifest_that_cannot_be_written_is_kept_locally(ray_local: None, tmp_path: Path) -> None:
    inp, out, _ = _blocked(tmp_path, 1, 4, "manifest")
    r = run_job(_spec(inp, out))
    assert r.ok == 1 and r.manifest == "" and r.exit_code == EXIT_INCOMPLETE
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"vidtrack-manifest-{r.run_id}.parquet"
    assert pq.read_table(local).num_rows == 1
    local.unlink()


def test_manifest_schema_is_the_row_type() -> None:
    """The manifest's columns as README documents them and the report's queries read them: a
    field added to, renamed in or retyped in `Attempt` shows here (and needs README and the
    report looked at), as does a manifest row that no longer round-trips."""
    import pyarrow as pa

    text = {"video_id", "source_key", "status", "error_class", "error_stage", "error_message", "source_modified",
            "source_etag", "stage_seconds", "tracker_frames", "detections", "device", "backend", "precision", "cpu",
            "node_id", "started_at", "finished_at", "run_id", "params_id"}
    ints = {"attempt", "frames", "frames_declared", "rows", "bytes_in", "worker_pid"}
    order = ["video_id", "source_key", "attempt", "status", "error_class", "error_stage", "error_message", "frames",
             "frames_declared", "rows", "bytes_in", "source_modified", "source_etag", "seconds", "stage_seconds",
             "tracker_frames", "detections", "device", "backend", "precision", "cpu", "node_id", "worker_pid",
             "started_at", "finished_at", "run_id", "params_id"]
    documented = [(n, pa.string() if n in text else pa.int64() if n in ints else pa.float64()) for n in order]
    assert pa.schema(documented) == MANIFEST_SCHEMA
    row = Attempt("v", "cam/v.mp4", 2, Status.RETRYABLE, error_class="OSError", frames=7, seconds=1.5)
    table = pa.Table.from_pylist([dataclasses.asdict(row)], schema=MANIFEST_SCHEMA)
    assert [Attempt(**r) for r in table.to_pylist()] == [row]
    assert {s.value for s in Status} == {"ok", "failed", "retryable", "lost", "cancelled", "skipped"}


# -- 8/10. names and listing ----------------------------------------------------------------

def test_listing_is_case_insensitive_follows_links_and_counts_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "cam").mkdir(parents=True)
    for name in ("A.MKV", "b.Mp4", "c.ts", "d.mts", "e.MTS", "notes.txt", "f.mp4.tmp"):
        (src / "cam" / name).write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "g.mp4").write_bytes(b"x")
    (src / "linked.mp4").symlink_to(elsewhere / "g.mp4")
    (src / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)
    (src / "broken.mp4").symlink_to(tmp_path / "nowhere.mp4")
    plan = plan_run(LocalStorage(src), DatasetLayout(LocalStorage(tmp_path / "out"), "p"),
                    DEFAULT_INCLUDE, [])
    assert sorted(t.key for t in plan.todo) == ["cam/A.MKV", "cam/b.Mp4", "cam/c.ts", "cam/d.mts", "cam/e.MTS",
                                                "linkdir/g.mp4", "linked.mp4"]
    assert plan.ignored == {"not a video name (--include)": 2, "symlink loop": 1, "broken symlink or unreadable": 1}


@needs_data
def test_a_name_that_is_not_utf8_is_processed_and_reported_escaped(ray_local: None, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    clip = make_archive_clips(tmp_path / "clips", 1, 4)[0]
    bad_name = os.fsdecode(b"caf\xe9-cam.mp4")  # Latin-1 bytes from another system
    os.link(clip, inp / bad_name)
    (inp / "ok.mp4").write_bytes(clip.read_bytes())
    r = run_job(_spec(inp, tmp_path / "out"))
    assert (r.ok, r.failed) == (2, 0)
    keys = {a.source_key for a in r.attempts}
    assert keys == {"caf\\xe9-cam.mp4", "ok.mp4"} and printable(bad_name) == "caf\\xe9-cam.mp4"


# -- concurrent runs: one lease per video ---------------------------------------------------

def test_lease_is_exclusive_and_released(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "out")
    with store.lease("p/_lease/v.json", "run A", "A", 60) as held:
        held()
        with pytest.raises(LeaseHeld, match="run A"), store.lease("p/_lease/v.json", "run B", "B", 60):
            pass
    assert not (tmp_path / "out" / "p" / "_lease").exists()  # released and removed
    with store.lease("p/_lease/v.json", "run B", "B", 60):  # free again once A is done
        pass


@needs_data
def test_video_leased_by_another_run_is_not_processed_twice(ray_local: None, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    make_archive_clips(inp, 2, 4)
    layout = DatasetLayout(LocalStorage(out), _params_id())
    with layout.storage.lease(layout.lease(video_id_for("clip00.mp4")), "run X (another driver)", "X", 60):
        r = run_job(_spec(inp, out))
    (held,) = [a for a in r.attempts if a.source_key == "clip00.mp4"]
    assert held.status == Status.CANCELLED and "run X" in held.error_message
    assert (r.ok, r.outstanding, r.exit_code) == (1, 1, EXIT_INCOMPLETE)
    assert not (out / layout.params_id / "_failed").exists()
    assert run_job(_spec(inp, out)).ok == 1  # the next run does it


@needs_data
def test_progress_inside_a_video_is_visible_while_it_runs(ray_local: None, tmp_path: Path) -> None:
    import ray

    from jobs.plan import VideoTask
    from jobs.worker.actor import VideoWorker

    inp = tmp_path / "in"
    make_archive_clips(inp, 1, 60)
    cfg = load_config(None, JOB_OVERRIDES)
    actor = ray.remote(VideoWorker).options(num_cpus=1, max_concurrency=2).remote(
        cfg, str(inp), str(tmp_path / "out"), "pid", "", None, 1, "test-run")
    assert not ray.get(actor.ready.remote()).error
    (obj,) = LocalStorage(inp).list()
    ref = actor.process.remote(VideoTask(obj, video_id_for(obj.key)), 1)
    seen = []
    while not ray.wait([ref], timeout=0.05)[0]:
        seen.append(ray.get(actor.frames_done.remote()))
    row = ray.get(ref)
    assert row.status == Status.OK and row.frames == 60 and row.frames_declared == 60
    assert json.loads(row.tracker_frames)["max_age"] >= 1  # resolved from seconds and fps, recorded
    assert any(0 < n < 60 for n in seen), seen  # seen mid-video, not only at the end
    ray.kill(actor)


def test_size_change_mid_stream_is_the_videos_own_failure(tmp_path: Path) -> None:
    """Two recorder segments of different sizes concatenated into one .ts: a VideoError (failed,
    marked), not an error that would be retried every night."""
    from tracking.video import VideoError

    joined = tmp_path / "joined.ts"
    rng = np.random.default_rng(0)
    with joined.open("wb") as out:
        for w, h in ((160, 120), (96, 64)):  # one recorder segment after the other
            write_video(out, [rng.integers(0, 255, (h, w, 3), np.uint8) for _ in range(10)], container_format="mpegts")
    # which check fires first depends on where the demuxer notices the join: the second segment's
    # packets may be flagged (continuity counters restart) before a frame of the new size decodes
    with VideoReader(joined) as r, pytest.raises(VideoError, match=r"size changes mid-stream|corrupt packet"):
        for _ in r:
            pass


def test_a_running_runs_journal_is_not_recovered_by_another_run(tmp_path: Path) -> None:
    from jobs.dataset.manifest import ManifestJournal, recover

    layout = DatasetLayout(LocalStorage(tmp_path / "out"), "pid")
    running = ManifestJournal(layout, "run-A")
    with running.held("driver A"):
        running.add(Attempt("v", "v.mp4", 1, Status.OK, frames=3))
        assert recover(layout, "run B") == []  # A is alive: its journal is its own
        assert list((tmp_path / "out" / "pid" / "_journal").rglob("*.json"))
    assert recover(layout, "run B") == ["run-A"]  # A died without its manifest: B compacts it
    assert pq.read_table(tmp_path / "out" / layout.manifest("run-A")).to_pylist()[0]["frames"] == 3
