"""Offline refinement (tracking/refine.py) on small constructed tracks whose right answer is
known, time-based tracker settings, and the annotated video drawn from the final records."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.config import load_config
from tests.conftest import MODEL, SHARED, need_shared, write_video
from tracking.config import ConfigError, RefineConfig, TrackerConfig
from tracking.detections import Detections
from tracking.pipeline import VideoOutputs, process_video
from tracking.refine import online_rows, refine
from tracking.tracker import VideoTracker
from tracking.tracks import DETECTED, INTERPOLATED, PREDICTED, TrackLog, TrackState
from tracking.video import Frame

FPS = 25.0
OFF = RefineConfig(max_gap_s=0, stitch_max_gap_s=0, min_track_s=0, class_vote=False)  # each test turns one on


def _unit(seed: int, d: int = 32) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=d)
    return v / np.linalg.norm(v)


def _log(tracks: list[dict], frames: int) -> TrackLog:
    """tracks: dicts with id, frames (detected), box(frame) -> xyxy, emb, and optional
    predicted (frames), cls(frame), conf, confirmed_from (first confirmed frame)."""
    log = TrackLog(chunk_frames=7)  # several chunks
    for f in range(frames):
        states, embeds = [], []
        for t in tracks:
            matched = f in t["frames"]
            if not matched and f not in t.get("predicted", ()):
                continue
            cls = t.get("cls", lambda _: 0)(f)
            states.append(TrackState(t["id"], cls, t.get("conf", 0.9) if matched else float("nan"),
                                     tuple(float(v) for v in t["box"](f)), matched,  # type: ignore[arg-type]
                                     f >= t.get("confirmed_from", 0), len(embeds) if matched else -1))
            if matched:
                embeds.append(t["emb"])
        log.add_frame(f, f / FPS, states, np.array(embeds))
    return log


def _moving(x0: float, y0: float = 50.0, vx: float = 2.0, w: float = 20.0, h: float = 40.0):  # type: ignore[no-untyped-def]
    return lambda f: (x0 + vx * f, y0, x0 + vx * f + w, y0 + h)


def test_five_frame_gap_filled_with_linear_boxes_marked_interpolated() -> None:
    box = _moving(10)
    log = _log([{"id": 1, "frames": [*range(0, 5), *range(10, 15)], "predicted": range(5, 8), "box": box,
                 "emb": _unit(0)}], 15)
    rows, stats = refine(log, dataclasses.replace(OFF, max_gap_s=1.0), FPS)
    gap = np.flatnonzero((rows.frame >= 5) & (rows.frame <= 9))
    assert rows.frame[gap].tolist() == [5, 6, 7, 8, 9] and stats.interpolated_rows == 5
    assert set(rows.source[gap].tolist()) == {INTERPOLATED}  # the tracker's predictions replaced
    assert np.all(np.isnan(rows.conf[gap]))
    np.testing.assert_allclose(rows.xyxy[gap], [box(f) for f in range(5, 10)])  # box(4) -> box(10), linearly
    assert set(rows.source[rows.frame < 5].tolist()) == {DETECTED}


def test_gap_longer_than_max_gap_keeps_the_predictions() -> None:
    log = _log([{"id": 1, "frames": [*range(0, 5), *range(40, 45)], "predicted": range(5, 12), "box": _moving(10),
                 "emb": _unit(0)}], 45)
    rows, stats = refine(log, dataclasses.replace(OFF, max_gap_s=1.0), FPS)  # 36 frames: 1.44 s
    assert stats.interpolated_rows == 0
    assert rows.frame[rows.source == PREDICTED].tolist() == list(range(5, 12))


def _fragments(second_emb: np.ndarray, second_box, second_frames: range) -> TrackLog:  # type: ignore[no-untyped-def]
    box = _moving(10)
    return _log([
        {"id": 1, "frames": range(0, 10), "predicted": range(10, 16), "box": box, "emb": _unit(0)},
        {"id": 2, "frames": second_frames, "box": second_box, "emb": second_emb},
        {"id": 3, "frames": range(0, 30), "box": _moving(300, vx=0), "emb": _unit(3)},  # someone else
    ], 30)


def test_fragments_with_same_appearance_and_plausible_jump_become_one_track() -> None:
    log = _fragments(_unit(0) + 0.05 * _unit(9), _moving(10), range(15, 30))  # same walk, 0.24 s unseen
    rows, stats = refine(log, dataclasses.replace(OFF, stitch_max_gap_s=2.0), FPS)
    assert stats.stitched == 1 and stats.tracks_out == 2
    walker = rows.track[(rows.frame == 0) & (rows.xyxy[:, 0] < 100)]
    assert rows.track[(rows.frame == 20) & (rows.xyxy[:, 0] < 100)].tolist() == walker.tolist() == [1]
    assert sorted(set(rows.track.tolist())) == [1, 2]  # IDs 1..N after the join
    for f in range(30):  # one row per track per frame: the predecessor's predictions stop at the join
        assert len(set(rows.track[rows.frame == f].tolist())) == np.count_nonzero(rows.frame == f)


@pytest.mark.parametrize("emb, box", [
    (_unit(5), _moving(10)),  # another appearance
    (_unit(0), _moving(500, y0=300)),  # same appearance, but 500 px away 0.24 s later
])
def test_fragments_that_disagree_are_not_joined(emb: np.ndarray, box) -> None:  # type: ignore[no-untyped-def]
    _, stats = refine(_fragments(emb, box, range(15, 30)), dataclasses.replace(OFF, stitch_max_gap_s=2.0), FPS)
    assert stats.stitched == 0 and stats.tracks_out == 3


def test_fragments_overlapping_in_time_are_never_joined() -> None:
    log = _fragments(_unit(0), _moving(10), range(8, 30))  # starts while the first is still detected
    _, stats = refine(log, dataclasses.replace(OFF, stitch_max_gap_s=2.0, stitch_max_distance=2.0,
                                                stitch_max_speed=1000.0), FPS)
    assert stats.stitched == 0 and stats.tracks_out == 3


def test_three_frame_class_flicker_takes_the_tracks_class() -> None:
    log = _log([{"id": 1, "frames": range(40), "box": _moving(10), "emb": _unit(0),
                 "cls": lambda f: 67 if 20 <= f < 23 else 2}], 40)  # "cell phone" for 3 frames of a car
    rows, stats = refine(log, dataclasses.replace(OFF, class_vote=True), FPS)
    assert set(rows.cls.tolist()) == {2} and stats.relabelled_rows == 3
    rows, _ = refine(log, OFF, FPS)
    assert np.count_nonzero(rows.cls == 67) == 3  # off: as tracked


def test_vote_is_weighted_by_confidence() -> None:
    log = _log([{"id": 1, "frames": range(10), "box": _moving(10), "emb": _unit(0), "cls": lambda f: f % 2}], 10)
    rows, _ = refine(log, dataclasses.replace(OFF, class_vote=True), FPS)
    assert set(rows.cls.tolist()) == {0}  # a tie (5 frames each, same confidence) goes to the lower id


def test_short_tracks_removed_unless_the_video_may_have_cut_them() -> None:
    box = _moving(10, vx=0)
    log = _log([{"id": 1, "frames": range(40, 45), "box": box, "emb": _unit(1)},  # 0.2 s in the middle
                {"id": 2, "frames": range(0, 5), "box": box, "emb": _unit(2)},  # from the first frame
                {"id": 3, "frames": range(95, 100), "box": box, "emb": _unit(3)},  # to the last frame
                {"id": 4, "frames": range(50, 70), "box": box, "emb": _unit(4)}], 100)  # 0.8 s
    rows, stats = refine(log, dataclasses.replace(OFF, min_track_s=0.5), FPS)
    assert stats.removed_short == 1 and not np.any((rows.frame >= 40) & (rows.frame < 45))
    assert stats.tracks_out == 3


def test_track_start_kept_for_confirmed_tracks_and_ids_renumbered_by_first_appearance() -> None:
    log = _log([{"id": 7, "frames": range(2, 20), "box": _moving(10), "emb": _unit(1), "confirmed_from": 4},
                {"id": 3, "frames": range(5, 20), "box": _moving(200), "emb": _unit(2), "confirmed_from": 7},
                {"id": 9, "frames": range(10, 12), "box": _moving(400), "emb": _unit(3), "confirmed_from": 99}], 20)
    rows, stats = refine(log, OFF, FPS)
    assert stats.start_rows == 4 and stats.tracks_out == 2  # 2 + 2 tentative frames; 9 never confirmed
    assert rows.frame[rows.track == 1].min() == 2 and rows.frame[rows.track == 2].min() == 5
    online = online_rows(log, confirmed_only=True)
    assert online.frame[online.track == 7].min() == 4 and 9 not in online.track


def test_max_age_in_seconds_resolves_per_frame_rate() -> None:
    cfg = TrackerConfig(max_age_s=1.0)
    assert cfg.resolve(5.0)["max_age"] == 5 and cfg.resolve(30.0)["max_age"] == 30
    assert TrackerConfig(max_age=7, max_age_s=1.0).resolve(30.0)["max_age"] == 7  # frames still work
    for fps, frames in ((5.0, 5), (30.0, 30)):  # the tracker keeps a lost track 1 s at either rate
        t = VideoTracker(cfg, fps)
        det = Detections.from_arrays(np.array([[10, 10, 50, 90]], np.float32), np.array([0.9]), np.zeros(1))
        for _ in range(3):
            t.update(det, _unit(0)[None])
        alive = [bool(t.update(Detections.empty(), np.zeros((0, 32)))) for _ in range(frames + 1)]
        assert alive == [True] * frames + [False], fps


@pytest.mark.parametrize("item, key", [("refine.max_gap_s=-1", "refine.max_gap_s"),
                                       ("tracker.max_age_s=0", "tracker.max_age_s"),
                                       ("tracker.max_age=1.5", "tracker.max_age"),
                                       ("refine.stitch_max_distance=0", "refine.stitch_max_distance")])
def test_bad_settings_name_the_key(item: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [item])


def _scene(n: int) -> tuple[list[np.ndarray], list[tuple[float, float, float, float] | None]]:
    """A grey frame with a bright block that stands still, vanishes for 3 frames, and is
    seen again a little further on: the detections a detector would give."""
    frames, boxes = [], []
    for f in range(n):
        img = np.full((240, 320, 3), 90, np.uint8)
        box = None if 12 <= f < 15 else (40.0, 60.0, 80.0, 160.0) if f < 12 else (60.0, 60.0, 100.0, 160.0)
        if box is not None:
            x1, y1, x2, y2 = (int(v) for v in box)
            img[y1:y2, x1:x2] = (200, 180, 40)
        frames.append(img)
        boxes.append(box)
    return frames, boxes


def test_annotated_video_shows_the_final_records(fast_cfg, fast_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames, boxes = _scene(24)
    video = write_video(tmp_path / "scene.mp4", frames, fps=FPS)

    def detect(batch: list[Frame]) -> list[Detections]:
        out = []
        for fr in batch:
            b = boxes[fr.index]
            out.append(Detections.empty() if b is None else  # a block, not a person: class 2 (car), not re-identified
                       Detections.from_arrays(np.array([b], np.float32), np.array([0.9]), np.full(1, 2)))
        return out

    cfg = load_config(None, [f"detector.model={fast_cfg.detector.model}", "refine.max_gap_s=1.0",
                             "output.video_crf=0"])
    out = VideoOutputs.in_dir(tmp_path, "scene")
    summary = process_video(video, out, cfg, fast_models, detect=detect)
    assert summary.tracker_frames["max_age"] == 12  # 0.5 s at 25 fps
    assert summary.refine["tracks_out"] == 1 and summary.refine["interpolated_rows"] == 3
    t = pq.read_table(out.tracks).to_pydict()
    assert set(t["track_id"]) == {1}
    sources = dict(zip(t["frame_index"], t["box_source"], strict=True))
    assert [sources[f] for f in (12, 13, 14)] == ["interpolated"] * 3  # drawn only if the video is drawn from these
    with av.open(str(out.video)) as c:
        drawn = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(drawn) == 24
    for f in (0, 11, 12, 13, 14, 20):
        i = t["frame_index"].index(f)
        x1, y1 = round(t["x1"][i]), round(t["y1"][i])
        diff = np.abs(drawn[f].astype(int) - frames[f].astype(int)).sum(axis=2)
        left_edge = diff[y1 + 25: y1 + 90, x1].mean()  # the box's left side, below the label
        beside = diff[y1 + 25: y1 + 90, max(0, x1 - 8)].mean()
        assert left_edge > 60 > beside, (f, left_edge, beside)


def test_a_video_without_tracks_refines_to_no_rows() -> None:
    log = _log([], 10)
    rows, stats = refine(log, RefineConfig(max_gap_s=1.0, min_track_s=0.5), FPS)
    assert len(rows) == 0 and stats.tracks_out == 0


def test_eval_prints_scores_before_and_after_refinement(capsys: pytest.CaptureFixture[str]) -> None:
    seq = SHARED / "data" / "mot" / "MOT17-mini" / "MOT17-05-FRCNN"
    need_shared(seq, MODEL)
    assert main(["eval", str(seq), "--detections", "public", "--set", f"detector.model={MODEL}",
                 "--set", "output.annotated_video=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "online tracker (before refinement)" in lines[0] and "refined" in lines[0]
    row = next(line for line in lines if line.startswith("MOT17-05-FRCNN"))
    before, after = row.split("|")
    assert before.count("HOTA") == after.count("HOTA") == 1
    hota = [float(part.split("HOTA")[1].split()[0]) for part in (before, after)]
    assert hota[1] > hota[0]  # a 6-frame clip: refinement gives back each track's first frames
