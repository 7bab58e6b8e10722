"""Detection at a rate (`detector.max_fps`): only every k-th frame goes to the detector, every
frame is tracked (the others on the motion model, `box_source = predicted`), frames not detected
are decoded without their pixels, the annotated video keeps every frame, and at 0 nothing changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.config import load_config
from tests.conftest import MODEL
from tracking.config import DetectorConfig
from tracking.detections import Detections
from tracking.pipeline import VideoOutputs, process_video
from tracking.tracker import VideoTracker
from tracking.video import NO_PIXELS, VideoReader, probe


@pytest.mark.parametrize(("fps", "max_fps", "every"), [(25.0, 0.0, 1), (25.0, 25.0, 1), (25.0, 12.5, 2),
                                                       (25.0, 8.33, 3), (25.0, 6.25, 4), (30.0, 10.0, 3),
                                                       (5.0, 10.0, 1), (0.0, 5.0, 5)])
def test_the_stride_is_resolved_from_the_videos_rate(fps: float, max_fps: float, every: int) -> None:
    assert DetectorConfig(max_fps=max_fps).every(fps) == every  # 0 fps: the fallback rate, 25


def test_frames_refused_pixels_are_decoded_without_them(tud_video: Path) -> None:
    with VideoReader(tud_video) as r:
        full = list(r)
    with VideoReader(tud_video) as r:
        some = list(r.frames(pixels=lambda i: i % 3 == 0))
    assert [(f.index, f.timestamp_s) for f in some] == [(f.index, f.timestamp_s) for f in full]
    for a, b in zip(full, some, strict=True):
        if a.index % 3 == 0:
            assert b.has_pixels and np.array_equal(a.bgr, b.bgr)
        else:
            assert not b.has_pixels and b.bgr is NO_PIXELS


def test_a_max_fps_run_detects_every_kth_frame_and_tracks_every_frame(tud_video: Path, fast_models,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    cfg = load_config(None, [f"detector.model={MODEL}", "detector.imgsz=320", "detector.max_fps=8.33"])
    seen: list[int] = []

    def detect(frames):  # type: ignore[no-untyped-def]
        assert all(f.has_pixels for f in frames)
        seen.extend(f.index for f in frames)
        return fast_models.detector([f.bgr for f in frames])

    out = dataclasses.replace(VideoOutputs.in_dir(tmp_path, "tud"), online_tracks=tmp_path / "online.parquet")
    summary = process_video(tud_video, out, cfg, fast_models, video_id="tud", detect=detect)
    assert seen == list(range(0, 71, 3))  # 25 fps / 8.33 -> every 3rd frame, each once
    assert summary.frames == 71 and summary.tracker_frames["detect_every"] == 3
    for path in (out.online_tracks, out.tracks):
        t = pq.read_table(path).to_pydict()
        source = dict.fromkeys(zip(t["frame_index"], t["box_source"], strict=True))
        off = {s for f, s in source if f % 3}
        assert off == {"predicted"}, path  # between detections: the motion model's boxes only
        assert {s for f, s in source if f % 3 == 0} >= {"detected"}
        frames = set(t["frame_index"])
        assert len({f for f in frames if f % 3}) > 30  # tracks carry on over the frames not detected
    assert probe(out.video)["frames"] == 71  # type: ignore[arg-type]


def test_max_fps_zero_is_every_frame_detected(tud_video: Path, fast_cfg, fast_models,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    calls: list[int] = []

    def detect(frames):  # type: ignore[no-untyped-def]
        calls.extend(f.index for f in frames)
        return fast_models.detector([f.bgr for f in frames])

    summary = process_video(tud_video, VideoOutputs.in_dir(tmp_path, "v", annotated=False), fast_cfg, fast_models,
                            detect=detect, max_frames=20)
    assert calls == list(range(20)) and summary.tracker_frames["detect_every"] == 1


def _box(x: float) -> Detections:
    return Detections.from_arrays(np.array([[x, 10, x + 20, 60]], np.float32), np.array([0.9]), np.array([0]))


def test_a_predicted_frame_advances_tracks_without_missing_them() -> None:
    """A tentative track survives the frames between detections (a DeepSORT update with no
    detections would delete it) and confirms after n_init detected frames; between them its box
    moves on the motion model; the IoU stage still matches it after the gap."""
    cfg = load_config(None, []).tracker
    emb = np.ones((1, 8), np.float32)
    t = VideoTracker(cfg, 25.0)
    states = []
    for i in range(12):  # detected at 0, 3, 6, 9: an object moving 2 px a frame
        states.append(t.update(_box(2.0 * i), emb) if i % 3 == 0 else t.predict())
    assert all(len(s) == 1 and s[0].track_id == 1 for s in states)
    assert [s[0].matched for s in states] == [i % 3 == 0 for i in range(12)]
    assert states[6][0].confirmed and not states[5][0].confirmed  # n_init = 3 detected frames
    assert states[8][0].xyxy[0] > states[7][0].xyxy[0] > states[6][0].xyxy[0]  # moving on its velocity
    missed = VideoTracker(cfg, 25.0)
    missed.update(_box(0.0), emb)
    assert missed.update(Detections.empty(), np.zeros((0, 8), np.float32)) == []  # what predict avoids


def test_after_predicted_frames_a_confirmed_track_is_matched_by_iou_alone() -> None:
    """Appearance rejects the match (orthogonal embedding): only the IoU stage, which DeepSORT
    keeps for tracks matched at the previous step, can extend the track across the gap."""
    cfg = load_config(None, []).tracker
    t = VideoTracker(cfg, 25.0)
    a, b = np.eye(8, dtype=np.float32)[:1], np.eye(8, dtype=np.float32)[1:2]
    for i in range(0, 9, 3):
        t.update(_box(float(i)), a)
        t.predict(), t.predict()
    after = t.update(_box(9.0), b)
    assert [(s.track_id, s.matched) for s in after] == [(1, True)]


def test_leaving_the_prefetch_early_stops_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """`max_frames` on a long video: the decode thread stops soon after, instead of decoding the
    rest of the file (up to the 10 s join timeout) with the reader about to close under it."""
    from tests.conftest import VIDEOS, need_shared
    from tracking.prefetch import prefetched

    clip = VIDEOS / "one-by-one-person-detection.mp4"  # 1394 frames
    need_shared(clip)
    decoded: list[int] = []
    frames = VideoReader.frames

    def counted(self, pixels=None):  # type: ignore[no-untyped-def]
        for f in frames(self, pixels):
            decoded.append(f.index)
            yield f
    monkeypatch.setattr(VideoReader, "frames", counted)
    with VideoReader(clip) as r, prefetched(r, 4, max_frames=8) as batches:
        got = [f.index for b in batches for f in b]
    assert got == list(range(8)) and len(decoded) <= 8 + 4 * 4  # the queue's 2 batches, one in hand
