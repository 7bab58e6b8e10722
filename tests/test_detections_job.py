"""The archive job and the detections stage: a tracker-only change re-tracks from the cached
detections (no decode, no model, no GPU; a few frames in the driver's own process, more on
actors), with the same records a full run gives; a changed source or a damaged cache means
full processing."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path

import pytest

from jobs.dataset.layout import DatasetLayout
from jobs.detections import detections_key
from jobs.exits import UsageError
from jobs.modelref import fetch_reid_model
from jobs.plan import plan_run, video_id_for
from jobs.run import RunResult, local, run_job
from jobs.run.driver import _identities
from jobs.run.pool import Started
from jobs.run.session import Where, start_pool, where_to_run
from jobs.storage import open_storage
from tests.conftest import (
    MODEL,
    VIDEOS,
    job_spec,
    make_archive_clips,
    need_shared,
    read_frames,
    write_video,
)
from tracking.modelref import file_sha256

TRACKER_CHANGE = ("tracker.max_age_s=1.0", "refine.min_track_s=1.0")


_spec = functools.partial(job_spec, actors=1, report=False)


def _how(r: RunResult) -> dict[str, str]:
    return {a.source_key: a.detections for a in r.attempts if a.attempt > 0}


def _tracks(out: Path, r: RunResult) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (out / r.params_id / "tracks").glob("*/part-0.parquet")}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    need_shared(MODEL, VIDEOS)
    make_archive_clips(tmp_path / "in", 2, 12)
    return tmp_path / "in"


def test_tracker_change_retracks_from_cache_with_the_full_runs_records(ray_local: None, archive: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_job(_spec(archive, out))
    assert first.ok == 2 and set(_how(first).values()) == {"detected"}
    # a tracker/refinement change: re-tracked from the detections, even with actors asking for a GPU
    # this machine does not have (24 frames: re-tracked in the driver's process, which needs none)
    again = run_job(_spec(archive, out, *TRACKER_CHANGE, gpus_per_actor=1.0))
    assert again.ok == 2 and again.params_id != first.params_id
    assert set(_how(again).values()) == {"cached"}
    assert {(a.worker_pid, a.node_id) for a in again.attempts} == {(os.getpid(), "")}
    assert {a.worker_pid for a in first.attempts} != {os.getpid()}  # detection ran on an actor
    # each row names what made it: a cached video what made its detections, on this CPU
    made = {(a.device, a.backend, a.precision) for r in (first, again) for a in r.attempts if a.attempt > 0}
    assert made == {("cpu", "detector openvino; embedder openvino; reid openvino",  # people and cars
                     "detector openvino fp32; embedder openvino fp32; reid openvino fp32 (cpu)")}
    cpu = {a.cpu for r in (first, again) for a in r.attempts if a.attempt > 0}
    assert len(cpu) == 1 and cpu.pop().endswith("]")
    # the same parameters processed in full, elsewhere: identical records, video by video
    full = run_job(_spec(archive, tmp_path / "full", *TRACKER_CHANGE, detections=False))
    assert set(_how(full).values()) == {"detected"} and full.params_id == again.params_id
    assert _tracks(out, again) == _tracks(tmp_path / "full", full) and len(_tracks(out, again)) == 2
    assert not (tmp_path / "full" / "_detections").exists()  # the knob turns the stage off
    # without a cache, a GPU request no node can hold is refused at once
    with pytest.raises(UsageError, match="--gpus-per-actor 1"):
        run_job(_spec(archive, tmp_path / "gpu", gpus_per_actor=1.0))


def test_changed_source_or_damaged_cache_is_processed_in_full(ray_local: None, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_job(_spec(archive, out))
    det_id = next((out / "_detections").iterdir()).name
    # clip00 is replaced (another recording under the same name); clip01's cached file is cut short
    write_video(archive / "clip00.mp4", read_frames(VIDEOS / "one-by-one-person-detection.mp4", 9), fps=25)
    cache = out / detections_key(det_id, video_id_for("clip01.mp4"))
    cache.write_bytes(cache.read_bytes()[:200])
    again = run_job(_spec(archive, out, *TRACKER_CHANGE))
    assert _how(again) == {"clip00.mp4": "detected", "clip01.mp4": "fallback"} and again.ok == 2
    full = run_job(_spec(archive, tmp_path / "full", *TRACKER_CHANGE, detections=False))
    assert _tracks(out, again) == _tracks(tmp_path / "full", full)  # never a wrong result
    assert first.ok == 2
    # the fallback rewrote a good cache: the next change re-tracks both again, here on actors (as
    # when the cached frames are many), that never load a model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local, "IN_DRIVER_MAX_FRAMES", 10)
        on_actors = run_job(_spec(archive, out, "tracker.max_age_s=2.0", gpus_per_actor=1.0))
    assert set(_how(on_actors).values()) == {"cached"}
    assert os.getpid() not in {a.worker_pid for a in on_actors.attempts}
    detected = run_job(_spec(archive, tmp_path / "full", "tracker.max_age_s=2.0"))
    assert set(_how(detected).values()) == {"detected"}
    assert _tracks(tmp_path / "full", detected) == _tracks(out, on_actors)


def test_a_stopped_run_cuts_in_driver_retracking_short_and_publishes_nothing(archive: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-driver pool (jobs/run/local.py) cannot kill its thread: the video stops at its next
    batch of frames, leaves no outputs and no marker, and its lease is free for the next run."""
    out = tmp_path / "out"
    run_job(_spec(archive, out))  # an embedded Ray of its own (no ray_local), gone after the run
    spec = _spec(archive, out, *TRACKER_CHANGE)
    ids = _identities(spec, file_sha256(MODEL), fetch_reid_model(spec.config.embedder.reid_model, None, tmp_path))
    dest = open_storage(str(out))
    plan = plan_run(open_storage(str(archive)), DatasetLayout(dest, ids.params_id), ["*.mp4"], [], None, False)
    assert where_to_run(spec, dest, ids, plan.todo) is Where.RETRACK_DRIVER
    pool = start_pool(spec, open_storage(str(archive)), dest, ids, plan.todo, Where.RETRACK_DRIVER)
    assert pool.idle == 1 and isinstance(pool.wait(0)[0], Started)
    worker, entered = pool._worker, threading.Event()
    count = worker.count_frames

    def held(n: int) -> None:  # the first batch waits here until the run stops the video
        entered.set()
        worker.cancel.wait(30)
        count(n)

    monkeypatch.setattr(worker, "count_frames", held)
    pool.submit(plan.todo[0], 1)
    assert entered.wait(30) and pool.busy == 1
    assert pool.cancel_in_flight() == [(plan.todo[0], 1)] and pool.idle == 1
    assert not (out / ids.params_id).exists() or not list((out / ids.params_id).rglob("*.parquet"))
    again = run_job(spec)  # nothing held, nothing half-published: both re-tracked
    assert again.ok == 2 and set(_how(again).values()) == {"cached"}

