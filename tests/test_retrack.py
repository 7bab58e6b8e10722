"""The detections stage (tracking/detstore.py) and re-tracking from it (`retrack_video`):
the same records as a full run, row for row, without decoding or a model; bad files refused."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from tests.conftest import MODEL
from tracking.detstore import DetectionsCacheError, read_header
from tracking.pipeline import VideoOutputs, process_video, retrack_video


def _sha(p: Path | None) -> str:
    assert p is not None
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def full_run(tud_video: Path, fast_cfg, fast_models, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("full")
    outputs = dataclasses.replace(VideoOutputs.in_dir(out, "tud"), detections=out / "tud.detections.parquet")
    summary = process_video(tud_video, outputs, fast_cfg, fast_models, video_id="tud", params_id="p",
                            detections_id="D")
    return outputs, summary


def test_retracking_gives_the_full_runs_records_and_video(full_run, tud_video: Path, fast_cfg, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tracking import detector, embedder

    def never(*a: object, **k: object) -> None:
        raise AssertionError("re-tracking constructed a model")

    monkeypatch.setattr(detector.Detector, "__init__", never)
    monkeypatch.setattr(embedder.AppearanceEmbedder, "__init__", never)
    outputs, summary = full_run
    again = VideoOutputs.in_dir(tmp_path, "tud")
    s = retrack_video(outputs.detections, again, fast_cfg, detections_id="D", source=tud_video, video_id="tud",
                      params_id="p")
    assert summary.rows > 50 and (s.frames, s.rows) == (summary.frames, summary.rows)
    assert _sha(again.tracks) == _sha(outputs.tracks)  # row for row, byte for byte
    assert _sha(again.video) == _sha(outputs.video)
    header = read_header(outputs.detections, "D")
    assert header.frames == summary.frames == 71 and header.embedding_dim > 0


def test_retracking_with_other_tracker_settings_equals_a_full_run_with_them(full_run, tud_video: Path, fast_models,
                                                                            tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320", "tracker.max_age_s=2.0",
                             "refine.min_track_s=1.0", "output.annotated_video=false"])
    outputs, _ = full_run
    re = VideoOutputs.in_dir(tmp_path / "re", "tud", annotated=False)
    retrack_video(outputs.detections, re, cfg, detections_id="D", video_id="tud", params_id="p")
    full = VideoOutputs.in_dir(tmp_path / "full", "tud", annotated=False)
    process_video(tud_video, full, cfg, fast_models, video_id="tud", params_id="p")
    assert pq.read_table(re.tracks).equals(pq.read_table(full.tracks))
    assert _sha(re.tracks) != _sha(outputs.tracks)  # the setting did change the records


def test_retracking_a_max_fps_run_gives_its_records(tud_video: Path, fast_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Detected every 2nd frame: the stage marks which frames were detected (a frame not detected
    is not a detected frame with nothing on it), and re-tracking from it gives the full run's records."""
    cfg = load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320", "detector.max_fps=12.5",
                             "output.annotated_video=false"])
    full = dataclasses.replace(VideoOutputs.in_dir(tmp_path / "full", "tud", annotated=False),
                               detections=tmp_path / "tud.detections.parquet")
    summary = process_video(tud_video, full, cfg, fast_models, video_id="tud", params_id="p", detections_id="R")
    stage = pq.read_table(full.detections).to_pydict()
    assert stage["detected"] == [i % 2 == 0 for i in stage["frame_index"]] and len(stage["detected"]) == 71
    assert all(not c for c, seen in zip(stage["confidence"], stage["detected"], strict=True) if not seen)
    re = VideoOutputs.in_dir(tmp_path / "re", "tud", annotated=False)
    s = retrack_video(full.detections, re, cfg, detections_id="R", video_id="tud", params_id="p")
    assert summary.rows > 50 and pq.read_table(re.tracks).equals(pq.read_table(full.tracks))
    assert s.tracker_frames == summary.tracker_frames and s.tracker_frames["detect_every"] == 2


def test_a_detections_file_from_before_the_detected_column_is_read(full_run, fast_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """vidtrack-detections-1 (no `detected` column: every frame detected) re-tracks as it did."""
    import json

    outputs, _ = full_run
    table = pq.read_table(outputs.detections)
    meta = json.loads(table.schema.metadata[b"vidtrack"])
    assert meta["format"] == "vidtrack-detections-2" and all(table.column("detected").to_pylist())
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["detected"]).replace_schema_metadata(
        {b"vidtrack": json.dumps({**meta, "format": "vidtrack-detections-1"}).encode()}), old)
    re = VideoOutputs.in_dir(tmp_path / "re", "tud", annotated=False)
    retrack_video(old, re, fast_cfg, detections_id="D", video_id="tud", params_id="p")
    assert _sha(re.tracks) == _sha(outputs.tracks)


