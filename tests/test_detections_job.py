"""The archive job and the detections stage: a tracker-only change re-tracks from the cached
detections (no decode, no model, no GPU), with the same records a full run gives; a changed
source or a damaged cache means full processing."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest

from jobs.detections import detections_key
from jobs.exits import UsageError
from jobs.plan import video_id_for
from jobs.run import RunResult, run_job
from tests.conftest import (
    MODEL,
    VIDEOS,
    job_spec,
    make_archive_clips,
    need_shared,
    read_frames,
    write_video,
)

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
    # this machine does not have (re-tracking actors request none)
    again = run_job(_spec(archive, out, *TRACKER_CHANGE, gpus_per_actor=1.0))
    assert again.ok == 2 and again.params_id != first.params_id
    assert set(_how(again).values()) == {"cached"}
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
    # the fallback rewrote a good cache: the next change re-tracks both again
    assert set(_how(run_job(_spec(archive, out, "tracker.max_age_s=2.0"))).values()) == {"cached"}