@pytest.mark.parametrize("damage", ["truncated", "other-id", "other-schema", "missing"])
def test_a_bad_detections_file_is_refused(damage: str, full_run, fast_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outputs, _ = full_run
    bad, det_id = tmp_path / "bad.parquet", "D"
    data = outputs.detections.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "other-id":
        bad.write_bytes(data)
        det_id = "E"
    elif damage == "other-schema":
        pq.write_table(pa.table({"frame_index": [0, 1]}), bad)
    with pytest.raises(DetectionsCacheError, match=r"bad\.parquet"):
        retrack_video(bad, VideoOutputs.in_dir(tmp_path / "o", "tud"), fast_cfg, detections_id=det_id)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_key_added_at_its_default_changes_no_identity() -> None:
    """A new parameter whose default reproduces today's output (declared ADDED) leaves every
    existing params_id and detections_id as it was; set to another value, it changes them.
    Execution knobs never do."""
    from dataclasses import field

    from tracking.config import ADDED, PipelineConfig, TrackerConfig

    @dataclasses.dataclass(frozen=True)
    class TrackerWithNewKey(TrackerConfig):
        new_gate: float = field(default=0.0, metadata=ADDED)

    base = PipelineConfig()
    added = PipelineConfig(tracker=TrackerWithNewKey())
    assert added.params_id("m", "r") == base.params_id("m", "r")
    assert added.detections_id("m", "e") == base.detections_id("m", "e")
    assert PipelineConfig(tracker=TrackerWithNewKey(new_gate=0.5)).params_id("m", "r") != base.params_id("m", "r")
    execution = load_config(None, ["detector.device=cpu", "detector.batch_size=2", "detector.backend=onnxruntime",
                                   "embedder.batch_size=8", "output.row_group_frames=16"])
    assert (execution.params_id("m", "r"), execution.detections_id("m", "e")) == (base.params_id("m", "r"),
                                                                              base.detections_id("m", "e"))
    # tracker and refinement settings change the tracks, never the detections
    tracker = load_config(None, ["tracker.max_age_s=2.0", "refine.min_track_s=3.0"])
    assert tracker.detections_id("m", "e") == base.detections_id("m", "e")
    assert tracker.params_id("m", "r") != base.params_id("m", "r")
    assert load_config(None, ["detector.conf=0.4"]).detections_id("m", "e") != base.detections_id("m", "e")
    # detection at a rate: off (0, every frame) is every id as it was; on, a part of both
    off = load_config(None, ["detector.max_fps=0"])
    assert (off.params_id("m", "r"), off.detections_id("m", "e")) == (base.params_id("m", "r"),
                                                                  base.detections_id("m", "e"))
    pinned = PipelineConfig.from_dict({"embedder": {"reid_model": ""},
                                       "tracker": {"per_class": False, "group_box_cover": 0.0},
                                       "detector": {"max_fps": 0.0}})
    assert (pinned.params_id("a" * 64), pinned.detections_id("a" * 64, "b" * 64)) == ("9a78b6744c53",
                                                                                    "9ea4f66fece8")  # 0.2's
    # group boxes are a tracking choice: the detections stay, and pinning it off gives 0.3's ids
    plain = load_config(None, ["tracker.group_box_cover=0"])
    assert (plain.params_id("a" * 64, "r" * 64), plain.detections_id("a" * 64, "b" * 64)) == (
        "3d8ff8c62542", "95d930e9ee99")  # computed at 0.3's commit (e85f6a7)
    assert base.detections_id("a" * 64, "b" * 64) == "95d930e9ee99" != base.params_id("a" * 64, "r" * 64)
    rate = load_config(None, ["detector.max_fps=12.5"])
    assert rate.params_id("m", "r") != base.params_id("m", "r")
    assert rate.detections_id("m", "e") != base.detections_id("m", "e")
    assert rate.detections_id("m", "e") != load_config(None, ["detector.max_fps=8.33"]).detections_id("m", "e")


def test_people_are_stored_with_their_own_embedding_size(full_run) -> None:  # type: ignore[no-untyped-def]
    """TUD-Campus has people and their bags: people keep the 256 re-identification values, the
    bags MobileNetV2's 1280, each stored unpadded (README's storage numbers)."""
    outputs, _ = full_run
    header = read_header(outputs.detections, "D")
    table = pq.read_table(outputs.detections)
    classes = [c for frame in table["class_id"].to_pylist() for c in frame]
    stored = sum(len(e) for e in table["embedding"].to_pylist())
    people = sum(c == 0 for c in classes)
    assert header.embedding_dim == 1280 and header.class_dims == {0: 256}
    assert 0 < people < len(classes) and stored == 256 * people + 1280 * (len(classes) - people)
